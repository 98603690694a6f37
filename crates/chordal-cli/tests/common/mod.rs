//! Helpers for tests that run real `chordal` processes on 127.0.0.1.

#![allow(dead_code)]

use chordal_core::{Id, Oracle};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod history;
pub mod lab;

pub const BIN: &str = env!("CARGO_BIN_EXE_chordal");

/// A loopback port nothing listens on right now (bound, then released):
/// for processes that must be told their port before they start.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // Below the kernel's ephemeral range (32768 and up by default): a port
    // the kernel hands out for port 0 may be handed out again, to any
    // process's next outgoing connection, before the node binds it (a
    // deploy test's pod once found its port taken).
    for _ in 0..1_000 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 20_000 + (random % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `chordal node` process; killed (SIGKILL) when dropped.
pub struct NodeProc {
    pub child: Child,
    pub id: Id,
    pub addr: SocketAddr,
    pub api: SocketAddr,
    /// The startup line: every address the node serves.
    pub line: Value,
}

impl NodeProc {
    /// Starts `chordal node` on free ports, joining `seed` if given, and
    /// waits for its address line.
    pub fn start(seed: Option<SocketAddr>, extra: &[&str]) -> NodeProc {
        Self::start_with(seed.map(|s| s.to_string()), extra)
    }

    /// Like `start`, with the `--join` value given as text (host names,
    /// lists).
    pub fn start_with(join: Option<String>, extra: &[&str]) -> NodeProc {
        Self::start_env(&[], join, extra)
    }

    /// Like `start_with`, with extra environment variables (e.g. to
    /// preload libfaketime).
    pub fn start_env(env: &[(&str, &str)], join: Option<String>, extra: &[&str]) -> NodeProc {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied());
        cmd.args(["node", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"]);
        if let Some(s) = join {
            cmd.args(["--join", &s]);
        }
        cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::null());
        Self::spawn(cmd)
    }

    /// Spawns a `chordal node` command made by hand (its stdout piped) and
    /// waits for its address line.
    pub fn spawn(mut cmd: Command) -> NodeProc {
        cmd.stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn chordal node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node printed no address line within 30 s");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        NodeProc {
            child,
            id: v["id"].as_str().unwrap().parse().unwrap(),
            addr: v["addr"].as_str().unwrap().parse().unwrap(),
            api: v["api"].as_str().unwrap().parse().unwrap(),
            line: v,
        }
    }

    /// SIGKILL: the process dies without a word.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit (graceful leave).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        wait_timeout(&mut self.child, Duration::from_secs(10))
            .expect("node did not exit after SIGTERM")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A raw HTTP/1.1 request; returns (status, body). `path` is sent as is.
pub fn http(api: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(api).expect("connect to api");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the series whose /metrics line starts with `series`
/// (`name` or `name{labels}` followed by a space), in the text `text`.
pub fn metric_in(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// [`metric_in`] of the /metrics of the node at `api` (no token).
pub fn metric(api: SocketAddr, series: &str) -> Option<f64> {
    metric_in(&http(api, "GET", "/metrics").1, series)
}

/// A raw HTTP/1.1 request with a body; returns (status, headers, body).
pub fn http_body(api: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    http_with(api, method, path, &[], body)
}

/// [`http_body`] with extra request headers.
pub fn http_with(
    api: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    try_http_with(api, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {api}: {e}"))
}

/// [`http_with`] that reports a node that is down or breaks the
/// connection instead of panicking.
pub fn try_http_with(
    api: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, Vec<u8>), String> {
    let mut s = TcpStream::connect(api).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .and_then(|_| s.write_all(body))
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

/// PUT a value; panics unless stored.
pub fn put(api: SocketAddr, key: &str, value: &[u8]) {
    let (status, _, body) = http_body(api, "PUT", &format!("/v1/kv/{key}"), value);
    assert_eq!(status, 200, "put {key}: {}", String::from_utf8_lossy(&body));
}

/// PUT a value as a client that honours 503 does: a write the node could
/// not get onto its quorum in time (a disk stalled by the other tests'
/// 60 MB rings on a loaded machine) is sent again, at most 5 times, a
/// little later each time. Safe: the same value to the same key. Panics
/// on any other answer, or if the last try is not stored either.
pub fn put_retrying(api: SocketAddr, key: &str, value: &[u8]) {
    for attempt in 1..=5u64 {
        let (status, _, body) = http_body(api, "PUT", &format!("/v1/kv/{key}"), value);
        match status {
            200 => return,
            503 if attempt < 5 => {
                eprintln!(
                    "put {key}: 503 ({}), sending again",
                    String::from_utf8_lossy(&body)
                );
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
            _ => panic!("put {key}: {status} {}", String::from_utf8_lossy(&body)),
        }
    }
}

/// GET a value: `Some(bytes)` on 200, `None` on 404, panic otherwise.
pub fn get(api: SocketAddr, key: &str) -> Option<Vec<u8>> {
    let (status, _, body) = http_body(api, "GET", &format!("/v1/kv/{key}"), b"");
    match status {
        200 => Some(body),
        404 => None,
        other => panic!("get {key}: {other} {}", String::from_utf8_lossy(&body)),
    }
}

/// GET `path` and parse the JSON body.
pub fn get_json(api: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(api, "GET", path);
    let v = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path}: body {body:?} is not JSON: {e}"));
    (status, v)
}

/// The oracle of a set of processes.
pub fn oracle(nodes: &[&NodeProc]) -> Oracle {
    Oracle::new(nodes.iter().map(|n| n.id).collect())
}

/// Is every process's successor and predecessor the true one, and does
/// every process decide for what it owns ([`decides`])?
pub fn ring_correct(nodes: &[&NodeProc]) -> bool {
    let o = oracle(nodes);
    nodes.iter().all(|n| {
        let (status, v) = get_json(n.api, "/v1/node");
        status == 200
            && v["successors"][0]["id"].as_str() == Some(&o.next(&n.id).to_hex())
            && v["predecessor"]["id"].as_str() == Some(&o.prev(&n.id).to_hex())
            && decides(n)
    })
}

/// Is every process's whole successor list (up to `r`) the true one, and
/// does every process decide for what it owns ([`decides`])?
pub fn successor_lists_correct(nodes: &[&NodeProc], r: usize) -> bool {
    let o = oracle(nodes);
    nodes.iter().all(|n| {
        let (status, v) = get_json(n.api, "/v1/node");
        let have: Vec<String> = v["successors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<String> = o.successors(&n.id, r).iter().map(|i| i.to_hex()).collect();
        status == 200 && have == want && decides(n)
    })
}

/// Does the node decide for what it owns? Under authority:
/// a term held, none being prepared or waited for — a ring is ready for
/// writes once its successors are right *and* this holds everywhere
/// (before, a write may find no decider and be refused `not_ready`, or
/// be caught by a term change while the ring settles). A node without
/// authority has neither and is ready.
pub fn decides(n: &NodeProc) -> bool {
    let (status, text) = http(n.api, "GET", "/metrics");
    if status == 401 || status == 403 {
        // Metrics behind a token: cannot tell; the callers' retries and
        // deadlines cover the settling.
        return true;
    }
    status == 200 && chordal_node::local::decides_by_metrics(&text)
}

/// Polls `f` every 50 ms until it holds or `limit` passes; returns the time taken.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of response header `name` in `head` (case-insensitive).
pub fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

impl NodeProc {
    /// An address of the startup line other than `addr` and `api` (e.g.
    /// `resp`, `dht_api`).
    pub fn served(&self, name: &str) -> SocketAddr {
        self.line[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name:?} in {}", self.line))
            .parse()
            .unwrap()
    }
}

// ----- bulk data: tens of MB through the HTTP API -----

/// 20 KB values: 3,000 of them are ~60 MB.
pub const VALUE_BYTES: usize = 20_000;

/// The value of key `k`: distinct per key, so a mix-up shows.
pub fn value_of(k: usize) -> Vec<u8> {
    let mut v = vec![(k % 251) as u8; VALUE_BYTES];
    v[..8].copy_from_slice(&(k as u64).to_be_bytes());
    v
}

/// Puts keys `0..n` (`prefix-k`) from 8 threads spread over `apis`.
pub fn put_many(apis: &[SocketAddr], prefix: &str, n: usize) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let apis = apis.to_vec();
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                for k in (t..n).step_by(8) {
                    put_retrying(apis[k % apis.len()], &format!("{prefix}-{k}"), &value_of(k));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
}

/// Every key `0..n` reads back with its value (from 4 threads).
pub fn check_all(apis: &[SocketAddr], prefix: &str, n: usize) {
    check_all_with(apis, prefix, n, "");
}

/// [`check_all`] with `query` after each key's path (say
/// `?consistency=local`: each node's own copy, no owner deciding).
pub fn check_all_with(apis: &[SocketAddr], prefix: &str, n: usize, query: &str) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let apis = apis.to_vec();
            let (prefix, query) = (prefix.to_string(), query.to_string());
            std::thread::spawn(move || {
                let mut missing = Vec::new();
                for k in (t..n).step_by(4) {
                    let got = get(apis[k % apis.len()], &format!("{prefix}-{k}{query}"));
                    if got.as_deref() != Some(value_of(k).as_slice()) {
                        missing.push(k);
                    }
                }
                missing
            })
        })
        .collect();
    let missing: Vec<usize> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("reader"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {n} keys lost or wrong, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}
