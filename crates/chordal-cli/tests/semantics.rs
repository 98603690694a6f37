//! Store semantics across real `chordal node` processes (R = 3): values
//! that expire, create-only and compare-version writes decided by the
//! owner whichever node they enter at, batches, quorum reads, the OpenAPI
//! document, and the CLI flags for them.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn ring(n: usize) -> Vec<NodeProc> {
    let mut nodes = vec![NodeProc::start(None, &["--stabilize-ms", "100"])];
    for _ in 1..n {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &["--stabilize-ms", "100"]));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("ring did not form");
    nodes
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn cli(api: std::net::SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .args(["--node", &api.to_string()])
        .output()
        .expect("run chordal")
}

#[test]
fn values_expire_on_every_node_and_conditions_hold_whichever_node_decides() {
    let nodes = ring(3);
    let (a, b, c) = (nodes[0].api, nodes[1].api, nodes[2].api);

    // TTL: readable with its expiry everywhere, then gone everywhere.
    let (status, _, body) = http_body(a, "PUT", "/v1/kv/session?ttl=2", b"token");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, head, value) = http_body(b, "GET", "/v1/kv/session", b"");
    assert_eq!((status, value.as_slice()), (200, &b"token"[..]));
    let expires: u64 = header_of(&head, "x-chordal-expires")
        .expect("an expiry header")
        .parse()
        .unwrap();
    let now = unix_now();
    assert!(
        (now + 1..=now + 3).contains(&expires),
        "expires {expires}, now {now}"
    );
    assert!(header_of(&head, "etag").is_some());
    let gone = eventually(Duration::from_secs(6), || {
        [a, b, c].iter().all(|api| get(*api, "session").is_none())
    });
    assert!(gone.is_some(), "the value should expire on every node");
    // A bad ttl is refused and stores nothing.
    let (status, _, body) = http_body(a, "PUT", "/v1/kv/bad?ttl=0", b"x");
    assert_eq!(
        (status, json_of(&body)["code"].clone()),
        (400, json!("bad_ttl"))
    );
    assert_eq!(get(a, "bad"), None);

    // Create only: the first wins, the second (entering at another node)
    // gets 412 with the first one's version.
    let absent = [("If-None-Match", "*")];
    let (status, _, body) = http_with(a, "PUT", "/v1/kv/lock", &absent, b"first");
    assert_eq!(status, 200);
    let first = json_of(&body)["version"].as_str().unwrap().to_string();
    let (status, _, body) = http_with(b, "PUT", "/v1/kv/lock", &absent, b"second");
    let refusal = json_of(&body);
    assert_eq!(status, 412, "{refusal}");
    assert_eq!(refusal["code"], "precondition_failed");
    assert_eq!(refusal["version"], json!(first));
    assert_eq!(get(c, "lock").as_deref(), Some(&b"first"[..]));

    // Compare version: the current one succeeds, a stale one is refused.
    let (status, _, body) = http_with(c, "PUT", "/v1/kv/lock", &[("If-Match", &first)], b"third");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let third = json_of(&body)["version"].as_str().unwrap().to_string();
    let (status, _, body) = http_with(a, "PUT", "/v1/kv/lock", &[("If-Match", &first)], b"late");
    assert_eq!(status, 412);
    assert_eq!(json_of(&body)["version"], json!(third));
    let (status, _, _) = http_with(b, "DELETE", "/v1/kv/lock", &[("If-Match", &first)], b"");
    assert_eq!(status, 412);
    assert_eq!(get(a, "lock").as_deref(), Some(&b"third"[..]));
    // The ETag form of the version works too.
    let quoted = format!("\"{third}\"");
    let (status, _, _) = http_with(b, "DELETE", "/v1/kv/lock", &[("If-Match", &quoted)], b"");
    assert_eq!(status, 200);
    assert_eq!(get(c, "lock"), None);
    let (status, _, body) = http_with(a, "PUT", "/v1/kv/x", &[("If-Match", "nonsense")], b"v");
    assert_eq!(
        (status, json_of(&body)["code"].clone()),
        (400, json!("bad_version"))
    );

    // Reads from a quorum and from all copies see the same value.
    put(a, "q", b"quorum-value");
    for consistency in ["one", "quorum", "all"] {
        let path = format!("/v1/kv/q?consistency={consistency}");
        let (status, _, value) = http_body(b, "GET", &path, b"");
        assert_eq!(
            (status, value.as_slice()),
            (200, &b"quorum-value"[..]),
            "{consistency}"
        );
    }
    let (status, _, _) = http_body(b, "GET", "/v1/kv/q?consistency=two", b"");
    assert_eq!(status, 400);
}

#[test]
fn a_batch_answers_each_op_as_its_route_would_and_the_api_is_documented() {
    let nodes = ring(3);
    let (a, b) = (nodes[0].api, nodes[1].api);
    // The ops of a batch run side by side (one linearizable operation per
    // key, in no order), so each names its own key: a get of a key the
    // same batch deletes may see either.
    for key in ["existing", "taken", "doomed"] {
        put(b, key, b"old");
    }
    let ops = json!({"ops": [
        {"op": "put", "key": "k1", "value_b64": "aGVsbG8="},
        {"op": "put", "key": "k2", "value_b64": "d29ybGQ=", "ttl": 60},
        {"op": "get", "key": "existing"},
        {"op": "get", "key": "missing"},
        {"op": "put", "key": "taken", "value_b64": "eA==", "if_absent": true},
        {"op": "delete", "key": "doomed"},
        {"op": "delete", "key": "missing"},
        {"op": "frobnicate", "key": "k3"},
    ]});
    let body = serde_json::to_vec(&ops).unwrap();
    let (status, _, answer) = http_body(a, "POST", "/v1/kv:batch", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let results = json_of(&answer)["results"].as_array().unwrap().clone();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 404, 412, 200, 404, 400]);
    assert_eq!(results[2]["value_b64"], "b2xk");
    assert!(results[1]["version"].is_string());
    assert_eq!(results[7]["code"], "bad_op");
    // The batch's writes are there, from another node.
    assert_eq!(get(b, "k1").as_deref(), Some(&b"hello"[..]));
    assert_eq!(get(b, "doomed"), None);
    assert_eq!(get(b, "taken").as_deref(), Some(&b"old"[..]));
    let (_, head, _) = http_body(b, "GET", "/v1/kv/k2", b"");
    assert!(header_of(&head, "x-chordal-expires").is_some());
    // Not a batch: a JSON 400.
    let (status, _, body) = http_body(a, "POST", "/v1/kv:batch", b"{\"ops\": 5}");
    assert_eq!(
        (status, json_of(&body)["code"].clone()),
        (400, json!("bad_batch"))
    );

    let (status, doc) = get_json(a, "/v1/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/kv:batch"]["post"].is_object());
}

#[test]
fn the_cli_puts_with_a_ttl_and_conditions() {
    let nodes = ring(3);
    let api = nodes[1].api;
    let ok = cli(api, &["put", "cfg", "v1", "--if-absent"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let again = cli(api, &["put", "cfg", "v2", "--if-absent"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("current version"), "{stderr}");
    let read = cli(api, &["get", "cfg", "--json"]);
    let read: Value = serde_json::from_slice(&read.stdout).expect("JSON");
    let version = read["version"].as_str().unwrap().to_string();
    assert_eq!(read["expires"], Value::Null);
    let stale = cli(
        api,
        &[
            "put",
            "cfg",
            "v3",
            "--if-version",
            "1-0000000000000000000000000000000000000000",
        ],
    );
    assert_eq!(stale.status.code(), Some(1));
    let fresh = cli(
        api,
        &["put", "cfg", "v3", "--if-version", &version, "--ttl", "100"],
    );
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    let read = cli(
        nodes[0].api,
        &["get", "cfg", "--json", "--consistency", "quorum"],
    );
    let read: Value = serde_json::from_slice(&read.stdout).expect("JSON");
    assert_eq!(read["value"], "v3");
    let expires = read["expires"].as_u64().expect("an expiry");
    assert!(expires > unix_now() + 90, "{expires}");
}
