//! A real full disk: a `chordal node` whose data directory is a small
//! tmpfs the test mounts (root only; skipped with a message otherwise).
//! Writes answer 507 `insufficient_storage`, reads are served, health says
//! why, and once space is freed the node takes writes again by itself.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return None;
    }
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here");
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

#[test]
fn a_full_disk_answers_507_serves_reads_and_recovers() {
    full_disk(&[]);
}

/// The same under authority: a write only the node's own store refused
/// is on no copy, so its term goes on (reads served, 507 at once rather
/// than 503 `not_ready` after the whole deadline).
#[test]
fn under_authority_a_full_disk_answers_507_serves_reads_and_recovers() {
    full_disk(&["--authority"]);
}

fn full_disk(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(dir.path(), "24m") else {
        return;
    };
    // Room the test gives back later.
    let filler = dir.path().join("filler");
    std::fs::write(&filler, vec![1u8; 8 << 20]).unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let mut args = vec!["--data-dir", data];
    args.extend_from_slice(extra);
    let node = NodeProc::start(None, &args);
    let value = vec![7u8; 100_000];
    let mut stored = Vec::new();
    let mut full = None;
    for k in 0..400 {
        let (status, _, body) = http_body(node.api, "PUT", &format!("/v1/kv/full-{k}"), &value);
        match status {
            200 => stored.push(k),
            507 => {
                full = Some(String::from_utf8_lossy(&body).to_string());
                break;
            }
            other => panic!("put full-{k}: {other} {}", String::from_utf8_lossy(&body)),
        }
    }
    let body = full.expect("the disk never filled up");
    assert!(body.contains("insufficient_storage"), "{body}");
    assert!(stored.len() > 10, "only {} puts fit", stored.len());
    // Writes keep failing the same way, reads are served, health says why.
    let (status, _, _) = http_body(node.api, "PUT", "/v1/kv/more", b"x");
    assert_eq!(status, 507);
    for k in &stored {
        assert_eq!(
            get(node.api, &format!("full-{k}")),
            Some(value.clone()),
            "full-{k}"
        );
    }
    let (status, health) = get_json(node.api, "/v1/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["storage"]
            .as_str()
            .is_some_and(|s| s.contains("full")),
        "{health}"
    );
    assert_eq!(storage_failing(node.api), 1.0, "the alerting gauge says so");
    let (code, status_line) = chordal_status(node.api);
    assert_eq!(code, 0);
    assert!(
        status_line.contains("full"),
        "chordal status shows it: {status_line}"
    );

    // Space is freed: the node takes writes again without a restart.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(15), || {
        get_json(node.api, "/v1/health").1["status"] == "ok"
    })
    .expect("the node did not recover");
    assert_eq!(storage_failing(node.api), 0.0);
    put(node.api, "after", b"space again");
    assert_eq!(get(node.api, "after"), Some(b"space again".to_vec()));
    for k in &stored {
        assert_eq!(
            get(node.api, &format!("full-{k}")),
            Some(value.clone()),
            "full-{k}"
        );
    }
}

/// `chordal_storage_failing` of the node at `api`.
fn storage_failing(api: std::net::SocketAddr) -> f64 {
    metric(api, "chordal_storage_failing ").expect("the gauge is exported")
}

/// `chordal status` against `api`: exit code and output.
fn chordal_status(api: std::net::SocketAddr) -> (i32, String) {
    let out = std::process::Command::new(BIN)
        .args(["status", "--node", &api.to_string()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
