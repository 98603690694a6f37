//! `chordal node --api-tokens`: the HTTP API demands bearer tokens by
//! role, `/v1/health` stays open, refusals are JSON, nothing is written
//! without the right token, and the CLI passes `--token` / `CHORDAL_TOKEN`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

const READ: &str = "reader-0123456789abcdef";
const WRITE: &str = "writer-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef0";

/// A request with optional `Authorization: Bearer`; (status, head, body).
fn request(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["code"].as_str().unwrap_or("").to_string()
}

#[test]
fn tokens_guard_the_api_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        format!("# roles\n{READ} read\n{WRITE} write\n{ADMIN} admin\n"),
    )
    .unwrap();
    let node = NodeProc::start(None, &["--api-tokens", file.to_str().unwrap()]);
    let api = node.api;

    // Health is open: orchestrators need no secret.
    assert_eq!(request(api, "GET", "/v1/health", None, b"").0, 200);
    // No token, or a wrong one: 401 with a JSON body and a challenge.
    for token in [None, Some("not-a-token-at-all-0000")] {
        let (status, head, body) = request(api, "GET", "/v1/node", token, b"");
        assert_eq!(status, 401, "{body}");
        assert_eq!(code(&body), "unauthorized");
        assert!(
            head.to_lowercase().contains("www-authenticate: bearer"),
            "{head}"
        );
    }
    // A reader reads but cannot write; nothing is stored.
    assert_eq!(request(api, "GET", "/v1/node", Some(READ), b"").0, 200);
    let (status, _, body) = request(api, "PUT", "/v1/kv/k", Some(READ), b"v");
    assert_eq!((status, code(&body)), (403, "forbidden".into()), "{body}");
    assert_eq!(request(api, "GET", "/v1/kv/k", Some(READ), b"").0, 404);
    // A writer and an admin write.
    assert_eq!(request(api, "PUT", "/v1/kv/k", Some(WRITE), b"v1").0, 200);
    assert_eq!(request(api, "PUT", "/v1/kv/k", Some(ADMIN), b"v2").0, 200);
    let (status, _, body) = request(api, "GET", "/v1/kv/k", Some(READ), b"");
    assert_eq!((status, body.as_str()), (200, "v2"));
    // `?token=` serves a GET (the dashboard, EventSource), never a write.
    let (status, _, page) = request(api, "GET", &format!("/?token={READ}"), None, b"");
    assert_eq!(status, 200);
    assert!(page.contains("authed("), "the page passes its token on");
    assert_eq!(
        request(api, "GET", &format!("/v1/ring?token={READ}"), None, b"").0,
        200
    );
    let (status, _, _) = request(api, "PUT", &format!("/v1/kv/k?token={WRITE}"), None, b"x");
    assert_eq!(status, 401);
    assert_eq!(request(api, "GET", "/v1/kv/k", Some(READ), b"").2, "v2");

    // The CLI: --token, CHORDAL_TOKEN, and a clear failure without.
    let node_arg = api.to_string();
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--node", &node_arg])
            .env_remove("CHORDAL_TOKEN");
        if let Some(t) = env {
            cmd.env("CHORDAL_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let denied = run(&["put", "c", "x"], None);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("token"));
    assert!(
        run(&["put", "c", "x", "--token", WRITE], None)
            .status
            .success()
    );
    let got = run(&["get", "c"], Some(READ));
    assert!(got.status.success());
    assert_eq!(got.stdout, b"x");
    let weak = run(&["del", "c"], Some(READ));
    assert_eq!(weak.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&weak.stderr).contains("role is read; this needs write"));
}

#[test]
fn a_bad_tokens_file_stops_the_node_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("{READ} read\nshort write\n")).unwrap();
    let out = Command::new(BIN)
        .args(["node", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(["--api-tokens", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:") && err.contains("at least 16"), "{err}");
}
