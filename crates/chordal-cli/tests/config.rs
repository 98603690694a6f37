//! `chordal node --config FILE.toml`, `--advertise`, `chordal config check`
//! and `--log-format json`, with real processes on 127.0.0.1.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn check(file: &std::path::Path, env: &[(&str, &str)], extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(file)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of `chordal config check`'s output for `key`.
fn setting<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in\n{out}"))
}

#[test]
fn config_check_shows_env_over_file_over_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "# two settings the environment overrides, two it does not\n\
         cluster = \"from-file\"\nreplicas = 5\n\
         successors = 12\njoin = [\"10.0.0.1:7000\", \"10.0.0.2:7000\"]\n\
         api_tls = false\n",
    )
    .unwrap();
    let (code, out, err) = check(
        &file,
        &[("CHORDAL_CLUSTER", "from-env"), ("CHORDAL_REPLICAS", "4")],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        setting(&out, "cluster"),
        "cluster = \"from-env\"   # env CHORDAL_CLUSTER"
    );
    assert_eq!(
        setting(&out, "replicas"),
        "replicas = 4   # env CHORDAL_REPLICAS"
    );
    assert_eq!(
        setting(&out, "successors"),
        "successors = 12   # file, line 4"
    );
    assert_eq!(
        setting(&out, "join"),
        "join = [\"10.0.0.1:7000\", \"10.0.0.2:7000\"]   # file, line 5"
    );
    assert_eq!(setting(&out, "vnodes"), "vnodes = 1   # default");
    // What check prints is itself a file the node reads the same way.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &out).unwrap();
    let (code, out2, err) = check(&again, &[], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        setting(&out2, "replicas").starts_with("replicas = 4   # file, line "),
        "{out2}"
    );
    assert_eq!(
        setting(&out2, "cluster").split("   #").next(),
        Some("cluster = \"from-env\"")
    );
}

#[test]
fn a_bad_toml_file_is_refused_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let cases = [
        (
            "listen = \"127.0.0.1:0\"\n\nreplicaton = 3\n",
            "bad.toml:3",
            "unknown key \"replicaton\"",
        ),
        ("replicas = \"three\"\n", "bad.toml:1", "replicas"),
        (
            "listen = \"127.0.0.1:0\"\nlisten = \"127.0.0.1:1\"\n",
            "bad.toml:2",
            "duplicate",
        ),
        (
            "[ring]\nreplicas = 3\n",
            "bad.toml:1",
            "unknown key \"ring\"",
        ),
        ("replicas = 0\n", "", "at least 1"),
    ];
    for (text, at, what) in cases {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = check(&file, &[], &[]);
        assert_eq!(code, 2, "{text:?}: {err}");
        assert!(
            err.contains(at) && err.contains(what),
            "{text:?} gave {err}"
        );
        // The node itself refuses to start the same way.
        let out = Command::new(BIN)
            .args(["node", "--api", "127.0.0.1:0", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if !at.is_empty() {
            assert_eq!(out.status.code(), Some(2), "{text:?}");
        } else {
            assert_ne!(out.status.code(), Some(0), "{text:?}");
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(at) && err.contains(what),
            "{text:?} gave {err}"
        );
    }
}

/// Two nodes set up by TOML files alone, listening on every address and
/// advertising loopback: they form a ring through a seed *name*, announce
/// reachable addresses, and store and read each other's keys.
#[test]
fn nodes_configured_by_toml_listen_on_every_address_and_advertise_one() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, a1) = (free_port(), free_port());
    let first = dir.path().join("first.toml");
    std::fs::write(
        &first,
        format!(
            "listen = \"0.0.0.0:{p1}\"\nadvertise = \"127.0.0.1:{p1}\"\napi = \"0.0.0.0:{a1}\"\n\
             stabilize_ms = 100\nreplicas = 2\ncluster = \"tomlring\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config"])
        .arg(&first)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let one = NodeProc::spawn(cmd);
    assert_eq!(one.addr.to_string(), format!("127.0.0.1:{p1}"));
    assert_eq!(
        one.api.to_string(),
        format!("127.0.0.1:{a1}"),
        "an API on 0.0.0.0 is announced at the advertised host"
    );
    let second = dir.path().join("second.toml");
    let p2 = free_port();
    std::fs::write(
        &second,
        format!(
            "listen = \"0.0.0.0:{p2}\"\nadvertise = \"localhost:{p2}\"\napi = \"127.0.0.1:0\"\n\
             join = [\"localhost:{p1}\"]\nstabilize_ms = 100\nreplicas = 2\ncluster = \"tomlring\"\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config"])
        .arg(&second)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let two = NodeProc::spawn(cmd);
    assert_eq!(two.addr.ip().to_string(), "127.0.0.1", "a name is resolved");
    let nodes = [&one, &two];
    eventually(Duration::from_secs(30), || ring_correct(&nodes)).expect("no ring");
    let (_, node) = get_json(one.api, "/v1/node");
    assert_eq!(node["cluster"], "tomlring", "the file's cluster name");
    for i in 0..20 {
        put(
            nodes[i % 2].api,
            &format!("k{i}"),
            format!("v{i}").as_bytes(),
        );
    }
    for i in 0..20 {
        let got = get(nodes[(i + 1) % 2].api, &format!("k{i}"));
        assert_eq!(got, Some(format!("v{i}").into_bytes()), "k{i}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = Command::new(BIN)
        .args(["node", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a log line").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?}: {e}"));
    assert_eq!(v["level"], "INFO", "{first}");
    assert!(v["fields"]["message"].is_string(), "{first}");
    assert!(v["timestamp"].is_string(), "{first}");
}

/// the request-processing model's DNS entry point: one name for the ring, resolving to several
/// addresses, the first of them dead. The joining node tries them all. The
/// name lives in a private /etc/hosts (a mount namespace of the joining
/// process only: needs root, else the test says so and stops).
#[test]
fn a_seed_name_with_several_addresses_is_tried_at_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--listen", "127.0.0.2:0", "--api", "127.0.0.1:0"])
        .args(["--stabilize-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let live = NodeProc::spawn(cmd);
    let port = live.addr.port();
    let hosts = dir.path().join("hosts");
    // 127.0.0.1 sorts first and has nothing on that port.
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.1 ring.chordal.test\n127.0.0.2 ring.chordal.test\n",
    )
    .unwrap();
    let allowed = Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!(
            "SKIPPED a_seed_name_with_several_addresses_is_tried_at_each: a private /etc/hosts \
             needs a mount namespace (root, util-linux unshare)"
        );
        return;
    }
    let script = format!(
        "mount --bind {} /etc/hosts && exec {BIN} node --listen 127.0.0.1:0 --api 127.0.0.1:0 \
         --stabilize-ms 100 --join ring.chordal.test:{port}",
        hosts.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let joined = NodeProc::spawn(cmd);
    let nodes = [&live, &joined];
    eventually(Duration::from_secs(30), || ring_correct(&nodes))
        .expect("the node did not join through the name's second address");
}
