//! Eight real `chordal node` processes on 127.0.0.1 (three on a one-thread
//! runtime): they form the right ring, answer lookups like the oracle, heal
//! after `kill -9`, and tell their neighbours when they leave on SIGTERM.

mod common;

use chordal_core::Id;
use common::*;
use std::time::Duration;

#[test]
fn real_processes_form_heal_and_leave() {
    // Slow-ish maintenance, so that what heals fast below is the failure
    // detection and leave protocol, not a lucky stabilize round.
    let extra = ["--stabilize-ms", "1000"];
    // Half of them on a one-thread runtime (`--threads 1`), so that both
    // runtimes go through forming, healing and leaving.
    let one_thread = ["--stabilize-ms", "1000", "--threads", "1"];
    let first = NodeProc::start(None, &extra);
    let mut nodes = vec![first];
    for i in 1..7 {
        let seed = nodes[0].addr;
        let flags: &[&str] = if i % 2 == 1 { &one_thread } else { &extra };
        nodes.push(NodeProc::start(Some(seed), flags));
    }
    // Seeds may be host names (localhost may also resolve to ::1, where
    // nobody listens: the next address is tried) and lists with dead entries.
    let seeds = format!("127.0.0.1:1,localhost:{}", nodes[1].addr.port());
    nodes.push(NodeProc::start_with(Some(seeds), &extra));

    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || ring_correct(&all))
        .expect("8 processes did not converge in 30 s");
    // Successor lists fill in one stabilize round per hop.
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 8))
        .expect("successor lists did not fill in 30 s");

    // /v1/ring from any node lists all 8 in ring order.
    let o = oracle(&all);
    let (status, ring) = get_json(nodes[5].api, "/v1/ring");
    assert_eq!(status, 200);
    assert_eq!(ring["count"], 8);
    let walked: Vec<String> = ring["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected = vec![nodes[5].id];
    expected.extend(o.successors(&nodes[5].id, 7));
    assert_eq!(
        walked,
        expected.iter().map(|i| i.to_hex()).collect::<Vec<_>>()
    );
    // Every member's API address is known to the walker.
    assert!(
        ring["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["api"].is_string())
    );

    // A node learns a peer's API address from the Hello of a connection
    // between them, and right after the ring forms one may not have
    // talked to every other yet (one-hop routing needs no connection to
    // every member): a ring walk from each node makes every pair talk,
    // and each walker then knows every member's API.
    for n in &nodes {
        let (status, ring) = get_json(n.api, "/v1/ring");
        assert_eq!(status, 200);
        assert_eq!(ring["count"], 8);
        assert!(
            ring["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["api"].is_string()),
            "{ring}"
        );
    }

    // Lookups from every node agree with the oracle, in both modes, and
    // each node shown carries the API address of its process.
    let api_of = |id: &str| {
        nodes
            .iter()
            .find(|n| n.id.to_hex() == id)
            .map(|n| n.api.to_string())
    };
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..10 {
            let key = format!("key-{i}-{k}");
            for mode in ["recursive", "iterative"] {
                let mut apis_known = false;
                let waited = eventually(Duration::from_secs(10), || {
                    let (status, v) = get_json(n.api, &format!("/v1/locate/{key}?mode={mode}"));
                    assert_eq!(status, 200, "{v}");
                    let truth = o.successor(&Id::of_key(key.as_bytes()));
                    assert_eq!(
                        v["owner"]["id"].as_str(),
                        Some(truth.to_hex().as_str()),
                        "{mode} {key} from {i}"
                    );
                    assert_eq!(
                        v["key_id"].as_str(),
                        Some(Id::of_key(key.as_bytes()).to_hex().as_str())
                    );
                    assert_eq!(v["replicas"].as_array().unwrap().len(), 2);
                    let shown: Vec<&serde_json::Value> = std::iter::once(&v["owner"])
                        .chain(v["replicas"].as_array().unwrap())
                        .collect();
                    for shown in &shown {
                        let id = shown["id"].as_str().unwrap();
                        let proc = nodes.iter().find(|n| n.id.to_hex() == id).unwrap();
                        assert_eq!(shown["addr"].as_str(), Some(proc.addr.to_string().as_str()));
                    }
                    apis_known = shown.iter().all(|s| {
                        s["api"].as_str().map(String::from) == api_of(s["id"].as_str().unwrap())
                    });
                    apis_known
                });
                assert!(
                    waited.is_some() && apis_known,
                    "{mode} {key} from {i}: API addresses never shown"
                );
            }
        }
    }

    // kill -9 two nodes at once: the ring heals within a bounded time.
    // Two apart on the ring (the 1st and 5th of 8 by id), so that every
    // key keeps a majority of its 3 copies and a decider (authority).
    let mut by_id: Vec<usize> = (0..nodes.len()).collect();
    by_id.sort_by_key(|i| nodes[*i].id);
    let victims = [by_id[0], by_id[4]];
    for v in victims {
        nodes[v].kill9();
    }
    let live: Vec<&NodeProc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| !victims.contains(i))
        .map(|(_, n)| n)
        .collect();
    let took = eventually(Duration::from_secs(10), || ring_correct(&live))
        .expect("ring did not heal within 10 s of two kill -9");
    eprintln!("healed from two kill -9 in {took:?}");
    let o = oracle(&live);
    for k in 0..20 {
        let key = format!("after-{k}");
        let (status, v) = get_json(live[k % live.len()].api, &format!("/v1/locate/{key}"));
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["owner"]["id"].as_str(),
            Some(o.successor(&Id::of_key(key.as_bytes())).to_hex().as_str())
        );
    }

    // SIGTERM one: it leaves gracefully and its neighbours learn at once.
    let leaving = live[3].id;
    let pred = o.prev(&leaving);
    let succ = o.next(&leaving);
    let pred_api = live.iter().find(|n| n.id == pred).unwrap().api;
    let succ_api = live.iter().find(|n| n.id == succ).unwrap().api;
    let index = nodes.iter().position(|n| n.id == leaving).unwrap();
    let status = nodes[index].terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    let learned = eventually(Duration::from_millis(500), || {
        let (_, p) = get_json(pred_api, "/v1/node");
        let (_, s) = get_json(succ_api, "/v1/node");
        let pred_ok = p["successors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["id"] != leaving.to_hex())
            && p["successors"][0]["id"] == succ.to_hex();
        let succ_ok = s["predecessor"]["id"] == pred.to_hex();
        pred_ok && succ_ok
    });
    assert!(
        learned.is_some(),
        "neighbours did not learn of the leave within 500 ms"
    );
}
