//! Lookups under churn (SIGCOMM'01 §6.4, Fig. 12): a ring of ~1,000
//! nodes where nodes join and fail continuously while lookups run.
//!
//! Each node runs stabilize, fix_fingers and check_predecessor at random
//! intervals uniform in [15, 45] s (the paper's setting) over a wide-area
//! network (log-normal latency, ~150 ms median round trip). After a
//! warm-up under churn (so fingers are as stale as they get), lookups
//! start as a Poisson process of one per second from random members for
//! random keys. A lookup fails if it errs or names anything but the key's
//! owner among the joined live nodes when its answer arrives.
//!
//! The reference column is a first-order model, not a number from the
//! paper: a key's lookup goes wrong while its owner is dead and its
//! predecessor has not noticed — on average the residual time to the
//! predecessor's next stabilize (E[X²]/2E[X] = 16.25 s for X ~ U[15, 45])
//! plus the request timeout — and a failed owner covers 1/N of the ring,
//! so the failed fraction is about R·(16.25 s + timeout)/N. (Joins cost
//! nothing here: the joining node's successor tells the old predecessor at
//! once.)

use super::quantile;
use crate::plot::{Chart, Series};
use crate::{Churn, ChurnModel, Latency, Sim, SimConfig, Traffic};
use chordal_core::{Id, LookupId, LookupMode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct ChurnConfig {
    /// Nodes in the ring at the start.
    pub nodes: usize,
    /// Join and failure rates per second (Poisson model); one run each.
    pub rates: Vec<f64>,
    /// Session-time model instead of paired Poisson: a failure rate of
    /// `rates[k]` per second becomes sessions of mean N / rate.
    pub sessions: Sessions,
    /// Lookups measured per rate (one per second of virtual time).
    pub lookups: usize,
    /// Churn before measuring starts.
    pub warmup: Duration,
    /// Seed of the run.
    pub seed: u64,
}

/// How long nodes stay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sessions {
    /// Joins and failures are independent Poisson processes (the paper).
    Poisson,
    /// Exponential session times, a new node replacing each failed one.
    Exponential,
    /// Weibull session times of this shape, a new node replacing each.
    Weibull(f64),
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            nodes: 1000,
            rates: vec![0.05, 0.1, 0.2, 0.3, 0.4],
            sessions: Sessions::Poisson,
            lookups: 1000,
            warmup: Duration::from_secs(300),
            seed: 1,
        }
    }
}

impl ChurnConfig {
    fn model(&self, rate: f64) -> ChurnModel {
        let mean_secs = self.nodes as f64 / rate;
        match self.sessions {
            Sessions::Poisson => ChurnModel::Poisson { rate },
            Sessions::Exponential => ChurnModel::Exponential { mean_secs },
            Sessions::Weibull(shape) => ChurnModel::Weibull {
                shape,
                scale_secs: mean_secs / crate::churn::gamma(1.0 + 1.0 / shape),
            },
        }
    }
}

/// One churn rate. Equality ignores wall time.
#[derive(Clone, Debug)]
pub struct ChurnRow {
    /// Events per second.
    pub rate: f64,
    /// Lookups that finished.
    pub lookups: usize,
    /// Failed lookups per 10^4.
    pub failed_per_10k: f64,
    /// First-order model of the same (see the module docs).
    pub model_per_10k: f64,
    /// Dead or cut-off hops met per lookup (each a request timeout).
    pub timeouts: f64,
    /// Mean hops of the lookups.
    pub mean_hops: f64,
    /// 99th percentile of hops.
    pub p99_hops: f64,
    /// Frame bytes per live node per second of Chord itself: ring
    /// maintenance (ping, neighbours, notify, leave) and routing (lookups,
    /// fix_fingers' included; the measured lookups are ~0.1% of it).
    pub bytes_per_node_s: f64,
    /// Of which ring maintenance.
    pub ring_bytes_per_node_s: f64,
    /// Frame bytes per live node per second of the key-value store's range
    /// sync (empty stores here: the summaries alone).
    pub store_bytes_per_node_s: f64,
    /// Nodes that joined during the run.
    pub joins: usize,
    /// Nodes that failed during the run.
    pub failures: usize,
    /// Simulator events processed.
    pub events: u64,
    /// Wall-clock seconds the run took.
    pub wall_secs: f64,
}

impl PartialEq for ChurnRow {
    fn eq(&self, o: &Self) -> bool {
        let a = [
            self.rate,
            self.failed_per_10k,
            self.timeouts,
            self.mean_hops,
            self.p99_hops,
            self.bytes_per_node_s,
        ];
        let b = [
            o.rate,
            o.failed_per_10k,
            o.timeouts,
            o.mean_hops,
            o.p99_hops,
            o.bytes_per_node_s,
        ];
        a == b && (self.joins, self.failures, self.events) == (o.joins, o.failures, o.events)
    }
}

impl ChurnRow {
    /// The row as JSON (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"rate": self.rate, "lookups": self.lookups,
               "failed_per_10k": self.failed_per_10k, "model_per_10k": self.model_per_10k,
               "timeouts_per_lookup": self.timeouts, "mean_hops": self.mean_hops,
               "p99_hops": self.p99_hops, "bytes_per_node_s": self.bytes_per_node_s,
               "ring_bytes_per_node_s": self.ring_bytes_per_node_s,
               "store_bytes_per_node_s": self.store_bytes_per_node_s,
               "joins": self.joins, "failures": self.failures, "events": self.events})
    }
}

/// The protocol settings of the paper's churn experiment.
pub(crate) fn paper_sim_config(seed: u64) -> SimConfig {
    let mut config = SimConfig {
        seed,
        latency: Latency::wide_area(),
        measure_bytes: true,
        ..SimConfig::default()
    };
    // Uniform in [15, 45] s.
    config.node = config
        .node
        .with_maintenance_interval(Duration::from_secs(30));
    config.node.jitter = 0.5;
    // The paper's Chord, not one-hop routing (see `ring/onehop/` for that).
    config.node.routing = chordal_core::Routing::Chord;
    // The store's range sync (no data here) on the same slow clock: at
    // its default 5 s it would cost more than all of Chord's maintenance.
    config.node.sync_interval = Duration::from_secs(30);
    config
}

/// Runs every churn rate (in parallel, one per core); `progress(done,
/// total)` after each.
pub fn churn(cfg: &ChurnConfig, progress: impl FnMut(usize, usize)) -> Vec<ChurnRow> {
    super::run_each(&cfg.rates, |&rate| one_rate(cfg, rate), progress)
}

fn one_rate(cfg: &ChurnConfig, rate: f64) -> ChurnRow {
    let wall = Instant::now();
    let seed = cfg
        .seed
        .wrapping_mul(7919)
        .wrapping_add((rate * 1e6) as u64);
    let config = paper_sim_config(seed);
    let timeout_secs =
        config.node.request_timeout.as_secs_f64() * (1 + config.node.request_retries) as f64;
    let mut s = Sim::new(config);
    let members = s.build_converged(cfg.nodes, 1);
    let mut churn = Churn::new(cfg.model(rate), seed, &s, &members, 1);
    let (mut joins, mut failures) = (0, 0);
    let mut tally = |events: Vec<crate::ChurnEvent>| {
        for e in events {
            match e {
                crate::ChurnEvent::Joined(_) => joins += 1,
                crate::ChurnEvent::Failed(_) => failures += 1,
            }
        }
    };
    // Warm-up: churn only.
    let warm_end = s.now() + cfg.warmup;
    while churn.next_at() <= warm_end {
        let t = churn.next_at();
        s.run_until(t);
        tally(churn.apply_due(&mut s));
    }
    s.run_until(warm_end);

    // Measurement: lookups at one per second while churn goes on.
    let start = s.now();
    let traffic0: Traffic = s.traffic;
    let (timeouts0, events0) = (s.lookup_timeouts, s.events_processed);
    let mut rng = chordal_core::Rng::new(seed ^ 0x6c6f_6f6b);
    let gap = |rng: &mut chordal_core::Rng| {
        let u = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        Duration::from_secs_f64(-u.ln())
    };
    let mut next_lookup = start + gap(&mut rng);
    let mut pending: Vec<(usize, LookupId, Id)> = Vec::new();
    let (mut started, mut failed, mut orphaned) = (0usize, 0usize, 0usize);
    let mut hops = Vec::new();
    let mut node_seconds = 0.0;
    let mut last = start;
    let tick = Duration::from_millis(100);
    while started < cfg.lookups || !pending.is_empty() {
        let mut t = (s.now() + tick).min(churn.next_at());
        if started < cfg.lookups {
            t = t.min(next_lookup);
        }
        s.run_until(t);
        node_seconds += s.alive().len() as f64 * t.saturating_since(last).as_secs_f64();
        last = t;
        let (f, o) = super::judge_lookups(&s, &mut pending, &mut hops);
        (failed, orphaned) = (failed + f, orphaned + o);
        tally(churn.apply_due(&mut s));
        if started < cfg.lookups && s.now() >= next_lookup {
            let members = s.joined();
            let from = members[rng.below(members.len() as u64) as usize];
            let key = crate::sim::random_id(&mut rng);
            let id = s.start_lookup(from, key, LookupMode::Recursive);
            pending.push((from, id, key));
            started += 1;
            next_lookup = next_lookup + gap(&mut rng);
        }
    }
    let traffic = s.traffic.since(&traffic0);
    let per_node_s = |bytes: u64| bytes as f64 / node_seconds.max(1e-9);
    hops.sort_by(f64::total_cmp);
    let n = (started - orphaned).max(1) as f64;
    ChurnRow {
        rate,
        lookups: started - orphaned,
        failed_per_10k: failed as f64 / n * 1e4,
        model_per_10k: cfg.model(rate).failure_rate(cfg.nodes) * (16.25 + timeout_secs)
            / cfg.nodes as f64
            * 1e4,
        timeouts: (s.lookup_timeouts - timeouts0) as f64 / n,
        mean_hops: hops.iter().sum::<f64>() / hops.len().max(1) as f64,
        p99_hops: quantile(&hops, 0.99),
        bytes_per_node_s: per_node_s(traffic.ring.bytes + traffic.routing.bytes),
        ring_bytes_per_node_s: per_node_s(traffic.ring.bytes),
        store_bytes_per_node_s: per_node_s(traffic.store.bytes),
        joins,
        failures,
        events: s.events_processed - events0,
        wall_secs: wall.elapsed().as_secs_f64(),
    }
}

/// Fig. 12: failed lookups per 10^4 vs the churn rate.
pub fn churn_chart(rows: &[ChurnRow]) -> Chart {
    let line = |name: &str, f: &dyn Fn(&ChurnRow) -> f64, dashed| Series {
        name: name.into(),
        points: rows.iter().map(|r| (r.rate, f(r))).collect(),
        dashed,
    };
    Chart {
        title: "Lookups under churn (Chord SIGCOMM'01 Fig. 12)".into(),
        x_label: "node joins and failures per second (each)".into(),
        y_label: "failed lookups per 10^4".into(),
        log2_x: false,
        series: vec![
            line("failed lookups", &|r| r.failed_per_10k, false),
            line("first-order model", &|r| r.model_per_10k, true),
        ],
    }
}
