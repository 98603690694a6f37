//! Every client port of a secured node tried as an attacker would, on real
//! `chordal node` processes over loopback (docs/security.md, "Every client port"):
//! the DHT API refused beside tokens, RESP bounded before AUTH, idle and
//! slow connections closed, one source address held to its share while a
//! real client is served, HTTPS as the docs' `curl` runs it, a transaction
//! never half applied, data files owner-only. Sources other than 127.0.0.1 are
//! other loopback addresses (127.0.0.2, …), bound before connecting.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-0123456789abcdef0";

/// A tokens file in `dir` holding [`TOKEN`] as admin.
fn tokens_file(dir: &Path) -> PathBuf {
    let file = dir.join("tokens");
    std::fs::write(&file, format!("{TOKEN} admin\n")).unwrap();
    file
}

/// A node demanding [`TOKEN`] (its tokens file in `dir`), with `extra`
/// flags.
fn node_with_tokens(dir: &Path, extra: &[&str]) -> NodeProc {
    let tokens = tokens_file(dir);
    let mut args = vec!["--api-tokens", tokens.to_str().unwrap()];
    args.extend_from_slice(extra);
    NodeProc::start(None, &args)
}

/// The resident set of process `pid`, in KiB (from /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// What `stream` says within `wait`, until it closes; `None` if it is
/// still open and silent then.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// Waits `wait` on every connection at once: how many the node closed
/// (with what each said first), and the ones still open.
async fn partition(
    conns: Vec<tokio::net::TcpStream>,
    wait: Duration,
) -> (Vec<Vec<u8>>, Vec<tokio::net::TcpStream>) {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                match read_until_closed(&mut s, wait).await {
                    Some(said) => Err(said),
                    None => Ok(s),
                }
            })
        })
        .collect();
    let (mut closed, mut open) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => open.push(s),
            Err(said) => closed.push(said),
        }
    }
    (closed, open)
}

/// A RESP exchange on a fresh connection from 127.0.0.1: AUTH, then
/// `command` (as a multibulk request, in the same write); the replies as
/// text.
fn resp_as_client(resp: SocketAddr, command: &[&str]) -> String {
    let mut s = TcpStream::connect(resp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = format!("AUTH {TOKEN}\r\n*{}\r\n", command.len());
    for arg in command {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    s.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n") || got.iter().filter(|b| **b == b'\n').count() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// One counter or gauge of the node's /metrics (read with [`TOKEN`]),
/// 0 if absent.
fn metric(api: SocketAddr, line_start: &str) -> f64 {
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = http_with(api, "GET", "/metrics", &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200);
    metric_in(&String::from_utf8_lossy(&body), line_start).unwrap_or(0.0)
}

#[test]
fn the_dht_api_is_refused_beside_tokens_unless_insecure_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let out = Command::new(BIN)
        .args(["node", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(["--api-tokens", tokens.to_str().unwrap()])
        .args(["--dht-api", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--dht-api-insecure"), "{stderr}");
    // Said explicitly, it serves (and only then).
    let node = NodeProc::start(
        None,
        &[
            "--api-tokens",
            tokens.to_str().unwrap(),
            "--dht-api",
            "127.0.0.1:0",
            "--dht-api-insecure",
        ],
    );
    assert!(TcpStream::connect(node.served("dht_api")).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_before_auth_takes_a_few_kib_and_a_header_that_never_ends_is_refused() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_tokens(dir.path(), &["--resp", "127.0.0.1:0"]);
    let resp = node.served("resp");
    let before = rss_kib(node.child.id());
    // Row B: a header line that never ends, then an array count that
    // never ends; each followed by up to 300 MB of zeros.
    for start in [&b"*1\r\n$"[..], b"*"] {
        let mut s = connect_from("127.0.0.1", resp).await.unwrap();
        s.write_all(start).await.unwrap();
        let chunk = vec![b'0'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 300 << 20 {
            match tokio::time::timeout(Duration::from_secs(10), s.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                Ok(Err(_)) => break,
                Err(_) => panic!("the node stopped reading without closing"),
            }
        }
        assert!(sent < 64 << 20, "the node took {sent} bytes of one header");
        let answer = read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("-ERR Protocol error"), "{answer:?}");
    }
    // Before AUTH, a string of 2,000 bytes is already too large.
    let mut s = connect_from("127.0.0.1", resp).await.unwrap();
    s.write_all(b"*2\r\n$4\r\nECHO\r\n$2000\r\n").await.unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer).contains("invalid bulk length"),
        "{answer:?}"
    );
    let after = rss_kib(node.child.id());
    eprintln!("RESP row B: RSS {before} KiB before, {after} KiB after");
    assert!(after < before + 30 * 1024, "RSS {before} -> {after} KiB");
    // After AUTH, values of the node's size go through.
    let big = "v".repeat(100_000);
    let reply = resp_as_client(resp, &["SET", "big", &big]);
    assert!(reply.ends_with("+OK\r\n+OK\r\n"), "{reply:?}");
    let counted = metric(node.api, "chordal_errors_total{kind=\"resp_malformed\"}");
    assert!(counted >= 3.0, "{counted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_resp_connections_from_one_host_do_not_keep_out_a_real_client() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_tokens(
        dir.path(),
        &[
            "--resp",
            "127.0.0.1:0",
            "--client-auth-timeout",
            "5",
            "--max-connections-per-source",
            "64",
        ],
    );
    let resp = node.served("resp");
    // Row C: 2,000 connections from 127.0.0.2 that never authenticate.
    let mut attackers = Vec::new();
    for _ in 0..2000 {
        attackers.push(connect_from("127.0.0.2", resp).await.unwrap());
    }
    // A real client from another address is served at once.
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking(move || resp_as_client(resp, &["PING"]))
        .await
        .unwrap();
    eprintln!(
        "RESP row C: a real client served {:?} after 2,000 idle connections",
        started.elapsed()
    );
    assert_eq!(reply, "+OK\r\n+PONG\r\n");
    // All but 64 were turned away at once, with Redis's words.
    let (refused, mut open) = partition(attackers, Duration::from_secs(1)).await;
    assert_eq!((refused.len(), open.len()), (2000 - 64, 64));
    for said in refused {
        assert_eq!(said, b"-ERR max number of clients reached\r\n");
    }
    // The 64 admitted ones trickle a byte a second (slowloris) and never
    // authenticate: all are closed by the AUTH deadline.
    let slow = tokio::spawn(async move {
        let mut closed = 0;
        for _ in 0..30 {
            for s in open.iter_mut() {
                let _ = s.write_all(b"*").await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            closed = 0;
            for s in open.iter_mut() {
                if read_until_closed(s, Duration::from_millis(1))
                    .await
                    .is_some()
                {
                    closed += 1;
                }
            }
            if closed == open.len() {
                break;
            }
        }
        closed
    });
    assert_eq!(slow.await.unwrap(), 64, "slow connections left open");
    assert!(
        metric(
            node.api,
            "chordal_client_connections_refused_total{listener=\"resp\"}"
        ) >= 1936.0
    );
    assert!(metric(node.api, "chordal_errors_total{kind=\"client_timeout\"}") >= 64.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_dht_api_connections_are_closed_and_bounded_per_source() {
    let node = NodeProc::start(
        None,
        &[
            "--dht-api",
            "127.0.0.1:0",
            "--client-idle-timeout",
            "5",
            "--max-connections-per-source",
            "16",
        ],
    );
    let dht = node.served("dht_api");
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(connect_from("127.0.0.3", dht).await.unwrap());
    }
    // 84 closed at once, the 16 admitted ones after 5 s of silence.
    let (closed_at_once, mut admitted) = partition(conns, Duration::from_secs(1)).await;
    assert_eq!((closed_at_once.len(), admitted.len()), (84, 16));
    for s in admitted.iter_mut() {
        assert!(
            read_until_closed(s, Duration::from_secs(20))
                .await
                .is_some(),
            "an idle connection stayed open"
        );
    }
    assert!(metric(node.api, "chordal_errors_total{kind=\"client_timeout\"}") >= 16.0);
}

#[test]
fn a_transaction_applies_whole_or_aborts_with_nothing_applied() {
    let node = NodeProc::start(None, &["--resp", "127.0.0.1:0"]);
    let resp = node.served("resp");
    let mut s = TcpStream::connect(resp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // redis-py's default pipeline: MULTI, its commands, EXEC in one write
    // — first with a command a transaction cannot hold, then without.
    s.write_all(
        b"MULTI\r\nSET {tx}a 1\r\nPING\r\nINCR {tx}b\r\nEXEC\r\nGET {tx}a\r\nEXISTS {tx}b\r\nDISCARD\r\n\
          MULTI\r\nSET {tx}a 1\r\nINCR {tx}b\r\nEXEC\r\nMULTI\r\nDISCARD\r\nEXEC\r\n",
    )
    .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches("\r\n").count() < 17 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = got.split("\r\n").collect();
    assert_eq!(&lines[..2], ["+OK", "+QUEUED"], "{got}");
    assert!(
        lines[2].starts_with("-ERR 'ping' cannot run inside MULTI"),
        "{got}"
    );
    assert_eq!(lines[3], "+QUEUED");
    assert_eq!(
        lines[4],
        "-EXECABORT Transaction discarded because of previous errors."
    );
    // Nothing of it was applied.
    assert_eq!(&lines[5..7], ["$-1", ":0"]);
    assert_eq!(lines[7], "-ERR DISCARD without MULTI");
    // The second applies whole.
    assert_eq!(&lines[8..11], ["+OK", "+QUEUED", "+QUEUED"]);
    assert_eq!(&lines[11..14], ["*2", "+OK", ":1"], "{got}");
    assert_eq!(&lines[14..16], ["+OK", "+OK"]);
    assert_eq!(lines[16], "-ERR EXEC without MULTI");

    // A transaction is bounded: the 1,025th command is refused, and EXEC
    // then aborts with nothing applied.
    let mut big = b"MULTI\r\n".to_vec();
    for i in 0..1025 {
        big.extend_from_slice(format!("SET {{tx}}big{i} 1\r\n").as_bytes());
    }
    big.extend_from_slice(b"EXEC\r\nEXISTS {tx}big0\r\n");
    s.write_all(&big).unwrap();
    let mut got = String::new();
    while got.matches("\r\n").count() < 1028 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = got.split("\r\n").collect();
    assert!(
        lines[1025].starts_with("-ERR a transaction holds at most 1024"),
        "{}",
        lines[1025]
    );
    assert!(lines[1026].starts_with("-EXECABORT"));
    assert_eq!(lines[1027], ":0");
}

#[test]
fn data_directories_and_databases_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = NodeProc::start(None, &["--data-dir", data.to_str().unwrap()]);
    put(node.api, "k", b"v");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("chordal.redb")), 0o600);
    let backup = dir.path().join("ring.backup");
    let out = Command::new(BIN)
        .args(["backup", "--node", &node.api.to_string(), "--out"])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&backup), 0o600);
}

/// `chordal ca init` and `ca issue` a member certificate for 127.0.0.1
/// under `root`; the certificate's directory.
fn member_certificate(root: &Path) -> PathBuf {
    let ca = root.join("ca");
    let out = root.join("node");
    for args in [
        vec!["ca", "init", "--dir", ca.to_str().unwrap()],
        vec![
            "ca",
            "issue",
            "--dir",
            ca.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--san",
            "127.0.0.1",
        ],
    ] {
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_docs_curl_while_thousands_of_connections_wait_and_slow_ones_are_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = member_certificate(dir.path());
    let node = node_with_tokens(
        dir.path(),
        &[
            "--tls-dir",
            certs.to_str().unwrap(),
            "--api-tls",
            "--resp",
            "127.0.0.1:0",
            "--client-auth-timeout",
            "5",
            "--http-header-timeout",
            "5",
        ],
    );
    let api = node.api;
    let ca = certs.join("ca.crt");
    // Row I: the documented command, HTTP/2 offered by curl's ALPN.
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&ca)
            .arg(format!("https://{api}{path}"))
            .output()
            .expect("curl (Debian's curl; .ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(curl("/v1/health").contains("\"status\":\"ok\""));
    // RESP is TLS too under --api-tls: Debian's redis-cli reaches it with
    // the CA, AUTHs with the token, and a plain client gets nowhere.
    let resp = node.served("resp");
    let redis_cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert", ca.to_str().unwrap(), "-h", "127.0.0.1"])
            .args([
                "-p",
                &resp.port().to_string(),
                "--no-auth-warning",
                "-a",
                TOKEN,
            ])
            .args(args)
            .output()
            .expect("redis-cli (Debian's redis-tools; .ci/run installs it)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    assert_eq!(redis_cli(&["SET", "over-tls", "yes"]), "OK");
    assert_eq!(redis_cli(&["GET", "over-tls"]), "yes");
    let mut plain = TcpStream::connect(resp).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut said = Vec::new();
    let _ = plain.read_to_end(&mut said);
    assert!(!String::from_utf8_lossy(&said).contains("PONG"), "{said:?}");
    let before = rss_kib(node.child.id());
    // Row H: 2,000 connections from one host that never handshake, and
    // 100 from another that send a request header a byte a second.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(connect_from("127.0.0.4", api).await.unwrap());
    }
    let started = Instant::now();
    assert!(curl("/v1/health").contains("\"status\":\"ok\""));
    eprintln!(
        "HTTPS row H: curl served {:?} after 2,000 idle connections",
        started.elapsed()
    );
    let (refused, mut waiting) = partition(idle, Duration::from_secs(1)).await;
    assert_eq!((refused.len(), waiting.len()), (2000 - 256, 256));
    // The handshake deadline closes the ones admitted.
    for s in waiting.iter_mut() {
        assert!(
            read_until_closed(s, Duration::from_secs(30))
                .await
                .is_some()
        );
    }
    // Slowloris over plain TCP to RESP-over-TLS: the handshake deadline too.
    let mut slow = connect_from("127.0.0.5", resp).await.unwrap();
    let mut closed = false;
    for _ in 0..30 {
        if slow.write_all(b"\x16").await.is_err() {
            closed = true;
            break;
        }
        if read_until_closed(&mut slow, Duration::from_secs(1))
            .await
            .is_some()
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow TLS client of RESP stayed open");
    let after = rss_kib(node.child.id());
    eprintln!("HTTPS row H: RSS {before} KiB before, {after} KiB after");
    assert!(curl("/v1/health").contains("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_closes_slowloris_and_idle_keep_alive_connections() {
    use tokio::io::AsyncWriteExt;
    let node = NodeProc::start(None, &["--http-header-timeout", "2"]);
    let api = node.api;
    // One sends a header a byte a second, one finishes a request and then
    // keeps the connection without sending another.
    let mut slow = connect_from("127.0.0.6", api).await.unwrap();
    let mut kept = connect_from("127.0.0.6", api).await.unwrap();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut closed = false;
    for byte in b"GET /v1/health HTTP/1.1\r\nHost: slow-loris-header-that-goes-on\r\n"
        .iter()
        .cycle()
        .take(40)
    {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        if let Some(said) = read_until_closed(&mut slow, Duration::from_secs(1)).await {
            assert!(!String::from_utf8_lossy(&said).contains("200 OK"));
            closed = true;
            break;
        }
    }
    assert!(closed, "a slowloris connection stayed open");
    let said = read_until_closed(&mut kept, Duration::from_secs(20))
        .await
        .expect("an idle keep-alive connection stayed open");
    assert!(String::from_utf8_lossy(&said).starts_with("HTTP/1.1 200 OK"));
}
