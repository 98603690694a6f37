//! Pub/sub across real `chordal node` processes, through the CLI and the
//! HTTP API: `chordal sub` on one node gets what `chordal pub` sends
//! through another, text, empty and binary alike, also after the topic's owner is
//! killed with SIGKILL; bad requests get JSON errors.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

fn chordal_pub(api: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["pub", "--node", &api.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_sub_gets_text_and_binary_and_survives_the_owner_kill9() {
    let extra = ["--stabilize-ms", "200"];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 1..5 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || ring_correct(&all)).expect("ring did not form");

    let topic = "room/42";
    let owner_id = oracle(&all).successor(&chordal_core::Id::hash(topic.as_bytes()));
    let owner = nodes.iter().position(|n| n.id == owner_id).unwrap();
    let (sub_at, pub_at) = ((owner + 1) % 5, (owner + 2) % 5);

    let mut sub = Command::new(BIN)
        .args(["sub", topic, "--count", "5", "--json"])
        .args(["--node", &nodes[sub_at].api.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the subscription is in place.
    let mut stderr = BufReader::new(sub.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("subscribed"), "{line:?}");

    let said = chordal_pub(nodes[pub_at].api, &[topic, "hello ring"]);
    assert_eq!(said.trim(), "published to 1 subscribed node(s)");
    chordal_pub(nodes[pub_at].api, &[topic, "two\nlines"]);
    chordal_pub(nodes[pub_at].api, &[topic, ""]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, [0u8, 159, 146, 150, b'\r']).unwrap();
    chordal_pub(
        nodes[pub_at].api,
        &[topic, "--file", file.to_str().unwrap()],
    );

    // The owner dies; the next owner already knows the subscriber.
    nodes[owner].kill9();
    chordal_pub(nodes[pub_at].api, &[topic, "after the crash"]);

    let status = wait_timeout(&mut sub, Duration::from_secs(20)).expect("sub did not finish");
    assert!(status.success());
    let mut out = String::new();
    sub.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let got: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            serde_json::json!({"topic": topic, "message": "hello ring"}),
            serde_json::json!({"topic": topic, "message": "two\nlines"}),
            serde_json::json!({"topic": topic, "message": ""}),
            serde_json::json!({"topic": topic, "message_base64": "AJ+Slg0="}),
            serde_json::json!({"topic": topic, "message": "after the crash"}),
        ]
    );
}

#[test]
fn topic_requests_with_bad_input_get_json_errors() {
    let node = NodeProc::start(None, &[]);
    // Over the message limit (1 MiB by default).
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, _, body) = http_body(node.api, "POST", "/v1/topics/t", &big);
    assert_eq!(status, 413);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "message_too_large");
    // A topic name over the key limit.
    let long = "t".repeat(2000);
    let (status, body) = http(node.api, "GET", &format!("/v1/topics/{long}"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("key_too_long"), "{body}");
    // Nobody subscribed: published to no one, and the node keeps serving.
    let (status, _, body) = http_body(node.api, "POST", "/v1/topics/t", b"hi");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["subscribers"], 0);
}
