//! blockstore: files come back byte for byte after node failures, through
//! the `put` / `get` commands against a ring and in the one-command demo;
//! a forged block is rejected.

use chordal_examples::blockstore::{self, BlockError, block_key};
use chordal_node::Id;
use chordal_node::KeyValue;
use chordal_node::local::{LocalRing, quick};
use std::time::Duration;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_blockstore");

#[test]
fn the_demo_stores_kills_two_nodes_and_verifies() {
    let out = std::process::Command::new(BIN)
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("killed node").count(), 2, "{stdout}");
    assert!(
        stdout.contains("fetched 1048576 bytes through a survivor: verified"),
        "{stdout}"
    );
}

/// Runs the binary; returns (success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_survive_two_failures_and_forged_blocks_are_rejected() {
    // Without authority, as the demo runs (self-certifying blocks need
    // no single decider, and two crashes leave ranges below a majority).
    let plain = quick().core_with(|c| c.authority = false);
    let ring = LocalRing::start_settled(6, plain, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.bin");
    // 100 KiB in 1 KiB blocks, two of them identical (stored once).
    let mut data: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    let (a, b) = data.split_at_mut(50 * 1024);
    b[..1024].copy_from_slice(&a[..1024]);
    std::fs::write(&file, &data).unwrap();
    let seed = ring.nodes[0].addr().to_string();
    let (ok, stdout, stderr) = run(&[
        "put",
        file.to_str().unwrap(),
        "--block-size",
        "1024",
        "--join",
        &seed,
    ])
    .await;
    assert!(ok, "{stderr}");
    let root = blockstore::parse_root(&stdout).unwrap();

    // Two nodes crash at once (R = 3: every block keeps a copy).
    ring.nodes[2].abort().await;
    ring.nodes[4].abort().await;
    let out = dir.path().join("out.bin");
    let (ok, _, stderr) = run(&[
        "get",
        &root.to_hex(),
        out.to_str().unwrap(),
        "--join",
        &seed,
    ])
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // A block replaced by other bytes (a faulty or malicious node) is
    // refused, and nothing is written.
    let first = Id::hash(&data[..1024]);
    ring.nodes[0]
        .put(block_key(&first), b"not the block".to_vec())
        .await
        .unwrap();
    let out2 = dir.path().join("out2.bin");
    let (ok, _, stderr) = run(&[
        "get",
        &root.to_hex(),
        out2.to_str().unwrap(),
        "--join",
        &seed,
    ])
    .await;
    assert!(!ok);
    assert!(stderr.contains("does not match its hash"), "{stderr}");
    assert!(!out2.exists());
    match blockstore::get_file(&ring.nodes[1], &root).await {
        Err(BlockError::Forged(h)) => assert_eq!(h, first.to_hex()),
        other => panic!("forged block accepted: {other:?}"),
    }
    // An unknown root and a malformed one.
    let unknown = Id::hash(b"nothing stored here");
    assert!(matches!(
        blockstore::get_file(&ring.nodes[1], &unknown).await,
        Err(BlockError::Missing(_))
    ));
    let (ok, _, stderr) = run(&["get", "xyz", out2.to_str().unwrap(), "--join", &seed]).await;
    assert!(!ok && stderr.contains("not a root"), "{stderr}");
}
