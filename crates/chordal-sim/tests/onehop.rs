//! One-hop routing's membership upkeep on the simulated network: joins,
//! failures and graceful leaves reach every table, the tables heal to the
//! truth, and Chord routing keeps no table and sends none of its traffic.

use chordal_core::{Config, NodeRef, Routing};
use chordal_sim::{Latency, Sim, SimConfig};
use std::collections::BTreeSet;
use std::time::Duration;

fn sim(seed: u64, routing: Routing) -> Sim {
    let node = Config {
        routing,
        ..Config::default()
    };
    Sim::new(SimConfig {
        seed,
        latency: Latency::Uniform(Duration::from_millis(1), Duration::from_millis(10)),
        measure_bytes: true,
        node,
        ..SimConfig::default()
    })
}

/// Every vnode of every joined live node.
fn truth(s: &Sim) -> BTreeSet<NodeRef> {
    s.alive()
        .into_iter()
        .filter(|&i| s.node(i).is_joined())
        .flat_map(|i| {
            s.node(i)
                .vnodes()
                .iter()
                .map(|v| v.me())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Live nodes whose table differs from the truth, with what differs.
fn wrong_tables(s: &Sim) -> Vec<(usize, usize, usize)> {
    let want = truth(s);
    s.alive()
        .into_iter()
        .filter(|&i| s.node(i).is_joined())
        .filter_map(|i| {
            let have: BTreeSet<NodeRef> = s.node(i).members().collect();
            let missing = want.difference(&have).count();
            let extra = have.difference(&want).count();
            (missing + extra > 0).then_some((i, missing, extra))
        })
        .collect()
}

#[test]
fn failures_joins_and_leaves_reach_every_table() {
    let mut s = sim(11, Routing::OneHop);
    let nodes = s.build_converged(64, 2);
    s.run_for(Duration::from_secs(2));
    assert_eq!(wrong_tables(&s), vec![]);
    let before = s.traffic;

    // Five crashes (silent: messages to them vanish).
    for &i in &nodes[..5] {
        s.kill(i);
    }
    // Detection (check_predecessor) plus ⌈log2 59⌉ = 6 dissemination
    // intervals of 250 ms: well within 10 s.
    s.run_for(Duration::from_secs(10));
    assert_eq!(wrong_tables(&s), vec![], "after crashes");

    // Four joins, each through a different member.
    for k in 0..4 {
        let i = s.add_node(2);
        s.join(i, nodes[10 + k]);
    }
    s.run_for(Duration::from_secs(15));
    assert_eq!(wrong_tables(&s), vec![], "after joins");

    // Two graceful leaves.
    for &i in &nodes[20..22] {
        s.leave(i);
    }
    s.run_for(Duration::from_secs(10));
    assert_eq!(wrong_tables(&s), vec![], "after leaves");

    // The upkeep cost: membership messages flowed, each event travelled
    // a bounded number of times (EDRA: once per process in a stable ring,
    // plus the joiners' table copies).
    let t = s.traffic.since(&before);
    assert!(t.membership.messages > 0);
    let live = s.alive().len() as u64;
    let all = 0..s.len();
    let detected: u64 = all
        .clone()
        .map(|i| s.node(i).membership().events_detected)
        .sum();
    let received: u64 = all.map(|i| s.node(i).membership().events_received).sum();
    // 10 crashed, 8 joined and 4 departed vnodes, each noticed by its
    // successor (a join may be noticed twice: by the successor, and by
    // the joiner of its own predecessor).
    assert!((22..=44).contains(&detected), "{detected}");
    // Each reaches each of the ~60 processes about once.
    assert!(
        received <= detected * live * 3 / 2,
        "{received} received for {detected} events on {live} processes"
    );
}

#[test]
fn a_table_that_missed_events_heals_by_copying_its_successor() {
    let node = Config {
        membership_refresh: Duration::from_secs(5),
        ..Config::default()
    };
    let mut s = Sim::new(SimConfig {
        seed: 12,
        node,
        ..SimConfig::default()
    });
    let nodes = s.build_converged(32, 1);
    // Cut one node off for a while: the events of the crashes below do
    // not reach it.
    let deaf = nodes[7];
    s.partition(|i| u32::from(i == deaf));
    for &i in &nodes[20..24] {
        s.kill(i);
    }
    s.run_for(Duration::from_secs(5));
    s.heal_partition();
    // Within a couple of refresh periods its digest differs from its
    // successor's and it copies the table (or learns on the way).
    s.run_for(Duration::from_secs(30));
    assert_eq!(wrong_tables(&s), vec![]);
}

#[test]
fn chord_routing_keeps_no_table() {
    let mut s = sim(13, Routing::Chord);
    let nodes = s.build_converged(16, 1);
    s.kill(nodes[3]);
    s.run_for(Duration::from_secs(10));
    for i in s.alive() {
        assert_eq!(s.node(i).membership().entries, 0);
        assert_eq!(s.node(i).members().count(), 0);
    }
    assert_eq!(s.traffic.membership.messages, 0);
}

#[test]
fn with_every_claim_checked_tables_still_reach_the_truth_over_many_seeds() {
    // The mode of TLS rings (`verify_members`): events, copied pages and
    // lookup answers about a node change a table only once that node
    // answered (or failed to). It must cost convergence nothing but time.
    for seed in 21..25 {
        // Membership only: without authority, whose leave (after three
        // crashes at once, some configs below a majority) would wait up to
        // its 30 s bound for terms that cannot finish.
        let node = Config {
            verify_members: true,
            authority: false,
            ..Config::default()
        };
        let mut s = Sim::new(SimConfig {
            seed,
            latency: Latency::Uniform(Duration::from_millis(1), Duration::from_millis(10)),
            node,
            ..SimConfig::default()
        });
        let nodes = s.build_converged(32, 2);
        for &i in &nodes[..3] {
            s.kill(i);
        }
        for k in 0..3 {
            let i = s.add_node(2);
            s.join(i, nodes[10 + k]);
        }
        s.leave(nodes[20]);
        s.run_for(Duration::from_secs(20));
        assert_eq!(wrong_tables(&s), vec![], "seed {seed}");
        let checked: u64 = (0..s.len())
            .map(|i| s.node(i).membership().claims_checked)
            .sum();
        assert!(checked > 0, "seed {seed}: nothing was checked");
    }
}
