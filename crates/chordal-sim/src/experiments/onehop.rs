//! One-hop routing (Gupta, Liskov & Rodrigues, NSDI'04; D1HT): hops per
//! lookup and the bandwidth of keeping full membership tables, against N
//! and churn, beside Chord on the same rings.
//!
//! Each run builds a converged ring of N nodes (every table complete),
//! then lets sessions end and new nodes join — exponential session times
//! of the given mean, each crashed node replaced by a new one — with our
//! default maintenance (stabilize every 0.5 s, membership events batched
//! every 0.25 s) on a LAN (1–10 ms one way). After a warm-up, lookups run
//! at 10 per second from random members for random keys; each counts as
//! one-hop if answered by the first node contacted (hops ≤ 1), failed if
//! it errs or names anything but the owner among the joined live nodes.
//!
//! The reference columns: NSDI'04 aims at 99 % of lookups answered in one
//! hop, with Gnutella's mean session of 2.9 h (19 membership changes per
//! second at 10^5 nodes); the model bandwidth is what EDRA must carry
//! when every event reaches every process once: 2N/S events per second,
//! each about `EVENT_BYTES` on the wire, plus its acknowledgement share.

use super::quantile;
use crate::plot::{Chart, Series};
use crate::{Churn, ChurnModel, Latency, Sim, SimConfig, Traffic};
use chordal_core::{Id, LookupId, LookupMode, Routing};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Bytes one membership event takes inside a `MemberEvents` frame (node
/// id and address, detector address, tags), measured from the wire
/// encoding.
pub const EVENT_BYTES: f64 = 60.0;

/// What to run.
#[derive(Clone, Debug)]
pub struct OneHopConfig {
    /// Ring sizes; one run per size, mean session and routing.
    pub sizes: Vec<usize>,
    /// Mean session times, in seconds (Gnutella's 2.9 h = 10,440 s).
    pub sessions: Vec<f64>,
    /// Also run Chord routing on the same rings, for comparison.
    pub chord: bool,
    /// Lookups measured per run (10 per second of virtual time).
    pub lookups: usize,
    /// Churn before measuring starts.
    pub warmup: Duration,
    /// Seed of the run.
    pub seed: u64,
}

impl Default for OneHopConfig {
    fn default() -> Self {
        OneHopConfig {
            sizes: vec![1000, 2000, 5000],
            sessions: vec![10_440.0, 600.0],
            chord: true,
            lookups: 1000,
            warmup: Duration::from_secs(60),
            seed: 1,
        }
    }
}

/// One ring size, session time and routing. Equality ignores wall time.
#[derive(Clone, Debug)]
pub struct OneHopRow {
    /// Nodes in the ring.
    pub nodes: usize,
    /// `onehop` or `chord`.
    pub routing: &'static str,
    /// Mean session time, seconds.
    pub session_secs: f64,
    /// Membership changes per second (joins plus failures), measured.
    pub changes_per_s: f64,
    /// Lookups measured.
    pub lookups: usize,
    /// Mean hops per lookup.
    pub mean_hops: f64,
    /// 99th percentile of hops.
    pub p99_hops: f64,
    /// Lookups answered by the first node contacted, percent.
    pub one_hop_pct: f64,
    /// Lookups that failed or named a wrong owner.
    pub failed: usize,
    /// Membership upkeep per node: events and table copies, bytes/s.
    pub membership_bytes_per_node_s: f64,
    /// All maintenance per node (ring, fingers' lookups, membership), bytes/s.
    pub maintenance_bytes_per_node_s: f64,
    /// The model's membership bandwidth per node, bytes/s (one-hop rows).
    pub model_bytes_per_node_s: f64,
    /// Mean membership table size per node, bytes (one-hop rows).
    pub table_bytes: f64,
    /// Wall time of the run, seconds.
    pub wall_secs: f64,
}

impl PartialEq for OneHopRow {
    fn eq(&self, o: &Self) -> bool {
        (self.nodes, self.routing, self.lookups, self.failed)
            == (o.nodes, o.routing, o.lookups, o.failed)
            && [
                self.session_secs,
                self.changes_per_s,
                self.mean_hops,
                self.one_hop_pct,
                self.membership_bytes_per_node_s,
                self.maintenance_bytes_per_node_s,
            ] == [
                o.session_secs,
                o.changes_per_s,
                o.mean_hops,
                o.one_hop_pct,
                o.membership_bytes_per_node_s,
                o.maintenance_bytes_per_node_s,
            ]
    }
}

impl OneHopRow {
    /// The row as JSON (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"nodes": self.nodes, "routing": self.routing, "session_secs": self.session_secs,
               "changes_per_s": self.changes_per_s, "lookups": self.lookups,
               "mean_hops": self.mean_hops, "p99_hops": self.p99_hops,
               "one_hop_pct": self.one_hop_pct, "failed": self.failed,
               "membership_bytes_per_node_s": self.membership_bytes_per_node_s,
               "maintenance_bytes_per_node_s": self.maintenance_bytes_per_node_s,
               "model_bytes_per_node_s": self.model_bytes_per_node_s,
               "table_bytes": self.table_bytes})
    }
}

/// Runs every (size, session, routing), one per core at a time;
/// `progress(done, total)` after each.
pub fn onehop(cfg: &OneHopConfig, progress: impl FnMut(usize, usize)) -> Vec<OneHopRow> {
    let mut runs = Vec::new();
    for &n in &cfg.sizes {
        for &session in &cfg.sessions {
            runs.push((n, session, Routing::OneHop));
            if cfg.chord {
                runs.push((n, session, Routing::Chord));
            }
        }
    }
    super::run_each(&runs, |&(n, s, r)| one_run(cfg, n, s, r), progress)
}

fn one_run(cfg: &OneHopConfig, n: usize, session: f64, routing: Routing) -> OneHopRow {
    let wall = Instant::now();
    let seed = cfg
        .seed
        .wrapping_mul(6_700_417)
        .wrapping_add(n as u64 * 31 + session as u64);
    let mut config = SimConfig {
        seed,
        latency: Latency::Uniform(Duration::from_millis(1), Duration::from_millis(10)),
        measure_bytes: true,
        ..SimConfig::default()
    };
    config.node.routing = routing;
    // No data in these rings: the store's range sync is not what we measure.
    config.node.sync_interval = Duration::from_secs(3600);
    let mut s = Sim::new(config);
    let members = s.build_converged(n, 1);
    let model = ChurnModel::Exponential { mean_secs: session };
    let mut churn = Churn::new(model, seed, &s, &members, 1);
    let warm_end = s.now() + cfg.warmup;
    while churn.next_at() <= warm_end {
        let t = churn.next_at();
        s.run_until(t);
        churn.apply_due(&mut s);
    }
    s.run_until(warm_end);

    let start = s.now();
    let traffic0: Traffic = s.traffic;
    let mut rng = chordal_core::Rng::new(seed ^ 0x6f6e_6568);
    let gap = Duration::from_millis(100);
    let mut next_lookup = start;
    let mut pending: Vec<(usize, LookupId, Id)> = Vec::new();
    let (mut started, mut failed, mut changes) = (0usize, 0usize, 0usize);
    let mut hops = Vec::new();
    let (mut node_seconds, mut table_bytes, mut samples) = (0.0, 0.0, 0.0);
    let mut last = start;
    while started < cfg.lookups || !pending.is_empty() {
        let mut t = (s.now() + gap).min(churn.next_at());
        if started < cfg.lookups {
            t = t.min(next_lookup);
        }
        s.run_until(t);
        node_seconds += s.alive().len() as f64 * t.saturating_since(last).as_secs_f64();
        last = t;
        failed += super::judge_lookups(&s, &mut pending, &mut hops).0;
        changes += churn.apply_due(&mut s).len();
        if started < cfg.lookups && s.now() >= next_lookup {
            let live = s.joined();
            let from = live[rng.below(live.len() as u64) as usize];
            let key = crate::sim::random_id(&mut rng);
            pending.push((from, s.start_lookup(from, key, LookupMode::Recursive), key));
            started += 1;
            next_lookup = next_lookup + gap;
            if started.is_multiple_of(100) {
                let m: u64 = live.iter().map(|&i| s.node(i).membership().bytes).sum();
                table_bytes += m as f64 / live.len().max(1) as f64;
                samples += 1.0;
            }
        }
    }
    let elapsed = s.now().saturating_since(start).as_secs_f64().max(1e-9);
    let traffic = s.traffic.since(&traffic0);
    let per_node_s = |bytes: u64| bytes as f64 / node_seconds.max(1e-9);
    hops.sort_by(f64::total_cmp);
    let one_hop = hops.iter().filter(|h| **h <= 1.0).count();
    let done = hops.len() + failed;
    let onehop = routing == Routing::OneHop;
    // Every event reaches every process once and is acknowledged with it
    // (one ack per message; a message carries one tick's events).
    let model = 2.0 * n as f64 / session * EVENT_BYTES;
    OneHopRow {
        nodes: n,
        routing: if onehop { "onehop" } else { "chord" },
        session_secs: session,
        changes_per_s: changes as f64 / elapsed,
        lookups: done,
        mean_hops: hops.iter().sum::<f64>() / hops.len().max(1) as f64,
        p99_hops: quantile(&hops, 0.99),
        one_hop_pct: 100.0 * one_hop as f64 / done.max(1) as f64,
        failed,
        membership_bytes_per_node_s: per_node_s(traffic.membership.bytes),
        maintenance_bytes_per_node_s: per_node_s(
            traffic.ring.bytes + traffic.routing.bytes + traffic.membership.bytes,
        ),
        model_bytes_per_node_s: if onehop { model } else { 0.0 },
        table_bytes: if samples > 0.0 {
            table_bytes / samples
        } else {
            0.0
        },
        wall_secs: wall.elapsed().as_secs_f64(),
    }
}

/// Mean hops per lookup against N, one-hop and Chord, for the first
/// session time.
pub fn onehop_chart(rows: &[OneHopRow]) -> Chart {
    let session = rows.first().map_or(0.0, |r| r.session_secs);
    let line = |name: &str, routing: &str, dashed| Series {
        name: name.into(),
        points: rows
            .iter()
            .filter(|r| r.routing == routing && r.session_secs == session)
            .map(|r| (r.nodes as f64, r.mean_hops))
            .collect(),
        dashed,
    };
    Chart {
        title: format!("Hops per lookup under churn (mean session {session:.0} s)"),
        x_label: "nodes N".into(),
        y_label: "mean hops per lookup".into(),
        log2_x: true,
        series: vec![
            line("one hop (ours)", "onehop", false),
            line("Chord (ours)", "chord", true),
        ],
    }
}
