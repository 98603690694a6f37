//! Clock steps with real processes (Debian's libfaketime, installed by
//! `.ci/run`): a node that wrote with a clock an hour fast and restarts
//! with the right one (an NTP step back, a VM resumed from a snapshot)
//! versions its next writes above what it holds, so they win.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// The hlc of the version a `GET` reports (`X-Chordal-Version:
/// [<term>.]<hlc>-<node>`).
fn version_of(api: SocketAddr, key: &str) -> u64 {
    let (status, head, _) = http_body(api, "GET", &format!("/v1/kv/{key}"), b"");
    assert_eq!(status, 200, "{key}");
    head.lines()
        .find_map(|l| {
            let l = l.to_lowercase();
            l.strip_prefix("x-chordal-version: ")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| {
            let clock = v.split('-').next()?;
            clock.rsplit('.').next()?.parse().ok()
        })
        .expect("version header")
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The environment that runs a process with its wall clock `offset`
/// ahead (libfaketime preloaded; the monotonic clock left alone), or
/// `None` (with a message) when libfaketime is not installed.
fn faketime(offset: &'static str) -> Option<Vec<(&'static str, &'static str)>> {
    const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    if !std::path::Path::new(LIB).exists() {
        eprintln!("this test needs Debian's faketime: run .ci/run, or apt-get install faketime");
        return None;
    }
    Some(vec![
        ("LD_PRELOAD", LIB),
        ("FAKETIME", offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ])
}

fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

#[test]
fn a_write_after_restarting_with_a_clock_stepped_back_wins() {
    restarted_with_the_clock_back(&[]);
}

/// Under authority too — and the restart is on another port (`:0`), so
/// the saved promise table names this process at an address nobody
/// answers: it must still take its term at once (it waited forever).
#[test]
fn under_authority_a_write_after_restarting_on_another_port_wins() {
    restarted_with_the_clock_back(&["--authority"]);
}

fn restarted_with_the_clock_back(extra: &[&str]) {
    let fake = faketime("+1h").expect("faketime is required (installed by .ci/run)");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut args = vec!["--data-dir", data.as_str()];
    args.extend_from_slice(extra);
    let mut fast = NodeProc::start_env(&fake, None, &args);
    put(fast.api, "k", b"written an hour ahead");
    let ahead = version_of(fast.api, "k");
    assert!(
        ahead > micros_now() + 3_000_000_000,
        "faketime did not move the node's clock ({ahead})"
    );
    assert!(fast.terminate().success());

    // The same disk, the right clock.
    let node = NodeProc::start(None, &args);
    put(node.api, "k", b"written now");
    assert_eq!(get(node.api, "k"), Some(b"written now".to_vec()));
    assert!(version_of(node.api, "k") > ahead);
}

/// The ring case: one of four nodes runs an hour fast and owns
/// some keys; it restarts with the right clock, and the writes made right
/// after are all readable.
#[test]
fn a_ring_keeps_writes_made_right_after_a_clock_step_back() {
    let fake = faketime("+1h").expect("faketime is required (installed by .ci/run)");
    let dirs = tempfile::tempdir().unwrap();
    let dir_of = |i: usize| {
        dirs.path()
            .join(format!("n{i}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let extra = |i: usize| {
        vec![
            "--stabilize-ms".to_string(),
            "200".to_string(),
            "--data-dir".to_string(),
            dir_of(i),
        ]
    };
    let e0 = extra(0);
    let mut nodes = vec![NodeProc::start(None, &args(&e0))];
    let seed = nodes[0].addr;
    for i in 1..3 {
        let e = extra(i);
        nodes.push(NodeProc::start(Some(seed), &args(&e)));
    }
    let e3 = extra(3);
    nodes.push(NodeProc::start_env(
        &fake,
        Some(seed.to_string()),
        &args(&e3),
    ));
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring");
    let keys: Vec<String> = (0..200).map(|k| format!("step-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        put(nodes[k % 4].api, key, b"old");
    }
    // The fast node versioned the keys it owns an hour ahead.
    let ahead = keys
        .iter()
        .filter(|k| version_of(nodes[0].api, k) > micros_now() + 3_000_000_000)
        .count();
    assert!(ahead > 0, "the fast node owns no key");

    // Restart it with the right clock, and write every key again at once.
    assert!(nodes[3].terminate().success());
    nodes[3] = NodeProc::start(Some(seed), &args(&e3));
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(20), || ring_correct(&all)).expect("ring after restart");
    for (k, key) in keys.iter().enumerate() {
        put(nodes[k % 4].api, key, b"new");
    }
    for (k, key) in keys.iter().enumerate() {
        assert_eq!(
            get(nodes[(k + 1) % 4].api, key),
            Some(b"new".to_vec()),
            "{key}"
        );
    }
}
