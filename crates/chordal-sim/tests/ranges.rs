//! Range events are an exact account of ownership: replaying each virtual
//! node's `RangeChanged` events (with `KeyRange::diff`) gives the range it
//! ends up owning, and after stabilization those ranges cover the ring
//! exactly once — through joins, crashes and graceful leaves.

use chordal_core::{Event, Id, KeyRange};
use chordal_sim::{Sim, SimConfig};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn range_events_replay_to_a_partition_of_the_ring() {
    let seed = 21;
    let mut s = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    s.record_events(true);
    let first = s.add_node(2);
    s.create(first);
    for k in 1..30 {
        let i = s.add_node(2);
        s.join(i, (k * 7) % s.len().max(1) % k);
        s.run_for(Duration::from_millis(100));
    }
    s.run_for(Duration::from_secs(10));
    for i in [4, 11, 19] {
        s.kill(i);
    }
    s.leave(25);
    for _ in 0..5 {
        let i = s.add_node(2);
        s.join(i, 0);
    }
    s.run_until_true(Duration::from_millis(200), Duration::from_secs(60), |s| {
        s.ring_errors(true) == 0
    })
    .expect("ring converges");
    s.run_for(Duration::from_secs(2));

    // Replay: each event's `old` is what the previous one left, and
    // `diff` accounts for every sampled key.
    let samples: Vec<Id> = (0..200).map(|_| s.random_id()).collect();
    let mut owned: HashMap<Id, KeyRange> = HashMap::new();
    for (node, e) in &s.events {
        let Event::RangeChanged { vnode, old, new } = e else {
            continue;
        };
        assert_eq!(
            owned.get(vnode).copied(),
            *old,
            "node {node}: events not continuous"
        );
        let (gained, lost) = KeyRange::diff(*old, *new);
        for k in &samples {
            let was = old.is_some_and(|o| o.contains(k));
            let now = (was && !lost.is_some_and(|l| l.contains(k)))
                || gained.is_some_and(|g| g.contains(k));
            assert_eq!(now, new.contains(k));
        }
        owned.insert(*vnode, *new);
    }
    // The replayed ranges of the live virtual nodes are their ranges, and
    // they partition the ring.
    let oracle = s.oracle();
    let mut ranges: Vec<KeyRange> = Vec::new();
    for i in s.alive() {
        for v in s.node(i).vnodes() {
            let replayed = owned.get(&v.me().id).copied();
            assert_eq!(replayed, v.range(), "vnode {:?}", v.me().id);
            ranges.push(replayed.expect("every live vnode owns a range"));
        }
    }
    ranges.sort_by_key(|r| r.end);
    assert_eq!(ranges.len(), oracle.len());
    for (k, r) in ranges.iter().enumerate() {
        let prev = ranges[(k + ranges.len() - 1) % ranges.len()];
        assert_eq!(r.start, prev.end, "gap or overlap before {:?}", r.end);
    }
    for k in &samples {
        assert_eq!(ranges.iter().filter(|r| r.contains(k)).count(), 1);
    }
}
