//! The VoidPhone DHT API (the DHT module interface) on real `chordal
//! node` processes, with a client written here from the message formats
//! (big-endian, `size` = whole message, 32-byte keys): PUT then GET on one
//! connection, GET through another node, unknown keys, TTL expiry, answers
//! in any order, malformed input, and the course's `.ini` configuration.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn key(text: &str) -> [u8; 32] {
    let mut k = [b'.'; 32];
    k[..text.len()].copy_from_slice(text.as_bytes());
    k
}

/// DHT PUT: size, 650, ttl, replication, reserved, key, value.
fn put_msg(key: &[u8; 32], ttl: u16, value: &[u8]) -> Vec<u8> {
    let size = (4 + 4 + 32 + value.len()) as u16;
    let mut m = size.to_be_bytes().to_vec();
    m.extend_from_slice(&650u16.to_be_bytes());
    m.extend_from_slice(&ttl.to_be_bytes());
    m.push(3);
    m.push(0);
    m.extend_from_slice(key);
    m.extend_from_slice(value);
    m
}

/// DHT GET: size, 651, key.
fn get_msg(key: &[u8; 32]) -> Vec<u8> {
    let mut m = 36u16.to_be_bytes().to_vec();
    m.extend_from_slice(&651u16.to_be_bytes());
    m.extend_from_slice(key);
    m
}

/// Reads one answer: (type, key, value).
fn read_answer(s: &mut TcpStream) -> (u16, [u8; 32], Vec<u8>) {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("an answer");
    let size = u16::from_be_bytes([head[0], head[1]]) as usize;
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let mut body = vec![0u8; size - 4];
    s.read_exact(&mut body).unwrap();
    let k: [u8; 32] = body[..32].try_into().unwrap();
    (kind, k, body[32..].to_vec())
}

fn connect(api: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// GET on a fresh connection.
fn get_value(api: SocketAddr, k: &[u8; 32]) -> Option<Vec<u8>> {
    let mut s = connect(api);
    s.write_all(&get_msg(k)).unwrap();
    match read_answer(&mut s) {
        (652, got, value) if got == *k => Some(value),
        (653, got, value) if got == *k && value.is_empty() => None,
        other => panic!("not an answer to our GET: {other:?}"),
    }
}

/// Is `s` closed by the other side (reads end, or are reset)?
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

fn malformed_count(api: SocketAddr) -> f64 {
    metric(api, "chordal_errors_total{kind=\"dht_api_malformed\"}").unwrap_or(0.0)
}

#[test]
fn a_ring_configured_the_voidphone_way_stores_and_serves_through_the_dht_api() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("config.ini");
    std::fs::write(
        &ini,
        "hostkey = /hostkey.pem\n\n[gossip]\ncache_size = 50\n\n[dht]\np2p_address = 127.0.0.1:0\napi_address = 127.0.0.1:0\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config", &ini.display().to_string()])
        .args(["--api", "127.0.0.1:0", "--stabilize-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let first = NodeProc::spawn(cmd);
    let seed = first.addr;
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(NodeProc::start(
            Some(seed),
            &["--dht-api", "127.0.0.1:0", "--stabilize-ms", "100"],
        ));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(30), || successor_lists_correct(&all, 2))
        .expect("ring did not form");
    let apis: Vec<SocketAddr> = nodes.iter().map(|n| n.served("dht_api")).collect();

    // PUT then GET on one connection: no answer to the PUT, the GET's value.
    let k = key("voidphone-key");
    let mut s = connect(apis[0]);
    s.write_all(&put_msg(&k, 0, b"hello peers")).unwrap();
    s.write_all(&get_msg(&k)).unwrap();
    let (kind, got, value) = read_answer(&mut s);
    assert_eq!((kind, got, value.as_slice()), (652, k, &b"hello peers"[..]));
    // Through the other nodes, and the same data as the HTTP API.
    assert_eq!(get_value(apis[1], &k).as_deref(), Some(&b"hello peers"[..]));
    let path = String::from_utf8(k.to_vec()).unwrap();
    assert_eq!(
        get(nodes[2].api, &path).as_deref(),
        Some(&b"hello peers"[..])
    );
    // An unknown key: DHT FAILURE with the key.
    assert_eq!(get_value(apis[2], &key("never-stored")), None);

    // Many requests on one connection: every GET answered once (in any
    // order), matched by key.
    let mut s = connect(apis[1]);
    let keys: Vec<[u8; 32]> = (0..50).map(|i| key(&format!("many-{i}"))).collect();
    let mut batch = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        batch.extend(put_msg(k, 0, format!("v{i}").as_bytes()));
    }
    s.write_all(&batch).unwrap();
    // The puts are not acknowledged: wait until the last one reads back.
    let last = keys[49];
    eventually(Duration::from_secs(10), || {
        get_value(apis[0], &last).is_some()
    })
    .expect("the puts are stored");
    let mut gets = Vec::new();
    for k in &keys {
        gets.extend(get_msg(k));
    }
    s.write_all(&gets).unwrap();
    let mut answered = std::collections::HashMap::new();
    for _ in 0..50 {
        let (kind, k, value) = read_answer(&mut s);
        assert_eq!(kind, 652);
        assert!(answered.insert(k, value).is_none(), "answered twice");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(answered[k], format!("v{i}").into_bytes());
    }

    // TTL: readable, then gone from every node.
    let brief = key("brief");
    let mut s = connect(apis[2]);
    s.write_all(&put_msg(&brief, 1, b"soon gone")).unwrap();
    eventually(Duration::from_secs(5), || {
        get_value(apis[0], &brief).is_some()
    })
    .expect("stored");
    let gone = eventually(Duration::from_secs(6), || {
        apis.iter().all(|api| get_value(*api, &brief).is_none())
    });
    assert!(gone.is_some(), "the value should expire");
}

#[test]
fn malformed_messages_close_their_connection_are_counted_and_the_node_serves_on() {
    let node = NodeProc::start(None, &["--dht-api", "127.0.0.1:0"]);
    let api = node.served("dht_api");
    let before = malformed_count(node.api);
    // A GET whose size does not fit its type.
    let mut bad = get_msg(&key("k"));
    bad[1] = 35;
    let mut s = connect(api);
    s.write_all(&bad[..35]).unwrap();
    assert!(closed(&mut s), "size mismatch");
    // An answer type sent as a request, and an unknown type.
    for kind in [652u16, 9999] {
        let mut m = get_msg(&key("k"));
        m[2..4].copy_from_slice(&kind.to_be_bytes());
        let mut s = connect(api);
        s.write_all(&m).unwrap();
        assert!(closed(&mut s), "type {kind}");
    }
    // A size below the header.
    let mut s = connect(api);
    s.write_all(&[0, 2, 0x02, 0x8b]).unwrap();
    assert!(closed(&mut s), "size 2");
    // Truncated: the header promises more than comes.
    let mut s = connect(api);
    s.write_all(&put_msg(&key("k"), 0, b"value")[..20]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed(&mut s), "truncated");
    let counted = eventually(Duration::from_secs(5), || {
        malformed_count(node.api) - before >= 5.0
    });
    assert!(
        counted.is_some(),
        "counted {}",
        malformed_count(node.api) - before
    );
    // A good request on the same port still works, and a largest value.
    let k = key("after");
    let big = vec![b'x'; 65535 - 40];
    let mut s = connect(api);
    s.write_all(&put_msg(&k, 0, &big)).unwrap();
    s.write_all(&get_msg(&k)).unwrap();
    let (kind, _, value) = read_answer(&mut s);
    assert_eq!((kind, value.len()), (652, big.len()));
}

#[test]
fn a_bad_ini_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("bad.ini");
    std::fs::write(&ini, "[dht]\np2p_address = 127.0.0.1:0\nreplicaton = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["node", "--config", &ini.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.ini:3") && err.contains("replicaton"),
        "{err}"
    );
}
