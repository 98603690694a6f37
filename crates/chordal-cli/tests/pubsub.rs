//! Pub/sub across real `chordal node` processes, through the CLI and the
//! HTTP API: `chordal sub` on one node gets what `chordal pub` sends
//! through another, text, empty and binary alike, also after the topic's owner is
//! killed with SIGKILL; bad requests get JSON errors. And the HTTP watch
//! (`GET /v1/watch/{key}`), a stream of a key's (or a hash tag group's)
//! versions, through the owner's SIGKILL and a resume from an event id.

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
    let owner_id = oracle(&all).successor(&chordal_core::Id::of_key(topic.as_bytes()));
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

/// An SSE stream of `GET path` read on a thread: each `change` event's
/// (id, data) as it arrives; `error` events as `("error", data)`.
fn sse(
    api: std::net::SocketAddr,
    path: &str,
    last_id: Option<&str>,
) -> std::sync::mpsc::Receiver<(String, serde_json::Value)> {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(api).unwrap();
    let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut id, mut event) = (String::new(), String::new());
        for line in BufReader::new(conn).lines() {
            let Ok(line) = line else { return };
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_string();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ")
                && let Ok(data) = serde_json::from_str(v)
            {
                let name = if event == "change" {
                    id.clone()
                } else {
                    event.clone()
                };
                if tx.send((name, data)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The number a change event of one string record carries.
fn told_number(data: &serde_json::Value) -> u64 {
    data["records"][0]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn http_watch_follows_a_key_and_its_group_through_the_owner_kill9() {
    let extra = ["--stabilize-ms", "200"];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 1..4 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || ring_correct(&all)).expect("ring did not form");
    let key = "{w}counter";
    let owner_id = oracle(&all).successor(&chordal_core::Id::of_key(key.as_bytes()));
    let owner = nodes.iter().position(|n| n.id == owner_id).unwrap();
    let (watch_at, write_at) = ((owner + 1) % 4, (owner + 2) % 4);
    let api = nodes[watch_at].api;
    let key_stream = sse(api, "/v1/watch/%7Bw%7Dcounter", None);
    let group_stream = sse(api, "/v1/watch/%7Bw%7Danything?group=true", None);
    std::thread::sleep(Duration::from_millis(500));

    // Sequential writes, 1..=60, the owner killed after the 30th; every
    // 10th to another key of the group.
    let mut acked = Vec::new();
    for n in 1..=60u64 {
        let k = if n.is_multiple_of(10) {
            "%7Bw%7Dother"
        } else {
            "%7Bw%7Dcounter"
        };
        let (status, _, _) = http_body(
            nodes[write_at].api,
            "PUT",
            &format!("/v1/kv/{k}"),
            n.to_string().as_bytes(),
        );
        if status == 200 {
            acked.push(n);
        }
        if n == 30 {
            nodes[owner].kill9();
        }
    }
    assert!(
        acked.len() >= 55,
        "only {} of 60 writes acknowledged",
        acked.len()
    );
    let last_key = *acked
        .iter()
        .filter(|n| !n.is_multiple_of(10))
        .max()
        .unwrap();
    let last_any = *acked.iter().max().unwrap();

    // The key's stream: newer each time, and ends at the last write.
    let mut told = Vec::new();
    let mut ids = Vec::new();
    while told.last() != Some(&last_key) {
        let (id, data) = key_stream
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the key's stream stopped at {told:?}"));
        assert_ne!(id, "error", "{data}");
        assert_eq!(data["records"][0]["key"], key);
        let n = told_number(&data);
        assert!(
            told.last().is_none_or(|l| *l < n),
            "told {n} after {told:?}"
        );
        assert!(!n.is_multiple_of(10), "told {n}, written to another key");
        told.push(n);
        ids.push(id);
    }
    // Before the kill, with nobody in a hurry, most writes are told one
    // by one (a watch reports states: two writes between two events show
    // as the later one).
    let early = told.iter().filter(|n| **n <= 29).count();
    assert!(
        early >= 10,
        "only {early} of the first 27 writes told: {told:?}"
    );

    // The group's stream sees both keys, up to the last write of any.
    let mut group_told = Vec::new();
    while group_told.last() != Some(&last_any) {
        let (id, data) = group_stream
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the group's stream stopped at {group_told:?}"));
        assert_ne!(id, "error", "{data}");
        let n = told_number(&data);
        assert!(
            group_told.last().is_none_or(|l| *l < n),
            "told {n} after {group_told:?}"
        );
        group_told.push(n);
    }
    assert!(
        group_told.iter().any(|n| n.is_multiple_of(10)),
        "{group_told:?}"
    );

    // Resumed from an early event's id (as an EventSource reconnects):
    // the first event is newer than it, and the stream reaches the end.
    let resumed = sse(api, "/v1/watch/%7Bw%7Dcounter", Some(&ids[1]));
    let (_, first) = resumed.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        told_number(&first) > told[1],
        "resumed at {first} after {}",
        told[1]
    );
    assert_eq!(
        told_number(&first),
        last_key,
        "resume shows the key's state now"
    );

    // A bad version is a 400 with a JSON error.
    let (status, body) = http(api, "GET", "/v1/watch/k?from=nonsense");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_version"), "{body}");
}
