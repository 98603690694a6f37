//! Recording histories for the linearizability checks: clients that run
//! counters over RESP (and transfers between two of them in MULTI/EXEC
//! transactions, whose two answers must sum to zero), a set and a list
//! over RESP (unique members added or values appended, the whole read)
//! and registers over HTTP
//! against real nodes, each operation's call, return and result kept;
//! and the checks run on them.

use super::*;
use chordal_lincheck::counter::check_counter;
use chordal_lincheck::models::{CounterOp, Register, RegisterOp, RegisterOut};
use chordal_lincheck::{Op, Verdict, check_per_key};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A recorded operation on key `key`.
#[derive(Clone)]
pub enum Recorded {
    /// A counter operation.
    Counter(String, Op<CounterOp, i64>),
    /// A register operation.
    Register(String, Op<RegisterOp, RegisterOut>),
    /// An operation on the set [`SET`].
    Set(Op<SetOp, SetOut>),
    /// An operation on the list [`LIST`].
    List(Op<ListOp, ListOut>),
}

/// The list the clients append unique values to and read whole (RPUSH,
/// LRANGE): Elle's list-append workload.
pub const LIST: &str = "{list}log";

/// What a client asked of [`LIST`].
#[derive(Clone, Debug, PartialEq)]
pub enum ListOp {
    /// RPUSH of a value no one else appends.
    Append(String),
    /// LRANGE 0 -1.
    Read,
}

/// What [`LIST`] answered.
#[derive(Clone, Debug, PartialEq)]
pub enum ListOut {
    /// RPUSH: the list's new length.
    Appended(i64),
    /// LRANGE: the values, in order.
    Values(Vec<String>),
}

/// The list-append check: every read is a prefix of every longer read
/// (one order for everyone), a read that began after another ended is
/// no shorter, values acknowledged before a read began are in it, no
/// value appears twice or without an append before the read ended, and
/// each append's answered length is where its value sits. The first
/// violation.
pub fn list_verdict(history: &[Recorded]) -> Option<String> {
    let ops: Vec<&Op<ListOp, ListOut>> = history
        .iter()
        .filter_map(|r| match r {
            Recorded::List(op) => Some(op),
            _ => None,
        })
        .collect();
    let appends: Vec<(&Op<ListOp, ListOut>, &String)> = ops
        .iter()
        .filter_map(|op| match &op.input {
            ListOp::Append(v) => Some((*op, v)),
            ListOp::Read => None,
        })
        .collect();
    let reads: Vec<(&Op<ListOp, ListOut>, &Vec<String>)> = ops
        .iter()
        .filter_map(|op| match (&op.input, &op.output) {
            (ListOp::Read, Some(ListOut::Values(v))) => Some((*op, v)),
            _ => None,
        })
        .collect();
    for (read, values) in &reads {
        let (call, ret) = (read.call, read.ret.unwrap_or(u64::MAX));
        let distinct: std::collections::BTreeSet<&String> = values.iter().collect();
        if distinct.len() != values.len() {
            return Some(format!("a read holds a value twice: {values:?}"));
        }
        for (append, v) in &appends {
            if append.ret.is_some_and(|r| r < call) && !distinct.contains(*v) {
                return Some(format!(
                    "value {v}, acknowledged before a read began, is not in it"
                ));
            }
            if let Some(ListOut::Appended(len)) = append.output
                && let Some(at) = values.iter().position(|x| x == *v)
                && at as i64 + 1 != len
            {
                return Some(format!(
                    "{v} was answered at length {len}, a read has it at {at}"
                ));
            }
        }
        for v in values.iter() {
            if !appends.iter().any(|(a, x)| *x == v && a.call < ret) {
                return Some(format!("a read holds {v}, which no one had appended"));
            }
        }
        for (other, longer) in &reads {
            if longer.len() >= values.len() && longer[..values.len()] != values[..] {
                return Some(format!(
                    "two reads disagree on the order: {values:?} and {longer:?}"
                ));
            }
            if other.ret.is_some_and(|r| r < call) && longer.len() > values.len() {
                return Some("a later read of the list is shorter".into());
            }
        }
    }
    None
}

/// The set the clients add unique members to and read whole (SADD,
/// SMEMBERS): an Elle-style set workload.
pub const SET: &str = "{set}members";

/// What a client asked of [`SET`].
#[derive(Clone, Debug, PartialEq)]
pub enum SetOp {
    /// SADD of a member no one else adds.
    Add(String),
    /// SMEMBERS.
    Read,
}

/// What [`SET`] answered.
#[derive(Clone, Debug, PartialEq)]
pub enum SetOut {
    /// SADD: whether the member was new.
    Added(bool),
    /// SMEMBERS: the members.
    Members(std::collections::BTreeSet<String>),
}

/// The set workload's check (the set only grows, so linearizability asks
/// this of it): every member acknowledged before a read began is in it,
/// every member a read holds was added by someone before the read ended,
/// each add of a fresh member answered "new", and a read that began
/// after another ended holds all that one held. The first violation.
pub fn set_verdict(history: &[Recorded]) -> Option<String> {
    let ops: Vec<&Op<SetOp, SetOut>> = history
        .iter()
        .filter_map(|r| match r {
            Recorded::Set(op) => Some(op),
            _ => None,
        })
        .collect();
    let adds: Vec<(&Op<SetOp, SetOut>, &String)> = ops
        .iter()
        .filter_map(|op| match &op.input {
            SetOp::Add(m) => Some((*op, m)),
            SetOp::Read => None,
        })
        .collect();
    let reads: Vec<(&Op<SetOp, SetOut>, &std::collections::BTreeSet<String>)> = ops
        .iter()
        .filter_map(|op| match (&op.input, &op.output) {
            (SetOp::Read, Some(SetOut::Members(m))) => Some((*op, m)),
            _ => None,
        })
        .collect();
    for (add, m) in &adds {
        if add.output == Some(SetOut::Added(false)) {
            return Some(format!("the add of fresh member {m} answered 0"));
        }
    }
    for (read, held) in &reads {
        let (call, ret) = (read.call, read.ret.unwrap_or(u64::MAX));
        for (add, m) in &adds {
            let acked_before = add.ret.is_some_and(|r| r < call);
            if acked_before && !held.contains(*m) {
                return Some(format!(
                    "member {m}, acknowledged before a read began, is not in it"
                ));
            }
        }
        for m in held.iter() {
            if !adds.iter().any(|(add, a)| *a == m && add.call < ret) {
                return Some(format!("a read holds {m}, which no one had added"));
            }
        }
        for (earlier, before) in &reads {
            if earlier.ret.is_some_and(|r| r < call) && !before.is_subset(held) {
                return Some(format!(
                    "a read lost members {:?} an earlier read held",
                    before.difference(held).collect::<Vec<_>>()
                ));
            }
        }
    }
    None
}

/// An operation invoked at `call` that completed at `ret` with `reply`,
/// or whose outcome is unknown (an error: it may or may not have applied).
pub fn op<I, O>(
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

/// The two counters a transaction moves one from and to (one hash tag:
/// one owner).
pub const TRANSFER: [&str; 2] = ["{transfer}:from", "{transfer}:to"];

/// A node's RESP and HTTP addresses, as the recording clients use them.
pub type Endpoint = (std::net::SocketAddr, std::net::SocketAddr);

/// Each node's endpoint.
pub fn endpoints(nodes: &[NodeProc]) -> Vec<Endpoint> {
    nodes.iter().map(|n| (n.served("resp"), n.api)).collect()
}

/// What a register operation over HTTP came to.
pub enum Answered {
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
pub fn register_over_http(
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
            let version = header_of(&head, "x-chordal-version").expect("a GET answers the version");
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
        // Definite refusals only: `unavailable` also means the node
        // stopped with the request in flight (a SIGTERM leave), when the
        // write may have been applied.
        (_, 503)
            if [
                "not_ready",
                "overloaded",
                "lookup_failed",
                "quorum_unavailable",
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
pub fn record(nodes: &[Endpoint], clients: u64, run: Duration) -> Vec<Recorded> {
    record_through(&Arc::new(Mutex::new(nodes.to_vec())), clients, run)
}

/// [`record`] through the nodes in `nodes` as they are when a client
/// (re)connects: a nemesis replaces members while the clients run. A
/// client whose operation got no answer moves to the next node.
pub fn record_through(
    nodes: &Arc<Mutex<Vec<Endpoint>>>,
    clients: u64,
    run: Duration,
) -> Vec<Recorded> {
    let epoch = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let nodes = nodes.clone();
            let history = history.clone();
            std::thread::spawn(move || {
                let mut moves = 0usize;
                let node = |moves: usize| {
                    let list = nodes.lock().unwrap();
                    list[(client as usize + moves) % list.len()]
                };
                let connect = |(addr, _): Endpoint| {
                    let url = format!("redis://{addr}/");
                    let con = redis::Client::open(url)
                        .unwrap()
                        .get_connection_with_timeout(Duration::from_secs(2))
                        .ok()?;
                    con.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    Some(con)
                };
                let mut at = node(moves);
                let mut con = loop {
                    if let Some(con) = connect(at) {
                        break con;
                    }
                    moves += 1;
                    at = node(moves);
                    std::thread::sleep(Duration::from_millis(100));
                };
                let now = || epoch.elapsed().as_nanos() as u64;
                let mut seq = 0u64;
                let mut broken = false;
                // What this client last knew of each register.
                let mut read: [Option<(u64, String)>; 2] = [None, None];
                while epoch.elapsed() < run {
                    if broken {
                        // The last operation failed: a new connection, to
                        // the next node (this one may be gone; if that one
                        // is too, wait and try again).
                        moves += 1;
                        at = node(moves);
                        match connect(at) {
                            Some(c) => {
                                con = c;
                                broken = false;
                            }
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
                    if (45..50).contains(&pick) {
                        // A transfer between two counters of one owner,
                        // in one transaction: both or neither, nothing in
                        // between — the two new values sum to zero.
                        let reply: redis::RedisResult<(i64, i64)> = redis::pipe()
                            .atomic()
                            .incr(TRANSFER[0], -1)
                            .incr(TRANSFER[1], 1)
                            .query(&mut con);
                        let ret = reply.is_ok().then(now);
                        broken = ret.is_none();
                        if let Ok((a, b)) = &reply {
                            assert_eq!(a + b, 0, "a transaction applied by halves: {a} and {b}");
                        }
                        // Each key as a counter of its own, checked as
                        // the others are: the one taken from counts its
                        // withdrawals (minus its value).
                        let mut h = history.lock().unwrap();
                        for (i, key) in TRANSFER.iter().enumerate() {
                            let value = reply.as_ref().map(|v| if i == 0 { -v.0 } else { v.1 });
                            let value =
                                value.map_err(|e| redis::RedisError::from((e.kind(), "failed")));
                            let recorded = op(client, call, ret, CounterOp::Incr(1), value);
                            h.push(Recorded::Counter(key.to_string(), recorded));
                        }
                        continue;
                    }
                    if (38..40).contains(&pick) {
                        let (input, reply) = if pick == 38 {
                            let v = format!("{client}-{seq}");
                            let r: redis::RedisResult<i64> =
                                redis::cmd("RPUSH").arg(LIST).arg(&v).query(&mut con);
                            (ListOp::Append(v), r.map(ListOut::Appended))
                        } else {
                            let r: redis::RedisResult<Vec<String>> = redis::cmd("LRANGE")
                                .arg(LIST)
                                .arg(0)
                                .arg(-1)
                                .query(&mut con);
                            (ListOp::Read, r.map(ListOut::Values))
                        };
                        let ret = reply.is_ok().then(now);
                        broken = ret.is_none();
                        if input == ListOp::Read && ret.is_none() {
                            continue;
                        }
                        let recorded = Recorded::List(op(client, call, ret, input, reply));
                        history.lock().unwrap().push(recorded);
                        continue;
                    }
                    if (40..45).contains(&pick) {
                        let (input, reply) = if pick < 43 {
                            let m = format!("{client}-{seq}");
                            let r: redis::RedisResult<i64> =
                                redis::cmd("SADD").arg(SET).arg(&m).query(&mut con);
                            (SetOp::Add(m), r.map(|n| SetOut::Added(n == 1)))
                        } else {
                            let r: redis::RedisResult<std::collections::BTreeSet<String>> =
                                redis::cmd("SMEMBERS").arg(SET).query(&mut con);
                            (SetOp::Read, r.map(SetOut::Members))
                        };
                        let ret = reply.is_ok().then(now);
                        broken = ret.is_none();
                        if input == SetOp::Read && ret.is_none() {
                            // A read of unknown outcome changed nothing.
                            continue;
                        }
                        let recorded = Recorded::Set(op(client, call, ret, input, reply));
                        history.lock().unwrap().push(recorded);
                        continue;
                    }
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
                            match register_over_http(at.1, &key, &input, read[r].as_ref()) {
                                Answered::Done(out, knows) => {
                                    if let Some(knows) = knows {
                                        read[r] = knows;
                                    }
                                    (Some(now()), Some(out))
                                }
                                Answered::Refused => continue,
                                // A read of unknown outcome changed nothing.
                                Answered::Unknown if input == RegisterOp::Get => {
                                    broken = true;
                                    continue;
                                }
                                Answered::Unknown => {
                                    broken = true;
                                    (None, None)
                                }
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

/// Each counter's history by the exact counter check (increments of
/// unknown outcome after a kill make the general search slow); the first
/// that is not linearizable.
pub fn counter_verdicts(history: &[Recorded]) -> Option<(String, Verdict)> {
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

/// The register operations of `history`, with their keys.
pub fn registers_of(history: &[Recorded]) -> Vec<(String, Op<RegisterOp, RegisterOut>)> {
    history
        .iter()
        .filter_map(|r| match r {
            Recorded::Register(k, op) => Some((k.clone(), op.clone())),
            Recorded::Counter(..) | Recorded::Set(_) | Recorded::List(_) => None,
        })
        .collect()
}

/// Checks a run under a nemesis: enough counter operations, transactions
/// and compare-and-sets done to mean something, and every counter and
/// register linearizable.
pub fn assert_linearizable(what: &str, history: &[Recorded]) {
    let counters = history
        .iter()
        .filter(|r| matches!(r, Recorded::Counter(_, op) if op.ret.is_some()))
        .count();
    let registers = registers_of(history);
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
    let transfers = history
        .iter()
        .filter(|r| matches!(r, Recorded::Counter(k, op) if k == TRANSFER[1] && op.ret.is_some()))
        .count();
    eprintln!("authority, {what}: {transfers} transactions answered");
    assert!(transfers > 20, "only {transfers} transactions answered");
    assert!(
        applied(true) > 10,
        "only {} compare-and-sets applied",
        applied(true)
    );
    let set_adds = history
        .iter()
        .filter(|r| matches!(r, Recorded::Set(op) if op.output == Some(SetOut::Added(true))))
        .count();
    eprintln!("authority, {what}: {set_adds} set members added");
    assert!(set_adds > 20, "only {set_adds} set members added");
    assert_eq!(counter_verdicts(history), None);
    assert_eq!(register_verdicts(registers), None);
    let appends = history
        .iter()
        .filter(
            |r| matches!(r, Recorded::List(op) if matches!(op.output, Some(ListOut::Appended(_)))),
        )
        .count();
    eprintln!("authority, {what}: {appends} list values appended");
    assert!(appends > 10, "only {appends} list values appended");
    assert_eq!(set_verdict(history), None);
    assert_eq!(list_verdict(history), None);
}

/// Each register's history by the Wing & Gong search (values are unique,
/// so it stays quick); the first that is not linearizable.
pub fn register_verdicts(
    registers: Vec<(String, Op<RegisterOp, RegisterOut>)>,
) -> Option<(String, Verdict)> {
    check_per_key(&Register, registers, 50_000_000)
}
