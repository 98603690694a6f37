//! The replicated store across real `chordal node` processes with data
//! directories (R = 3): every acknowledged write survives two nodes
//! killed at once; values, overwrites and deletes read the same from every
//! node; bad requests get JSON errors and store nothing.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn acknowledged_writes_survive_kills_restarts_and_shrinking_to_half() {
    let dirs = tempfile::tempdir().unwrap();
    let extra = |i: usize| -> Vec<String> {
        vec![
            "--stabilize-ms".into(),
            "200".into(),
            "--sync-ms".into(),
            "300".into(),
            "--data-dir".into(),
            dirs.path().join(format!("n{i}")).display().to_string(),
        ]
    };
    let start = |seed: Option<std::net::SocketAddr>, i: usize| {
        let e = extra(i);
        let e: Vec<&str> = e.iter().map(String::as_str).collect();
        NodeProc::start(seed, &e)
    };
    let mut nodes = vec![start(None, 0)];
    for i in 1..10 {
        let seed = nodes[0].addr;
        nodes.push(start(Some(seed), i));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 8))
        .expect("ring did not form");

    // 2,000 keys through different nodes; some overwritten, some deleted.
    for k in 0..2000 {
        put(
            nodes[k % 10].api,
            &format!("key-{k}"),
            format!("v1-{k}").as_bytes(),
        );
    }
    for k in (0..2000).step_by(7) {
        put(
            nodes[(k + 3) % 10].api,
            &format!("key-{k}"),
            format!("v2-{k}").as_bytes(),
        );
    }
    for k in (0..2000).step_by(11) {
        let (status, _, _) = http_body(
            nodes[(k + 5) % 10].api,
            "DELETE",
            &format!("/v1/kv/key-{k}"),
            b"",
        );
        assert_eq!(status, 200);
    }
    // What each key should read, as writes go on.
    let mut expect: Vec<Option<Vec<u8>>> = (0..2000)
        .map(|k: usize| {
            if k.is_multiple_of(11) {
                None
            } else if k.is_multiple_of(7) {
                Some(format!("v2-{k}").into_bytes())
            } else {
                Some(format!("v1-{k}").into_bytes())
            }
        })
        .collect();
    // Every node holds some of the data (R = 3 copies of 2,000 keys). The
    // count is a gauge each node refreshes once a second, and the third copy
    // of a majority write may land after the acknowledgement, so wait for it.
    let records = |api| -> u64 {
        let (_, ring) = get_json(api, "/v1/ring");
        ring["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["keys_stored"].as_u64().unwrap())
            .sum()
    };
    let at = nodes[0].api;
    let enough = eventually(Duration::from_secs(10), || records(at) >= 3 * 2000 - 100);
    assert!(
        enough.is_some(),
        "only {} records over the ring",
        records(at)
    );

    // Two nodes die at once — apart on the ring (the 1st and 6th of 10 by
    // id), so that every key keeps a majority of its 3 copies and a
    // decider (authority); then three more, one at a time.
    let mut by_id: Vec<usize> = (0..10).collect();
    by_id.sort_by_key(|i| nodes[*i].id);
    let (pair, singles) = ([by_id[0], by_id[5]], [by_id[2], by_id[7], by_id[9]]);
    for v in pair {
        nodes[v].kill9();
    }
    let live: Vec<&NodeProc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !pair.contains(i))
        .map(|(_, n)| n)
        .collect();
    eventually(Duration::from_secs(15), || ring_correct(&live)).expect("ring did not heal");
    for (k, want) in expect.iter().enumerate() {
        let got = get(live[k % live.len()].api, &format!("key-{k}"));
        assert_eq!(&got, want, "key-{k} after two kill -9");
    }

    // Then nodes fail one at a time, with time to re-replicate in between,
    // until half are gone.
    let mut alive: Vec<usize> = (0..10).filter(|i| !pair.contains(i)).collect();
    for victim in singles {
        nodes[victim].kill9();
        alive.retain(|i| *i != victim);
        let live: Vec<&NodeProc> = alive.iter().map(|i| &nodes[*i]).collect();
        eventually(Duration::from_secs(15), || ring_correct(&live)).expect("ring did not heal");
        // Sync rounds (300 ms each) restore three copies: wait until the
        // records add up again before the next failure.
        let at = live[0].api;
        let restored = eventually(Duration::from_secs(20), || records(at) >= 3 * 2000 - 100);
        assert!(
            restored.is_some(),
            "only {} records after node {victim} died",
            records(at)
        );
    }
    assert_eq!(alive.len(), 5);
    for (k, want) in expect.iter().enumerate() {
        let got = get(nodes[alive[k % 5]].api, &format!("key-{k}"));
        assert_eq!(&got, want, "key-{k} with half the nodes gone");
    }

    // While they are down, keys are overwritten and deleted.
    for k in (0..2000).step_by(13) {
        let at = nodes[alive[k % 5]].api;
        if k.is_multiple_of(2) {
            put(at, &format!("key-{k}"), format!("v3-{k}").as_bytes());
            expect[k] = Some(format!("v3-{k}").into_bytes());
        } else {
            let (status, _, _) = http_body(at, "DELETE", &format!("/v1/kv/key-{k}"), b"");
            assert!(status == 200 || status == 404);
            expect[k] = None;
        }
    }
    // The killed nodes come back from their data directories (same ids,
    // new ports) with stale data: they must not serve it.
    for i in pair.into_iter().chain(singles) {
        let seed = nodes[alive[0]].addr;
        let old_id = nodes[i].id;
        nodes[i] = start(Some(seed), i);
        assert_eq!(nodes[i].id, old_id, "node {i} did not keep its identity");
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all))
        .expect("restarted nodes did not rejoin");
    for (k, want) in expect.iter().enumerate() {
        let got = get(nodes[k % 10].api, &format!("key-{k}"));
        assert_eq!(&got, want, "key-{k} after the restarts");
    }
}

/// Writers at different nodes put one key at the same time: afterwards
/// every replica holds the same version and value.
#[test]
fn concurrent_writers_converge_on_every_replica() {
    let extra = ["--stabilize-ms", "200", "--sync-ms", "300"];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 1..6 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || successor_lists_correct(&all, 5)).expect("ring");
    let apis: Vec<_> = nodes.iter().map(|n| n.api).collect();
    let writers: Vec<_> = (0..12)
        .map(|w| {
            let api = apis[w % apis.len()];
            std::thread::spawn(move || {
                for round in 0..10 {
                    put(api, "contended", format!("writer-{w}-{round}").as_bytes());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let (_, loc) = get_json(apis[0], "/v1/locate/contended");
    let mut holders = vec![loc["owner"]["api"].as_str().unwrap().to_string()];
    holders.extend(
        loc["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["api"].as_str().unwrap().to_string()),
    );
    assert_eq!(holders.len(), 3);
    // Each holder's own copy: (status, version, value).
    let copies = || -> Vec<(u16, Option<String>, Vec<u8>)> {
        holders
            .iter()
            .map(|api| {
                let (status, head, body) = http_body(
                    api.parse().unwrap(),
                    "GET",
                    "/v1/kv/contended?local=true",
                    b"",
                );
                let version = head.lines().find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("x-chordal-version:")
                        .map(|v| v.trim().to_string())
                });
                (status, version, body)
            })
            .collect()
    };
    let agree = |c: &[(u16, Option<String>, Vec<u8>)]| {
        c.iter()
            .all(|(status, version, _)| *status == 200 && version.is_some())
            && c.windows(2).all(|w| w[0] == w[1])
    };
    // Sync rounds (300 ms) bring every copy to the newest version.
    let converged = eventually(Duration::from_secs(15), || agree(&copies()));
    let copies = copies();
    assert!(converged.is_some(), "replicas differ: {copies:?}");
    assert_eq!(get(apis[3], "contended"), Some(copies[0].2.clone()));
}

/// SIGTERM: the node hands its whole range to its successor before it
/// exits. With R = 1 nobody else has those keys, so none may be missing.
#[test]
fn graceful_leave_hands_over_everything() {
    let extra = ["--replicas", "1", "--stabilize-ms", "200"];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 1..4 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring");
    for k in 0..300 {
        put(
            nodes[k % 4].api,
            &format!("h-{k}"),
            format!("v-{k}").as_bytes(),
        );
    }
    // The node with the most keys leaves. The counts are gauges each node
    // refreshes once a second: wait until they add up to the 300 keys.
    let count = |n: &NodeProc| {
        get_json(n.api, "/v1/node").1["keys_stored"]
            .as_u64()
            .unwrap()
    };
    let counted = eventually(Duration::from_secs(10), || {
        nodes.iter().map(count).sum::<u64>() >= 300
    });
    assert!(counted.is_some(), "the key counts never added up");
    let leaving = (1..4).max_by_key(|i| count(&nodes[*i])).unwrap();
    assert!(count(&nodes[leaving]) > 0);
    assert!(nodes[leaving].terminate().success());
    let live: Vec<&NodeProc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaving)
        .map(|(_, n)| n)
        .collect();
    eventually(Duration::from_secs(10), || ring_correct(&live)).expect("ring after leave");
    for k in 0..300 {
        assert_eq!(
            get(live[k % 3].api, &format!("h-{k}")),
            Some(format!("v-{k}").into_bytes()),
            "h-{k}"
        );
    }
}
#[test]
fn kv_api_rejects_bad_requests_and_stores_nothing() {
    let a = NodeProc::start(None, &[]);
    // Over the value limit: 413, JSON, nothing stored.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, _, body) = http_body(a.api, "PUT", "/v1/kv/big", &big);
    assert_eq!(status, 413);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "value_too_large");
    assert_eq!(get(a.api, "big"), None);
    // Exactly at the limit is fine.
    let max = vec![b'y'; 1024 * 1024];
    put(a.api, "max", &max);
    assert_eq!(get(a.api, "max"), Some(max));
    // Key over 1 KiB: 400.
    let long = "k".repeat(1025);
    let (status, _, body) = http_body(a.api, "PUT", &format!("/v1/kv/{long}"), b"v");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Unknown key: 404 JSON on GET and DELETE.
    for method in ["GET", "DELETE"] {
        let (status, _, body) = http_body(a.api, method, "/v1/kv/nothing", b"");
        assert_eq!(status, 404);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "not_found");
    }
    // Binary values and keys that need encoding round-trip, with a version.
    let bin: Vec<u8> = (0..=255).collect();
    put(a.api, "a%20b%2Fc", &bin);
    let (status, head, body) = http_body(a.api, "GET", "/v1/kv/a%20b%2Fc", b"");
    assert_eq!((status, body), (200, bin));
    assert!(head.to_lowercase().contains("x-chordal-version:"), "{head}");
}
