//! The paper experiments: deterministic, and right against independent
//! oracles on small rings.

use chordal_core::{ID_BITS, Id, LookupMode};
use chordal_sim::experiments::{
    BalanceConfig, ChurnConfig, ChurnRow, KvChurnConfig, PathlenConfig, balance, churn, kv_churn,
    pathlen,
};
use chordal_sim::{Latency, Sim, SimConfig};
use std::time::Duration;

fn small_pathlen(seed: u64) -> Vec<chordal_sim::experiments::PathlenRow> {
    pathlen(
        &PathlenConfig {
            min_exp: 3,
            max_exp: 7,
            lookups: 300,
            seed,
        },
        |_, _| {},
    )
}

#[test]
fn same_seed_same_results_other_seed_other_results() {
    let a = small_pathlen(5);
    assert_eq!(a, small_pathlen(5));
    assert_ne!(a, small_pathlen(6));
    let cfg = |seed| BalanceConfig {
        nodes: 200,
        keys: vec![20_000],
        vnodes: vec![1, 4],
        seed,
    };
    assert_eq!(balance(&cfg(5), |_, _| {}), balance(&cfg(5), |_, _| {}));
    assert_ne!(balance(&cfg(5), |_, _| {}), balance(&cfg(6), |_, _| {}));
    // Every lookup named the true owner.
    assert!(a.iter().all(|r| r.wrong == 0));
}

/// Chord routing computed independently from the sorted ids: an origin
/// that owns the key answers at once; otherwise the next hop is the known
/// node (fingers, the next `r` nodes and the predecessor) closest before
/// the key, and a lookup ends at the node whose successor owns the key.
fn oracle_hops(sorted: &[Id], from: Id, key: Id, r: usize) -> u32 {
    let n = sorted.len();
    let succ_of = |x: &Id| sorted[sorted.partition_point(|id| id < x) % n];
    let index = |x: &Id| sorted.partition_point(|id| id < x);
    if key.in_open_closed(&sorted[(index(&from) + n - 1) % n], &from) {
        return 0;
    }
    let mut cur = from;
    let mut hops = 0;
    loop {
        let i = index(&cur);
        let next = sorted[(i + 1) % n];
        if key.in_open_closed(&cur, &next) {
            return hops;
        }
        let mut known: Vec<Id> = (0..ID_BITS).map(|k| succ_of(&cur.add_pow2(k))).collect();
        known.extend((1..=r.min(n - 1)).map(|k| sorted[(i + k) % n]));
        known.push(sorted[(i + n - 1) % n]);
        let best = known
            .into_iter()
            .filter(|x| x.in_open(&cur, &key))
            .max_by_key(|x| cur.distance(x))
            .expect("a node before the key");
        cur = best;
        hops += 1;
    }
}

#[test]
fn converged_ring_hop_counts_match_an_independent_oracle() {
    let mut node = chordal_core::Config::default().frozen();
    node.routing = chordal_core::Routing::Chord;
    // Routing alone, as in the paper: no terms to prepare and renew.
    node.authority = false;
    let mut s = Sim::new(SimConfig {
        seed: 77,
        latency: Latency::Constant(Duration::from_millis(1)),
        node,
        ..SimConfig::default()
    });
    let nodes = s.build_converged(96, 1);
    let oracle = s.oracle();
    let sorted = oracle.ids().to_vec();
    for k in 0..400 {
        let from = nodes[k % nodes.len()];
        let key = s.random_id();
        let me = s.node(from).primary().me().id;
        for mode in [LookupMode::Recursive, LookupMode::Iterative] {
            let r = s.lookup(from, key, mode).unwrap();
            assert_eq!(r.owner.id, oracle.successor(&key));
            assert_eq!(
                r.hops,
                oracle_hops(&sorted, me, key, 8),
                "lookup {k} ({mode:?})"
            );
        }
    }
}

#[test]
fn one_hop_lookups_on_a_converged_ring_take_one_hop() {
    // One-hop routing (the default): the origin sends the lookup straight
    // to the key's owner, which answers. Zero hops when the origin owns the
    // key or its successor does (it confirms, uncounted), one otherwise,
    // and always the owner.
    let mut s = Sim::new(SimConfig {
        seed: 78,
        latency: Latency::Constant(Duration::from_millis(1)),
        // Routing alone: no terms to prepare and renew.
        node: chordal_core::Config {
            authority: false,
            ..chordal_core::Config::default().frozen()
        },
        ..SimConfig::default()
    });
    let nodes = s.build_converged(200, 2);
    let oracle = s.oracle();
    for k in 0..400 {
        let from = nodes[k % nodes.len()];
        let key = s.random_id();
        let r = s.lookup(from, key, LookupMode::Recursive).unwrap();
        assert_eq!(r.owner.id, oracle.successor(&key), "lookup {k}");
        // Zero hops: one of the origin's vnodes owns the key, or its
        // successor does.
        let local = s.node(from).vnodes().iter().any(|v| {
            key.in_open_closed(&v.me().id, &v.table().successor().id)
                || v.range().is_some_and(|r| r.contains(&key))
        });
        assert_eq!(r.hops, u32::from(!local), "lookup {k}");
    }
    // Every table names all 400 vnodes of the 200 processes.
    for &i in &nodes {
        let m = s.node(i).membership();
        assert_eq!((m.entries, m.processes), (400, 200));
    }
}

#[test]
fn balance_spreads_keys_better_with_virtual_nodes() {
    let rows = balance(
        &BalanceConfig {
            nodes: 500,
            keys: vec![100_000],
            vnodes: vec![1, 10],
            seed: 3,
        },
        |_, _| {},
    );
    assert_eq!(rows[0].mean, 200.0);
    // More virtual nodes, tighter spread (Fig. 9).
    assert!(rows[1].p99_ratio < rows[0].p99_ratio);
    assert!(
        chordal_sim::experiments::balance_chart(&rows)
            .title
            .contains("Fig. 9")
    );
    // Several key counts: one row each, the mean grows with them (Fig. 8).
    let fig8 = balance(
        &BalanceConfig {
            nodes: 500,
            keys: vec![10_000, 50_000],
            vnodes: vec![1],
            seed: 3,
        },
        |_, _| {},
    );
    assert_eq!(
        fig8.iter().map(|r| (r.keys, r.mean)).collect::<Vec<_>>(),
        vec![(10_000, 20.0), (50_000, 100.0)]
    );
    assert!(fig8[1].p99 > fig8[0].p99);
    assert!(
        chordal_sim::experiments::balance_chart(&fig8)
            .title
            .contains("Fig. 8")
    );
    assert!(rows[1].p1 > rows[0].p1);
    // Close to the Gamma-arc theory.
    for r in &rows {
        let theory = chordal_sim::experiments::theory_p99_ratio(r.vnodes);
        assert!(
            (r.p99_ratio - theory).abs() / theory < 0.2,
            "{r:?} vs {theory}"
        );
    }
}

#[test]
fn failure_experiment_without_failures_fails_nothing() {
    let rows = chordal_sim::experiments::failure(
        &chordal_sim::experiments::FailureConfig {
            nodes: 60,
            fractions: vec![0.0, 0.3],
            lookups: 200,
            keys: 200,
            replicas: 3,
            seed: 4,
        },
        |_, _| {},
    );
    let none = &rows[0];
    assert_eq!(
        (
            none.keys_lost,
            none.stabilized_failed,
            none.frozen_failed,
            none.frozen_timeouts,
            none.kv_unread,
            none.kv_lost
        ),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    );
    let some = &rows[1];
    // About 30% of the keys lived on failed nodes (Fig. 11: ≈ p) ...
    assert!((0.15..0.45).contains(&some.keys_lost), "{some:?}");
    // ... yet once the ring re-stabilized every lookup found the live owner.
    assert_eq!(some.stabilized_failed, 0.0, "{some:?}");
    // With maintenance frozen, lookups meet dead nodes and pay timeouts,
    // but the last hop reaches the owner itself, past dead successors: no
    // lookup names a dead or wrong owner (ToN'03 Table II: none failed).
    assert!(some.frozen_timeouts > 0.0, "{some:?}");
    assert_eq!(some.frozen_failed, 0.0, "{some:?}");
    // With 3 replicas a key is lost only if all three copies failed
    // (0.3^3 = 2.7%): far fewer than without replication.
    assert!(some.kv_lost < some.keys_lost / 3.0, "{some:?}");
    // A read fails exactly when no copy survived.
    assert_eq!(some.kv_unread, some.kv_lost, "{some:?}");
}

fn quick_churn(seed: u64, sessions: chordal_sim::experiments::Sessions) -> Vec<ChurnRow> {
    churn(
        &ChurnConfig {
            nodes: 100,
            rates: vec![0.05, 0.5],
            sessions,
            lookups: 150,
            warmup: Duration::from_secs(60),
            seed,
        },
        |_, _| {},
    )
}

#[test]
fn churn_experiment_is_deterministic_and_sane() {
    use chordal_sim::experiments::Sessions;
    let a = quick_churn(2, Sessions::Poisson);
    assert_eq!(a, quick_churn(2, Sessions::Poisson));
    assert_ne!(a, quick_churn(3, Sessions::Poisson));
    for r in &a {
        // Nodes came and went, lookups ran, and Chord's own traffic was
        // measured in wire bytes.
        assert!(r.joins > 0 && r.failures > 0, "{r:?}");
        assert!(r.lookups >= 140, "{r:?}");
        assert!(r.mean_hops > 1.0 && r.mean_hops < 8.0, "{r:?}");
        assert!(r.ring_bytes_per_node_s > 0.0, "{r:?}");
        assert!(r.bytes_per_node_s > r.ring_bytes_per_node_s, "{r:?}");
        // Churn costs some lookups, never most of them.
        assert!(r.failed_per_10k < 2000.0, "{r:?}");
    }
    // Ten times the churn: more dead hops met.
    assert!(a[1].timeouts > a[0].timeouts, "{a:?}");
    // The session-time models run too, at the same mean failure rate.
    for sessions in [Sessions::Exponential, Sessions::Weibull(0.6)] {
        let rows = quick_churn(2, sessions);
        let r = &rows[1];
        // 0.5 failures/s for 60 s of warm-up plus ~150 s of lookups.
        assert!((40..=180).contains(&r.failures), "{sessions:?}: {r:?}");
        assert!(r.joins >= r.failures, "{sessions:?}: {r:?}");
    }
}

#[test]
fn kv_churn_loses_nothing_with_enough_replicas_and_repairs_everything() {
    let cfg = KvChurnConfig {
        nodes: 40,
        replicas: vec![3],
        rate: 0.1,
        duration: Duration::from_secs(120),
        writes_per_sec: 5.0,
        settle_limit: Duration::from_secs(120),
        seed: 5,
    };
    let rows = kv_churn(&cfg, |_, _| {});
    assert_eq!(rows, kv_churn(&cfg, |_, _| {}));
    let r = &rows[0];
    assert!(r.failures > 3 && r.joins > 3, "{r:?}");
    assert!(r.acked > 500, "{r:?}");
    assert_eq!((r.lost, r.unread), (0, 0), "{r:?}");
    assert!(r.full_replication_secs.is_some(), "{r:?}");
}

#[test]
fn one_hop_routing_answers_in_one_hop_under_churn_where_chord_needs_several() {
    let cfg = chordal_sim::experiments::OneHopConfig {
        sizes: vec![300],
        sessions: vec![600.0],
        chord: true,
        lookups: 300,
        warmup: Duration::from_secs(20),
        seed: 3,
    };
    let rows = chordal_sim::experiments::onehop(&cfg, |_, _| {});
    let (one, chord) = (&rows[0], &rows[1]);
    assert_eq!((one.routing, chord.routing), ("onehop", "chord"));
    // About 2·300/600 = 1 membership change per second.
    assert!((0.3..3.0).contains(&one.changes_per_s), "{one:?}");
    assert!(one.failed <= 3 && chord.failed <= 3, "{rows:?}");
    assert!(one.mean_hops <= 1.05, "{one:?}");
    assert!(one.one_hop_pct >= 97.0, "{one:?}");
    assert!(chord.mean_hops > 2.0, "{chord:?}");
    assert!(one.membership_bytes_per_node_s > 0.0 && one.table_bytes > 0.0);
    assert_eq!(chord.membership_bytes_per_node_s, 0.0);
}
