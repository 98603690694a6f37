//! Recorded histories of real clients against real `chordal node`
//! processes, checked for linearizability by `chordal-lincheck` — issue
//! 27's Jepsen-style harness. Clients on their own threads run INCR/GET
//! on counters over RESP and GET/PUT/DELETE/compare-and-set (`If-Match`
//! on the version last seen, or create-only) on registers over HTTP,
//! each through a node of its own; every operation's invocation,
//! completion and result (or unknown outcome, on an error) is recorded.
//! A quiet ring is the baseline; under authority the nemesis kills a
//! node with `kill -9`, or replaces nodes by SIGTERM leaves and fresh
//! joins; below a majority, writes must refuse.

mod common;

use chordal_lincheck::models::{Counter, Register, RegisterOp, RegisterOut};
use chordal_lincheck::{Op, Verdict, check_per_key};
use common::history::*;
use common::*;
use std::time::Duration;

/// Flags of the rings run under authority.
const AUTHORITY: [&str; 7] = [
    "--stabilize-ms",
    "100",
    "--resp",
    "127.0.0.1:0",
    "--authority",
    "--lease-ms",
    "1000",
];

/// `n` `chordal node` processes with `args` (at most 9: every successor
/// list then holds the whole ring), joined through the first, once every
/// successor list is right.
fn ring(n: usize, args: &[&str]) -> Vec<NodeProc> {
    let mut nodes = vec![NodeProc::start(None, args)];
    for _ in 1..n {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), args));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || {
        successor_lists_correct(&all, n - 1)
    })
    .expect("ring did not form");
    nodes
}

/// Checks the counters and the registers of `history`; the first key
/// that is not linearizable.
fn verdicts(history: Vec<Recorded>) -> (usize, Option<(String, Verdict)>) {
    let n = history.len();
    let (mut counters, mut registers) = (Vec::new(), Vec::new());
    for r in history {
        match r {
            Recorded::Counter(k, op) => counters.push((k, op)),
            Recorded::Register(k, op) => registers.push((k, op)),
            Recorded::Set(_) | Recorded::List(_) => {}
        }
    }
    let budget = 50_000_000;
    let bad = check_per_key(&Counter, counters, budget)
        .or_else(|| check_per_key(&Register, registers, budget));
    (n, bad)
}

#[test]
fn a_quiet_rings_counters_and_registers_are_linearizable() {
    let nodes = ring(3, &["--stabilize-ms", "100", "--resp", "127.0.0.1:0"]);
    let history = record(&endpoints(&nodes), 6, Duration::from_secs(4));
    let (n, bad) = verdicts(history.clone());
    eprintln!("consistency: {n} operations recorded");
    assert!(n > 500, "only {n} operations");
    assert_eq!(bad, None);

    // The wiring sees a violation when there is one: a read after
    // everything, of a value no one wrote.
    let mut history = history;
    history.push(Recorded::Register(
        "register-0".into(),
        Op {
            client: 99,
            call: u64::MAX - 2,
            ret: Some(u64::MAX - 1),
            input: RegisterOp::Get,
            output: Some(RegisterOut::Value(Some(7))),
        },
    ));
    let (_, bad) = verdicts(history.clone());
    assert!(
        matches!(&bad, Some((k, Verdict::Violation { .. })) if k == "register-0"),
        "{bad:?}"
    );

    // The set: every read consistent with the adds; and the check sees a
    // read, after everything, that lacks an acknowledged member.
    assert_eq!(set_verdict(&history), None);
    assert_eq!(list_verdict(&history), None);
    let added = history.iter().find_map(|r| match r {
        Recorded::Set(op) if op.ret.is_some() => match &op.input {
            SetOp::Add(m) => Some(m.clone()),
            SetOp::Read => None,
        },
        _ => None,
    });
    let added = added.expect("no member was added");
    let mut lacking = history;
    lacking.push(Recorded::Set(Op {
        client: 99,
        call: u64::MAX - 2,
        ret: Some(u64::MAX - 1),
        input: SetOp::Read,
        output: Some(SetOut::Members(Default::default())),
    }));
    let bad = set_verdict(&lacking).expect("a lost member goes unseen");
    assert!(bad.contains(&added) || bad.contains("not in it"), "{bad}");
}

#[test]
fn with_authority_counters_and_registers_stay_linearizable_through_a_kill_9() {
    let mut nodes = ring(4, &AUTHORITY);
    let clients = endpoints(&nodes);
    // Every node takes INCRs before the kill: each key has a holder.
    let ready = eventually(Duration::from_secs(20), || {
        clients.iter().all(|(addr, _)| {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                return false;
            };
            (0..3).all(|k| {
                redis::cmd("INCR")
                    .arg(format!("warmup-{k}"))
                    .query::<i64>(&mut con)
                    .is_ok()
            })
        })
    });
    assert!(
        ready.is_some(),
        "the ring never took writes under authority"
    );
    let victim = nodes.pop().unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        let mut victim = victim;
        victim.kill9();
    });
    let history = record(&clients, 8, Duration::from_secs(8));
    killer.join().unwrap();
    assert_linearizable("kill -9", &history);
}

#[test]
fn with_authority_counters_and_registers_stay_linearizable_through_leaves_and_joins() {
    // The worst case: a node drains and leaves (SIGTERM) and a
    // fresh one joins in its place, every two seconds, while clients
    // increment through the others.
    let mut nodes = ring(5, &AUTHORITY);
    // Clients go through the first two nodes, which stay.
    let clients = endpoints(&nodes[..2]);
    let seed = nodes[0].addr;
    let churn = std::thread::spawn(move || {
        let mut rest: Vec<NodeProc> = nodes.split_off(2);
        for round in 0..3 {
            std::thread::sleep(Duration::from_secs(2));
            let mut leaving = rest.remove(round % rest.len());
            leaving.terminate();
            rest.push(NodeProc::start(Some(seed), &AUTHORITY));
        }
        (nodes, rest)
    });
    let history = record(&clients, 8, Duration::from_secs(8));
    let _keep = churn.join().unwrap();
    assert_linearizable("leaves and joins", &history);
}

/// A request that may find a node down or busy: (status, body; 0 and
/// the error if it got no answer).
fn try_request(api: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    match try_http_with(api, method, path, &[], body) {
        Ok((status, _, body)) => (status, body),
        Err(e) => (0, e.into_bytes()),
    }
}

/// Below a majority nothing is guessed and nothing is lost:
/// with two of a key's three copies killed, the survivor decides nothing
/// — writes and default reads answer 503 `not_ready` — and every value
/// it holds stays readable through `?consistency=local`.
#[test]
fn with_authority_below_a_majority_writes_refuse_and_local_reads_still_work() {
    let mut nodes = ring(3, &AUTHORITY);
    let api = nodes[0].api;
    let keys: Vec<String> = (0..20).map(|k| format!("minority-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        // The first writes may meet a term still being prepared.
        let stored = eventually(Duration::from_secs(20), || {
            try_request(api, "PUT", &format!("/v1/kv/{key}"), &value_of(k)).0 == 200
        });
        assert!(stored.is_some(), "{key} was never stored");
    }
    // R = 3 on three processes: every copy reaches the survivor-to-be
    // (the third copy of a write may trail its acknowledgement).
    let local =
        |key: &str| try_request(api, "GET", &format!("/v1/kv/{key}?consistency=local"), b"");
    let copied = eventually(Duration::from_secs(20), || {
        keys.iter().enumerate().all(|(k, key)| {
            let (status, body) = local(key);
            status == 200 && body == value_of(k)
        })
    });
    assert!(copied.is_some(), "node 0 never held every copy");
    nodes.pop().unwrap().kill9();
    nodes.pop().unwrap().kill9();
    // The ring heals first: until the survivor knows it is alone, it
    // redirects (`unavailable`: ownership kept moving) — also no guess.
    let me = nodes[0].id.to_hex();
    let alone = eventually(Duration::from_secs(60), || {
        let (_, v) = get_json(api, "/v1/node");
        let successors = v["successors"].as_array().cloned().unwrap_or_default();
        successors
            .iter()
            .all(|n| n["id"].as_str() == Some(me.as_str()))
    });
    assert!(alone.is_some(), "the survivor never saw the others gone");
    // Once the dead holders' leases are over and nobody can gather a
    // majority, writes answer not_ready (never a guess, never a 200).
    let mut last = String::new();
    let refused = eventually(Duration::from_secs(30), || {
        let (status, body) = try_request(api, "PUT", "/v1/kv/minority-new", b"x");
        assert_ne!(status, 200, "a write was decided without a majority");
        last = format!("{status} {}", String::from_utf8_lossy(&body));
        status == 503 && last.contains("not_ready")
    });
    assert!(
        refused.is_some(),
        "writes never answered not_ready; the last answer: {last}"
    );
    let (status, body) = try_request(api, "GET", &format!("/v1/kv/{}", keys[0]), b"");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "a default read without a majority: {body}");
    assert!(body.contains("not_ready"), "{body}");
    // The data is on disk and readable, explicitly weaker.
    for (k, key) in keys.iter().enumerate() {
        let (status, body) = local(key);
        assert_eq!(status, 200, "{key}: {}", String::from_utf8_lossy(&body));
        assert!(body == value_of(k), "{key}: another value");
    }
}

/// A `chordal node` on disk in `dir`, on `port` (so that a restart comes
/// back at the same address), joining `seed` if given.
fn on_disk(
    dir: &std::path::Path,
    port: u16,
    seed: Option<std::net::SocketAddr>,
    extra: &[&str],
) -> NodeProc {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["node", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--api", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()])
        .args(AUTHORITY)
        .args(extra);
    if let Some(seed) = seed {
        cmd.args(["--join", &seed.to_string()]);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    NodeProc::spawn(cmd)
}

/// Below a majority, the operator's way back (etcd's
/// `--force-new-cluster`): a 3-node ring on disk is killed down to one
/// node, which refuses writes; restarted on its data with
/// `--force-new-ring` it takes every range again, serves every value it
/// held through the default read and takes writes; a dead node restarted
/// on its data joins it and the keys stay linearizable (INCR counts on).
#[test]
fn with_authority_a_ring_killed_to_one_node_is_re_formed_by_force_new_ring() {
    let dirs = tempfile::tempdir().unwrap();
    let dir = |i: usize| dirs.path().join(format!("n{i}"));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = vec![on_disk(&dir(0), ports[0], None, &[])];
    for (i, port) in ports.iter().enumerate().skip(1) {
        nodes.push(on_disk(&dir(i), *port, Some(nodes[0].addr), &[]));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("ring did not form");
    let api = nodes[0].api;
    let keys: Vec<String> = (0..20).map(|k| format!("forced-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        let stored = eventually(Duration::from_secs(20), || {
            try_request(api, "PUT", &format!("/v1/kv/{key}"), &value_of(k)).0 == 200
        });
        assert!(stored.is_some(), "{key} was never stored");
    }
    // INCR over RESP until one is answered: the counter's value then.
    let incr = |node: &NodeProc| -> Option<i64> {
        let addr = node.served("resp");
        let mut answer = None;
        eventually(Duration::from_secs(30), || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                return false;
            };
            answer = redis::cmd("INCR")
                .arg("forced-counter")
                .query::<i64>(&mut con)
                .ok();
            answer.is_some()
        });
        answer
    };
    assert_eq!(incr(&nodes[0]), Some(1));
    // Every copy reaches node 0 (R = 3 on three processes).
    let local =
        |api, key: &str| try_request(api, "GET", &format!("/v1/kv/{key}?consistency=local"), b"");
    eventually(Duration::from_secs(20), || {
        keys.iter()
            .enumerate()
            .all(|(k, key)| local(api, key) == (200, value_of(k)))
    })
    .expect("node 0 never held every copy");
    nodes[2].kill9();
    nodes[1].kill9();
    nodes[0].kill9();
    // Restarted alone on its data, without the flag: no majority, no
    // decision.
    let mut survivor = on_disk(&dir(0), ports[0], None, &[]);
    let refused = eventually(Duration::from_secs(30), || {
        let (status, body) = try_request(survivor.api, "PUT", "/v1/kv/forced-new", b"x");
        assert_ne!(status, 200, "a write was decided without a majority");
        status == 503 && String::from_utf8_lossy(&body).contains("not_ready")
    });
    assert!(refused.is_some(), "the survivor never refused");
    survivor.kill9();
    // The operator re-forms the ring from it.
    let survivor = on_disk(&dir(0), ports[0], None, &["--force-new-ring"]);
    let api = survivor.api;
    let writes = eventually(Duration::from_secs(30), || {
        try_request(api, "PUT", "/v1/kv/forced-new", b"x").0 == 200
    });
    assert!(writes.is_some(), "the forced ring never took a write");
    for (k, key) in keys.iter().enumerate() {
        let (status, body) = try_request(api, "GET", &format!("/v1/kv/{key}"), b"");
        assert_eq!((status, body == value_of(k)), (200, true), "{key}");
    }
    assert_eq!(incr(&survivor), Some(2), "the counter did not count on");
    // A dead node comes back on its data (no flag) and joins.
    let back = on_disk(&dir(1), ports[1], Some(survivor.addr), &[]);
    eventually(Duration::from_secs(30), || {
        successor_lists_correct(&[&survivor, &back], 1)
    })
    .expect("the two did not form a ring");
    for api in [api, back.api, api] {
        for (k, key) in keys.iter().enumerate().step_by(5) {
            let got = eventually(Duration::from_secs(30), || {
                try_request(api, "GET", &format!("/v1/kv/{key}"), b"") == (200, value_of(k))
            });
            assert!(got.is_some(), "{key} through {api}");
        }
    }
    assert_eq!(
        incr(&back),
        Some(3),
        "the counter did not count on after the join"
    );
}
