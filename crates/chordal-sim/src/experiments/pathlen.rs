//! Path length (SIGCOMM'01 §6.3, Fig. 10): lookups on converged rings of
//! N = 2^k nodes, recursive and iterative, against ½·log2 N.

use super::quantile;
use crate::plot::{Chart, Series};
use crate::{Latency, Sim, SimConfig};
use chordal_core::LookupMode;
use serde_json::{Value, json};
use std::time::Duration;

/// What to run.
#[derive(Clone, Debug)]
pub struct PathlenConfig {
    /// N runs over 2^min_exp ..= 2^max_exp.
    pub min_exp: u32,
    /// Rings of 2^1 … 2^max_exp nodes.
    pub max_exp: u32,
    /// Lookups per N and mode, from random nodes for random keys.
    pub lookups: usize,
    /// Seed of the run.
    pub seed: u64,
}

impl Default for PathlenConfig {
    fn default() -> Self {
        PathlenConfig {
            min_exp: 3,
            max_exp: 14,
            lookups: 10_000,
            seed: 1,
        }
    }
}

/// One ring size and mode. Equality ignores `lookup_secs` (wall time),
/// so that runs with one seed compare equal.
#[derive(Clone, Debug)]
pub struct PathlenRow {
    /// Nodes in the ring.
    pub nodes: usize,
    /// `recursive` or `iterative`.
    pub mode: &'static str,
    /// Mean path length, in hops.
    pub mean: f64,
    /// 1st percentile of hops.
    pub p1: f64,
    /// 99th percentile of hops.
    pub p99: f64,
    /// The paper's mean, ½·log2 N.
    pub paper: f64,
    /// Lookups that did not name the true owner (must be 0).
    pub wrong: usize,
    /// Simulation events processed by this ring size's lookups (both modes).
    pub events: u64,
    /// Wall time of those lookups (not of building the ring), seconds.
    pub lookup_secs: f64,
}

impl PartialEq for PathlenRow {
    fn eq(&self, o: &Self) -> bool {
        (self.nodes, self.mode, self.wrong, self.events) == (o.nodes, o.mode, o.wrong, o.events)
            && [self.mean, self.p1, self.p99, self.paper] == [o.mean, o.p1, o.p99, o.paper]
    }
}

impl PathlenRow {
    /// The row as JSON (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"nodes": self.nodes, "mode": self.mode, "mean": self.mean, "p1": self.p1,
               "p99": self.p99, "paper_mean": self.paper, "wrong": self.wrong, "events": self.events})
    }
}

/// Runs the experiment; `progress(done, total)` is called after each N.
pub fn pathlen(cfg: &PathlenConfig, mut progress: impl FnMut(usize, usize)) -> Vec<PathlenRow> {
    let total = (cfg.max_exp.saturating_sub(cfg.min_exp) + 1) as usize;
    let mut rows = Vec::new();
    for (done, exp) in (cfg.min_exp..=cfg.max_exp).enumerate() {
        let n = 1usize << exp;
        let mut config = SimConfig {
            seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(exp as u64),
            latency: Latency::Constant(Duration::from_millis(1)),
            ..SimConfig::default()
        };
        // A converged ring with maintenance frozen: only lookups run.
        config.node = config.node.frozen();
        // The paper's Chord lookups, not one-hop routing.
        config.node.routing = chordal_core::Routing::Chord;
        let mut s = Sim::new(config);
        let nodes = s.build_converged(n, 1);
        let oracle = s.oracle();
        let events_before = s.events_processed;
        let started = std::time::Instant::now();
        for mode in [LookupMode::Recursive, LookupMode::Iterative] {
            let mut hops = Vec::with_capacity(cfg.lookups);
            let mut wrong = 0;
            for _ in 0..cfg.lookups {
                let from = nodes[(s.random_id().high_u64() % n as u64) as usize];
                let key = s.random_id();
                match s.lookup(from, key, mode) {
                    Ok(r) => {
                        if r.owner.id != oracle.successor(&key) {
                            wrong += 1;
                        }
                        hops.push(r.hops as f64);
                    }
                    Err(_) => wrong += 1,
                }
            }
            hops.sort_by(f64::total_cmp);
            let mean = hops.iter().sum::<f64>() / hops.len().max(1) as f64;
            rows.push(PathlenRow {
                nodes: n,
                mode: if mode == LookupMode::Recursive {
                    "recursive"
                } else {
                    "iterative"
                },
                mean,
                p1: quantile(&hops, 0.01),
                p99: quantile(&hops, 0.99),
                paper: 0.5 * (n as f64).log2(),
                wrong,
                events: s.events_processed - events_before,
                lookup_secs: started.elapsed().as_secs_f64(),
            });
        }
        progress(done + 1, total);
    }
    rows
}

/// The chart of Fig. 10: mean, 1st and 99th percentile (recursive) and the
/// paper's ½·log2 N.
pub fn pathlen_chart(rows: &[PathlenRow]) -> Chart {
    let rec: Vec<&PathlenRow> = rows.iter().filter(|r| r.mode == "recursive").collect();
    let line = |name: &str, f: &dyn Fn(&PathlenRow) -> f64, dashed| Series {
        name: name.into(),
        points: rec.iter().map(|r| (r.nodes as f64, f(r))).collect(),
        dashed,
    };
    Chart {
        title: "Path length vs ring size (Chord SIGCOMM'01 Fig. 10)".into(),
        x_label: "nodes N".into(),
        y_label: "hops per lookup".into(),
        log2_x: true,
        series: vec![
            line("mean (ours)", &|r| r.mean, false),
            line("1st percentile", &|r| r.p1, false),
            line("99th percentile", &|r| r.p99, false),
            line("paper: ½·log2 N", &|r| r.paper, true),
        ],
    }
}
