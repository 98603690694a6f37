//! The key-value store on a simulated ring: operations, placement on the
//! owner and its R-1 successors, write quorums, reads during a handoff,
//! tombstones.

use chordal_core::{Id, OpError, Outcome, Record};
use chordal_sim::{Sim, SimConfig};
use chordal_store::Store;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn ring(seed: u64, n: usize) -> Sim {
    ring_with(
        n,
        SimConfig {
            seed,
            ..SimConfig::default()
        },
    )
}

/// A converged ring of `n` nodes on `config`'s network.
fn ring_with(n: usize, config: SimConfig) -> Sim {
    let seed = config.seed;
    let mut s = Sim::new(config);
    let first = s.add_node(1);
    s.create(first);
    for _ in 1..n {
        let i = s.add_node(1);
        s.join(i, first);
        s.run_for(Duration::from_millis(50));
    }
    s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .unwrap_or_else(|| panic!("seed {seed}: ring did not converge"));
    // Successor lists fill in one stabilize round per hop.
    s.run_for(10 * SEC);
    s
}

/// Index of the node whose (only) virtual node has id `id`.
fn index_of(s: &Sim, id: Id) -> usize {
    (0..s.len())
        .find(|i| s.node(*i).primary().me().id == id)
        .unwrap()
}

fn value(r: Result<Outcome, OpError>) -> Option<Vec<u8>> {
    match r.expect("operation failed") {
        Outcome::Found { value, .. } => Some(value),
        Outcome::NotFound => None,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn put_get_delete_from_any_node() {
    let seed = 31;
    let mut s = ring(seed, 20);
    for k in 0..60 {
        let key = format!("key-{k}");
        let at = k % 20;
        match s.put(at, key.as_bytes(), format!("value-{k}").as_bytes()) {
            Ok(Outcome::Stored { acked, .. }) => {
                assert!(acked >= 2, "seed {seed}: {key} acked by {acked}")
            }
            other => panic!("seed {seed}: put {key}: {other:?}"),
        }
    }
    for k in 0..60 {
        let key = format!("key-{k}");
        let got = value(s.get((k * 7) % 20, key.as_bytes()));
        assert_eq!(
            got,
            Some(format!("value-{k}").into_bytes()),
            "seed {seed}: get {key}"
        );
    }
    assert_eq!(value(s.get(3, b"never-written")), None);
    // Overwrite: the newer value wins.
    s.put(4, b"key-1", b"second").unwrap();
    assert_eq!(value(s.get(9, b"key-1")), Some(b"second".to_vec()));
    // Delete, then the key is gone everywhere; deleting again finds nothing.
    assert!(matches!(s.delete(11, b"key-1"), Ok(Outcome::Stored { .. })));
    assert_eq!(value(s.get(2, b"key-1")), None);
    assert_eq!(s.delete(5, b"key-1"), Ok(Outcome::NotFound));
    assert_eq!(s.delete(5, b"never-written"), Ok(Outcome::NotFound));
}

/// Each key lives on exactly its owner and the next R-1 nodes (DHash).
#[test]
fn keys_live_on_exactly_their_r_successors() {
    let seed = 32;
    let mut s = ring(seed, 16);
    for k in 0..100 {
        let key = format!("placed-{k}");
        s.put(k % 16, key.as_bytes(), b"v").unwrap();
    }
    s.run_for(SEC); // the third copy may still be in flight after the quorum ack
    for k in 0..100 {
        let key = format!("placed-{k}");
        let want = r_holders(&s, &Id::of_key(key.as_bytes()));
        assert_eq!(s.holders(key.as_bytes()), want, "seed {seed}: {key}");
    }
}

/// The nodes that should hold key id `id` at R = 3: its owner and the two
/// after it, by the oracle, in index order.
fn r_holders(s: &Sim, id: &Id) -> Vec<usize> {
    let oracle = s.oracle();
    let owner = oracle.successor(id);
    let mut want: Vec<usize> = vec![index_of(s, owner)];
    want.extend(oracle.successors(&owner, 2).iter().map(|n| index_of(s, *n)));
    want.sort();
    want
}

/// Keys with one hash tag live together: on the owner of the tag and its
/// R-1 successors, wherever their whole keys would hash; and a join moves
/// them together.
#[test]
fn keys_with_one_hash_tag_share_their_copies() {
    let seed = 34;
    let mut s = ring(seed, 16);
    let keys: Vec<String> = (0..40).map(|k| format!("{{user:42}}:field-{k}")).collect();
    for (i, key) in keys.iter().enumerate() {
        s.put(i % 16, key.as_bytes(), b"v").unwrap();
    }
    s.run_for(SEC);
    let want = r_holders(&s, &Id::of_key(b"user:42"));
    for key in &keys {
        assert_eq!(s.holders(key.as_bytes()), want, "seed {seed}: {key}");
    }
    // Without the tag the same suffixes spread over the ring.
    let spread: std::collections::BTreeSet<Id> = (0..40)
        .map(|k| {
            s.oracle()
                .successor(&Id::of_key(format!("user:42:field-{k}").as_bytes()))
        })
        .collect();
    assert!(spread.len() > 3, "seed {seed}: untagged keys spread");

    // A node joining just before the tag's id takes every one of them.
    let newcomer = s.add_node_with_ids(&[Id::of_key(b"user:42")]);
    s.join(newcomer, 0);
    s.run_for(10 * SEC);
    for key in &keys {
        assert!(
            s.holds(newcomer, key.as_bytes()),
            "seed {seed}: {key} moved to the joiner"
        );
        assert_eq!(value(s.get(0, key.as_bytes())), Some(b"v".to_vec()));
    }
}

/// A write that cannot reach W copies fails instead of pretending.
#[test]
fn write_fails_without_a_quorum() {
    let seed = 33;
    let mut s = ring(seed, 10);
    let oracle = s.oracle();
    let key = b"quorum";
    let owner = oracle.successor(&Id::of_key(key));
    for id in oracle.successors(&owner, 2) {
        let i = index_of(&s, id);
        s.kill(i);
    }
    // Right away, before anyone notices: the owner still sends to the two
    // dead replicas, gets one copy (its own) and gives up.
    let at = index_of(&s, owner);
    assert_eq!(
        s.put(at, key, b"v"),
        Err(OpError::QuorumFailed {
            acked: 1,
            needed: 2
        })
    );
}

/// A new node that takes over part of a range has no data yet; reads of
/// those keys ask the replicas, answer correctly, and repair the new
/// owner's copy.
#[test]
fn reads_during_a_handoff_ask_the_replicas() {
    let seed = 34;
    let mut s = ring(seed, 12);
    let keys: Vec<String> = (0..200).map(|k| format!("moved-{k}")).collect();
    put_all(&mut s, &keys, None);
    let newcomer = s.add_node(1);
    s.join(newcomer, 0);
    s.run_until_true(Duration::from_millis(50), 10 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .expect("converges");
    let oracle = s.oracle();
    let me = s.node(newcomer).primary().me().id;
    let taken: Vec<&String> = keys
        .iter()
        .filter(|k| oracle.successor(&Id::of_key(k.as_bytes())) == me)
        .collect();
    assert!(
        !taken.is_empty(),
        "seed {seed}: the newcomer took over no key; pick another seed"
    );
    for key in &taken {
        assert_eq!(
            value(s.get(3, key.as_bytes())),
            Some(key.as_bytes().to_vec()),
            "seed {seed}: {key}"
        );
        let id = Id::of_key(key.as_bytes());
        assert!(
            s.store(newcomer)
                .get(&id, key.as_bytes())
                .unwrap()
                .is_some(),
            "seed {seed}: {key} not repaired"
        );
    }
}

/// A deleted key stays deleted even when a stale replica still holds the
/// old value: the tombstone's version is newer and wins.
#[test]
fn tombstones_are_not_resurrected_by_a_stale_replica() {
    let seed = 35;
    let mut s = ring(seed, 10);
    let key = b"doomed";
    let oracle = s.oracle();
    s.put(0, key, b"old").unwrap();
    s.run_for(SEC);
    let old = {
        let owner = index_of(&s, oracle.successor(&Id::of_key(key)));
        s.store(owner).get(&Id::of_key(key), key).unwrap().unwrap()
    };
    assert!(matches!(s.delete(1, key), Ok(Outcome::Stored { .. })));
    s.run_for(SEC);
    // Make one replica stale, as if it had missed the delete: the store
    // refuses to go back in time, so drop its tombstone first.
    let replica = index_of(
        &s,
        oracle.successors(&oracle.successor(&Id::of_key(key)), 1)[0],
    );
    let stale = Record::new(key.to_vec(), old.version, Some(b"old".to_vec()));
    assert!(
        s.store(replica)
            .apply(std::slice::from_ref(&stale))
            .unwrap()[0]
            .kept()
            .is_some()
    );
    let tomb = s
        .store(replica)
        .get(&Id::of_key(key), key)
        .unwrap()
        .unwrap();
    assert!(tomb.is_tombstone());
    s.store(replica)
        .remove(&[(tomb.key_id, tomb.key.clone(), tomb.version)])
        .unwrap();
    assert_eq!(
        s.store(replica)
            .apply(std::slice::from_ref(&stale))
            .unwrap(),
        vec![chordal_core::Applied::Stored]
    );
    // A newcomer takes over the key with an empty store and asks the
    // replicas: the old owner's tombstone is newer than the stale value.
    let newcomer = s.add_node_with_ids(&[Id::of_key(key)]);
    s.join(newcomer, 0);
    s.run_until_true(Duration::from_millis(50), 10 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .expect("converges");
    assert_eq!(s.oracle().successor(&Id::of_key(key)), Id::of_key(key));
    assert_eq!(
        value(s.get(2, key)),
        None,
        "seed {seed}: deleted key came back"
    );
}

/// Do the current owner and its R-1 successors (the oracle's) all hold
/// every key? Returns the keys that are missing somewhere.
fn misplaced(s: &Sim, keys: &[String]) -> Vec<String> {
    let oracle = s.oracle();
    keys.iter()
        .filter(|key| {
            let owner = oracle.successor(&Id::of_key(key.as_bytes()));
            let mut want = vec![owner];
            want.extend(oracle.successors(&owner, 2));
            let have = s.holders(key.as_bytes());
            !want.iter().all(|id| have.contains(&index_of(s, *id)))
        })
        .cloned()
        .collect()
}

/// Puts every key (value = `value` or the key itself) from nodes in turn.
fn put_all(s: &mut Sim, keys: &[String], value: Option<&[u8]>) {
    let alive = s.alive();
    for (k, key) in keys.iter().enumerate() {
        let v = value.unwrap_or(key.as_bytes()).to_vec();
        s.put(alive[k % alive.len()], key.as_bytes(), &v).unwrap();
    }
}

/// Runs until the ring is right and every key sits on its R nodes.
fn settle(s: &mut Sim, seed: u64, keys: &[String], limit: Duration, what: &str) {
    s.run_until_true(SEC, limit, |s| {
        s.ring_errors(true) == 0 && misplaced(s, keys).is_empty()
    })
    .unwrap_or_else(|| {
        panic!(
            "seed {seed}: {} keys misplaced {what}",
            misplaced(s, keys).len()
        )
    });
}

/// Range sync repairs a replica that lost records (or never got them).
#[test]
fn range_sync_repairs_a_replica_that_missed_writes() {
    let seed = 36;
    let mut s = ring(seed, 10);
    let keys: Vec<String> = (0..300).map(|k| format!("sync-{k}")).collect();
    put_all(&mut s, &keys, Some(b"v"));
    s.run_for(SEC);
    assert!(misplaced(&s, &keys).is_empty());
    // Node 3 loses everything it held (a replaced disk).
    let held: Vec<_> = chordal_store::scan_buckets(
        s.store(3),
        &Id::ZERO,
        &Id::ZERO,
        1,
        &[0],
        None,
        chordal_store::PageLimits {
            records: 100_000,
            bytes: usize::MAX,
        },
    )
    .unwrap();
    assert!(!held.is_empty());
    let doomed: Vec<_> = held
        .iter()
        .map(|r| (r.key_id, r.key.clone(), r.version))
        .collect();
    s.store(3).remove(&doomed).unwrap();
    assert!(!misplaced(&s, &keys).is_empty());
    // A couple of sync rounds later everything is back in place.
    s.run_until_true(SEC, 30 * SEC, |s| misplaced(s, &keys).is_empty())
        .unwrap_or_else(|| {
            panic!(
                "seed {seed}: {} keys still misplaced",
                misplaced(&s, &keys).len()
            )
        });
}

/// A quiet ring syncs with probes: per owner/replica pair and round, one
/// hash of the whole range goes out, not a 64-bucket summary.
/// (The test above shows a probe that disagrees still repairs.)
#[test]
fn quiet_rings_sync_with_probes() {
    let config = SimConfig {
        seed: 41,
        measure_bytes: true,
        ..SimConfig::default()
    };
    let interval = config.node.sync_interval;
    let mut s = ring_with(10, config);
    let keys: Vec<String> = (0..300).map(|k| format!("quiet-{k}")).collect();
    put_all(&mut s, &keys, Some(b"v"));
    s.run_for(3 * interval);
    assert!(misplaced(&s, &keys).is_empty());
    let before = s.traffic.store;
    s.run_for(10 * interval);
    let (messages, bytes) = (
        s.traffic.store.messages - before.messages,
        s.traffic.store.bytes - before.bytes,
    );
    // 10 nodes × 2 replicas × 10 rounds. A round of a pair is a summary,
    // its answer and a tombstone collection: ~330 bytes with probes,
    // ~1,700 with 64-bucket summaries.
    let per_pair_round = bytes as f64 / 200.0;
    assert!(messages >= 2 * 200, "{messages} store messages: no syncs?");
    assert!(
        per_pair_round < 600.0,
        "{per_pair_round:.0} store bytes per pair and round ({messages} messages)"
    );
}

/// A failure two places down an owner's successor list changes that
/// owner's replica set without touching its successor or predecessor: it
/// still re-replicates at once, not at the next periodic round (set far
/// away here).
#[test]
fn new_replica_holders_are_filled_at_once() {
    let mut config = SimConfig {
        seed: 43,
        ..SimConfig::default()
    };
    config.node.sync_interval = Duration::from_secs(600);
    let mut s = ring_with(10, config);
    let keys: Vec<String> = (0..300).map(|k| format!("deep-{k}")).collect();
    put_all(&mut s, &keys, Some(b"v"));
    s.run_for(SEC);
    assert!(misplaced(&s, &keys).is_empty());
    s.kill(4);
    // Failure detection, stabilization and the sync 100 ms after the
    // change; far less than the 10 min period.
    s.run_until_true(SEC, 30 * SEC, |s| {
        s.ring_errors(true) == 0 && misplaced(s, &keys).is_empty()
    })
    .unwrap_or_else(|| panic!("{} keys under R", misplaced(&s, &keys).len()));
}

/// After a join, the new owner gets its keys pushed (handoff) without any
/// read asking for them.
#[test]
fn join_hands_the_range_to_the_new_owner() {
    let seed = 37;
    let mut s = ring(seed, 10);
    let keys: Vec<String> = (0..300).map(|k| format!("handoff-{k}")).collect();
    put_all(&mut s, &keys, Some(b"v"));
    for _ in 0..3 {
        let i = s.add_node(1);
        s.join(i, 0);
    }
    settle(&mut s, seed, &keys, 60 * SEC, "after joins");
}

/// Nodes fail one at a time, with time to repair in between, until half
/// are gone: re-replication keeps R copies, and nothing is lost.
#[test]
fn failures_one_at_a_time_down_to_half_lose_nothing() {
    let seed = 38;
    let mut s = ring(seed, 12);
    let keys: Vec<String> = (0..400).map(|k| format!("survive-{k}")).collect();
    put_all(&mut s, &keys, None);
    for victim in [2, 5, 7, 9, 10, 11] {
        s.kill(victim);
        settle(
            &mut s,
            seed,
            &keys,
            60 * SEC,
            &format!("after killing {victim}"),
        );
    }
    let alive = s.alive();
    assert_eq!(alive.len(), 6);
    for (k, key) in keys.iter().enumerate() {
        assert_eq!(
            value(s.get(alive[k % 6], key.as_bytes())),
            Some(key.as_bytes().to_vec()),
            "seed {seed}: {key}"
        );
    }
}

/// Writers at different nodes put the same key at the same moment: every
/// copy ends up with one and the same version and value.
#[test]
fn concurrent_writers_converge_to_one_value() {
    let seed = 39;
    let mut s = ring(seed, 10);
    let key = b"contended";
    let ops: Vec<_> = (0..10)
        .map(|i| (i, s.start_put(i, key, format!("writer-{i}").as_bytes())))
        .collect();
    s.run_for(5 * SEC);
    for (i, op) in &ops {
        assert!(
            matches!(s.kv_result(*i, *op), Some(Ok(Outcome::Stored { .. }))),
            "seed {seed}: writer {i}"
        );
    }
    s.run_for(10 * SEC); // a sync round
    let id = Id::of_key(key);
    let copies: Vec<_> = s
        .holders(key)
        .iter()
        .map(|i| s.store(*i).get(&id, key).unwrap().unwrap())
        .collect();
    assert!(copies.len() >= 3, "seed {seed}: {} copies", copies.len());
    assert!(
        copies.windows(2).all(|w| w[0] == w[1]),
        "seed {seed}: copies differ: {copies:?}"
    );
    let read = value(s.get(0, key)).unwrap();
    assert_eq!(Some(&read), copies[0].value.as_ref());
}

/// Holders of `key` that are not among its R responsible nodes.
fn extra_holders(s: &Sim, key: &str) -> Vec<usize> {
    let oracle = s.oracle();
    let owner = oracle.successor(&Id::of_key(key.as_bytes()));
    let mut want = vec![index_of(s, owner)];
    want.extend(
        oracle
            .successors(&owner, 2)
            .iter()
            .map(|id| index_of(s, *id)),
    );
    s.holders(key.as_bytes())
        .into_iter()
        .filter(|h| !want.contains(h))
        .collect()
}

/// After joins move ranges, the nodes that are no longer responsible drop
/// their copies: every key ends up on exactly its R nodes again.
#[test]
fn stale_copies_are_dropped_after_ownership_moves() {
    let seed = 40;
    let mut s = ring(seed, 8);
    let keys: Vec<String> = (0..300).map(|k| format!("moving-{k}")).collect();
    put_all(&mut s, &keys, Some(b"v"));
    for _ in 0..4 {
        let i = s.add_node(1);
        s.join(i, 0);
    }
    settle(&mut s, seed, &keys, 60 * SEC, "after the joins");
    let stale = |s: &Sim| {
        keys.iter()
            .filter(|k| !extra_holders(s, k).is_empty())
            .count()
    };
    assert!(
        stale(&s) > 0,
        "seed {seed}: the joins moved no key; pick another seed"
    );
    s.run_until_true(5 * SEC, 180 * SEC, |s| {
        stale(s) == 0 && misplaced(s, &keys).is_empty()
    })
    .unwrap_or_else(|| panic!("seed {seed}: {} keys still have extra copies", stale(&s)));
    for key in &keys {
        assert_eq!(value(s.get(3, key.as_bytes())), Some(b"v".to_vec()));
    }
}

/// Tombstones older than the grace period disappear from every copy once
/// all replicas have them; the key stays deleted.
#[test]
fn tombstones_are_collected_after_the_grace_period() {
    let seed = 41;
    let mut config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    config.node.tombstone_grace = 20 * SEC;
    let mut s = Sim::new(config);
    let first = s.add_node(1);
    s.create(first);
    for _ in 1..8 {
        let i = s.add_node(1);
        s.join(i, first);
        s.run_for(Duration::from_millis(50));
    }
    s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .expect("ring");
    s.run_for(10 * SEC);
    let keys: Vec<String> = (0..100).map(|k| format!("gone-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        s.put(k % 8, key.as_bytes(), b"v").unwrap();
        assert!(matches!(
            s.delete((k + 1) % 8, key.as_bytes()),
            Ok(Outcome::Stored { .. })
        ));
    }
    s.run_for(5 * SEC);
    let tombstones = |s: &Sim| {
        keys.iter()
            .map(|k| s.holders(k.as_bytes()).len())
            .sum::<usize>()
    };
    assert!(
        tombstones(&s) >= 300,
        "seed {seed}: tombstones should be on every replica first"
    );
    // Not before the grace period...
    s.run_for(10 * SEC);
    assert!(
        tombstones(&s) > 0,
        "seed {seed}: collected before the grace period"
    );
    // ...but soon after it.
    s.run_until_true(5 * SEC, 120 * SEC, |s| tombstones(s) == 0)
        .unwrap_or_else(|| {
            let left: Vec<(usize, Vec<usize>, Vec<usize>)> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| !s.holders(k.as_bytes()).is_empty())
                .take(5)
                .map(|(i, k)| (i, s.holders(k.as_bytes()), extra_holders(&s, k)))
                .collect();
            panic!("seed {seed}: {} tombstones left: {left:?}", tombstones(&s))
        });
    for key in &keys {
        assert_eq!(value(s.get(2, key.as_bytes())), None);
    }
}

/// A graceful leave hands the leaving node's whole range to its successor
/// (shown with R = 1: no replica would have it otherwise).
#[test]
fn graceful_leave_hands_over_everything() {
    let seed = 42;
    let mut config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    config.node.replicas = 1;
    let mut s = Sim::new(config);
    let first = s.add_node(1);
    s.create(first);
    for _ in 1..8 {
        let i = s.add_node(1);
        s.join(i, first);
        s.run_for(Duration::from_millis(50));
    }
    s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .expect("ring");
    let keys: Vec<String> = (0..200).map(|k| format!("leaving-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        assert!(matches!(
            s.put(k % 8, key.as_bytes(), key.as_bytes()),
            Ok(Outcome::Stored { acked: 1, .. })
        ));
    }
    // The node holding the most keys leaves (not the first, the seed).
    let held = |s: &Sim, i: usize| {
        keys.iter()
            .filter(|k| s.holders(k.as_bytes()) == vec![i])
            .count()
    };
    let leaving = (1..8).max_by_key(|i| held(&s, *i)).unwrap();
    assert!(
        held(&s, leaving) > 0,
        "seed {seed}: no node held a key alone"
    );
    s.leave(leaving);
    s.run_for(2 * SEC);
    for key in &keys {
        assert_eq!(
            value(s.get(0, key.as_bytes())),
            Some(key.as_bytes().to_vec()),
            "seed {seed}: {key}"
        );
    }
}

/// Half the nodes crash; keys are overwritten and deleted meanwhile; the
/// crashed nodes come back with their stale stores. Nobody may serve what
/// they missed: the nodes that held their ranges hand them the news.
#[test]
fn restarted_nodes_with_stale_data_serve_the_newest_values() {
    let seed = 43;
    let mut s = ring(seed, 12);
    let keys: Vec<String> = (0..300).map(|k| format!("stale-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        s.put(k % 12, key.as_bytes(), b"old").unwrap();
    }
    s.run_for(2 * SEC);
    // One at a time, with time to re-replicate (more than R - 1 at once
    // could lose keys: that is not what this test is about).
    let down: Vec<usize> = (1..12).step_by(2).collect();
    for &i in &down {
        s.kill(i);
        settle(&mut s, seed, &keys, 60 * SEC, "after a crash");
    }
    let mut expect: Vec<Option<Vec<u8>>> = vec![Some(b"old".to_vec()); keys.len()];
    for (k, key) in keys.iter().enumerate() {
        if k % 3 == 0 {
            s.put(0, key.as_bytes(), b"new").unwrap();
            expect[k] = Some(b"new".to_vec());
        } else if k % 3 == 1 {
            assert!(matches!(
                s.delete(2, key.as_bytes()),
                Ok(Outcome::Stored { .. })
            ));
            expect[k] = None;
        }
    }
    s.run_for(2 * SEC);
    for &i in &down {
        s.restart(i, 0);
    }
    s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
        s.ring_errors(true) == 0
    })
    .expect("rejoin");
    for (k, key) in keys.iter().enumerate() {
        assert_eq!(
            value(s.get(k % 12, key.as_bytes())),
            expect[k],
            "seed {seed}: {key}"
        );
    }
}

/// A ring built converged (as the experiments build theirs) runs range
/// sync like a joined one: after crashes, every key is back on its owner
/// and the R - 1 nodes after it.
#[test]
fn converged_ring_restores_replicas_after_crashes() {
    let mut s = Sim::new(SimConfig {
        seed: 3,
        latency: chordal_sim::Latency::wide_area(),
        ..SimConfig::default()
    });
    let nodes = s.build_converged(40, 1);
    let keys: Vec<String> = (0..150).map(|k| format!("k{k}")).collect();
    for k in &keys {
        s.put(nodes[0], k.as_bytes(), b"v").expect("put");
    }
    for i in [3, 17, 30] {
        s.kill(nodes[i]);
    }
    s.run_for(60 * SEC);
    let oracle = s.oracle();
    for k in &keys {
        let owner = oracle.successor(&Id::of_key(k.as_bytes()));
        let mut want: Vec<usize> = std::iter::once(owner)
            .chain(oracle.successors(&owner, 2))
            .map(|id| index_of(&s, id))
            .collect();
        want.sort();
        let mut have = s.holders(k.as_bytes());
        have.sort();
        assert_eq!(have, want, "{k}");
    }
}

/// A graceful leave with ~60 MB to hand over on a lossy network (R = 1:
/// the leaving node holds its keys alone): pages get lost, the transfer
/// resumes from the last acknowledged one, and the node says goodbye
/// only once its successor stored everything.
#[test]
fn graceful_leave_hands_over_bulk_data_despite_loss() {
    let seed = 44;
    let mut config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    config.node.replicas = 1;
    let mut s = ring_with(4, config);
    let value = vec![7u8; 20_000];
    let keys: Vec<String> = (0..3000).map(|k| format!("bulk-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        assert!(matches!(
            s.put(k % 4, key.as_bytes(), &value),
            Ok(Outcome::Stored { acked: 1, .. })
        ));
    }
    let held = |s: &Sim, i: usize| {
        keys.iter()
            .filter(|k| s.holders(k.as_bytes()) == vec![i])
            .count()
    };
    let leaving = (1..4).max_by_key(|i| held(&s, *i)).unwrap();
    let alone = held(&s, leaving);
    assert!(
        alone > 500,
        "seed {seed}: the leaving node holds {alone} keys"
    );
    s.set_loss(0.05);
    s.leave(leaving);
    s.run_until_true(Duration::from_millis(100), 120 * SEC, |s| {
        !s.is_alive(leaving)
    })
    .expect("the leave finished");
    let report = s.node(leaving).left().expect("left");
    assert_eq!(report.ranges_not_handed_over, 0, "{report:?}");
    assert!(report.records >= alone as u64, "{report:?} < {alone}");
    // The loss really hit pages (they were sent again).
    assert!(s.node(leaving).counters().transfer_failures > 0);
    s.set_loss(0.0);
    s.run_for(2 * SEC);
    for key in &keys {
        assert_eq!(
            value_of(&mut s, key),
            Some(value.clone()),
            "seed {seed}: {key}"
        );
    }
}

fn value_of(s: &mut Sim, key: &str) -> Option<Vec<u8>> {
    value(s.get(0, key.as_bytes()))
}

/// The case: 4 nodes, R = 3, nodes crash one at a time a minute
/// apart until one is left. Every key stays readable after each crash,
/// and the last node standing keeps every record (it must not sweep its
/// copies away as "someone else's" once its neighbours are gone).
#[test]
fn crashes_down_to_the_last_node_keep_every_record() {
    let seed = 45;
    let mut s = ring(seed, 4);
    let keys: Vec<String> = (0..400).map(|k| format!("last-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        assert!(matches!(
            s.put(k % 4, key.as_bytes(), key.as_bytes()),
            Ok(Outcome::Stored { .. })
        ));
    }
    s.run_for(10 * SEC);
    for victim in [1, 2, 3] {
        s.kill(victim);
        s.run_for(60 * SEC);
        for key in &keys {
            assert_eq!(
                value(s.get(0, key.as_bytes())),
                Some(key.as_bytes().to_vec()),
                "seed {seed}: {key} after node {victim} crashed"
            );
        }
    }
    assert_eq!(s.store(0).count().unwrap(), keys.len() as u64);
}

/// The write quorum counts against R, not against the copies that can be
/// placed right now: an owner whose successor list cannot offer W - 1
/// other processes refuses the write (nothing stored), unless the ring
/// really is that small.
#[test]
fn write_quorum_is_counted_against_r() {
    // R = 5 (W = 3) but successor lists of one: two copies placeable in a
    // ten-node ring.
    let mut config = SimConfig {
        seed: 46,
        ..SimConfig::default()
    };
    config.node.replicas = 5;
    config.node.successors = 1;
    let mut s = ring_with(10, config);
    assert_eq!(
        s.put(0, b"k", b"v"),
        Err(OpError::QuorumUnavailable {
            available: 2,
            needed: 3
        })
    );
    assert!(s.holders(b"k").is_empty(), "nothing may be stored");
    assert_eq!(value(s.get(0, b"k")), None);

    // A ring of two processes really has only two: writes take both.
    let mut config = SimConfig {
        seed: 47,
        ..SimConfig::default()
    };
    config.node.replicas = 5;
    let mut s = ring_with(2, config);
    assert!(matches!(
        s.put(0, b"k", b"v"),
        Ok(Outcome::Stored { acked: 2, .. })
    ));
    // And one alone takes one.
    let mut config = SimConfig {
        seed: 48,
        ..SimConfig::default()
    };
    config.node.replicas = 3;
    let mut s = ring_with(1, config);
    assert!(matches!(
        s.put(0, b"k", b"v"),
        Ok(Outcome::Stored { acked: 1, .. })
    ));
}

/// An owner with too much in flight answers `Overloaded` instead of
/// dropping requests: coordinators back off and try again, nobody waits
/// for a silent owner until the deadline — an operation refused until its
/// deadline ends `Overloaded` (nothing done, safe to retry), not `Timeout`
/// (unknown) — and what was acknowledged is stored. Over several seeds:
/// how many are refused depends on the schedule. Oversize values are
/// refused at the edge.
#[test]
fn overload_is_answered_and_backed_off_from() {
    let (mut stored, mut refused, mut shed) = (0, 0, 0u64);
    for seed in 40..50 {
        let mut config = SimConfig {
            seed,
            ..SimConfig::default()
        };
        config.node.max_kv_ops = 12;
        let mut s = ring_with(6, config);
        let mut started = Vec::new();
        for i in 0..6 {
            for k in 0..10 {
                let key = format!("busy-{k}");
                started.push((i, key.clone(), s.start_put(i, key.as_bytes(), b"v")));
            }
        }
        s.run_for(20 * SEC);
        for (i, key, op) in &started {
            match s.kv_result(*i, *op) {
                Some(Ok(Outcome::Stored { .. })) => {
                    stored += 1;
                    assert_eq!(value(s.get(0, key.as_bytes())), Some(b"v".to_vec()));
                }
                Some(Err(OpError::Overloaded)) => refused += 1,
                other => panic!("seed {seed}: put {key} at {i}: {other:?}"),
            }
        }
        shed += (0..6)
            .map(|i| {
                s.node(i)
                    .counters()
                    .errors
                    .get("kv_overloaded")
                    .copied()
                    .unwrap_or(0)
            })
            .sum::<u64>();
    }
    assert!(
        stored > 0 && refused > 0,
        "{stored} stored, {refused} refused"
    );
    assert!(shed > 0, "nobody was overloaded: the test does not test");
    let mut s = ring_with(
        2,
        SimConfig {
            seed: 49,
            ..SimConfig::default()
        },
    );
    let big = vec![0u8; 1024 * 1024 + 1];
    assert_eq!(
        s.put(0, b"big", &big),
        Err(OpError::TooLarge {
            size: big.len() as u64,
            limit: 1024 * 1024
        })
    );
}

/// A coordinator that did not hear the owner's answer sends the same
/// operation again: the owner answers what it answered the first time (a
/// retried delete that happened says `Stored`, not `NotFound`), and it
/// keeps within the time the coordinator said it waits.
#[test]
fn a_retried_operation_gets_the_first_answer() {
    use chordal_core::{Envelope, Message, NodeRef, OpResult, Operation};
    let mut s = ring(50, 3);
    assert!(matches!(
        s.put(0, b"doomed", b"v"),
        Ok(Outcome::Stored { .. })
    ));
    let owner_id = s.oracle().successor(&Id::of_key(b"doomed"));
    let owner = index_of(&s, owner_id);
    let me = NodeRef::new(Id::from_u64(7), "10.9.9.9:7000".parse().unwrap());
    s.keep_outside(true);
    let delete = |req| Envelope {
        from: me,
        to: NodeRef::new(owner_id, s.node(owner).addr()).into(),
        msg: Message::Request {
            req,
            op: Operation::Delete {
                key: b"doomed".to_vec(),
                opts: chordal_core::WriteOptions::default(),
            },
            op_id: 99,
            timeout_ms: 1500,
            retry: false,
        },
    };
    let (first, again) = (delete(1), delete(2));
    s.inject(owner, first);
    s.run_for(SEC);
    s.inject(owner, again);
    s.run_for(SEC);
    let answers: Vec<(u64, OpResult)> = s
        .outside
        .iter()
        .filter_map(|e| match &e.msg {
            Message::Reply { req, result, .. } => Some((*req, result.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (req, result) in &answers {
        assert!(
            matches!(result, OpResult::Stored { .. }),
            "try {req}: {result:?}"
        );
    }
    // A different operation on the deleted key does find nothing.
    assert_eq!(value(s.get(0, b"doomed")), None);
}

/// A leave whose successor never acknowledges (it is cut off) ends at the
/// drain timeout and says what was not handed over.
#[test]
fn a_leave_that_cannot_drain_stops_at_the_timeout_and_says_so() {
    let mut config = SimConfig {
        seed: 51,
        ..SimConfig::default()
    };
    config.node.replicas = 1;
    config.node.leave_drain = 5 * SEC;
    let mut s = ring_with(4, config);
    for k in 0..200 {
        let key = format!("stuck-{k}");
        s.put(k % 4, key.as_bytes(), b"v").unwrap();
    }
    let leaving = 2;
    s.partition(|i| u32::from(i == leaving));
    let start = s.now();
    s.leave(leaving);
    s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
        !s.is_alive(leaving)
    })
    .expect("the leave ended");
    let took = s.now() - start;
    assert!(took >= 5 * SEC && took < 7 * SEC, "took {took:?}");
    let report = s.node(leaving).left().expect("left");
    assert_eq!(report.ranges_not_handed_over, 1, "{report:?}");
    assert_eq!(report.records, 0, "{report:?}");
}

/// Values with an expiry: replication and the re-replication after a
/// crash carry the expiry to every copy; once it passes the value reads as
/// missing from every node, and after the grace period every copy is
/// collected like a tombstone.
#[test]
fn expiring_values_keep_their_expiry_on_every_copy_and_are_collected() {
    let seed = 44;
    let mut config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    config.node.tombstone_grace = 20 * SEC;
    let mut s = ring_with(8, config);
    let expires = s.clock_now(0) + 40 * SEC;
    let keys: Vec<String> = (0..60).map(|k| format!("brief-{k}")).collect();
    for (k, key) in keys.iter().enumerate() {
        let op = chordal_core::Operation::Put {
            key: key.clone().into_bytes(),
            value: b"v".to_vec(),
            opts: chordal_core::WriteOptions {
                expires: Some(expires),
                ..chordal_core::WriteOptions::default()
            },
        };
        assert!(matches!(s.store_op(k % 8, op), Ok(Outcome::Stored { .. })));
    }
    // Crash a holder of the first key: its replicas are made again.
    let victim = s.holders(keys[0].as_bytes())[0];
    s.kill(victim);
    s.run_for(15 * SEC);
    let copies = |s: &Sim, key: &str| -> Vec<Record> {
        (0..s.len())
            .filter(|i| *i != victim)
            .filter_map(|i| {
                s.store(i)
                    .get(&Id::of_key(key.as_bytes()), key.as_bytes())
                    .unwrap()
            })
            .collect()
    };
    for key in &keys {
        let held = copies(&s, key);
        assert!(
            held.len() >= 3,
            "seed {seed}: {key} on {} copies",
            held.len()
        );
        assert!(
            held.iter().all(|r| r.expires == Some(expires)),
            "seed {seed}: a copy of {key} lost its expiry: {held:?}"
        );
    }
    let reader = (victim + 1) % 8;
    assert_eq!(
        value(s.get(reader, keys[0].as_bytes())),
        Some(b"v".to_vec())
    );
    // Past the expiry: missing everywhere, though still stored...
    s.run_for(30 * SEC);
    for key in &keys {
        assert_eq!(
            value(s.get(reader, key.as_bytes())),
            None,
            "{key} after expiry"
        );
    }
    // ...until the grace period has passed: then collected.
    let left = |s: &Sim| keys.iter().map(|k| copies(s, k).len()).sum::<usize>();
    s.run_until_true(5 * SEC, 120 * SEC, |s| left(s) == 0)
        .unwrap_or_else(|| panic!("seed {seed}: {} expired copies left", left(&s)));
}
