//! Crash consistency: a process writing batches is killed with SIGKILL at
//! a random moment; afterwards every batch is either wholly in the store or
//! wholly absent, and the batches present are exactly the first ones
//! (each was acknowledged before the next began).
//!
//! The test re-executes its own binary as the writer (`CHORDAL_CRASH_DIR`
//! set), so no extra binary is needed.

use chordal_core::{Id, Record, Version};
use chordal_store::{RedbStore, Store};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const BATCH: u64 = 10;

fn batch(i: u64) -> Vec<Record> {
    (0..BATCH)
        .map(|j| {
            Record::new(
                format!("b{i}-{j}").into_bytes(),
                Version {
                    term: 0,
                    hlc: i + 1,
                    node: Id::from_u64(1),
                },
                Some(vec![i as u8; 100]),
            )
        })
        .collect()
}

/// The writer: batches 0, 1, 2, ... until killed; prints each index once
/// the batch is durable.
fn write_forever(dir: &Path) -> ! {
    let store = RedbStore::open(&dir.join("db")).unwrap();
    for i in 0.. {
        store.apply(&batch(i)).unwrap();
        // Own line: libtest's "test ... " header may precede it.
        println!("\nacked {i}");
    }
    unreachable!()
}

#[test]
fn killed_mid_batch_keeps_only_whole_batches() {
    if let Ok(dir) = std::env::var("CHORDAL_CRASH_DIR") {
        write_forever(Path::new(&dir));
    }
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "killed_mid_batch_keeps_only_whole_batches",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CHORDAL_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it mid-stream once it has acknowledged some batches (a
        // different number each round), whatever the machine's speed.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let acked_of =
            |line: &str| -> Option<u64> { line.trim().strip_prefix("acked ")?.parse().ok() };
        let mut acked: Vec<u64> = Vec::new();
        let target = 20 + 37 * round as usize;
        for line in lines.by_ref() {
            acked.extend(acked_of(&line.unwrap()));
            if acked.len() >= target {
                break;
            }
        }
        child.kill().unwrap();
        // What it printed before it died.
        acked.extend(lines.map_while(Result::ok).filter_map(|l| acked_of(&l)));
        child.wait().unwrap();
        let store = RedbStore::open(&dir.path().join("db")).unwrap();
        let mut present = Vec::new();
        for i in 0..=acked.last().copied().unwrap_or(0) + 2 {
            let found = batch(i)
                .iter()
                .filter(|r| store.get(&r.key_id, &r.key).unwrap().as_ref() == Some(*r))
                .count() as u64;
            assert!(
                found == 0 || found == BATCH,
                "round {round}: batch {i} is torn ({found}/{BATCH})"
            );
            if found == BATCH {
                present.push(i);
            }
        }
        // Every acknowledged batch survived; at most the one in flight more.
        for a in &acked {
            assert!(
                present.contains(a),
                "round {round}: acknowledged batch {a} lost"
            );
        }
        assert!(
            present.len() <= acked.len() + 1,
            "round {round}: {present:?} vs acked {acked:?}"
        );
        assert!(
            present.iter().enumerate().all(|(k, i)| k as u64 == *i),
            "round {round}: not a prefix: {present:?}"
        );
        assert!(
            !acked.is_empty(),
            "round {round}: the writer never acknowledged a batch"
        );
    }
}
