//! Lookups after mass failure (SIGCOMM'01 §6.4, Fig. 11; lecture slides'
//! 1,000-node experiment). A fraction `p` of a converged ring fails at once.
//!
//! - (a) With maintenance running, after the ring re-stabilizes: lookups
//!   that fail or name a wrong owner, and keys lost — keys whose owner
//!   failed, which without replication is what the paper counts as failed
//!   lookups (≈ p).
//! - (b) With maintenance frozen and successor lists of 20, at once: path
//!   length, dead hops met per lookup (each costs a timeout) and failed
//!   lookups, beside ToN'03 Table II. A lookup's last hop goes to the owner
//!   itself and falls through the successor list past dead ones, so it
//!   answers with a live owner; lookups are patient (the paper's lookups
//!   do not give up on time), so none fail.
//! - (c) The lecture slides' DHash experiment: successor lists of 20, the
//!   key-value store with R replicas (5 in the slides) holding `keys`
//!   pairs; right after the failure every key is read back at once, from
//!   random live nodes: reads that fail or find nothing, and keys with no
//!   copy left on a live node. Theory: a key is lost when all R copies
//!   failed, p^R. A read fails exactly when no copy survives; the keys
//!   lost scatter round p^R from run to run because they are not
//!   independent samples: keys on one arc share their R holders, so a
//!   run loses whole arcs (1,000 keys on 1,000 nodes: about 31 dead runs
//!   of five at p = 0.5, each an exponentially distributed arc).

use super::quantile;
use crate::plot::{Chart, Series};
use crate::{Latency, Sim, SimConfig};
use chordal_core::{Id, LookupMode, Outcome};
use serde_json::{Value, json};
use std::time::Duration;

/// ToN'03 Table II, 1,000 nodes, r = 20, stabilization off: the failed
/// fraction, mean path length and mean timeouts per lookup the paper
/// reports (none of its lookups failed).
pub const TON_TABLE_II: [(f64, f64, f64); 6] = [
    (0.0, 3.84, 0.0),
    (0.1, 4.03, 0.60),
    (0.2, 4.22, 1.17),
    (0.3, 4.44, 2.02),
    (0.4, 4.69, 3.23),
    (0.5, 5.09, 5.10),
];

/// The paper's (path length, timeouts) at failed fraction `p`, if it
/// reports that fraction.
pub fn ton_table_ii(p: f64) -> Option<(f64, f64)> {
    TON_TABLE_II
        .iter()
        .find(|(f, _, _)| (f - p).abs() < 1e-9)
        .map(|(_, hops, timeouts)| (*hops, *timeouts))
}

/// Settings of the mass-failure experiment (Chord ToN'03, Table II).
#[derive(Clone, Debug)]
pub struct FailureConfig {
    /// Nodes before the failure.
    pub nodes: usize,
    /// Fractions of nodes that fail, one row each.
    pub fractions: Vec<f64>,
    /// Lookups per fraction.
    pub lookups: usize,
    /// (c) Key-value pairs stored before the failure.
    pub keys: usize,
    /// (c) Replication factor R.
    pub replicas: usize,
    /// Seed of the run.
    pub seed: u64,
}

impl Default for FailureConfig {
    fn default() -> Self {
        FailureConfig {
            nodes: 1000,
            fractions: vec![0.1, 0.2, 0.3, 0.4, 0.5],
            lookups: 2000,
            keys: 1000,
            replicas: 5,
            seed: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
/// Lookups after one fraction of the nodes failed at once.
pub struct FailureRow {
    /// The fraction of nodes that failed.
    pub fraction: f64,
    /// (a) After re-stabilization: lookups that failed or named a wrong owner.
    pub stabilized_failed: f64,
    /// (a) Keys whose owner failed (lost without replication); paper ≈ p.
    pub keys_lost: f64,
    /// (b) Frozen maintenance: lookups that failed or named a wrong owner.
    pub frozen_failed: f64,
    /// (b) Mean hops of the lookups that succeeded.
    pub frozen_hops: f64,
    /// (b) Dead peers met (timeouts) per lookup.
    pub frozen_timeouts: f64,
    /// (b) 99th percentile hops.
    pub frozen_p99_hops: f64,
    /// (b) ToN'03 Table II at this fraction: (mean path length, timeouts
    /// per lookup), if the paper reports it.
    pub paper_frozen: Option<(f64, f64)>,
    /// (c) Reads right after the failure that failed or found nothing.
    pub kv_unread: f64,
    /// (c) Keys with no copy left on any live node.
    pub kv_lost: f64,
    /// (c) Theory: all R copies failed, p^R.
    pub kv_theory: f64,
}

impl FailureRow {
    /// The row as JSON (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"fraction": self.fraction, "stabilized_failed": self.stabilized_failed,
               "keys_lost": self.keys_lost, "paper_failed": self.fraction,
               "frozen_failed": self.frozen_failed, "frozen_hops": self.frozen_hops,
               "frozen_p99_hops": self.frozen_p99_hops, "frozen_timeouts": self.frozen_timeouts,
               "paper_frozen_hops": self.paper_frozen.map(|p| p.0),
               "paper_frozen_timeouts": self.paper_frozen.map(|p| p.1),
               "kv_unread": self.kv_unread, "kv_lost": self.kv_lost, "kv_theory": self.kv_theory})
    }
}

fn ring(cfg: &FailureConfig, salt: u64, successors: usize, frozen: bool) -> (Sim, Vec<usize>) {
    ring_with(cfg, salt, successors, frozen, |_| {})
}

fn ring_with(
    cfg: &FailureConfig,
    salt: u64,
    successors: usize,
    frozen: bool,
    tune: impl FnOnce(&mut chordal_core::Config),
) -> (Sim, Vec<usize>) {
    let mut config = SimConfig {
        seed: cfg.seed.wrapping_mul(104_729).wrapping_add(salt),
        latency: Latency::Uniform(Duration::from_millis(5), Duration::from_millis(50)),
        ..SimConfig::default()
    };
    config.node.successors = successors;
    // The paper's Chord lookups, not one-hop routing.
    config.node.routing = chordal_core::Routing::Chord;
    if frozen {
        config.node = config.node.frozen();
    }
    tune(&mut config.node);
    let mut s = Sim::new(config);
    let nodes = s.build_converged(cfg.nodes, 1);
    (s, nodes)
}

/// Kills `fraction` of `nodes` (chosen by the simulation's seed).
fn fail(s: &mut Sim, nodes: &[usize], fraction: f64) {
    let target = (nodes.len() as f64 * fraction).round() as usize;
    let mut killed = 0;
    while killed < target {
        let i = nodes[(s.random_id().high_u64() % nodes.len() as u64) as usize];
        if s.is_alive(i) {
            s.kill(i);
            killed += 1;
        }
    }
}

fn random_live(s: &mut Sim) -> usize {
    let alive = s.alive();
    alive[(s.random_id().high_u64() % alive.len() as u64) as usize]
}

/// Runs every failed fraction (in parallel, one per core); `progress(done,
/// total)` after each.
pub fn failure(cfg: &FailureConfig, progress: impl FnMut(usize, usize)) -> Vec<FailureRow> {
    super::run_each(&cfg.fractions, |&p| one_fraction(cfg, p), progress)
}

/// (a), (b) and (c) for one failed fraction `p`.
fn one_fraction(cfg: &FailureConfig, p: f64) -> FailureRow {
    // (a) Maintenance running.
    let (mut s, nodes) = ring(cfg, (p * 1000.0) as u64, 8, false);
    let before = s.oracle();
    fail(&mut s, &nodes, p);
    s.run_until_true(Duration::from_secs(1), Duration::from_secs(120), |s| {
        s.ring_errors(false) == 0
    });
    s.run_for(Duration::from_secs(5));
    let after = s.oracle();
    let queries: Vec<(usize, Id)> = (0..cfg.lookups)
        .map(|_| {
            let key = s.random_id();
            (random_live(&mut s), key)
        })
        .collect();
    let results = s.lookup_all(&queries, LookupMode::Recursive);
    let failed = queries
        .iter()
        .zip(&results)
        .filter(|((_, key), r)| !matches!(r, Ok(r) if r.owner.id == after.successor(key)))
        .count();
    let lost = queries
        .iter()
        .filter(|(_, key)| !after.ids().contains(&before.successor(key)))
        .count();
    // (b) Maintenance frozen, successor lists of 20. A patient lookup, as
    // in the paper: the question is whether it reaches the live owner;
    // each dead hop met costs a timeout, not the lookup.
    let (mut s, nodes) = ring_with(cfg, 1_000_000 + (p * 1000.0) as u64, 20, true, |c| {
        c.lookup_timeout = Duration::from_secs(120)
    });
    fail(&mut s, &nodes, p);
    let oracle = s.oracle();
    let (mut frozen_failed, mut hops) = (0usize, Vec::new());
    for _ in 0..cfg.lookups {
        let key = s.random_id();
        let from = random_live(&mut s);
        match s.lookup(from, key, LookupMode::Recursive) {
            Ok(r) if r.owner.id == oracle.successor(&key) => hops.push(r.hops as f64),
            _ => frozen_failed += 1,
        }
    }
    let timeouts = s.lookup_timeouts;
    hops.sort_by(f64::total_cmp);
    let n = cfg.lookups.max(1) as f64;
    let (kv_unread, kv_lost) = kv_after_failure(cfg, p);
    FailureRow {
        fraction: p,
        stabilized_failed: failed as f64 / n,
        keys_lost: lost as f64 / n,
        frozen_failed: frozen_failed as f64 / n,
        frozen_hops: hops.iter().sum::<f64>() / hops.len().max(1) as f64,
        frozen_timeouts: timeouts as f64 / n,
        frozen_p99_hops: quantile(&hops, 0.99),
        paper_frozen: ton_table_ii(p),
        kv_unread,
        kv_lost,
        kv_theory: p.powi(cfg.replicas as i32),
    }
}

/// (c): stores `cfg.keys` pairs with R = `cfg.replicas`, fails `p` of the
/// ring, reads every key back at once. Returns the fractions of keys not
/// read and of keys with no copy left on a live node.
fn kv_after_failure(cfg: &FailureConfig, p: f64) -> (f64, f64) {
    if cfg.keys == 0 {
        return (0.0, 0.0);
    }
    let (mut s, nodes) = ring_with(cfg, 2_000_000 + (p * 1000.0) as u64, 20, false, |c| {
        c.replicas = cfg.replicas;
        // A patient reader: the question is whether the data survived,
        // not how fast a read gets past the dead nodes (right after half
        // the ring failed, one lookup can meet ten dead hops, each a
        // timeout).
        c.kv_timeout = Duration::from_secs(60);
        c.lookup_timeout = Duration::from_secs(30);
    });
    // All writes at once, then time for every copy to land (acks need
    // only a majority of copies).
    let writes: Vec<_> = (0..cfg.keys)
        .map(|k| {
            let from = random_live(&mut s);
            (
                from,
                s.start_put(from, format!("key-{k}").as_bytes(), b"value"),
            )
        })
        .collect();
    s.run_for(Duration::from_secs(5));
    // A write that failed on the stable ring would be a bug, not a loss.
    debug_assert!(
        writes
            .iter()
            .all(|(i, op)| matches!(s.kv_result(*i, *op), Some(Ok(_))))
    );
    fail(&mut s, &nodes, p);
    let reads: Vec<_> = (0..cfg.keys)
        .map(|k| {
            let from = random_live(&mut s);
            (from, s.start_get(from, format!("key-{k}").as_bytes()))
        })
        .collect();
    let limit = s.now() + Duration::from_secs(90);
    while s.now() < limit && reads.iter().any(|(i, op)| s.kv_result(*i, *op).is_none()) {
        s.run_for(Duration::from_millis(100));
    }
    let unread = reads
        .iter()
        .filter(|(i, op)| !matches!(s.kv_result(*i, *op), Some(Ok(Outcome::Found { .. }))))
        .count();
    // Lost for good: no live node holds a copy.
    let gone = (0..cfg.keys)
        .filter(|k| s.holders(format!("key-{k}").as_bytes()).is_empty())
        .count();
    let n = cfg.keys as f64;
    (unread as f64 / n, gone as f64 / n)
}

/// Fig. 11: failed lookups and lost keys vs the fraction of failed nodes.
pub fn failure_chart(rows: &[FailureRow]) -> Chart {
    let line = |name: &str, f: &dyn Fn(&FailureRow) -> f64, dashed| Series {
        name: name.into(),
        points: rows.iter().map(|r| (r.fraction, f(r))).collect(),
        dashed,
    };
    Chart {
        title: "Lookups after mass failure (Chord SIGCOMM'01 Fig. 11)".into(),
        x_label: "fraction of nodes failed".into(),
        y_label: "fraction of lookups".into(),
        log2_x: false,
        series: vec![
            line("keys lost (no replication)", &|r| r.keys_lost, false),
            line("failed, stabilized", &|r| r.stabilized_failed, false),
            line("failed, frozen, r=20", &|r| r.frozen_failed, false),
            line("paper: = p", &|r| r.fraction, true),
            line("(c) reads failed", &|r| r.kv_unread, false),
            line("(c) keys lost", &|r| r.kv_lost, false),
            line("(c) theory p^R", &|r| r.kv_theory, true),
        ],
    }
}
