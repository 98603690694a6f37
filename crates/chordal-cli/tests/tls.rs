//! A TLS ring of real `chordal node` processes: `chordal ca` makes the
//! certificates, four members join with `--tls-dir` and serve their API
//! over HTTPS (`--api-tls`), the CLI reaches them with `https://` and
//! `--cacert`, a gateway with a client certificate routes to the `https`
//! services beside them, and nodes of another CA or without TLS stay out
//! while the ring keeps serving.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `chordal ARGS`; (exit success, stdout, stderr).
fn chordal(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `chordal ca issue` into `root/name`; the id it printed.
fn issue(root: &Path, ca: &str, name: &str, role: &str) -> (PathBuf, String) {
    let out = root.join(name);
    let (ok, stdout, stderr) = chordal(&[
        "ca",
        "issue",
        "--dir",
        root.join(ca).to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--role",
        role,
        "--san",
        "127.0.0.1",
    ]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    (out, v["id"].as_str().unwrap().to_string())
}

/// A TLS member whose API (HTTPS) is also the `https` service it
/// declares, so a gateway has something to route to.
fn tls_member(dir: &Path, join: Option<std::net::SocketAddr>) -> NodeProc {
    let port = free_port();
    let api = format!("127.0.0.1:{port}");
    let service = format!("https://127.0.0.1:{port}");
    let mut args = vec!["--tls-dir", dir.to_str().unwrap(), "--api-tls"];
    args.extend(["--stabilize-ms", "100", "--service", &service]);
    // The API port is chosen here (the service URL must name it), so the
    // command is made by hand rather than by `NodeProc::start`.
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--listen", "127.0.0.1:0", "--api", &api]);
    if let Some(s) = join {
        cmd.args(["--join", &s.to_string()]);
    }
    cmd.args(&args).stdout(Stdio::piped()).stderr(Stdio::null());
    NodeProc::spawn(cmd)
}

fn https(api: std::net::SocketAddr) -> String {
    format!("https://{api}")
}

#[test]
fn a_tls_ring_of_processes_serves_https_and_keeps_strangers_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for ca in ["ca", "other-ca"] {
        let (ok, _, stderr) = chordal(&["ca", "init", "--dir", root.join(ca).to_str().unwrap()]);
        assert!(ok, "{stderr}");
    }
    let ca_cert = root.join("ca").join("ca.crt");
    let ca_cert = ca_cert.to_str().unwrap();
    let certs: Vec<(PathBuf, String)> = (0..4)
        .map(|i| issue(root, "ca", &format!("n{i}"), "member"))
        .collect();
    let first = tls_member(&certs[0].0, None);
    let mut nodes = vec![first];
    for (dir, _) in &certs[1..] {
        let seed = nodes[0].addr;
        nodes.push(tls_member(dir, Some(seed)));
    }
    // Each node's id is the one `ca issue` printed.
    for (node, (_, id)) in nodes.iter().zip(&certs) {
        assert_eq!(node.id.to_hex(), *id);
    }

    // The CLI over HTTPS, trusting the cluster CA only.
    let node0 = https(nodes[0].api);
    let ring_has_four = || {
        let (ok, out, _) = chordal(&["ring", "--node", &node0, "--cacert", ca_cert, "--json"]);
        ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| v["count"] == 4)
    };
    assert!(
        eventually(Duration::from_secs(30), ring_has_four).is_some(),
        "the TLS ring did not form"
    );
    for i in 0..20 {
        let node = https(nodes[i % 4].api);
        let (ok, _, stderr) = chordal(&[
            "put",
            "--node",
            &node,
            "--cacert",
            ca_cert,
            &format!("k{i}"),
            &format!("v{i}"),
        ]);
        assert!(ok, "put over https: {stderr}");
    }
    let (ok, out, _) = chordal(&["get", "--node", &node0, "--cacert", ca_cert, "k7"]);
    assert!(ok);
    assert_eq!(out.trim_end(), "v7");
    // Without --cacert, or trusting another CA: refused, with a reason.
    let (ok, _, stderr) = chordal(&["get", "--node", &node0, "k7"]);
    assert!(!ok && stderr.contains("--cacert"), "{stderr}");
    let other = root.join("other-ca").join("ca.crt");
    let (ok, _, stderr) = chordal(&[
        "get",
        "--node",
        &node0,
        "--cacert",
        other.to_str().unwrap(),
        "k7",
    ]);
    assert!(!ok, "a foreign CA was trusted: {stderr}");

    // A gateway with a client certificate reaches the ring over TLS and
    // the https services beside its nodes.
    let (client_dir, _) = issue(root, "ca", "gateway", "client");
    let mut gateway = Command::new(BIN)
        .args(["gateway", "--listen", "127.0.0.1:0", "--join"])
        .arg(nodes[1].addr.to_string())
        .args([
            "--tls-dir",
            client_dir.to_str().unwrap(),
            "--cacert",
            ca_cert,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(gateway.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let gw: std::net::SocketAddr = v["gateway"].as_str().unwrap().parse().unwrap();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.to_hex()).collect();
    for client in ["alice", "bob", "carol"] {
        let mut s = std::net::TcpStream::connect(gw).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /v1/health HTTP/1.1\r\nHost: g\r\nX-Client-Id: {client}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let serving = raw
            .lines()
            .find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("x-chordal-node: ")
                    .map(str::to_string)
            })
            .expect("the gateway names the serving node");
        assert!(ids.contains(&serving.trim().to_string()), "{serving}");
    }
    let _ = gateway.kill();
    let _ = gateway.wait();

    // Strangers cannot join: a member of another CA, a node without TLS.
    let (foreign, _) = issue(root, "other-ca", "foreign", "member");
    let seed = nodes[2].addr.to_string();
    for extra in [vec!["--tls-dir", foreign.to_str().unwrap()], Vec::new()] {
        let out = Command::new(BIN)
            .args([
                "node",
                "--listen",
                "127.0.0.1:0",
                "--api",
                "127.0.0.1:0",
                "--join",
                &seed,
            ])
            .args(&extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "a stranger joined ({extra:?})");
    }
    // A node refuses to run with a fixed id under TLS.
    let (ok, _, stderr) = chordal(&[
        "node",
        "--tls-dir",
        certs[0].0.to_str().unwrap(),
        "--id",
        &"ab".repeat(20),
    ]);
    assert!(!ok && stderr.contains("--id"), "{stderr}");

    // The ring still has its four members and every key.
    assert!(ring_has_four());
    for i in 0..20 {
        let node = https(nodes[(i + 1) % 4].api);
        let (ok, out, stderr) = chordal(&[
            "get",
            "--node",
            &node,
            "--cacert",
            ca_cert,
            &format!("k{i}"),
        ]);
        assert!(ok, "{stderr}");
        assert_eq!(out.trim_end(), format!("v{i}"));
    }
    let (ok, out, _) = chordal(&["info", "--node", &node0, "--cacert", ca_cert, "--json"]);
    assert!(ok);
    let _: Value = serde_json::from_str(&out).unwrap();
}

#[test]
fn a_member_advertising_another_members_address_never_gets_its_api_shown() {
    // A forged address (docs/security.md, "Addresses"), as it was found: a
    // certified member starts with
    // --advertise naming another member's peer address and its own API.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (ok, _, stderr) = chordal(&["ca", "init", "--dir", root.join("ca").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let ca_cert = root.join("ca").join("ca.crt");
    let ca_cert = ca_cert.to_str().unwrap();
    let certs: Vec<PathBuf> = (0..3)
        .map(|i| issue(root, "ca", &format!("n{i}"), "member").0)
        .collect();
    let first = tls_member(&certs[0], None);
    let second = tls_member(&certs[1], Some(first.addr));
    let third = tls_member(&certs[2], Some(first.addr));
    let node0 = https(first.api);
    let ring = || {
        let (ok, out, _) = chordal(&["ring", "--node", &node0, "--cacert", ca_cert, "--json"]);
        ok.then(|| serde_json::from_str::<Value>(&out).unwrap())
    };
    assert!(
        eventually(Duration::from_secs(30), || ring()
            .is_some_and(|v| v["count"] == 3))
        .is_some(),
        "the TLS ring did not form"
    );
    let (evil_dir, _) = issue(root, "ca", "impostor", "member");
    let evil_api = format!("127.0.0.1:{}", free_port());
    let mut impostor = Command::new(BIN)
        .args(["node", "--listen", "127.0.0.1:0", "--api", &evil_api])
        .args(["--advertise", &second.addr.to_string()])
        .args(["--join", &first.addr.to_string()])
        .args(["--tls-dir", evil_dir.to_str().unwrap(), "--api-tls"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // While it tries, and after it gives up, every API the ring hands
    // out for the second member is the second member's own.
    let mut looked = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < deadline {
        for node in [&first, &third] {
            let (ok, out, _) = chordal(&[
                "ring",
                "--node",
                &https(node.api),
                "--cacert",
                ca_cert,
                "--json",
            ]);
            if !ok {
                continue;
            }
            let v: Value = serde_json::from_str(&out).unwrap();
            for n in v["nodes"].as_array().unwrap() {
                assert_ne!(n["api"].as_str(), Some(evil_api.as_str()), "{v}");
                if n["addr"] == second.addr.to_string() {
                    assert_eq!(n["api"], second.api.to_string(), "{v}");
                    looked += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(looked > 0);
    let _ = impostor.kill();
    let _ = impostor.wait();
}
