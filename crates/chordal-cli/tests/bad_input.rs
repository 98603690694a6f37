//! Hostile and broken input on the peer port and the HTTP API: the node
//! refuses it precisely, counts it, and keeps serving.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Writes `bytes` to the peer port and reports whether the node closed the
/// connection (read returns EOF or an error) within `limit`.
fn closed_after(addr: SocketAddr, bytes: &[u8], limit: Duration) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect to peer port");
    s.write_all(bytes).expect("write");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // the node's own preamble and hello
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => return true,
        }
    }
    false
}

fn healthy(api: SocketAddr) -> bool {
    let (status, v) = get_json(api, "/v1/health");
    status == 200 && v["status"] == "ok"
}

fn valid_preamble_and_hello(cluster: &str) -> Vec<u8> {
    let hello = chordal_wire::encode_hello(&chordal_wire::Hello {
        cluster: cluster.into(),
        addr: Some("127.0.0.1:9".parse().unwrap()),
        api: None,
        ids: vec![chordal_core::Id::hash(b"intruder")],
        service: None,
        resp: None,
    });
    let mut out = chordal_wire::preamble().to_vec();
    out.extend_from_slice(&(hello.len() as u32).to_be_bytes());
    out.extend_from_slice(&hello);
    out
}

#[test]
fn peer_port_survives_garbage() {
    let a = NodeProc::start(None, &[]);
    let b = NodeProc::start(Some(a.addr), &[]);
    let limit = Duration::from_secs(5);

    // Random bytes.
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(
        closed_after(a.addr, &noise, limit),
        "random bytes: connection not closed"
    );
    // Another protocol on our port: a wrong magic number.
    assert!(
        closed_after(a.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", limit),
        "HTTP on peer port"
    );
    // Right magic, wrong version.
    let mut pre = chordal_wire::preamble();
    pre[11] = 99;
    assert!(closed_after(a.addr, &pre, limit), "wrong version");
    // An absurd length prefix for the hello.
    let mut absurd = chordal_wire::preamble().to_vec();
    absurd.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(closed_after(a.addr, &absurd, limit), "absurd hello length");
    // Wrong cluster.
    assert!(
        closed_after(a.addr, &valid_preamble_and_hello("other"), limit),
        "wrong cluster"
    );
    // A good handshake, then an absurd frame length.
    let mut big = valid_preamble_and_hello("chordal");
    big.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(closed_after(a.addr, &big, limit), "absurd frame length");
    // A good handshake, then a frame of garbage protobuf.
    let mut junk = valid_preamble_and_hello("chordal");
    junk.extend_from_slice(&5u32.to_be_bytes());
    junk.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(closed_after(a.addr, &junk, limit), "garbage frame body");
    // Half a frame, then silence: the connection is dropped when idle, and
    // meanwhile the node serves everyone else (checked below).
    let mut half = valid_preamble_and_hello("chordal");
    half.extend_from_slice(&100u32.to_be_bytes());
    half.extend_from_slice(&[0u8; 10]);
    let mut stalled_half = TcpStream::connect(a.addr).unwrap();
    stalled_half.write_all(&half).unwrap();
    // A stalled connection that never says anything is closed at the
    // handshake timeout.
    let stalled = TcpStream::connect(a.addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // Through all of this, the node serves: a third node can join through
    // it, and the ring is right.
    let c = NodeProc::start(Some(a.addr), &[]);
    assert!(healthy(a.api) && healthy(b.api) && healthy(c.api));
    let all = [&a, &b, &c];
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring broken after garbage");

    let mut buf = [0u8; 256];
    let start = Instant::now();
    let mut s = &stalled;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {} // the node's preamble and hello
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "stalled connection was not dropped"
    );

    // The refusals were counted.
    let (_, v) = get_json(a.api, "/v1/node");
    let refused =
        v["stats"]["bad_handshakes"].as_u64().unwrap() + v["stats"]["bad_frames"].as_u64().unwrap();
    assert!(
        refused >= 8,
        "only {refused} refusals counted: {}",
        v["stats"]
    );
}

#[test]
fn http_api_answers_bad_requests_with_json_errors() {
    let a = NodeProc::start(None, &[]);
    let cases: &[(&str, u16, &str)] = &[
        ("/v1/locate/%FF%FE", 400, "bad_key"),
        ("/v1/locate/abc?mode=sideways", 400, "bad_mode"),
        ("/v1/nothing-here", 404, "not_found"),
        ("/v1/locate", 404, "not_found"),
        ("/nothing", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let (got, v) = get_json(a.api, path);
        assert_eq!(got, *status, "{path}: {v}");
        assert_eq!(v["code"], *code, "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {v}"
        );
    }
    let long = "k".repeat(2000);
    let (got, v) = get_json(a.api, &format!("/v1/locate/{long}"));
    assert_eq!((got, v["code"].as_str()), (400, Some("key_too_long")));
    // Not even HTTP: the API port closes the connection, and keeps serving.
    let mut s = TcpStream::connect(a.api).unwrap();
    s.write_all(b"\x00\x01\x02 garbage\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut buf);
    assert!(healthy(a.api));
    // A key that needs percent-encoding works.
    let (got, v) = get_json(a.api, "/v1/locate/a%20b%2Fc");
    assert_eq!(got, 200);
    assert_eq!(v["key"], "a b/c");
}

/// The node's count of refused handshakes.
fn bad_handshakes(api: SocketAddr) -> f64 {
    metric(api, "chordal_errors_total{kind=\"bad_handshake\"}").unwrap_or(0.0)
}

/// A preamble and Hello as a release speaking `versions` would send them.
fn hello_offering(versions: chordal_wire::Versions) -> Vec<u8> {
    let hello = chordal_wire::encode_hello_offering(
        &chordal_wire::Hello {
            cluster: "chordal".into(),
            addr: Some("127.0.0.1:9".parse().unwrap()),
            api: None,
            ids: vec![chordal_core::Id::hash(b"next release")],
            service: None,
            resp: None,
        },
        versions,
    );
    let mut out = chordal_wire::preamble().to_vec();
    out[8..].copy_from_slice(&versions.min.to_be_bytes());
    out.extend_from_slice(&(hello.len() as u32).to_be_bytes());
    out.extend_from_slice(&hello);
    out
}

/// Upgrades go one release at a time: a peer whose protocol versions
/// overlap ours is served, one whose range is wholly newer (or older, as
/// the release before hash slots is) is refused, counted, and named in a
/// warning that gives both ranges.
#[test]
fn peers_are_refused_outside_the_protocol_version_range() {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["node", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut node = NodeProc::spawn(cmd);
    let stderr = node.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let ours = chordal_wire::PROTOCOL_VERSIONS;
    let limit = Duration::from_secs(5);

    // The next release, still speaking ours: served.
    let next = chordal_wire::Versions {
        min: ours.max,
        max: ours.max + 1,
    };
    assert!(
        !closed_after(node.addr, &hello_offering(next), Duration::from_secs(1)),
        "a peer whose range overlaps ours was refused"
    );
    let before = bad_handshakes(node.api);

    // Two releases ahead: its range starts past ours, at the preamble ...
    let ahead = chordal_wire::Versions {
        min: ours.max + 1,
        max: ours.max + 2,
    };
    assert!(closed_after(node.addr, &hello_offering(ahead), limit));
    // ... and a Hello whose range does not reach ours behind a preamble
    // that does (a release that stopped speaking ours).
    let mut skipped = hello_offering(ahead);
    skipped[8..12].copy_from_slice(&ours.max.to_be_bytes());
    assert!(closed_after(node.addr, &skipped, limit));
    // The release before key placement by hash slot (version 1): it would
    // look for keys elsewhere, so it is refused too.
    let unslotted = chordal_wire::Versions { min: 1, max: 1 };
    assert!(ours.min > 1);
    assert!(closed_after(node.addr, &hello_offering(unslotted), limit));

    assert_eq!(bad_handshakes(node.api) - before, 3.0, "all are counted");
    let mut warnings = Vec::new();
    let deadline = Instant::now() + limit;
    while warnings.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.contains("peer refused")
        {
            warnings.push(line);
        }
    }
    let range = format!("{}-{}", ours.min, ours.max);
    assert!(
        warnings.len() == 3 && warnings.iter().all(|w| w.contains(&range)),
        "each refusal names this node's range {range}: {warnings:?}"
    );
    // The two refusals are logged by their connections' tasks, in either
    // order.
    let theirs = format!("{}-{}", ahead.min, ahead.max);
    assert!(
        warnings.iter().any(|w| w.contains(&theirs)),
        "the Hello's refusal names the peer's range {theirs}: {warnings:?}"
    );
    assert!(healthy(node.api));
    node.kill9();
}
