//! Day-two operations with real processes on 127.0.0.1: `chordal backup`
//! and `restore` at real sizes (a node dying during the backup), `chordal
//! leave` and `status`, and a rolling restart under a steady write load
//! that loses no acknowledged write.

mod common;

use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs `chordal ARGS`: exit code, stdout, stderr.
fn chordal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run chordal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A ring of `n` processes on redb in `dirs`, the first creating it.
fn ring(dirs: &std::path::Path, n: usize, extra: &[&str]) -> Vec<NodeProc> {
    ring_with_ids(dirs, &vec![None; n], extra)
}

/// Like `ring`, one process per entry of `ids`, each with that fixed id
/// (`None`: the default, from its address).
fn ring_with_ids(dirs: &std::path::Path, ids: &[Option<&str>], extra: &[&str]) -> Vec<NodeProc> {
    let n = ids.len();
    let mut nodes: Vec<NodeProc> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let dir = dirs.join(format!("n{i}")).display().to_string();
        let mut args = vec!["--data-dir", dir.as_str(), "--stabilize-ms", "100"];
        if let Some(id) = id {
            args.extend_from_slice(&["--id", id]);
        }
        args.extend_from_slice(extra);
        let seed = nodes.first().map(|n| n.addr);
        nodes.push(NodeProc::start(seed, &args));
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    eventually(Duration::from_secs(60), || {
        successor_lists_correct(&all, n - 1)
    })
    .expect("ring did not form");
    nodes
}

/// ~60 MB backed up from a ring that loses a node while the backup runs,
/// restored into a fresh ring: every key comes back with its value, a
/// deleted key stays deleted, restoring again changes nothing, and a write
/// newer than the backup wins over it.
#[test]
fn backup_and_restore_60_mb_across_a_node_failure() {
    let old_dirs = tempfile::tempdir().unwrap();
    // Fixed ids at 0.6, 0.8 and ~1.0 of the circle: the first range read,
    // (highest, lowest], holds ~60 % of the keys (~36 MB), far more than
    // the loopback socket buffers can carry ahead of the kill below.
    // (With ids from addresses it was sometimes small enough to arrive
    // whole before its owner died, and nothing was read on from a replica.)
    let ids = [
        Some("9999999999999999999999999999999999999999"),
        Some("cccccccccccccccccccccccccccccccccccccccc"),
        Some("ffffffffffffffffffffffffffffffffffffff00"),
    ];
    let mut old = ring_with_ids(old_dirs.path(), &ids, &[]);
    let apis: Vec<SocketAddr> = old.iter().map(|n| n.api).collect();
    let n = 3_000; // 3,000 × 20 KB: every node holds all ~60 MB (R = 3)
    put_many(&apis, "bk", n);
    let (status, _) = http(apis[0], "DELETE", "/v1/kv/bk-7");
    assert_eq!(status, 200);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ring.backup");
    let file_s = file.display().to_string();
    let node0 = apis[0].to_string();
    let mut backup = Command::new(BIN)
        .args(["backup", "--out", &file_s, "--node", &node0, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first range read is the lowest id's, (highest, lowest]. Its
    // owner dies once a few MB of it are in the file: the backup reads the
    // rest of that range from a replica, after the last record written.
    let first = (0..3).min_by_key(|i| old[*i].id).unwrap();
    let partial = dir.path().join("ring.backup.partial");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 2_000_000 {
        assert!(Instant::now() < deadline, "the backup wrote nothing");
        std::thread::sleep(Duration::from_millis(2));
    }
    old[first].kill9();
    let status = wait_timeout(&mut backup, Duration::from_secs(240)).expect("backup finished");
    let (mut out, mut err) = (String::new(), String::new());
    std::io::Read::read_to_string(backup.stdout.as_mut().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(backup.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "backup failed: {out}{err}");
    assert!(
        err.contains("reading range 0 on from"),
        "the range whose owner died was read on from a replica: {err}"
    );
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        summary["records"], n as u64,
        "every record, the tombstone included"
    );
    assert!(std::fs::metadata(&file).unwrap().len() > 60_000_000);
    // No record twice: the resumed range starts after the last one written.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("\"key_b64\":\"").nth(1)?.split('"').next())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n, "each record once");
    drop(old);

    // A fresh ring, empty — under authority: the backup's terms are the
    // old ring's, and restored records must take the new owners' terms
    // (a higher foreign term would refuse every later write to the key).
    let new_dirs = tempfile::tempdir().unwrap();
    let new = ring(new_dirs.path(), 3, &["--authority"]);
    let apis: Vec<SocketAddr> = new.iter().map(|n| n.api).collect();
    let node0 = apis[1].to_string();
    let (code, out, err) = chordal(&["restore", "--in", &file_s, "--node", &node0, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["restored"].as_u64(), v["failed"].as_u64()),
        (Some(n as u64), Some(0))
    );
    let live: Vec<usize> = (0..n).filter(|k| *k != 7).collect();
    check_keys(&apis, "bk", &live);
    assert_eq!(get(apis[2], "bk-7"), None, "a deleted key stays deleted");

    // A write newer than the backup wins over it when the backup is
    // restored again.
    put(apis[0], "bk-1", b"newer than the backup");
    let (code, out, err) = chordal(&["restore", "--in", &file_s, "--node", &node0, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["restored"].as_u64(), v["skipped"].as_u64()),
        (Some(n as u64 - 1), Some(1)),
        "only the key written after the backup is skipped"
    );
    assert_eq!(
        get(apis[1], "bk-1").as_deref(),
        Some(&b"newer than the backup"[..])
    );

    // A file cut short is refused (exit 1) after restoring what it holds.
    let cut = dir.path().join("cut.backup");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let cut_s = cut.display().to_string();
    let (code, _, err) = chordal(&["restore", "--in", &cut_s, "--node", &node0]);
    assert_eq!(code, 1, "{err}");
}

/// A hash of 50 MB (2,500 fields of 20 KB, so every node holds all of
/// it), a list, a sorted set and a set move with their keys: through a
/// graceful leave of one node, then a backup and a restore into a fresh
/// ring — every field, element, member and score comes back, and the
/// kinds with them.
#[test]
fn collections_of_50_mb_survive_a_leave_and_a_backup_and_restore() {
    let old_dirs = tempfile::tempdir().unwrap();
    let mut old = ring(old_dirs.path(), 4, &["--resp", "127.0.0.1:0"]);
    let connect = |n: &NodeProc| {
        let url = format!("redis://{}/", n.served("resp"));
        redis::Client::open(url).unwrap().get_connection().unwrap()
    };
    let field = |i: usize| format!("field-{i:05}");
    let value = |i: usize| vec![(i % 251) as u8; 20_000];
    let mut con = connect(&old[1]);
    for chunk in (0..2_500).collect::<Vec<_>>().chunks(25) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg("{c}big");
        for i in chunk {
            cmd.arg(field(*i)).arg(value(*i));
        }
        let _: i64 = cmd.query(&mut con).unwrap();
    }
    let _: i64 = redis::cmd("RPUSH")
        .arg("{c}list")
        .arg(&["a", "b", "c", "d"])
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg("{c}z")
        .arg(&["3", "x", "1.5", "y", "-2", "z"])
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg("{c}s")
        .arg(&["m1", "m2"])
        .query(&mut con)
        .unwrap();
    // What each of them must read as, wherever they went.
    let check = |con: &mut redis::Connection, when: &str| {
        let len: i64 = redis::cmd("HLEN").arg("{c}big").query(con).unwrap();
        assert_eq!(len, 2_500, "{when}: the hash's count");
        for i in (0..2_500).step_by(7) {
            let v: Vec<u8> = redis::cmd("HGET")
                .arg("{c}big")
                .arg(field(i))
                .query(con)
                .unwrap();
            assert!(v == value(i), "{when}: field {i} lost or wrong");
        }
        let list: Vec<String> = redis::cmd("LRANGE")
            .arg("{c}list")
            .arg(0)
            .arg(-1)
            .query(con)
            .unwrap();
        assert_eq!(list, ["a", "b", "c", "d"], "{when}");
        let z: Vec<String> = redis::cmd("ZRANGE")
            .arg("{c}z")
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(con)
            .unwrap();
        assert_eq!(z, ["z", "-2", "y", "1.5", "x", "3"], "{when}");
        let s: Vec<String> = redis::cmd("SMEMBERS").arg("{c}s").query(con).unwrap();
        assert_eq!(s, ["m1", "m2"], "{when}");
        let kind: String = redis::cmd("TYPE").arg("{c}big").query(con).unwrap();
        assert_eq!(kind, "hash", "{when}");
    };
    // The collections' owner (the first node at or after their key id)
    // leaves: its successor takes them over.
    let at = chordal_core::Id::of_key(b"{c}big");
    let owner = (0..old.len())
        .min_by_key(|i| old[*i].id.wrapping_sub(&at))
        .unwrap();
    let status = old[owner].terminate();
    assert!(status.success(), "the leave failed: {status:?}");
    let stay = (owner + 1) % old.len();
    check(&mut connect(&old[stay]), "after the leave");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ring.backup").display().to_string();
    let api = old[stay].api.to_string();
    let (code, out, err) = chordal(&["backup", "--out", &file, "--node", &api, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    drop(old);
    let new_dirs = tempfile::tempdir().unwrap();
    let new = ring(new_dirs.path(), 3, &["--resp", "127.0.0.1:0"]);
    let api = new[0].api.to_string();
    let (code, out, err) = chordal(&["restore", "--in", &file, "--node", &api, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    check(&mut connect(&new[2]), "after the restore");
}

/// Every key `prefix-k` for `k` in `keys` reads back with its value.
fn check_keys(apis: &[SocketAddr], prefix: &str, keys: &[usize]) {
    let missing: Vec<usize> = keys
        .iter()
        .copied()
        .filter(|k| {
            get(apis[k % apis.len()], &format!("{prefix}-{k}")).as_deref()
                != Some(value_of(*k).as_slice())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} keys lost or wrong, e.g. {:?}",
        missing.len(),
        keys.len(),
        &missing[..missing.len().min(10)]
    );
}

/// `chordal leave` needs the admin role; the node hands its data over and
/// its process exits; `chordal status` then shows the smaller ring.
#[test]
fn leave_by_command_needs_admin_loses_nothing_and_status_shows_who_went() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "writer-token-0123456789 write\nadmin-token-0123456789 admin\n",
    )
    .unwrap();
    let tokens = tokens.display().to_string();
    let extra = [
        "--api-tokens",
        tokens.as_str(),
        "--stabilize-ms",
        "100",
        "--replicas",
        "2",
    ];
    let mut nodes = vec![NodeProc::start(None, &extra)];
    for _ in 0..3 {
        let seed = nodes[0].addr;
        nodes.push(NodeProc::start(Some(seed), &extra));
    }
    let api0 = nodes[0].api.to_string();
    let status = || {
        let (code, out, err) = chordal(&[
            "status",
            "--node",
            &api0,
            "--json",
            "--token",
            "admin-token-0123456789",
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    let settled = |processes: u64| {
        let s = status();
        s["processes"] == processes
            && s["healthy"] == processes
            && s["ranges_under_replicated"] == 0.0
            && s["problems"].as_array().is_some_and(|p| p.is_empty())
    };
    eventually(Duration::from_secs(30), || settled(4)).expect("ring");
    let target = nodes[3].api.to_string();
    for i in 0..200 {
        let (code, _, err) = chordal(&[
            "put",
            &format!("lv-{i}"),
            &format!("value {i}"),
            "--node",
            &target,
            "--token",
            "writer-token-0123456789",
        ]);
        assert_eq!(code, 0, "{err}");
    }

    let (code, _, err) = chordal(&[
        "leave",
        "--node",
        &target,
        "--token",
        "writer-token-0123456789",
    ]);
    assert_eq!(code, 1, "a write token cannot make a node leave");
    assert!(err.contains("needs admin"), "{err}");
    let (code, out, err) = chordal(&[
        "leave",
        "--node",
        &target,
        "--token",
        "admin-token-0123456789",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("has left"), "{out}");
    let exited = wait_timeout(&mut nodes[3].child, Duration::from_secs(10));
    assert_eq!(
        exited.map(|s| s.success()),
        Some(true),
        "the process exits cleanly"
    );

    for i in 0..200 {
        let (code, out, err) = chordal(&[
            "get",
            &format!("lv-{i}"),
            "--node",
            &api0,
            "--token",
            "writer-token-0123456789",
        ]);
        assert_eq!(
            (code, out.as_str()),
            (0, format!("value {i}").as_str()),
            "{err}"
        );
    }
    let healed = eventually(Duration::from_secs(30), || settled(3));
    let s = status();
    assert!(healed.is_some(), "{s}");
    assert_eq!(s["versions"][0]["processes"], 3, "{s}");
    assert!(
        s["versions"][0]["version"]
            .as_str()
            .unwrap()
            .starts_with(env!("CARGO_PKG_VERSION")),
        "{s}"
    );
    let (code, out, _) = chordal(&[
        "status",
        "--node",
        &api0,
        "--token",
        "admin-token-0123456789",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("3 members in 3 processes, 3 healthy"), "{out}");
    // The node that left shows as gone, not just no longer listed. (How
    // it went is what the node asked saw: a goodbye, the ring's news, or —
    // if it was told neither before its entry timed out — no answer.)
    let down = s["down"].as_array().cloned().unwrap_or_default();
    assert!(down.iter().any(|d| d["api"] == target.as_str()), "{s}");
    assert!(out.contains(&format!("│ {target}")), "{out}");
    // ... and one killed with -9 as down.
    let killed = nodes[2].api.to_string();
    nodes[2].kill9();
    let gone = eventually(Duration::from_secs(30), || {
        let s = status();
        s["processes"] == 2
            && s["down"].as_array().is_some_and(|d| {
                d.iter()
                    // Stopped answering (false), or gone by the ring's
                    // news (null): not a graceful leave.
                    .any(|d| d["api"] == killed.as_str() && d["left"] != true)
            })
    });
    assert!(gone.is_some(), "{}", status());
    let (_, out, _) = chordal(&[
        "status",
        "--node",
        &api0,
        "--token",
        "admin-token-0123456789",
    ]);
    assert!(
        out.contains(&format!("│ {killed}")) && (out.contains("down (") || out.contains("gone (")),
        "{out}"
    );
    let (_, out, _) = chordal(&["ring", "--node", &api0, "--token", "admin-token-0123456789"]);
    assert!(
        out.contains("stopped answering") || out.contains("gone (the ring's news)"),
        "{out}"
    );
}

/// Every node restarted in turn (SIGTERM, then the same data directory and
/// ports) while a writer keeps writing: every write acknowledged is read
/// back at the end.
#[test]
fn a_rolling_restart_under_writes_loses_nothing_acknowledged() {
    let dirs = tempfile::tempdir().unwrap();
    let n = 4;
    let mut nodes = ring(dirs.path(), n, &[]);
    let apis: Arc<Mutex<Vec<SocketAddr>>> =
        Arc::new(Mutex::new(nodes.iter().map(|n| n.api).collect()));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (apis, acked, stop) = (apis.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let targets = apis.lock().unwrap().clone();
                let key = format!("roll-{i}");
                let api = targets[i % targets.len()];
                // A node that is restarting refuses: that write was never
                // acknowledged.
                let answer =
                    try_http_with(api, "PUT", &format!("/v1/kv/{key}"), &[], key.as_bytes());
                if matches!(answer, Ok((200, _, _))) {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for i in 0..n {
        let before = acked.lock().unwrap().len();
        let dir = dirs.path().join(format!("n{i}")).display().to_string();
        let (addr, api) = (nodes[i].addr, nodes[i].api);
        assert!(nodes[i].terminate().success(), "node {i} left cleanly");
        let seed = nodes[(i + 1) % n].addr;
        let listen = addr.to_string();
        let api_s = api.to_string();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "node",
            "--listen",
            &listen,
            "--api",
            &api_s,
            "--join",
            &seed.to_string(),
        ])
        .args(["--data-dir", &dir, "--stabilize-ms", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
        nodes[i] = NodeProc::spawn(cmd);
        let all: Vec<&NodeProc> = nodes.iter().collect();
        eventually(Duration::from_secs(60), || {
            successor_lists_correct(&all, n - 1)
        })
        .unwrap_or_else(|| panic!("ring did not heal after restarting node {i}"));
        // Writes go on across the restart.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < before + 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let now = acked.lock().unwrap().len();
        assert!(
            now >= before + 20,
            "writes stalled across restarting node {i}: {before} → {now}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let apis = apis.lock().unwrap().clone();
    let lost: Vec<&String> = acked
        .iter()
        .enumerate()
        .filter(|(i, key)| get(apis[i % apis.len()], key).as_deref() != Some(key.as_bytes()))
        .map(|(_, k)| k)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
}
