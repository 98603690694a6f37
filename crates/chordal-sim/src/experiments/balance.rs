//! Load balance (SIGCOMM'01 §6.1, Figs. 8–9): keys per host on a ring of
//! hosts with 1 … 20 virtual nodes each, for 10^5 … 10^6 keys. Ownership
//! is `successor(key)`, computed from the ring's own ranges.

use super::quantile;
use crate::plot::{Chart, Series};
use crate::sim::random_id;
use chordal_core::{Id, Rng};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
/// Settings of the load-balance experiment (Chord paper, Fig. 8–9).
pub struct BalanceConfig {
    /// Physical nodes.
    pub nodes: usize,
    /// Key counts to place, one row each (per virtual node count).
    pub keys: Vec<usize>,
    /// Virtual nodes per physical node.
    pub vnodes: Vec<usize>,
    /// Seed of the run.
    pub seed: u64,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            nodes: 10_000,
            keys: vec![1_000_000],
            vnodes: vec![1, 2, 5, 10, 20],
            seed: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
/// Keys per node for one number of virtual nodes per node.
pub struct BalanceRow {
    /// Virtual nodes per physical node.
    pub vnodes: usize,
    /// Keys placed.
    pub keys: usize,
    /// Mean keys per physical node.
    pub mean: f64,
    /// 1st percentile of keys per node.
    pub p1: f64,
    /// 99th percentile of keys per node.
    pub p99: f64,
    /// Most keys on one node.
    pub max: f64,
    /// p99 / mean: how far the busiest hosts are from the mean.
    pub p99_ratio: f64,
}

impl BalanceRow {
    /// The row as JSON (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"vnodes": self.vnodes, "keys": self.keys, "mean": self.mean, "p1": self.p1, "p99": self.p99,
               "max": self.max, "p99_over_mean": self.p99_ratio})
    }
}

/// The reference for p99/mean: with random ids, a host's share of the ring
/// is the sum of `vnodes` exponential arcs, i.e. Gamma(vnodes) distributed
/// (the analysis behind the paper's Figs. 8–9), so keys per host divided by
/// the mean has this 99th percentile.
pub fn theory_p99_ratio(vnodes: usize) -> f64 {
    let k = vnodes.max(1);
    // P(k, x) = 1 - e^-x · Σ_{n<k} x^n / n!  (integer shape k).
    let cdf = |x: f64| {
        let mut term = 1.0;
        let mut sum = 1.0;
        for n in 1..k {
            term *= x / n as f64;
            sum += term;
        }
        1.0 - (-x).exp() * sum
    };
    let (mut lo, mut hi) = (0.0f64, 20.0 * k as f64 + 50.0);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) < 0.99 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi / k as f64
}

/// Runs the experiment; `progress(done, total)` is called as it goes.
pub fn balance(cfg: &BalanceConfig, mut progress: impl FnMut(usize, usize)) -> Vec<BalanceRow> {
    let mut rows = Vec::new();
    let total = cfg.vnodes.len() * cfg.keys.len();
    for &v in &cfg.vnodes {
        // Only ids matter here: hosts with `v` random virtual node ids each
        // (no routing state, so 10^4 hosts × 20 ids fit in a few MB).
        let mut rng = Rng::new(cfg.seed.wrapping_mul(7919).wrapping_add(v as u64));
        let mut ring: Vec<(Id, usize)> = (0..cfg.nodes)
            .flat_map(|h| (0..v).map(move |_| h))
            .map(|h| (random_id(&mut rng), h))
            .collect();
        ring.sort();
        for &keys in &cfg.keys {
            let mut per_host = vec![0u64; cfg.nodes];
            for _ in 0..keys {
                let key = random_id(&mut rng);
                let i = ring.partition_point(|(id, _)| *id < key) % ring.len();
                per_host[ring[i].1] += 1;
            }
            let mut counts: Vec<f64> = per_host.iter().map(|c| *c as f64).collect();
            counts.sort_by(f64::total_cmp);
            let mean = keys as f64 / cfg.nodes as f64;
            let p99 = quantile(&counts, 0.99);
            rows.push(BalanceRow {
                vnodes: v,
                keys,
                mean,
                p1: quantile(&counts, 0.01),
                p99,
                max: *counts.last().unwrap_or(&0.0),
                p99_ratio: p99 / mean,
            });
            progress(rows.len(), total);
        }
    }
    rows
}

/// Fig. 8 (keys per host vs total keys, for the first virtual node count)
/// when several key counts ran, else Fig. 9 (vs virtual nodes).
pub fn balance_chart(rows: &[BalanceRow]) -> Chart {
    let several_key_counts = rows
        .first()
        .is_some_and(|f| rows.iter().any(|r| r.keys != f.keys));
    if several_key_counts {
        keys_chart(rows)
    } else {
        vnodes_chart(rows)
    }
}

/// Fig. 8: keys per host (mean, 1st and 99th percentiles) vs total keys.
fn keys_chart(rows: &[BalanceRow]) -> Chart {
    let v = rows[0].vnodes;
    let rows: Vec<BalanceRow> = rows.iter().filter(|r| r.vnodes == v).cloned().collect();
    Chart {
        title: format!("Keys per host vs total keys, {v} vnode(s) (Chord SIGCOMM'01 Fig. 8)"),
        x_label: "total keys".into(),
        y_label: "keys per host".into(),
        log2_x: false,
        series: percentile_lines(&rows, |r| r.keys as f64, false),
    }
}

/// Fig. 9: 1st and 99th percentiles of keys per host vs virtual nodes.
fn vnodes_chart(rows: &[BalanceRow]) -> Chart {
    Chart {
        title: "Keys per host vs virtual nodes (Chord SIGCOMM'01 Fig. 9)".into(),
        x_label: "virtual nodes per host".into(),
        y_label: "keys per host".into(),
        log2_x: false,
        series: percentile_lines(rows, |r| r.vnodes as f64, true),
    }
}

/// The lines both figures draw, each row at `x(row)`: 99th percentile,
/// mean, 1st percentile, (max,) and the theory's 99th percentile.
fn percentile_lines(rows: &[BalanceRow], x: fn(&BalanceRow) -> f64, with_max: bool) -> Vec<Series> {
    let line = |name: &str, f: &dyn Fn(&BalanceRow) -> f64, dashed| Series {
        name: name.into(),
        points: rows.iter().map(|r| (x(r), f(r))).collect(),
        dashed,
    };
    let mut lines = vec![
        line("99th percentile", &|r| r.p99, false),
        line("mean", &|r| r.mean, true),
        line("1st percentile", &|r| r.p1, false),
    ];
    if with_max {
        lines.push(line("max", &|r| r.max, false));
    }
    lines.push(line(
        "theory: 99th pct",
        &|r| r.mean * theory_p99_ratio(r.vnodes),
        true,
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theory_matches_known_quantiles() {
        // One arc: exponential, 99th percentile = ln 100.
        assert!((theory_p99_ratio(1) - 100f64.ln()).abs() < 1e-6);
        // Gamma(10, 1): 99th percentile ≈ 18.783.
        assert!((theory_p99_ratio(10) - 1.8783).abs() < 1e-3);
    }
}
