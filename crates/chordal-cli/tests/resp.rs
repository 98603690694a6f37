//! The Redis protocol on real `chordal node` processes, with real clients:
//! Debian's `redis-cli` and `redis-benchmark` (installed by `.ci/run`) and
//! the `redis` crate. Any node answers for any key, the data is the HTTP
//! API's, pipelines are answered in order, bad input gets an error and
//! closes only its connection, tokens guard the data.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// `n` nodes serving RESP, not yet checked to form a ring.
fn start(n: usize, extra: &[&str]) -> Vec<NodeProc> {
    let mut args = vec!["--stabilize-ms", "100", "--resp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut nodes = vec![NodeProc::start(None, &args)];
    for _ in 1..n {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &args));
    }
    nodes
}

fn ring(n: usize) -> Vec<NodeProc> {
    let nodes = start(n, &[]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("ring did not form");
    nodes
}

/// Runs a Debian Redis tool; a clear failure if it is missing.
fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name} is needed (Debian redis-tools; .ci/run installs it): {e}")
    })
}

/// `redis-cli -h 127.0.0.1 -p PORT ARGS…`, its stdout trimmed.
fn cli(resp: SocketAddr, args: &[&str]) -> String {
    let port = resp.port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    let out = tool("redis-cli", &all);
    assert!(out.status.success(), "redis-cli {args:?}: {:?}", out);
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Writes `bytes` raw and reads what comes back within `wait`.
fn raw(resp: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(resp).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn redis_cli_reads_and_writes_the_rings_data_through_any_node() {
    let nodes = ring(3);
    let (a, b, c) = (
        nodes[0].served("resp"),
        nodes[1].served("resp"),
        nodes[2].served("resp"),
    );
    assert_eq!(cli(a, &["PING"]), "PONG");
    assert_eq!(cli(a, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(b, &["GET", "greeting"]), "hello world");
    // The same data as the HTTP API.
    assert_eq!(
        get(nodes[2].api, "greeting").as_deref(),
        Some(&b"hello world"[..])
    );
    put(nodes[0].api, "from-http", b"42");
    assert_eq!(cli(c, &["INCRBY", "from-http", "8"]), "50");
    // Options of SET, expiries, counters, strings.
    assert_eq!(cli(a, &["SET", "lock", "me", "NX", "EX", "100"]), "OK");
    assert_eq!(cli(b, &["SET", "lock", "you", "NX"]), "");
    let ttl: i64 = cli(c, &["TTL", "lock"]).parse().unwrap();
    assert!((98..=100).contains(&ttl), "ttl {ttl}");
    assert_eq!(cli(a, &["SET", "lock", "them", "XX", "GET"]), "me");
    assert_eq!(cli(a, &["TTL", "lock"]), "-1");
    assert_eq!(cli(b, &["PERSIST", "lock"]), "0");
    assert_eq!(cli(b, &["EXPIRE", "lock", "50"]), "1");
    // KEEPTTL keeps it; a plain SET clears it.
    assert_eq!(cli(c, &["SET", "lock", "kept", "KEEPTTL"]), "OK");
    let ttl: i64 = cli(a, &["TTL", "lock"]).parse().unwrap();
    assert!((48..=50).contains(&ttl), "ttl {ttl}");
    assert_eq!(cli(a, &["SET", "lock", "plain"]), "OK");
    assert_eq!(cli(a, &["TTL", "lock"]), "-1");
    assert_eq!(
        cli(a, &["SET", "lock", "x", "EX", "0"]),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        cli(a, &["SET", "lock", "x", "NX", "XX"]),
        "ERR syntax error"
    );
    assert_eq!(cli(b, &["PTTL", "nothing"]), "-2");
    assert_eq!(cli(a, &["SETEX", "brief", "1", "x"]), "OK");
    assert_eq!(cli(a, &["APPEND", "log", "ab"]), "2");
    assert_eq!(cli(b, &["APPEND", "log", "cd"]), "4");
    assert_eq!(cli(c, &["STRLEN", "log"]), "4");
    assert_eq!(cli(c, &["DECR", "n"]), "-1");
    assert_eq!(
        cli(c, &["INCR", "log"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(a, &["MSET", "m1", "1", "m2", "2"]), "OK");
    assert_eq!(cli(b, &["MGET", "m1", "nope", "m2"]), "1\n\n2");
    assert_eq!(cli(c, &["EXISTS", "m1", "m2", "nope"]), "2");
    assert_eq!(cli(a, &["GETDEL", "m1"]), "1");
    assert_eq!(cli(a, &["DEL", "m1", "m2", "nope"]), "1");
    assert_eq!(cli(a, &["TYPE", "log"]), "string");
    assert_eq!(cli(a, &["TYPE", "m1"]), "none");
    assert_eq!(cli(a, &["SELECT", "1"]), "ERR DB index is out of range");
    assert!(cli(a, &["XADD", "s", "*", "f", "v"]).starts_with("ERR unknown command 'XADD'"));
    let info = cli(a, &["INFO"]);
    assert!(info.contains("redis_version:"), "{info}");
    assert!(info.contains("server_name:chordal"), "{info}");
    // Record counts reach the ring walk within a second or so.
    let sized = eventually(Duration::from_secs(5), || {
        cli(a, &["DBSIZE"]).parse::<i64>().unwrap() >= 5
    });
    assert!(sized.is_some(), "dbsize {}", cli(a, &["DBSIZE"]));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(cli(b, &["GET", "brief"]), "", "expired");
    // RESP3: a map for HELLO, the null type for a missing value.
    let hello = raw(a, b"HELLO 3\r\nGET nothing\r\n", Duration::from_millis(500));
    let text = String::from_utf8_lossy(&hello);
    assert!(text.starts_with('%'), "{text}");
    assert!(text.ends_with("_\r\n"), "{text}");
}

#[test]
fn pipelines_are_answered_in_order_and_garbage_closes_only_its_connection() {
    let nodes = ring(3);
    let resp = nodes[1].served("resp");
    // 200 pipelined commands, multibulk and inline mixed, in one write.
    let mut pipeline = Vec::new();
    for i in 0..100 {
        let (k, v) = (format!("p{i}"), format!("value-{i}"));
        pipeline.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .as_bytes(),
        );
        pipeline.extend_from_slice(format!("GET {k}\r\n").as_bytes());
    }
    pipeline.extend_from_slice(b"QUIT\r\n");
    let answer = raw(resp, &pipeline, Duration::from_secs(10));
    let mut expected = Vec::new();
    for i in 0..100 {
        let v = format!("value-{i}");
        expected.extend_from_slice(format!("+OK\r\n${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    expected.extend_from_slice(b"+OK\r\n");
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(&expected)
    );

    // A 512 MiB string is refused at its header, not buffered.
    let answer = raw(
        resp,
        b"*2\r\n$3\r\nSET\r\n$536870912\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    // A value just over the value limit (1 MiB), and one over the string
    // limit (1 MiB + 1 KiB): each answered with an error in its place,
    // and the connection goes on.
    let mut request = Vec::new();
    for size in [(1 << 20) + 1, (1 << 20) + 4096] {
        request
            .extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${size}\r\n").as_bytes());
        request.extend_from_slice(&vec![b'z'; size]);
        request.extend_from_slice(b"\r\n");
    }
    // Inside MULTI, a dropped request aborts the transaction as a
    // refused command does.
    request.extend_from_slice(b"MULTI\r\nSET small 1\r\n");
    let size = (1 << 20) + 4096;
    request.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${size}\r\n").as_bytes());
    request.extend_from_slice(&vec![b'z'; size]);
    request.extend_from_slice(b"\r\nEXEC\r\n");
    request.extend_from_slice(b"PING\r\nGET big\r\nGET small\r\nQUIT\r\n");
    let answer = String::from_utf8_lossy(&raw(resp, &request, Duration::from_secs(10))).to_string();
    let lines: Vec<&str> = answer.split("\r\n").collect();
    assert_eq!(
        lines,
        [
            "-ERR string exceeds maximum allowed size",
            "-ERR request dropped: a string of 1052672 bytes is over the limit of 1049600 bytes",
            "+OK",
            "+QUEUED",
            "-ERR request dropped: a string of 1052672 bytes is over the limit of 1049600 bytes",
            "-EXECABORT Transaction discarded because of previous errors.",
            "+PONG",
            "$-1",
            "$-1",
            "+OK",
            ""
        ],
        "{answer}"
    );
    // Not RESP at all, then a truncated request: errors, closed.
    let answer = raw(resp, b"*1\r\n:12\r\n", Duration::from_secs(5));
    assert!(answer.starts_with(b"-ERR Protocol error"), "{answer:?}");
    let mut s = TcpStream::connect(resp).unwrap();
    s.write_all(b"*2\r\n$3\r\nGET\r\n$10\r\nabc").unwrap();
    drop(s);
    // The node keeps serving, and counted the two closed for garbage.
    assert_eq!(cli(resp, &["GET", "p7"]), "value-7");
    let count = metric(
        nodes[1].api,
        "chordal_errors_total{kind=\"resp_malformed\"}",
    )
    .expect("the counter");
    assert!(count >= 2.0, "{count}");
}

/// Runs redis-benchmark's SET, GET and INCR tests, 3,000 requests each,
/// with `extra` flags against `resp`: its output, once it ran them all.
fn benchmark(resp: SocketAddr, extra: &[&str]) -> String {
    let port = resp.port().to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "set,get,incr",
        "-n",
        "3000",
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = tool("redis-benchmark", &args);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for test in ["SET", "GET", "INCR"] {
        assert!(
            text.contains(&format!("{test}: ")),
            "{test} missing in {text}"
        );
    }
    text
}

#[test]
fn redis_benchmark_runs_unchanged_and_no_increment_is_lost() {
    let nodes = ring(3);
    benchmark(nodes[0].served("resp"), &["-c", "20", "-P", "4"]);
    // Every INCR of the benchmark counted: 3,000 on one key.
    let other = nodes[2].served("resp");
    assert_eq!(cli(other, &["GET", "counter:__rand_int__"]), "3000");
}

/// The kv requests every node has forwarded to an owner so far.
fn forwarded(nodes: &[NodeProc]) -> f64 {
    nodes
        .iter()
        .map(|n| metric(n.api, "chordal_sent_messages_total{type=\"kv_request\"} ").unwrap_or(0.0))
        .sum()
}

/// A Redis Cluster client asks `CLUSTER NODES` (or `SLOTS`) once, then
/// sends each key to its slot's owner: the map covers every slot once,
/// names each owner by its Redis address, agrees with the ring's own
/// lookups, and `redis-benchmark --cluster` runs through it with no
/// request forwarded and no increment lost.
#[test]
fn cluster_clients_send_each_key_to_its_owner() {
    let nodes = ring(3);
    let a = nodes[0].served("resp");
    let resp_of = |api: &str| {
        nodes
            .iter()
            .find(|n| n.api.to_string() == api)
            .map(|n| n.served("resp"))
            .expect("an owner among the nodes")
    };
    assert_eq!(cli(a, &["CLUSTER", "KEYSLOT", "foo"]), "12182");
    assert_eq!(
        cli(a, &["CLUSTER", "KEYSLOT", "{user1000}.following"]),
        cli(a, &["CLUSTER", "KEYSLOT", "user1000"])
    );
    // Every node's map: each slot once, each owner a node's Redis address.
    let mut owner_of_slot = vec![None; 16384];
    for n in &nodes {
        let text = cli(n.served("resp"), &["CLUSTER", "NODES"]);
        let mut seen = vec![0u8; 16384];
        let mut myself = 0;
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            assert!(fields.len() >= 8, "{line}");
            let addr: SocketAddr = fields[1].split('@').next().unwrap().parse().unwrap();
            assert!(
                nodes.iter().any(|m| m.served("resp") == addr),
                "{addr} is no node's Redis address: {text}"
            );
            if fields[2].contains("myself") {
                myself += 1;
                assert_eq!(addr, n.served("resp"));
            }
            for range in &fields[8..] {
                let (first, last) = match range.split_once('-') {
                    Some((f, l)) => (f.parse::<usize>().unwrap(), l.parse::<usize>().unwrap()),
                    None => (range.parse().unwrap(), range.parse().unwrap()),
                };
                for slot in first..=last {
                    seen[slot] += 1;
                    if n.api == nodes[0].api {
                        owner_of_slot[slot] = Some(addr);
                    }
                }
            }
        }
        assert_eq!(myself, 1, "{text}");
        assert!(seen.iter().all(|&c| c == 1), "every slot once: {text}");
    }
    // The owner the map names is the one the ring's lookup finds, for
    // keys of slots no node id splits.
    let split: Vec<u16> = nodes.iter().map(|n| n.id.slot()).collect();
    let mut checked = 0;
    for i in 0..40 {
        let key = format!("owner-check-{i}");
        let slot = chordal_core::slot_of(key.as_bytes());
        if split.contains(&slot) {
            continue;
        }
        let (status, v) = get_json(nodes[1].api, &format!("/v1/locate/{key}"));
        assert_eq!(status, 200, "{v}");
        let owner = resp_of(v["owner"]["api"].as_str().unwrap());
        assert_eq!(
            owner_of_slot[slot as usize],
            Some(owner),
            "{key} in slot {slot}"
        );
        checked += 1;
    }
    assert!(checked >= 35);

    // redis-benchmark in cluster mode: CLUSTER NODES, then each key to its
    // owner. With every key at its owner, nothing is forwarded.
    // For the handoff window after a range grew (30 s) an owner may not be
    // sure of a key it lacks and asks elsewhere: wait until a short cluster
    // run forwards (nearly) nothing, then measure.
    let port = a.port().to_string();
    let settled = eventually(Duration::from_secs(60), || {
        let before = forwarded(&nodes);
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cluster",
            "-t",
            "set",
            "-n",
            "600",
            "-q",
        ];
        assert!(tool("redis-benchmark", &args).status.success());
        forwarded(&nodes) - before < 6.0
    });
    assert!(
        settled.is_some(),
        "cluster clients were still forwarded after 60 s"
    );
    let before = forwarded(&nodes);
    let text = benchmark(a, &["--cluster", "-c", "12", "-r", "1000"]);
    assert!(text.contains("Cluster has 3 master nodes"), "{text}");
    let hops = forwarded(&nodes) - before;
    assert!(
        hops < 90.0,
        "{hops} of 9,000 requests were forwarded: {text}"
    );
    // Every INCR counted, over the counters of every client's slot.
    let counters = cli(a, &["KEYS", "counter:*"]);
    let total: i64 = counters
        .lines()
        .map(|k| cli(a, &["GET", k]).parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 3000, "{counters}");
}

#[test]
fn tokens_guard_the_data_and_pub_sub_reaches_subscribers_on_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "reader-token-0123456789 read\nwriter-token-0123456789 write\n",
    )
    .unwrap();
    let tokens = tokens.display().to_string();
    let nodes = start(2, &["--api-tokens", &tokens]);
    let (a, b) = (nodes[0].served("resp"), nodes[1].served("resp"));
    // The HTTP checks need a token too: wait for the ring through RESP.
    let as_writer = ["-a", "writer-token-0123456789", "--no-auth-warning"];
    let joined = eventually(Duration::from_secs(30), || {
        cli(b, &[&as_writer[..], &["SET", "probe", "1"]].concat()) == "OK"
    });
    assert!(joined.is_some(), "the second node never served");
    assert_eq!(cli(a, &["GET", "k"]), "NOAUTH Authentication required.");
    assert!(cli(a, &["AUTH", "wrong-token-0123456789"]).starts_with("WRONGPASS"));
    assert_eq!(
        cli(
            a,
            &[
                "-a",
                "writer-token-0123456789",
                "--no-auth-warning",
                "SET",
                "k",
                "v"
            ]
        ),
        "OK"
    );
    let as_reader = ["-a", "reader-token-0123456789", "--no-auth-warning"];
    assert_eq!(cli(b, &[&as_reader[..], &["GET", "k"]].concat()), "v");
    assert!(cli(b, &[&as_reader[..], &["SET", "k", "w"]].concat()).starts_with("NOPERM"));
    // Flushing the ring is an administrator's (and reading all keys anyone's).
    assert!(cli(b, &[&as_writer[..], &["FLUSHALL"]].concat()).starts_with("NOPERM"));
    assert_eq!(cli(b, &[&as_reader[..], &["KEYS", "k"]].concat()), "k");
    assert_eq!(cli(a, &[&as_writer[..], &["GET", "k"]].concat()), "v");

    // SUBSCRIBE on one node, PUBLISH on the other (both authenticated).
    let mut sub = TcpStream::connect(a).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.write_all(b"AUTH reader-token-0123456789\r\nSUBSCRIBE news\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("subscribe") {
        let n = sub.read(&mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    let confirmed = String::from_utf8_lossy(&seen).to_string();
    assert!(
        confirmed.starts_with("+OK\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
        "{confirmed:?}"
    );
    // Publications may take a moment to find the subscription.
    let got = eventually(Duration::from_secs(10), || {
        let n: i64 = cli(
            b,
            &[
                "-a",
                "writer-token-0123456789",
                "--no-auth-warning",
                "PUBLISH",
                "news",
                "extra",
            ],
        )
        .parse()
        .unwrap();
        n >= 1
    });
    assert!(
        got.is_some(),
        "the subscription never reached the topic owner"
    );
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("extra") {
        let n = sub.read(&mut buf).unwrap();
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(
        text.contains("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nextra\r\n"),
        "{text:?}"
    );
    // Subscribed: data commands are refused.
    sub.write_all(b"GET k\r\n").unwrap();
    let n = sub.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("only (P|S)SUBSCRIBE"));
}

#[test]
fn the_redis_crate_works_as_a_client() {
    let nodes = ring(3);
    let url = format!("redis://{}/", nodes[2].served("resp"));
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().expect("connect");
    use redis::Commands;
    let _: () = con.set("crate-key", "crate-value").unwrap();
    let v: String = con.get("crate-key").unwrap();
    assert_eq!(v, "crate-value");
    let n: i64 = con.incr("crate-counter", 5).unwrap();
    assert_eq!(n, 5);
    let _: () = con.set_ex("crate-ttl", "x", 100).unwrap();
    let ttl: i64 = con.ttl("crate-ttl").unwrap();
    assert!((98..=100).contains(&ttl));
    let missing: Option<String> = con.get("crate-missing").unwrap();
    assert_eq!(missing, None);
    let values: Vec<Option<String>> = con.mget(&["crate-key", "crate-missing"]).unwrap();
    assert_eq!(values, vec![Some("crate-value".to_string()), None]);
    // A pipeline through the crate.
    let (a, b): (String, i64) = redis::pipe()
        .set("p1", "one")
        .ignore()
        .get("p1")
        .incr("crate-counter", 1)
        .query(&mut con)
        .unwrap();
    assert_eq!((a.as_str(), b), ("one", 6));
    // An error is an error, and the connection goes on.
    let err = con.incr::<_, _, i64>("crate-key", 1).unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    let v: String = con.get("p1").unwrap();
    assert_eq!(v, "one");
}

/// A real `redis-server` on a free loopback port (Debian's, installed
/// by `.ci/run`), stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // One database, as a Chordal ring has.
            .args(["--databases", "1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server is needed (.ci/run installs it): {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        eventually(Duration::from_secs(10), || TcpStream::connect(addr).is_ok())
            .expect("redis-server did not start");
        RedisServer { child, addr }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string commands Redis computes from or into one value — ranges,
/// bits, floats, LCS, GETEX, EXPIRE's conditions — answer through a ring
/// exactly as a real Redis answers the same commands (compared side by
/// side, each command sent through a different node of the ring).
#[test]
fn string_commands_answer_as_redis_does() {
    let nodes = ring(3);
    let redis = RedisServer::start();
    // Expiry times far in the future, absolute, so that both sides give
    // the same answers.
    let at = |s: u64| (4_000_000_000u64 + s).to_string();
    let script: Vec<Vec<String>> = [
        "SET s Hello World",
        "GETRANGE s 0 4",
        "GETRANGE s -3 -1",
        "GETRANGE s 0 -100",
        "GETRANGE s 5 3",
        "SUBSTR s 6 100",
        "GETRANGE missing 0 -1",
        "SETRANGE s 6 Redis",
        "GET s",
        "SETRANGE padded 3 ab",
        "STRLEN padded",
        "SETRANGE nothing 10",
        "EXISTS nothing",
        "SETRANGE s -1 x",
        "GETSET s new",
        "GETSET fresh v",
        "SET f 10.50",
        "INCRBYFLOAT f 0.1",
        "INCRBYFLOAT f -5",
        "SET e 5.0e3",
        "INCRBYFLOAT e 2.0e2",
        "INCRBYFLOAT newfloat 3",
        "INCRBYFLOAT s 1",
        "INCRBYFLOAT f abc",
        "SETBIT b 7 1",
        "SETBIT b 7 0",
        "SETBIT b 100 1",
        "GETBIT b 100",
        "GETBIT b 99",
        "GETBIT b 100000",
        "STRLEN b",
        "SETBIT b -1 1",
        "SETBIT b 1 2",
        "SET fb foobar",
        "BITCOUNT fb",
        "BITCOUNT fb 0 0",
        "BITCOUNT fb 1 1",
        "BITCOUNT fb 1 1 BIT",
        "BITCOUNT fb 5 30 BIT",
        "BITCOUNT missing",
        "BITPOS fb 1",
        "BITPOS fb 0",
        "BITPOS fb 1 2",
        "BITPOS fb 1 2 -1 BYTE",
        "BITPOS fb 1 7 15 BIT",
        "BITPOS missing 0",
        "BITPOS missing 1",
        "BITPOS fb 2",
        "SET k1 ohmytext",
        "SET k2 mynewtext",
        "LCS k1 k2",
        "LCS k1 k2 LEN",
        "LCS k1 k2 IDX",
        "LCS k1 k2 IDX MINMATCHLEN 4 WITHMATCHLEN",
        "SET x v",
        "GETEX x",
        "GETEX missing EX 10",
        &format!("GETEX x EXAT {}", at(10)),
        "EXPIRETIME x",
        "GETEX x PERSIST",
        "EXPIRETIME x",
        "PEXPIRETIME missing",
        &format!("EXPIREAT x {} XX", at(5)),
        &format!("EXPIREAT x {} NX", at(5)),
        "EXPIRETIME x",
        &format!("EXPIREAT x {} GT", at(1)),
        &format!("EXPIREAT x {} LT", at(1)),
        "EXPIRETIME x",
        &format!("EXPIREAT x {} GT", at(9)),
        "EXPIRETIME x",
        &format!("PEXPIREAT x {} XX", at(20) + "000"),
        "PEXPIRETIME x",
        "EXPIRE x 100 NX XX",
        "EXPIRE x 100 GT LT",
        "EXPIRE missing 100 XX",
        "PERSIST x",
        "EXPIRE x 100 GT",
        "EXPIRE x 100 LT",
        "TTL x",
    ]
    .iter()
    .map(|line| line.split(' ').map(String::from).collect())
    .collect();
    let servers: Vec<SocketAddr> = nodes.iter().map(|n| n.served("resp")).collect();
    for (i, cmd) in script.iter().enumerate() {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        // `cli` asserts success; errors are printed by redis-cli on
        // stdout with `(error)` in a terminal, as `ERR …` here.
        let ours = cli(servers[i % servers.len()], &args);
        let theirs = cli(redis.addr, &args);
        assert_eq!(ours, theirs, "{}", cmd.join(" "));
    }
}

/// The commands over the whole keyspace answer through a ring as a real
/// Redis answers them over the same keys: KEYS and SCAN (walked to the
/// end with redis-cli's `--scan`, with patterns) find the same keys,
/// DBSIZE counts them, RANDOMKEY names one of them, FLUSHALL empties
/// everything and FUNCTION FLUSH is accepted.
#[test]
fn keyspace_commands_answer_as_redis_does() {
    let nodes = ring(3);
    let redis = RedisServer::start();
    let servers: Vec<SocketAddr> = nodes.iter().map(|n| n.served("resp")).collect();
    let both = |i: usize, args: &[&str]| {
        let ours = cli(servers[i % servers.len()], args);
        let theirs = cli(redis.addr, args);
        (ours, theirs)
    };
    let sorted = |s: String| {
        let mut lines: Vec<String> = s.lines().map(String::from).collect();
        lines.sort();
        lines
    };
    // Keys with tags (one group on one owner), glob specials and spaces.
    let mut keys: Vec<String> = (0..150).map(|i| format!("user:{i}")).collect();
    keys.extend((0..40).map(|i| format!("{{cart}}:{i}")));
    keys.extend(
        [
            "a*b",
            "a?b",
            "a[b",
            "h\\llo",
            "with space",
            "hello",
            "hallo",
            "hxllo",
        ]
        .map(String::from),
    );
    for (i, key) in keys.iter().enumerate() {
        let (ours, theirs) = both(i, &["SET", key, "v"]);
        assert_eq!((ours.as_str(), theirs.as_str()), ("OK", "OK"));
    }
    let (ours, theirs) = both(0, &["DBSIZE"]);
    assert_eq!(ours, theirs);
    assert_eq!(ours, keys.len().to_string());
    for (i, pattern) in [
        "*",
        "user:1?",
        "user:1*",
        "{cart}:*",
        "h[ae]llo",
        "h[^e]llo",
        "h[a-f]llo",
        "a\\*b",
        "a\\[b",
        "*space",
        "nothing*",
    ]
    .iter()
    .enumerate()
    {
        let (ours, theirs) = both(i, &["KEYS", pattern]);
        assert_eq!(sorted(ours), sorted(theirs), "KEYS {pattern}");
        let ours = cli(servers[i % 3], &["--scan", "--pattern", pattern]);
        let theirs = cli(redis.addr, &["--scan", "--pattern", pattern]);
        assert_eq!(sorted(ours), sorted(theirs), "SCAN MATCH {pattern}");
    }
    // SCAN's answers, its errors and its TYPE filter.
    let (ours, theirs) = both(1, &["SCAN", "0", "COUNT", "1000", "TYPE", "hash"]);
    assert_eq!((ours.lines().nth(1), theirs.lines().nth(1)), (None, None));
    for bad in [
        vec!["SCAN", "x"],
        vec!["SCAN", "0", "COUNT", "0"],
        vec!["SCAN", "0", "MATCH"],
        vec!["SCAN", "0", "BOGUS", "1"],
    ] {
        let (ours, theirs) = both(2, &bad);
        assert_eq!(ours, theirs, "{bad:?}");
    }
    // The same walk over HTTP, with small pages, continued through
    // different nodes: every key once, and `match` filters.
    let mut listed = Vec::new();
    let mut cursor = "0".to_string();
    for page in 0.. {
        let api = nodes[page % nodes.len()].api;
        let (status, body) = get_json(api, &format!("/v1/keys?cursor={cursor}&count=7"));
        assert_eq!(status, 200, "{body}");
        for k in body["keys"].as_array().unwrap() {
            listed.push(k.as_str().unwrap().to_string());
        }
        cursor = body["cursor"].as_str().unwrap().to_string();
        if cursor == "0" {
            break;
        }
        assert!(page < 1000, "the walk does not end");
    }
    listed.sort();
    let mut all = keys.clone();
    all.sort();
    assert_eq!(listed, all);
    let (_, body) = get_json(nodes[1].api, "/v1/keys?count=10000&match=h%5Bae%5Dllo");
    assert_eq!(body["keys"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(get_json(nodes[1].api, "/v1/keys?cursor=x").0, 400);
    assert_eq!(get_json(nodes[1].api, "/v1/keys?count=0").0, 400);
    let random = cli(servers[0], &["RANDOMKEY"]);
    assert!(keys.contains(&random), "RANDOMKEY named {random:?}");
    // DEL and UNLINK some, count again; then FLUSHALL everything.
    for (i, key) in keys[..30].iter().enumerate() {
        let (ours, theirs) = both(i, &[if i % 2 == 0 { "DEL" } else { "UNLINK" }, key]);
        assert_eq!(ours, theirs);
    }
    let (ours, theirs) = both(1, &["TOUCH", &keys[0], &keys[40], &keys[41], "nope"]);
    assert_eq!((ours.as_str(), theirs.as_str()), ("2", "2"));
    let (ours, theirs) = both(1, &["DBSIZE"]);
    assert_eq!(ours, theirs);
    let (ours, theirs) = both(2, &["FLUSHALL"]);
    assert_eq!((ours.as_str(), theirs.as_str()), ("OK", "OK"));
    for server in &servers {
        assert_eq!(cli(*server, &["DBSIZE"]), "0");
        assert_eq!(cli(*server, &["RANDOMKEY"]), "");
        assert_eq!(cli(*server, &["GET", "user:77"]), "");
    }
    let (ours, theirs) = both(0, &["FUNCTION", "FLUSH"]);
    assert_eq!(ours, theirs);
    // A write after the flush stays.
    assert_eq!(cli(servers[1], &["SET", "after", "1"]), "OK");
    assert_eq!(cli(servers[2], &["KEYS", "*"]), "after");
}

/// Commands decided as one step at the owner of several keys — MSETNX,
/// RENAME, RENAMENX, COPY, and MULTI/EXEC with WATCH, of strings and of
/// collections — answer through a
/// ring as a real Redis answers them, over one connection each (WATCH
/// belongs to its connection); keys of several owners are refused with
/// `CROSSSLOT` and change nothing.
#[test]
fn transactions_and_multi_key_commands_answer_as_redis_does() {
    let nodes = ring(3);
    let redis = RedisServer::start();
    let script = [
        "MSETNX {u}a 1 {u}b 2",
        "MGET {u}a {u}b",
        "MSETNX {u}a 3 {u}c 4",
        "EXISTS {u}c",
        "MSETNX {u}x 1 {u}x 2",
        "GET {u}x",
        "SET {u}src hello EX 100",
        "RENAME {u}src {u}dst",
        "GET {u}dst",
        "TTL {u}dst",
        "EXISTS {u}src",
        "RENAME {u}src {u}dst",
        "RENAME {u}dst {u}dst",
        "SET {u}o other",
        "RENAMENX {u}dst {u}o",
        "RENAMENX {u}dst {u}new",
        "GET {u}new",
        "RENAMENX {u}gone {u}o",
        "COPY {u}new {u}c2",
        "COPY {u}new {u}c2",
        "COPY {u}new {u}c2 REPLACE",
        "COPY {u}nope {u}c2",
        "COPY {u}new {u}new",
        "COPY {u}new {u}c3 DB 1",
        "TTL {u}c2",
        "MULTI",
        "SET {u}n 5",
        "INCR {u}n",
        "GET {u}n",
        "APPEND {u}s xy",
        "INCR {u}s",
        "MGET {u}n {u}s",
        "DEL {u}a {u}b",
        "EXEC",
        "MGET {u}a {u}b {u}n",
        "MULTI",
        "EXEC",
        "EXEC",
        "DISCARD",
        "MULTI",
        "SET {u}d 1",
        "DISCARD",
        "EXISTS {u}d",
        "MULTI",
        "MULTI",
        "DISCARD",
        "WATCH {u}w",
        "SET {u}w changed",
        "MULTI",
        "SET {u}w fromtx",
        "EXEC",
        "GET {u}w",
        "WATCH {u}w",
        "MULTI",
        "SET {u}w fromtx",
        "EXEC",
        "GET {u}w",
        "WATCH {u}w",
        "UNWATCH",
        "SET {u}w again",
        "MULTI",
        "GET {u}w",
        "EXEC",
        // Collections inside a transaction, each step seeing the ones
        // before it; a blocking pop there does not wait.
        "MULTI",
        "HSET {u}h f v g w",
        "EXPIRE {u}h 100",
        "HGETALL {u}h",
        "RPUSH {u}l a b c",
        "LRANGE {u}l 0 -1",
        "BLPOP {u}l 0",
        "LPOP {u}l",
        "LLEN {u}l",
        "SADD {u}set x y",
        "SCARD {u}set",
        "SISMEMBER {u}set y",
        "ZADD {u}z 1 a 2 b",
        "ZRANGE {u}z 0 -1 WITHSCORES",
        "BZPOPMIN {u}z 0",
        "DEL {u}l",
        "RPUSH {u}l z",
        "LRANGE {u}l 0 -1",
        "INCR {u}count",
        "EXEC",
        "TTL {u}h",
        "MULTI",
        "BLPOP {u}empty 0",
        "EXEC",
        // WATCH of a hash sees a field overwritten (the count unchanged).
        "WATCH {u}h",
        "HSET {u}h f changed",
        "MULTI",
        "HGET {u}h f",
        "EXEC",
        // COPY and RENAME of collections: every element, in one step.
        "RPUSH {u}cl a b c d",
        "COPY {u}cl {u}cl2",
        "DEL {u}cl",
        "LPUSH {u}cl2 z",
        "LRANGE {u}cl2 0 -1",
        "COPY {u}h {u}h2",
        "HGETALL {u}h2",
        "TTL {u}h2",
        "COPY {u}h {u}h2",
        "COPY {u}h {u}h2 REPLACE",
        "ZADD {u}cz 1 a 2 b 3 c",
        "COPY {u}cz {u}cz2",
        "ZRANGE {u}cz2 0 -1 WITHSCORES",
        "ZRANGEBYSCORE {u}cz2 2 3",
        "RENAME {u}cl2 {u}cl3",
        "LRANGE {u}cl3 0 -1",
        "EXISTS {u}cl2",
        "SET {u}str x",
        "RENAMENX {u}h2 {u}str",
        "RENAME {u}h2 {u}str",
        "TYPE {u}str",
        "HGET {u}str f",
        "COPY {u}str {u}cz2 REPLACE",
        "TYPE {u}cz2",
    ];
    assert_same_answers(nodes[1].served("resp"), redis.addr, &script);

    // Keys of several owners: refused whole, nothing done.
    let resp = nodes[2].served("resp");
    assert!(cli(resp, &["MSETNX", "k1", "1", "k2", "2"]).starts_with("CROSSSLOT"));
    assert_eq!(cli(resp, &["EXISTS", "k1", "k2"]), "0");
    assert!(cli(resp, &["RENAME", "{u}n", "elsewhere"]).starts_with("CROSSSLOT"));
    assert_eq!(cli(resp, &["GET", "{u}n"]), "6");
    let tx = raw(
        resp,
        b"MULTI\r\nSET k1 1\r\nSET k2 2\r\nEXEC\r\nEXISTS k1 k2\r\n",
        Duration::from_secs(5),
    );
    let tx = String::from_utf8_lossy(&tx);
    assert!(
        tx.contains("-CROSSSLOT") && tx.ends_with(":0\r\n"),
        "{tx:?}"
    );
}

/// Pipes `script` (one command a line) through redis-cli over one
/// connection to `ours` and to `theirs` (a real Redis): the outputs must
/// be the same, line by line.
fn assert_same_answers(ours: SocketAddr, theirs: SocketAddr, script: &[&str]) {
    let script = script.join("\r\n") + "\r\n";
    let run = |addr: SocketAddr| {
        let port = addr.port().to_string();
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli (Debian redis-tools) is needed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (ours, theirs) = (run(ours), run(theirs));
    let (ours, theirs): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            o, t,
            "line {i} differs:\nours:   {ours:?}\ntheirs: {theirs:?}"
        );
    }
    assert_eq!(ours.len(), theirs.len(), "{ours:?}\n{theirs:?}");
}

/// Runs each command of `script` with redis-cli against `ours` and
/// `theirs` (a real Redis) in turn: the answers must be the same — as
/// sets of lines for a command marked `~` (Redis's order of a hash's or
/// a set's elements is its own).
fn assert_each_same(ours: SocketAddr, theirs: SocketAddr, script: &[&str]) {
    for line in script {
        let (unordered, command) = match line.strip_prefix('~') {
            Some(c) => (true, c),
            None => (false, *line),
        };
        let args: Vec<&str> = command.split_whitespace().collect();
        let answer = |at: SocketAddr| {
            let out = cli(at, &args);
            let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
            if unordered {
                lines.sort();
            }
            lines
        };
        assert_eq!(answer(ours), answer(theirs), "{command}");
    }
}

#[test]
fn hashes_sets_lists_and_sorted_sets_answer_as_redis_does() {
    let nodes = ring(3);
    let redis = RedisServer::start();
    let script = [
        "HSET h a 1 b 2",
        "HSET h b 3 c 4",
        "HGET h b",
        "HGET h zz",
        "HMGET h a zz c",
        "HLEN h",
        "HEXISTS h a",
        "HEXISTS h zz",
        "HSTRLEN h c",
        "~HGETALL h",
        "~HKEYS h",
        "~HVALS h",
        "HSETNX h a 9",
        "HSETNX h d 9",
        "HDEL h a zz a",
        "~HGETALL h",
        "HINCRBY h n 5",
        "HINCRBY h n -7",
        "HINCRBY h b x",
        "HINCRBY h c notanumber",
        "HINCRBYFLOAT h f 1.5",
        "HINCRBYFLOAT h f 0.25",
        "HMSET h e 5",
        "~HSCAN h 0 MATCH [ef]",
        "TYPE h",
        "GET h",
        "INCR h",
        "APPEND h x",
        "SADD h m",
        "EXPIRE h 100",
        "TTL h",
        "PERSIST h",
        "TTL h",
        "EXISTS h",
        "HDEL h b c d n f e",
        "EXISTS h",
        "TYPE h",
        "~HGETALL h",
        "HLEN h",
        "SET str v",
        "HSET str a 1",
        "HGET str a",
        "SADD s a b c a",
        "SADD s d",
        "SCARD s",
        "SISMEMBER s a",
        "SISMEMBER s z",
        "SMISMEMBER s a z d",
        "~SMEMBERS s",
        "SREM s a z",
        "~SMEMBERS s",
        "TYPE s",
        "HGET s a",
        "SADD {t}x a b c",
        "SADD {t}y b c d",
        "~SINTER {t}x {t}y",
        "~SUNION {t}x {t}y",
        "~SDIFF {t}x {t}y",
        "SINTERCARD 2 {t}x {t}y",
        "SINTERCARD 2 {t}x {t}y LIMIT 1",
        "SINTERSTORE {t}z {t}x {t}y",
        "~SMEMBERS {t}z",
        "SUNIONSTORE {t}z {t}nothing",
        "EXISTS {t}z",
        "SMOVE {t}x {t}y a",
        "SMOVE {t}x {t}y zz",
        "~SMEMBERS {t}y",
        "SADD one only",
        "SPOP one",
        "EXISTS one",
        "SPOP one",
        "SRANDMEMBER one",
        "SADD one again",
        "SRANDMEMBER one",
        "SRANDMEMBER one 5",
        "~SSCAN s 0",
        "DEL s",
        "~SMEMBERS s",
        "SCARD s",
        "SET s now-a-string",
        "GET s",
        "RPUSH l a b c",
        "LPUSH l z y",
        "LRANGE l 0 -1",
        "LRANGE l -2 100",
        "LRANGE l 3 1",
        "LLEN l",
        "LINDEX l 0",
        "LINDEX l -1",
        "LINDEX l 5",
        "LINDEX l -6",
        "LPOP l",
        "RPOP l 2",
        "LPOP l 0",
        "LRANGE l 0 -1",
        "LINSERT l BEFORE a X",
        "LINSERT l AFTER z Y",
        "LINSERT l AFTER nope Y",
        "LRANGE l 0 -1",
        "RPUSH l a a b a",
        "LREM l 2 a",
        "LRANGE l 0 -1",
        "LREM l -1 a",
        "LREM l 0 zz",
        "LRANGE l 0 -1",
        "LSET l 0 Q",
        "LSET l -1 T",
        "LSET l 99 x",
        "LSET nolist 0 x",
        "LRANGE l 0 -1",
        "RPUSH p a b a c a",
        "LPOS p a",
        "LPOS p a RANK 2",
        "LPOS p a RANK -1",
        "LPOS p a COUNT 0",
        "LPOS p a COUNT 2 RANK -1",
        "LPOS p a MAXLEN 2 COUNT 0",
        "LPOS p zz",
        "LTRIM p 1 -2",
        "LRANGE p 0 -1",
        "LTRIM p 5 10",
        "EXISTS p",
        "LPUSHX p x",
        "RPUSHX l w",
        "LRANGE l 0 -1",
        "TYPE l",
        "GET l",
        "HSET l f v",
        "LPUSH h x",
        "SET str2 v",
        "LPUSH str2 x",
        "LLEN str2",
        "RPOP l 10",
        "EXISTS l",
        "LPOP l",
        "RPUSH q job",
        "BLPOP q 1",
        "BLPOP q 0.2",
        "RPUSH {b}2 x",
        "BRPOP {b}1 {b}2 1",
        "ZADD z 1 a 2 b 3 c",
        "ZADD z 1.5 b",
        "ZADD z NX 9 a 4 d",
        "ZADD z XX CH 0 a 7 zz",
        "ZADD z GT CH 5 a",
        "ZADD z LT CH 9 a",
        "ZADD z INCR 2 d",
        "ZADD z NX XX 1 a",
        "ZINCRBY z -1 c",
        "ZSCORE z c",
        "ZSCORE z nope",
        "ZMSCORE z a nope c",
        "ZCARD z",
        "ZRANGE z 0 -1",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZRANGE z 0 1 REV WITHSCORES",
        "ZRANGE z 1 5 BYSCORE",
        "ZRANGE z (1.5 +inf BYSCORE WITHSCORES",
        "ZRANGE z +inf -inf BYSCORE REV LIMIT 1 2",
        "ZRANGEBYSCORE z -inf 5 WITHSCORES LIMIT 0 2",
        "ZREVRANGEBYSCORE z 10 (2",
        "ZREVRANGE z 0 -1 WITHSCORES",
        "ZCOUNT z 2 5",
        "ZCOUNT z (2 (6",
        "ZRANK z a",
        "ZRANK z d",
        "ZREVRANK z a",
        "ZRANK z nope",
        "ZPOPMIN z",
        "ZPOPMAX z 2",
        "ZRANGE z 0 -1 WITHSCORES",
        "ZADD lex 0 a 0 b 0 c 0 d 0 e",
        "ZRANGEBYLEX lex [b (d",
        "ZRANGEBYLEX lex - +",
        "ZREVRANGEBYLEX lex + [c",
        "ZLEXCOUNT lex (a [e",
        "ZRANGE lex [b [d BYLEX LIMIT 1 5",
        "ZREMRANGEBYLEX lex - [b",
        "ZREMRANGEBYRANK lex 0 0",
        "ZRANGE lex 0 -1",
        "ZADD sc 1 a 2 b 3 c 4 d",
        "ZREMRANGEBYSCORE sc 2 3",
        "ZRANGE sc 0 -1 WITHSCORES",
        "ZREM sc a nope",
        "ZREM sc d",
        "EXISTS sc",
        "TYPE z",
        "GET z",
        "ZADD z x a",
        "ZADD z 1",
        "ZADD s_inf inf a -inf b 0 c",
        "ZRANGE s_inf 0 -1 WITHSCORES",
        "ZRANGEBYSCORE z a b",
        "ZRANGE lex a b BYLEX",
        "ZADD {b}z 5 m",
        "BZPOPMAX {b}1 {b}z 1",
        "RPUSH {l}a 1 2 3",
        "LMOVE {l}a {l}b LEFT RIGHT",
        "LMOVE {l}a {l}b RIGHT LEFT",
        "LRANGE {l}a 0 -1",
        "LRANGE {l}b 0 -1",
        "RPOPLPUSH {l}a {l}a",
        "LRANGE {l}a 0 -1",
        "RPUSH {l}a x y",
        "LMOVE {l}a {l}a LEFT RIGHT",
        "LRANGE {l}a 0 -1",
        "RPOPLPUSH {l}none {l}a",
        "SET {l}str v",
        "RPOPLPUSH {l}a {l}str",
        "LRANGE {l}a 0 -1",
        "RPOPLPUSH {l}str {l}a",
        "LMOVE {l}a {l}b UP DOWN",
        "BLMOVE {l}none {l}b LEFT LEFT 0.1",
        "BRPOPLPUSH {l}a {l}b 1",
        "LRANGE {l}b 0 -1",
        "RPOP {l}a 10",
        "RPOPLPUSH {l}a {l}c",
        "EXISTS {l}a",
        "RPUSH {l}m 1 2 3",
        "LMPOP 2 {l}none {l}m LEFT COUNT 2",
        "LMPOP 1 {l}m RIGHT",
        "LMPOP 1 {l}m RIGHT",
        "LMPOP 0 {l}m LEFT",
        "BLMPOP 0.1 1 {l}m LEFT",
        "LMPOP 2 {l}str {l}m LEFT",
        "ZADD {t}a 1 x 2 y 3 z",
        "ZADD {t}b 10 y 20 z 30 w",
        "SADD {t}s x w",
        "ZUNION 2 {t}a {t}b WITHSCORES",
        "ZUNION 2 {t}a {t}b WEIGHTS 2 0.5 AGGREGATE MAX WITHSCORES",
        "ZINTER 2 {t}a {t}b WITHSCORES",
        "ZINTER 2 {t}a {t}b AGGREGATE MIN",
        "ZDIFF 2 {t}a {t}b WITHSCORES",
        "ZUNION 3 {t}a {t}b {t}s WITHSCORES",
        "ZINTERCARD 2 {t}a {t}b",
        "ZINTERCARD 2 {t}a {t}b LIMIT 1",
        "ZUNIONSTORE {t}d 2 {t}a {t}b",
        "ZRANGE {t}d 0 -1 WITHSCORES",
        "ZINTERSTORE {t}d 2 {t}a {t}nothing",
        "EXISTS {t}d",
        "ZDIFFSTORE {t}d 1 {t}a",
        "ZRANGE {t}d 0 -1 WITHSCORES",
        "ZUNION 0 {t}a",
        "ZUNIONSTORE {t}d 2 {t}a {t}b WITHSCORES",
        "ZRANGESTORE {t}r {t}b 0 1",
        "ZRANGE {t}r 0 -1 WITHSCORES",
        "ZRANGESTORE {t}r {t}b (10 +inf BYSCORE LIMIT 0 1",
        "ZRANGE {t}r 0 -1 WITHSCORES",
        "ZMPOP 2 {t}none {t}a MIN COUNT 2",
        "ZMPOP 1 {t}a MAX",
        "ZMPOP 1 {t}none MAX",
        "ZMPOP 0 {t}a MIN",
        "BZMPOP 0.1 1 {t}none MIN",
        "SET {t}str x",
        "ZUNION 2 {t}a {t}str",
    ];
    assert_each_same(nodes[1].served("resp"), redis.addr, &script);
    // Element keys are the collections' own.
    let resp = nodes[2].served("resp");
    // Lists of two owners: no one step can move between them.
    cli(resp, &["RPUSH", "p", "1"]);
    assert!(cli(resp, &["LMOVE", "p", "q", "LEFT", "LEFT"]).starts_with("CROSSSLOT"));
    assert_eq!(cli(resp, &["LLEN", "p"]), "1");
    let answer = raw(
        resp,
        b"*3\r\n$3\r\nSET\r\n$3\r\n\xff\xffx\r\n$1\r\nv\r\n",
        Duration::from_secs(5),
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("-ERR"), "{answer}");
}

/// Keyspace notifications: switched on at one node with `CONFIG SET
/// notify-keyspace-events`, its writes that change a key publish on the
/// ring's pub/sub, heard by a subscriber on another node; a write that
/// changes nothing publishes nothing, and a node left off publishes
/// nothing.
#[test]
fn keyspace_notifications_reach_subscribers_anywhere() {
    let nodes = ring(2);
    let (a, b) = (nodes[0].served("resp"), nodes[1].served("resp"));
    assert!(cli(b, &["CONFIG", "SET", "notify-keyspace-events", "Kq"]).starts_with("ERR"));
    assert_eq!(
        cli(b, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        "OK"
    );
    assert_eq!(
        cli(b, &["CONFIG", "GET", "notify-keyspace-events"]),
        "notify-keyspace-events\nAKE"
    );
    let mut sub = TcpStream::connect(a).unwrap();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.write_all(b"SUBSCRIBE __keyspace@0__:{n}k __keyevent@0__:hdel\r\n")
        .unwrap();
    // Until the subscriptions reach their topics' owners.
    for topic in ["__keyspace@0__:{n}k", "__keyevent@0__:hdel"] {
        let reached = eventually(Duration::from_secs(10), || {
            cli(b, &["PUBLISH", topic, "probe"]).parse::<i64>().unwrap() >= 1
        });
        assert!(reached.is_some(), "{topic} never reached its owner");
    }
    // Node a publishes nothing: its notifications are off.
    cli(a, &["SET", "{n}k", "from-a"]);
    for cmd in [
        &["SET", "{n}k", "v"][..],
        &["HSET", "{n}h", "f", "1"],
        &["HDEL", "{n}h", "f"],
        &["HDEL", "{n}h", "f"],
        &["DEL", "{n}k"],
    ] {
        cli(b, cmd);
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let done = |seen: &[u8]| {
        let t = String::from_utf8_lossy(seen);
        t.contains("$3\r\ndel\r\n") && t.contains("hdel\r\n$4\r\n{n}h")
    };
    while !done(&seen) {
        let n = sub.read(&mut buf).unwrap();
        assert!(n > 0, "the subscription ended");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_string();
    let messages: Vec<&str> = text
        .split("*3\r\n$7\r\nmessage\r\n")
        .skip(1)
        .filter(|m| !m.contains("probe"))
        .collect();
    // In order per channel (two channels may have two owners, whose
    // messages need not arrive in the order they were published).
    let on = |channel: &str| -> Vec<&str> {
        messages
            .iter()
            .filter(|m| m.contains(channel))
            .copied()
            .collect()
    };
    assert_eq!(
        on("__keyspace@0__:{n}k"),
        [
            "$19\r\n__keyspace@0__:{n}k\r\n$3\r\nset\r\n",
            "$19\r\n__keyspace@0__:{n}k\r\n$3\r\ndel\r\n",
        ],
        "{text:?}"
    );
    // The second HDEL removed nothing: one event.
    assert_eq!(
        on("__keyevent@0__:hdel"),
        ["$19\r\n__keyevent@0__:hdel\r\n$4\r\n{n}h\r\n"],
        "{text:?}"
    );
}
