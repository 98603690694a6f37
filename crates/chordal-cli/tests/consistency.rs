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

/// A node's RESP and HTTP addresses, as the recording clients use them.
type Endpoint = (std::net::SocketAddr, std::net::SocketAddr);

/// Each node's endpoint.
fn endpoints(nodes: &[NodeProc]) -> Vec<Endpoint> {
    nodes.iter().map(|n| (n.served("resp"), n.api)).collect()
}

/// What a register operation over HTTP came to.
enum Answered {
    /// A definite answer, and what the key now holds as far as the client
    /// knows (`Some(None)`: absent; `None`: the client learnt nothing).
    Done(RegisterOut, Option<Option<(u64, String)>>),
    /// Refused before anything was decided (`not_ready`, `overloaded`…):
    /// it never happened, and is left out of the history.
    Refused,
    /// No answer, or one that leaves the outcome open (`timeout`,
    /// `quorum_failed`…).
    Unknown,
}

/// One register operation over HTTP at `api`: a get, a put of `value`, a
/// delete, or a compare-and-set of `value` against `read` (`If-Match` on
/// the version the client last saw; create-only if it saw nothing).
fn register_over_http(
    api: std::net::SocketAddr,
    key: &str,
    input: &RegisterOp,
    read: Option<&(u64, String)>,
) -> Answered {
    let path = format!("/v1/kv/{key}");
    let (method, body, header) = match input {
        RegisterOp::Get => ("GET", String::new(), None),
        RegisterOp::Delete => ("DELETE", String::new(), None),
        RegisterOp::Put(v) => ("PUT", v.to_string(), None),
        RegisterOp::Cas { new, .. } => {
            let header = match read {
                Some((_, version)) => ("if-match", version.clone()),
                None => ("if-none-match", "*".to_string()),
            };
            ("PUT", new.unwrap().to_string(), Some(header))
        }
    };
    let headers: Vec<(&str, &str)> = header.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, head, reply) = match try_http_with(api, method, &path, &headers, body.as_bytes()) {
        Ok(answer) => answer,
        // Not even connected (the node is down): nothing was asked.
        Err(e) if e.starts_with("connect") => {
            std::thread::sleep(Duration::from_millis(100));
            return Answered::Refused;
        }
        Err(_) => return Answered::Unknown,
    };
    let text = String::from_utf8_lossy(&reply).to_string();
    let version_written = || -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some(v["version"].as_str()?.to_string())
    };
    match (input, status) {
        (RegisterOp::Get, 200) => {
            let value: u64 = text.parse().expect("a value the harness wrote");
            let version = head
                .lines()
                .find_map(|l| {
                    let (name, v) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("x-chordal-version")
                        .then(|| v.trim().to_string())
                })
                .expect("a GET answers the version");
            Answered::Done(
                RegisterOut::Value(Some(value)),
                Some(Some((value, version))),
            )
        }
        (RegisterOp::Get, 404) => Answered::Done(RegisterOut::Value(None), Some(None)),
        (RegisterOp::Put(v), 200) => {
            Answered::Done(RegisterOut::Done, Some(version_written().map(|w| (*v, w))))
        }
        (RegisterOp::Delete, 200 | 404) => Answered::Done(RegisterOut::Done, Some(None)),
        (RegisterOp::Cas { new, .. }, 200) => Answered::Done(
            RegisterOut::Applied(true),
            Some(version_written().map(|w| (new.unwrap(), w))),
        ),
        (RegisterOp::Cas { .. }, 412) => Answered::Done(RegisterOut::Applied(false), None),
        (_, 503)
            if [
                "not_ready",
                "overloaded",
                "lookup_failed",
                "quorum_unavailable",
                "\"unavailable\"",
            ]
            .iter()
            .any(|code| text.contains(code)) =>
        {
            Answered::Refused
        }
        _ => Answered::Unknown,
    }
}

/// Runs `clients` threads for `run`, each on its own connection to one of
/// `nodes` (counters over RESP, registers over HTTP), and returns every
/// operation they made.
fn record(nodes: &[Endpoint], clients: u64, run: Duration) -> Vec<Recorded> {
    let epoch = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (addr, api) = nodes[client as usize % nodes.len()];
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
                // What this client last knew of each register.
                let mut read: [Option<(u64, String)>; 2] = [None, None];
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
                        broken = ret.is_none();
                        Recorded::Counter(key, op(client, call, ret, input, reply))
                    } else {
                        let r = (pick % 2) as usize;
                        let key = format!("register-{r}");
                        let value = client * 1_000_000_000 + seq;
                        let input = match pick {
                            50..=69 => RegisterOp::Cas {
                                expect: read[r].as_ref().map(|(v, _)| *v),
                                new: Some(value),
                            },
                            70..=79 => RegisterOp::Put(value),
                            80..=95 => RegisterOp::Get,
                            _ => RegisterOp::Delete,
                        };
                        let (ret, output) =
                            match register_over_http(api, &key, &input, read[r].as_ref()) {
                                Answered::Done(out, knows) => {
                                    if let Some(knows) = knows {
                                        read[r] = knows;
                                    }
                                    (Some(now()), Some(out))
                                }
                                Answered::Refused => continue,
                                // A read of unknown outcome changed nothing.
                                Answered::Unknown if input == RegisterOp::Get => continue,
                                Answered::Unknown => (None, None),
                            };
                        Recorded::Register(
                            key,
                            Op {
                                client,
                                call,
                                ret,
                                input,
                                output,
                            },
                        )
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

/// Checks a run under a nemesis: enough counter operations answered and
/// compare-and-sets applied to mean something, and every counter and
/// register linearizable.
fn assert_linearizable(what: &str, history: &[Recorded]) {
    let counters = history
        .iter()
        .filter(|r| matches!(r, Recorded::Counter(_, op) if op.ret.is_some()))
        .count();
    let registers: Vec<(String, Op<RegisterOp, RegisterOut>)> = history
        .iter()
        .filter_map(|r| match r {
            Recorded::Register(k, op) => Some((k.clone(), op.clone())),
            Recorded::Counter(..) => None,
        })
        .collect();
    let applied = |yes: bool| {
        registers
            .iter()
            .filter(|(_, op)| op.output == Some(RegisterOut::Applied(yes)))
            .count()
    };
    let unknown = registers.iter().filter(|(_, op)| op.ret.is_none()).count();
    eprintln!(
        "authority, {what}: {} operations, {counters} counter operations answered, {} register operations ({} compare-and-sets applied, {} lost, {unknown} of unknown outcome)",
        history.len(),
        registers.len(),
        applied(true),
        applied(false),
    );
    assert!(
        counters > 300,
        "only {counters} counter operations answered"
    );
    assert!(
        applied(true) > 10,
        "only {} compare-and-sets applied",
        applied(true)
    );
    assert_eq!(counter_verdicts(history), None);
    assert_eq!(check_per_key(&Register, registers, 50_000_000), None);
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
