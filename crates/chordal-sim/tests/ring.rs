//! The in-memory ring: hundreds of real cores over a simulated network,
//! checked against the oracle (the sorted list of live ids).
//!
//! Every test is deterministic; its seed is in every assertion message.

use chordal_core::{Event, Id, LookupMode};
use chordal_sim::{Sim, SimConfig};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn sim(seed: u64) -> Sim {
    Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    })
}

/// Builds a ring of `n` nodes, joining one at a time through random members.
fn ring_one_by_one(seed: u64, n: usize, vnodes: usize) -> Sim {
    let mut s = sim(seed);
    let first = s.add_node(vnodes);
    s.create(first);
    s.run_for(SEC);
    for k in 1..n {
        let i = s.add_node(vnodes);
        let seed_node = (s.random_id().high_u64() % k as u64) as usize;
        s.join(i, seed_node);
        s.run_for(Duration::from_millis(50));
    }
    s
}

fn wait_converged(s: &mut Sim, seed: u64, limit: Duration) -> Duration {
    s.run_until_true(Duration::from_millis(100), limit, |s| {
        s.ring_errors(true) == 0
    })
    .unwrap_or_else(|| {
        panic!(
            "seed {seed}: ring did not converge within {limit:?}: {} nodes wrong\n{}",
            s.ring_errors(true),
            s.describe_errors(10)
        )
    })
}

/// Looks up `keys` random keys from every live node (both modes) and checks
/// each answer against the oracle. Returns the mean hop count of recursive
/// lookups.
fn check_lookups(s: &mut Sim, seed: u64, keys_per_node: usize) -> f64 {
    let oracle = s.oracle();
    let mut hops = 0u64;
    let mut count = 0u64;
    for i in s.alive() {
        for _ in 0..keys_per_node {
            let key = s.random_id();
            let truth = oracle.successor(&key);
            for mode in [LookupMode::Recursive, LookupMode::Iterative] {
                let r = s.lookup(i, key, mode).unwrap_or_else(|e| {
                    panic!("seed {seed}: lookup {key} from node {i} ({mode:?}) failed: {e}")
                });
                assert_eq!(
                    r.owner.id, truth,
                    "seed {seed}: lookup {key} from node {i} ({mode:?})"
                );
                if mode == LookupMode::Recursive {
                    hops += r.hops as u64;
                    count += 1;
                }
            }
        }
    }
    hops as f64 / count as f64
}

#[test]
fn single_node_owns_everything() {
    let mut s = sim(1);
    let a = s.add_node(1);
    s.create(a);
    s.run_for(3 * SEC);
    let key = Id::from_u64(42);
    let r = s.lookup(a, key, LookupMode::Recursive).unwrap();
    assert_eq!(r.owner, s.node(a).primary().me());
    assert_eq!(r.hops, 0);
    assert_eq!(s.ring_errors(true), 0);
}

/// The last survivor of a ring owns every key again and takes writes
/// (the order in which a real node notices the deaths is pinned down by
/// the vnode's own tests; here the whole protocol runs, over 20 seeds).
#[test]
fn the_last_survivor_owns_everything() {
    for seed in 0..20 {
        let mut s = ring_one_by_one(seed, 3, 1);
        wait_converged(&mut s, seed, 10 * SEC);
        s.kill(1);
        s.kill(2);
        let alone = s.run_until_true(Duration::from_millis(100), 60 * SEC, |s| {
            let me = s.node(0).primary().me();
            s.node(0)
                .primary()
                .table()
                .successors()
                .iter()
                .all(|n| *n == me)
        });
        assert!(
            alone.is_some(),
            "seed {seed}: the survivor never saw it was alone"
        );
        s.run_for(SEC);
        let me = s.node(0).primary().me();
        let range = s
            .node(0)
            .primary()
            .range()
            .expect("a joined node has a range");
        assert_eq!(
            (range.start, range.end),
            (me.id, me.id),
            "seed {seed}: the survivor kept a part of the ring"
        );
        let key = Id::from_u64(seed);
        assert!(
            s.put(0, b"after", b"v").is_ok(),
            "seed {seed}: a write was refused"
        );
        let r = s.lookup(0, key, LookupMode::Recursive).unwrap();
        assert_eq!(r.owner, me, "seed {seed}");
    }
}

#[test]
fn two_nodes_find_each_other() {
    let mut s = sim(2);
    let a = s.add_node(1);
    s.create(a);
    let b = s.add_node(1);
    s.join(b, a);
    wait_converged(&mut s, 2, 5 * SEC);
    check_lookups(&mut s, 2, 20);
}

/// Joins one by one (Stoica et al. §4.4): successors and predecessors
/// converge to the truth, fingers become exact, every lookup from every node
/// agrees with the oracle, and hops stay near ½·log2 N (§6.3, Fig. 10).
#[test]
fn ring_of_200_joined_one_by_one_converges() {
    let seed = 11;
    let n = 200;
    let mut s = ring_one_by_one(seed, n, 1);
    wait_converged(&mut s, seed, 60 * SEC);
    // Fingers: a few fix_fingers cycles after convergence.
    s.run_until_true(SEC, 120 * SEC, |s| s.finger_errors() == 0)
        .unwrap_or_else(|| {
            panic!(
                "seed {seed}: {} finger slots still wrong",
                s.finger_errors()
            )
        });
    let mean_hops = check_lookups(&mut s, seed, 3);
    let bound = 0.5 * (n as f64).log2() + 1.0;
    assert!(
        mean_hops <= bound,
        "seed {seed}: mean hops {mean_hops:.2} > {bound:.2}"
    );
    assert!(
        mean_hops >= 1.0,
        "seed {seed}: mean hops {mean_hops:.2} suspiciously low"
    );
}

/// Many nodes join at the same moment through the same seed.
#[test]
fn ring_of_200_joined_all_at_once_converges() {
    let seed = 12;
    let mut s = sim(seed);
    let first = s.add_node(1);
    s.create(first);
    s.run_for(SEC);
    for _ in 1..200 {
        let i = s.add_node(1);
        s.join(i, first);
    }
    let took = wait_converged(&mut s, seed, 120 * SEC);
    eprintln!("seed {seed}: 199 simultaneous joins converged in {took:?} (virtual)");
    check_lookups(&mut s, seed, 2);
}

/// Random failures plus `r - 1` consecutive ones: the successor lists let the
/// ring heal (§5.2, Theorem 7), and lookups route around the dead.
#[test]
fn ring_heals_after_failures_including_r_minus_1_consecutive() {
    let seed = 13;
    let mut s = ring_one_by_one(seed, 200, 1);
    wait_converged(&mut s, seed, 60 * SEC);
    s.run_for(20 * SEC); // let fingers fill in, so that they point at the dead too
    let oracle = s.oracle();
    let r = SimConfig::default().node.successors;
    // r - 1 consecutive nodes starting at some node.
    let start = oracle.ids()[37];
    let mut doomed: Vec<Id> = vec![start];
    doomed.extend(oracle.successors(&start, r - 2));
    assert_eq!(doomed.len(), r - 1);
    let index_of = |s: &Sim, id: Id| {
        (0..s.len())
            .find(|i| s.node(*i).primary().me().id == id)
            .unwrap()
    };
    let mut killed: Vec<usize> = doomed.iter().map(|id| index_of(&s, *id)).collect();
    // And 10% more at random.
    while killed.len() < r - 1 + 20 {
        let i = (s.random_id().high_u64() % s.len() as u64) as usize;
        if !killed.contains(&i) {
            killed.push(i);
        }
    }
    for i in &killed {
        s.kill(*i);
    }
    let took = wait_converged(&mut s, seed, 60 * SEC);
    eprintln!(
        "seed {seed}: healed from {} failures in {took:?} (virtual)",
        killed.len()
    );
    check_lookups(&mut s, seed, 2);
}

/// Lookups issued right after a mass failure still succeed: a dead next hop
/// is dropped and the next best candidate tried, and the last hop reaches
/// the owner itself, so every answer names the live owner.
#[test]
fn lookups_route_around_fresh_failures() {
    let seed = 14;
    let mut s = ring_one_by_one(seed, 100, 1);
    wait_converged(&mut s, seed, 60 * SEC);
    s.run_for(30 * SEC);
    let mut killed = 0;
    for i in 0..s.len() {
        if i % 5 == 1 {
            s.kill(i);
            killed += 1;
        }
    }
    assert_eq!(killed, 20);
    // No time to stabilize: lookups start now.
    let oracle = s.oracle();
    let (mut answered, mut total) = (0, 0);
    for i in s.alive().into_iter().take(30) {
        let key = s.random_id();
        for mode in [LookupMode::Recursive, LookupMode::Iterative] {
            total += 1;
            // A lookup may run out of its 5 s behind several dead hops
            // (1 s each); one that answers names the live owner.
            if let Ok(r) = s.lookup(i, key, mode) {
                assert_eq!(
                    r.owner.id,
                    oracle.successor(&key),
                    "seed {seed}: {mode:?} lookup from {i} named a dead or wrong owner"
                );
                answered += 1;
            }
        }
    }
    assert!(
        answered * 10 >= total * 9,
        "seed {seed}: only {answered}/{total} lookups answered right after 20% failures"
    );
}

/// A graceful leave tells both neighbours at once: no timeout is needed.
#[test]
fn graceful_leave_updates_neighbours_immediately() {
    let seed = 15;
    let mut s = ring_one_by_one(seed, 30, 1);
    wait_converged(&mut s, seed, 30 * SEC);
    let leaving = 7;
    s.leave(leaving);
    // One message latency later (max 5 ms), well before any stabilize round
    // or request timeout could have repaired anything.
    s.run_for(Duration::from_millis(10));
    assert_eq!(
        s.ring_errors(true),
        0,
        "seed {seed}: neighbours did not learn of the leave at once"
    );
    check_lookups(&mut s, seed, 2);
}

/// A join is visible quickly: the new node's successor accepts it as
/// predecessor, and the old predecessor learns of it through the hint.
#[test]
fn join_heals_within_a_second() {
    let seed = 16;
    let mut s = ring_one_by_one(seed, 64, 1);
    wait_converged(&mut s, seed, 30 * SEC);
    let newcomer = s.add_node(1);
    s.join(newcomer, 0);
    let took = s
        .run_until_true(Duration::from_millis(10), 5 * SEC, |s| {
            s.ring_errors(true) == 0
        })
        .expect("converges");
    assert!(
        took <= SEC,
        "seed {seed}: join took {took:?} of virtual time to settle"
    );
}

/// Events tell the application about its position: joined, neighbours and
/// key range.
#[test]
fn events_report_join_and_range_changes() {
    let seed = 17;
    let mut s = sim(seed);
    s.record_events(true);
    let a = s.add_node_with_ids(&[Id::from_u64(100)]);
    s.create(a);
    let b = s.add_node_with_ids(&[Id::from_u64(200)]);
    s.join(b, a);
    wait_converged(&mut s, seed, 5 * SEC);
    let of = |s: &Sim, i: usize| -> Vec<Event> {
        s.events
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, e)| e.clone())
            .collect()
    };
    let b_events = of(&s, b);
    assert!(b_events.iter().any(
        |e| matches!(e, Event::Joined { successor, .. } if successor.id == Id::from_u64(100))
    ));
    // b owns (100, 200] once a is its predecessor.
    assert!(b_events.iter().any(|e| matches!(e,
        Event::RangeChanged { new, .. } if new.start == Id::from_u64(100) && new.end == Id::from_u64(200))));
    // a first owned the whole ring, then (200, 100].
    let a_events = of(&s, a);
    assert!(a_events.iter().any(|e| matches!(e,
        Event::RangeChanged { old: Some(old), new, .. }
            if old.start == old.end && new.start == Id::from_u64(200) && new.end == Id::from_u64(100))));
}

/// Virtual nodes: each process hosts several ids; the ring of all of them
/// converges and lookups stay exact.
#[test]
fn virtual_nodes_form_one_ring() {
    let seed = 18;
    let mut s = ring_one_by_one(seed, 40, 4);
    wait_converged(&mut s, seed, 60 * SEC);
    assert_eq!(s.oracle().len(), 160);
    check_lookups(&mut s, seed, 2);
}

/// Loss: with 5% of messages dropped the ring still converges (timeouts
/// and retries), and lookups still agree with the oracle.
#[test]
fn converges_under_message_loss() {
    let seed = 19;
    let mut s = Sim::new(SimConfig {
        seed,
        loss: 0.05,
        ..SimConfig::default()
    });
    let first = s.add_node(1);
    s.create(first);
    for _ in 1..50 {
        let i = s.add_node(1);
        s.join(i, first);
        s.run_for(Duration::from_millis(100));
    }
    // Under loss, a healthy node can be mistaken for dead for a moment; what
    // matters is that the ring gets back to the truth.
    s.run_until_true(Duration::from_millis(500), 120 * SEC, |s| {
        s.ring_errors(false) == 0
    })
    .unwrap_or_else(|| {
        panic!(
            "seed {seed}: {} successors wrong under loss\n{}",
            s.ring_errors(false),
            s.describe_errors(100)
        )
    });
}

/// Joining through a list of seeds skips dead ones.
#[test]
fn join_tries_seeds_in_turn() {
    let seed = 20;
    let mut s = ring_one_by_one(seed, 5, 1);
    wait_converged(&mut s, seed, 10 * SEC);
    s.kill(1);
    s.kill(2);
    let i = s.add_node(1);
    s.join_via(i, &[1, 2, 3]);
    wait_converged(&mut s, seed, 30 * SEC);
    assert!(s.node(i).is_joined());
}

/// A partition splits the ring in two; each side heals into a ring of its
/// own. When the network heals, the merge probes (each node asks a peer it
/// dropped for the successor of its own id) zip the two rings back into
/// one: interleaved halves (every other node) and contiguous arcs alike.
#[test]
fn rings_split_by_a_partition_merge_when_it_heals() {
    for (seed, interleaved) in [(8, true), (9, false)] {
        let mut s = ring_one_by_one(seed, 40, 1);
        wait_converged(&mut s, seed, 60 * SEC);
        let side = |s: &Sim, i: usize| -> u32 {
            if interleaved {
                (i % 2) as u32
            } else {
                (s.node(i).primary().me().id < Id::pow2(159)) as u32
            }
        };
        let sides: Vec<u32> = (0..s.len()).map(|i| side(&s, i)).collect();
        s.partition(|i| sides[i]);
        s.run_for(30 * SEC);
        // Each side is a ring of its own now.
        for i in s.alive() {
            let succ = s.node(i).primary().table().successor();
            let j = (0..s.len())
                .find(|j| s.node(*j).primary().me() == succ)
                .unwrap();
            assert_eq!(sides[i], sides[j], "seed {seed}: node {i} points across");
        }
        s.heal_partition();
        let took = wait_converged(&mut s, seed, 60 * SEC);
        assert!(took <= 30 * SEC, "seed {seed}: merged only after {took:?}");
        s.run_for(10 * SEC);
        check_lookups(&mut s, seed, 2);
    }
}
