//! Data paths at real sizes (tens of MB per node), with real `chordal
//! node` processes writing to redb on disk: a graceful leave hands every
//! record over before the node exits, and nothing acknowledged is lost.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// Node `i` of a test, with its data under `dirs` and `args`.
fn node_on_disk(
    dirs: &tempfile::TempDir,
    i: usize,
    seed: Option<SocketAddr>,
    args: &[&str],
) -> NodeProc {
    let dir = dirs.path().join(format!("n{i}"));
    let mut extra = args.to_vec();
    extra.extend(["--data-dir", dir.to_str().unwrap()]);
    NodeProc::start(seed, &extra)
}

/// The measurement: 3 nodes, R = 1 (the leaving node holds its
/// keys alone), ~60 MB; SIGTERM one — it must hand all of it over before
/// it exits.
#[test]
fn graceful_leave_hands_over_60_mb() {
    let dirs = tempfile::tempdir().unwrap();
    // Ids a third of the ring apart (the default, a hash of the random
    // port, once left both candidates to leave under 10 % of the keys).
    let start = |i: usize, seed: Option<SocketAddr>| {
        let id = format!("{:02x}{}", [0x00, 0x55, 0xaa][i], "00".repeat(19));
        node_on_disk(
            &dirs,
            i,
            seed,
            &["--replicas", "1", "--stabilize-ms", "200", "--id", &id],
        )
    };
    let mut nodes = vec![start(0, None)];
    for i in 1..3 {
        let seed = nodes[0].addr;
        nodes.push(start(i, Some(seed)));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring");
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.api).collect();
    put_many(&apis, "bulk", 3000);
    // The node with the most keys leaves. The counts are gauges each node
    // refreshes once a second: wait until they add up to the 3,000 keys.
    let count = |n: &NodeProc| {
        get_json(n.api, "/v1/node").1["keys_stored"]
            .as_u64()
            .unwrap()
    };
    let counted = eventually(Duration::from_secs(10), || {
        nodes.iter().map(count).sum::<u64>() >= 3000
    });
    assert!(counted.is_some(), "the key counts never added up");
    let leaving = (1..3).max_by_key(|i| count(&nodes[*i])).unwrap();
    let held = count(&nodes[leaving]);
    assert!(held > 300, "the leaving node holds only {held} keys");
    let pid = nodes[leaving].child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let status = wait_timeout(&mut nodes[leaving].child, Duration::from_secs(120))
        .expect("node did not finish its leave within 120 s");
    assert!(status.success(), "{status:?}");
    let live: Vec<SocketAddr> = (0..3).filter(|i| *i != leaving).map(|i| apis[i]).collect();
    let live_nodes: Vec<&NodeProc> = (0..3)
        .filter(|i| *i != leaving)
        .map(|i| &nodes[i])
        .collect();
    eventually(Duration::from_secs(10), || ring_correct(&live_nodes)).expect("ring after leave");
    check_all(&live, "bulk", 3000);
}

/// The second measurement: 4 nodes, R = 3, ~60 MB, under
/// authority; kill -9 one node at a time down to the last. After each
/// crash the survivors (at most R of them) must each get back to a full
/// copy of everything, and every key must read back. Down to two, the
/// configs are reformed while a majority lives, so every key reads back
/// as usual; the last node alone is below a majority of every config
/// (two of two): it refuses to decide (`not_ready`) and each key reads
/// back through `?consistency=local` — nothing lost, nothing guessed.
#[test]
fn crashes_one_at_a_time_re_replicate_60_mb_to_every_survivor() {
    let dirs = tempfile::tempdir().unwrap();
    let start = |i: usize, seed: Option<SocketAddr>| {
        node_on_disk(
            &dirs,
            i,
            seed,
            &[
                "--stabilize-ms",
                "200",
                "--sync-ms",
                "1000",
                "--authority=true",
            ],
        )
    };
    let mut nodes = vec![start(0, None)];
    for i in 1..4 {
        let seed = nodes[0].addr;
        nodes.push(start(i, Some(seed)));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring");
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.api).collect();
    const N: usize = 3000;
    put_many(&apis, "rr", N);
    let count = |api: SocketAddr| {
        get_json(api, "/v1/node").1["keys_stored"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut alive: Vec<usize> = vec![0, 1, 2, 3];
    for victim in [3, 1, 2] {
        nodes[victim].kill9();
        alive.retain(|i| *i != victim);
        let live: Vec<SocketAddr> = alive.iter().map(|i| apis[*i]).collect();
        let took = eventually(Duration::from_secs(90), || {
            live.iter().all(|api| count(*api) == N as u64)
        })
        .unwrap_or_else(|| {
            let counts: Vec<u64> = live.iter().map(|a| count(*a)).collect();
            panic!("after node {victim} crashed the survivors hold {counts:?} of {N}")
        });
        eprintln!("node {victim} crashed: every survivor back to all {N} records in {took:?}");
        if live.len() > 1 {
            // The dead node's ranges wait out its lease before a
            // survivor decides them (failure detection plus up to 2 s).
            let procs: Vec<&NodeProc> = alive.iter().map(|i| &nodes[*i]).collect();
            eventually(Duration::from_secs(60), || ring_correct(&procs))
                .expect("the survivors never decided every range");
            check_all(&live, "rr", N);
            continue;
        }
        // Alone: no majority of any config survives.
        let refused = eventually(Duration::from_secs(20), || {
            let (status, _, body) = http_body(live[0], "GET", "/v1/kv/rr-0", b"");
            status == 503 && String::from_utf8_lossy(&body).contains("not_ready")
        });
        assert!(
            refused.is_some(),
            "the last node decided without a majority"
        );
        eprintln!("node {victim} crashed: the last node refuses; its copies read back locally");
        check_all_with(&live, "rr", N, "?consistency=local");
    }
}

/// A metric's value in a node's `/metrics` (`name{labels}` as printed;
/// 0 if absent).
fn metric(api: SocketAddr, series: &str) -> f64 {
    chordal_node::local::metric_value(&http(api, "GET", "/metrics").1, series)
}

/// Has every node a term over everything it owns, with its catch-up
/// finished?
fn authority_settled(nodes: &[&NodeProc]) -> bool {
    nodes.iter().all(|n| {
        metric(n.api, "chordal_leases{state=\"held\"}") >= 1.0
            && metric(n.api, "chordal_leases{state=\"pending\"}") == 0.0
            && metric(n.api, "chordal_leases{state=\"unfinished\"}") == 0.0
    })
}

/// Authority at real sizes: 3 nodes with `--authority`, ~60 MB
/// at R = 3; a fourth joins — its term must catch up on its range by
/// range syncs (pull from a majority of the old copies, push to a
/// majority of its own) — then an original node is `kill -9`'d and its
/// successor takes over after the lease. Every key reads back each time,
/// and every term finishes its catch-up.
#[test]
fn under_authority_60_mb_survive_a_join_and_a_kill_9_and_catch_up_ends() {
    let dirs = tempfile::tempdir().unwrap();
    let start = |i: usize, seed: Option<SocketAddr>| {
        node_on_disk(
            &dirs,
            i,
            seed,
            &["--authority", "--lease-ms", "1000", "--stabilize-ms", "200"],
        )
    };
    let mut nodes = vec![start(0, None)];
    for i in 1..3 {
        let seed = nodes[0].addr;
        nodes.push(start(i, Some(seed)));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring");
    eventually(Duration::from_secs(30), || authority_settled(&all)).expect("terms held");
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.api).collect();
    put_many(&apis, "auth", 3000);

    let seed = nodes[0].addr;
    nodes.push(start(3, Some(seed)));
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || ring_correct(&all)).expect("ring after the join");
    let settled = eventually(Duration::from_secs(90), || authority_settled(&all));
    assert!(
        settled.is_some(),
        "a term never finished its catch-up after the join"
    );
    let ended: f64 = all
        .iter()
        .map(|n| metric(n.api, "chordal_authority_total{event=\"catch_up_ended\"}"))
        .sum();
    assert!(ended >= 1.0, "no term ever caught up by syncs");
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.api).collect();
    check_all(&apis, "auth", 3000);

    nodes[1].kill9();
    let live: Vec<&NodeProc> = [0, 2, 3].iter().map(|i| &nodes[*i]).collect();
    eventually(Duration::from_secs(30), || ring_correct(&live)).expect("ring after the kill");
    let settled = eventually(Duration::from_secs(90), || authority_settled(&live));
    assert!(
        settled.is_some(),
        "the takeover never finished its catch-up"
    );
    let apis: Vec<SocketAddr> = live.iter().map(|n| n.api).collect();
    check_all(&apis, "auth", 3000);
}
