//! Watches (`Operation::Watch`) on a simulated ring under authority: one
//! writer puts ever larger numbers to two keys of one hash tag, one
//! watcher follows the first key and another the tag's whole group,
//! each watching again from the version of each answer; two nodes join
//! just past the keys' id (each takes them over) and the last one
//! crashes. Checked, over 8 seeds:
//! - while the ring is quiet and writes come 300 ms apart, each watcher
//!   is told every acknowledged write, within 50 ms of its
//!   acknowledgement (simulated time: deterministic), so the owner wakes
//!   watchers rather than leaving them to find changes when their time
//!   runs out (turning the wake off fails this at once);
//! - through the churn, what a watcher is told is always newer than what
//!   it was told before (never an older state from a new owner), is a
//!   value that was written, with the version its write was acknowledged
//!   with (or that write written again by a later term), and at the end each watcher has been told the last
//!   acknowledged write of its keys.

use chordal_core::{Id, OpError, OpId, Operation, Outcome, Time, Version, WriteOptions};
use chordal_sim::{Sim, SimConfig};
use std::collections::BTreeMap;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const KEY: &[u8] = b"{w}k";
const OTHER: &[u8] = b"{w}j";

fn put(key: &[u8], n: u64) -> Operation {
    Operation::Put {
        key: key.to_vec(),
        value: n.to_string().into_bytes(),
        opts: WriteOptions::default(),
    }
}

fn watch(after: Option<Version>, group: bool) -> Operation {
    Operation::Watch {
        key: KEY.to_vec(),
        after,
        group,
    }
}

/// One watcher's state: what it was told, by version.
struct Watcher {
    group: bool,
    node: usize,
    op: Option<OpId>,
    after: Option<Version>,
    /// (version, key, value) in the order told.
    told: Vec<(Version, Vec<u8>, u64, Time)>,
}

impl Watcher {
    fn step(&mut self, s: &mut Sim, seed: u64) {
        let Some(op) = self.op else {
            self.op = Some(s.start_store_op(self.node, watch(self.after, self.group)));
            return;
        };
        let Some(r) = s.take_kv_result(self.node, op) else {
            return;
        };
        self.op = None;
        match r {
            Ok(Outcome::Watched { version, records }) => {
                let Some(v) = version else {
                    // Nothing newer in time (or no record yet): again,
                    // from the same version (a key's first answer names
                    // none: any write is newer than none).
                    if self.after.is_none() && !self.group {
                        self.after = Some(Version::default());
                    }
                    return;
                };
                assert!(
                    self.after.is_none_or(|a| v > a),
                    "seed {seed}: told {v:?} after {:?}",
                    self.after
                );
                assert!(!records.is_empty(), "seed {seed}: a change without records");
                for r in records {
                    assert_eq!(r.version, v, "seed {seed}: records of two versions");
                    let n: u64 = std::str::from_utf8(r.value.as_deref().expect("a value"))
                        .unwrap()
                        .parse()
                        .unwrap();
                    self.told.push((v, r.key, n, s.now()));
                }
                self.after = Some(v);
            }
            Err(e) if e.nothing_done() || matches!(e, OpError::Timeout) => {}
            other => panic!("seed {seed}: a watch answered {other:?}"),
        }
    }
}

#[test]
fn watchers_are_told_every_change_in_order_through_churn() {
    let first: u64 = std::env::var("FIRST_SEED").map_or(0, |s| s.parse().unwrap());
    for seed in first..first + 8 {
        let mut s = Sim::grown(
            SimConfig::with_authority(seed),
            5,
            Duration::from_millis(200),
        );
        s.run_for(5 * SEC);
        let mut alive: Vec<usize> = (0..5).collect();
        let mut watchers = [false, true].map(|group| Watcher {
            group,
            node: if group { 1 } else { 2 },
            op: None,
            after: None,
            told: Vec::new(),
        });
        // Acknowledged writes: (key, value) → (version, when).
        let mut acked: BTreeMap<(Vec<u8>, u64), (Version, Time)> = BTreeMap::new();
        let mut writing: Option<(usize, OpId, Vec<u8>, u64)> = None;
        let mut n = 0u64;
        let mut next_write = s.now() + SEC;
        let start = s.now();
        let quiet_until = start + 4 * SEC;
        let mut next_change = 1;
        while s.now() - start < 14 * SEC {
            let at = (s.now() - start).as_secs();
            if at >= 4 + next_change * 2 && next_change <= 3 {
                if next_change == 3 {
                    let owner = s.owner_of(KEY);
                    alive.retain(|m| *m != owner);
                    s.kill(owner);
                    for w in watchers.iter_mut().filter(|w| w.node == owner) {
                        (w.node, w.op) = (alive[0], None);
                    }
                } else {
                    let ahead = Id::of_key(KEY).wrapping_add(&Id::from_u64(next_change));
                    let fresh = s.add_node_with_ids(&[ahead]);
                    s.join(fresh, alive[0]);
                    alive.push(fresh);
                }
                next_change += 1;
            }
            for w in watchers.iter_mut() {
                w.step(&mut s, seed);
            }
            if let Some((node, op, key, value)) = writing.clone()
                && let Some(r) = s.take_kv_result(node, op)
            {
                if let Ok(Outcome::Stored { version, .. }) = r {
                    acked.insert((key, value), (version, s.now()));
                }
                writing = None;
            }
            if writing.is_none() && s.now() >= next_write {
                n += 1;
                let key = if n.is_multiple_of(3) { OTHER } else { KEY };
                let node = alive[n as usize % alive.len()];
                writing = Some((node, s.start_store_op(node, put(key, n)), key.to_vec(), n));
                // 300 ms apart while quiet, then as fast as they go.
                let gap = if s.now() < quiet_until { 300 } else { 5 };
                next_write = s.now() + Duration::from_millis(gap);
            }
            s.run_for(Duration::from_millis(1));
        }
        // Quiet again: the watchers catch up.
        let end = s.now() + 5 * SEC;
        while s.now() < end {
            for w in watchers.iter_mut() {
                w.step(&mut s, seed);
            }
            s.run_for(Duration::from_millis(1));
        }
        assert!(
            acked.len() > 100,
            "seed {seed}: {} writes acknowledged",
            acked.len()
        );
        for w in &watchers {
            let wants = |k: &[u8]| w.group || k == KEY;
            // What it was told was written so, and is each acknowledged
            // write's version when acknowledged.
            for (v, key, value, _) in &w.told {
                assert!(wants(key), "seed {seed}: told of {key:?}");
                // (A new term writes again what it read but cannot
                // know to be on a quorum: the same write, its term raised.)
                if let Some((version, _)) = acked.get(&(key.clone(), *value)) {
                    let same = (v.hlc, v.node) == (version.hlc, version.node);
                    assert!(
                        same && v.term >= version.term,
                        "seed {seed}: {value} told as {v:?}, acknowledged as {version:?}"
                    );
                }
                assert!(*value <= n, "seed {seed}: told {value}, never written");
            }
            // Every write acknowledged while quiet, told within 50 ms.
            for ((key, value), (_, when)) in &acked {
                if *when >= quiet_until || !wants(key) {
                    continue;
                }
                let told = w.told.iter().find(|t| t.2 == *value);
                let Some((_, _, _, at)) = told else {
                    panic!("seed {seed}: the {} watcher missed {value}", w.group);
                };
                assert!(
                    *at - *when <= Duration::from_millis(50),
                    "seed {seed}: told {value} {:?} after it was acknowledged",
                    *at - *when
                );
            }
            // The last acknowledged write of its keys is told.
            let last = acked
                .iter()
                .filter(|((k, _), _)| wants(k))
                .max_by_key(|(_, (v, _))| *v)
                .map(|((_, value), _)| *value)
                .expect("writes acknowledged");
            assert!(
                w.told.iter().any(|t| t.2 == last),
                "seed {seed}: the {} watcher never told the last write {last}",
                w.group
            );
        }
    }
}
