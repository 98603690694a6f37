//! Recorded histories of real clients against real `chordal node`
//! processes, checked for linearizability by `chordal-lincheck` — the
//! start of issue 27's Jepsen-style harness. Clients on their own
//! threads run INCR/GET on counters and SET/GET/DEL on registers through
//! RESP, each through a node of its own; every operation's invocation,
//! completion and result (or unknown outcome, on an error) is recorded.
//! Here the ring is left alone (no nemesis): a baseline that must hold
//! today, and the recorder and checker wiring the nemesis runs will use.

mod common;

use chordal_lincheck::counter::check_counter;
use chordal_lincheck::models::{Counter, CounterOp, Register, RegisterOp, RegisterOut};
use chordal_lincheck::{Op, Verdict, check_per_key};
use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A recorded operation on key `key`.
#[derive(Clone)]
enum Recorded {
    Counter(String, Op<CounterOp, i64>),
    Register(String, Op<RegisterOp, RegisterOut>),
}

/// An operation invoked at `call` that completed at `ret` with `reply`,
/// or whose outcome is unknown (an error: it may or may not have applied).
fn op<I, O>(
    client: u64,
    call: u64,
    ret: Option<u64>,
    input: I,
    reply: redis::RedisResult<O>,
) -> Op<I, O> {
    Op {
        client,
        call,
        ret,
        input,
        output: reply.ok(),
    }
}

/// Runs `clients` threads for `run`, each on its own connection to one of
/// `resps`, and returns every operation they made.
fn record(resps: &[std::net::SocketAddr], clients: u64, run: Duration) -> Vec<Recorded> {
    let epoch = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let addr = resps[client as usize % resps.len()];
            let history = history.clone();
            std::thread::spawn(move || {
                let url = format!("redis://{addr}/");
                let client_of = redis::Client::open(url).unwrap();
                let connect = || {
                    let con = client_of
                        .get_connection_with_timeout(Duration::from_secs(2))
                        .ok()?;
                    con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    Some(con)
                };
                let mut con = connect().expect("connect");
                let now = || epoch.elapsed().as_nanos() as u64;
                let mut seq = 0u64;
                let mut broken = false;
                while epoch.elapsed() < run {
                    if broken {
                        // The last operation failed: a new connection (the
                        // node may be gone; then wait and try again).
                        match connect() {
                            Some(c) => con = c,
                            None => {
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        }
                    }
                    seq += 1;
                    // A small generator, different per client and step.
                    let pick = (client * 7_919 + seq * 104_729) % 100;
                    let call = now();
                    let recorded = if pick < 50 {
                        let key = format!("counter-{}", pick % 3);
                        let incr = pick < 35;
                        let cmd = if incr { "INCR" } else { "GET" };
                        let reply: redis::RedisResult<Option<i64>> =
                            redis::cmd(cmd).arg(&key).query(&mut con);
                        let ret = reply.is_ok().then(now);
                        let input = if incr {
                            CounterOp::Incr(1)
                        } else {
                            CounterOp::Get
                        };
                        let reply = reply.map(|v| v.unwrap_or(0));
                        Recorded::Counter(key, op(client, call, ret, input, reply))
                    } else {
                        let key = format!("register-{}", pick % 2);
                        let value = client * 1_000_000_000 + seq;
                        let (input, reply) = if pick < 75 {
                            let r: redis::RedisResult<()> =
                                redis::cmd("SET").arg(&key).arg(value).query(&mut con);
                            (RegisterOp::Put(value), r.map(|_| RegisterOut::Done))
                        } else if pick < 95 {
                            let r: redis::RedisResult<Option<u64>> =
                                redis::cmd("GET").arg(&key).query(&mut con);
                            (RegisterOp::Get, r.map(RegisterOut::Value))
                        } else {
                            let r: redis::RedisResult<i64> =
                                redis::cmd("DEL").arg(&key).query(&mut con);
                            (RegisterOp::Delete, r.map(|_| RegisterOut::Done))
                        };
                        let ret = reply.is_ok().then(now);
                        Recorded::Register(key, op(client, call, ret, input, reply))
                    };
                    broken = match &recorded {
                        Recorded::Counter(_, op) => op.ret.is_none(),
                        Recorded::Register(_, op) => op.ret.is_none(),
                    };
                    history.lock().unwrap().push(recorded);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(history).ok().unwrap().into_inner().unwrap()
}

/// Flags of the rings run under authority (issue 27).
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
    let resps: Vec<_> = nodes.iter().map(|n| n.served("resp")).collect();
    let history = record(&resps, 6, Duration::from_secs(4));
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
    let (_, bad) = verdicts(history);
    assert!(
        matches!(&bad, Some((k, Verdict::Violation { .. })) if k == "register-0"),
        "{bad:?}"
    );
}

/// Each counter's history by the exact counter check (increments of
/// unknown outcome after a kill make the general search slow); the first
/// that is not linearizable.
fn counter_verdicts(history: &[Recorded]) -> Option<(String, Verdict)> {
    let mut by_key: std::collections::BTreeMap<String, Vec<Op<CounterOp, i64>>> =
        Default::default();
    for r in history {
        if let Recorded::Counter(k, op) = r {
            by_key.entry(k.clone()).or_default().push(op.clone());
        }
    }
    by_key
        .into_iter()
        .map(|(k, ops)| (k, check_counter(&ops)))
        .find(|(_, v)| !v.is_ok())
}

#[test]
fn with_authority_counters_stay_linearizable_through_a_kill_9() {
    let mut nodes = ring(4, &AUTHORITY);
    let resps: Vec<_> = nodes.iter().map(|n| n.served("resp")).collect();
    // Every node takes INCRs before the kill: each key has a holder.
    let ready = eventually(Duration::from_secs(20), || {
        resps.iter().all(|addr| {
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
    let history = record(&resps, 8, Duration::from_secs(8));
    killer.join().unwrap();
    let counters = history
        .iter()
        .filter(|r| matches!(r, Recorded::Counter(_, op) if op.ret.is_some()))
        .count();
    eprintln!(
        "authority, kill -9: {} operations, {counters} counter operations answered",
        history.len()
    );
    assert!(
        counters > 300,
        "only {counters} counter operations answered"
    );
    assert_eq!(counter_verdicts(&history), None);
}

#[test]
fn with_authority_counters_stay_linearizable_through_leaves_and_joins() {
    // The worst case: a node drains and leaves (SIGTERM) and a
    // fresh one joins in its place, every two seconds, while clients
    // increment through the others.
    let mut nodes = ring(5, &AUTHORITY);
    // Clients go through the first two nodes, which stay.
    let resps: Vec<_> = nodes[..2].iter().map(|n| n.served("resp")).collect();
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
    let history = record(&resps, 8, Duration::from_secs(8));
    let _keep = churn.join().unwrap();
    let counters = history
        .iter()
        .filter(|r| matches!(r, Recorded::Counter(_, op) if op.ret.is_some()))
        .count();
    eprintln!(
        "authority, leaves and joins: {} operations, {counters} counter operations answered",
        history.len()
    );
    assert!(
        counters > 300,
        "only {counters} counter operations answered"
    );
    assert_eq!(counter_verdicts(&history), None);
}

/// A request that may find a node down or busy: (status, body; 0 and
/// the error if it got no answer).
fn try_request(api: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    match try_http_with(api, method, path, &[], body) {
        Ok((status, _, body)) => (status, body),
        Err(e) => (0, e.into_bytes()),
    }
}

/// Below a majority nothing is guessed and nothing is lost (issue 27):
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
