//! The key-value store under churn (beyond the papers): while nodes crash
//! and join, a client keeps writing new keys; then churn stops and we
//! measure how long until every acknowledged key sits on all R nodes that
//! should hold it (its owner and the next R − 1 successors), and how many
//! acknowledged writes were lost.
//!
//! The protocol runs with `chordal node`'s defaults (maintenance every
//! 500 ms, range sync every 5 s, writes acknowledged by a majority of the
//! copies) over a wide-area network. A write is lost when, after the ring
//! has settled, no live node holds it: every copy was on nodes that crashed
//! before range sync copied it on.

use crate::plot::{Chart, Series};
use crate::{Churn, ChurnModel, Latency, Sim, SimConfig};
use chordal_core::{Id, OpId, Oracle, Outcome};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct KvChurnConfig {
    /// Nodes in the ring at the start.
    pub nodes: usize,
    /// Replication factors to try, one run each.
    pub replicas: Vec<usize>,
    /// Crashes per second (and as many joins), Poisson.
    pub rate: f64,
    /// Seconds of churn while writing.
    pub duration: Duration,
    /// New keys written per second.
    pub writes_per_sec: f64,
    /// Give up waiting for full replication after this long.
    pub settle_limit: Duration,
    /// Seed of the run.
    pub seed: u64,
}

impl Default for KvChurnConfig {
    fn default() -> Self {
        KvChurnConfig {
            nodes: 200,
            replicas: vec![2, 3, 4, 5],
            rate: 0.5,
            duration: Duration::from_secs(600),
            writes_per_sec: 10.0,
            settle_limit: Duration::from_secs(600),
            seed: 1,
        }
    }
}

/// One replication factor. Equality ignores wall time.
#[derive(Clone, Debug)]
pub struct KvChurnRow {
    /// Replication factor R.
    pub replicas: usize,
    /// Writes acknowledged to the client.
    pub acked: usize,
    /// Writes that failed (not acknowledged): the client knows to retry.
    pub refused: usize,
    /// Acknowledged writes no live node holds once the ring settled.
    pub lost: usize,
    /// Acknowledged keys a read could not find once the ring settled.
    pub unread: usize,
    /// Seconds from the end of churn until every acknowledged key that
    /// survived is on all of its R replica holders (None: not within the
    /// limit).
    pub full_replication_secs: Option<f64>,
    /// Acknowledged keys (not lost) short of R copies when churn stopped.
    pub under_replicated_at_stop: usize,
    /// Nodes that joined during the run.
    pub joins: usize,
    /// Nodes that failed during the run.
    pub failures: usize,
    /// Wall-clock seconds the run took.
    pub wall_secs: f64,
}

impl PartialEq for KvChurnRow {
    fn eq(&self, o: &Self) -> bool {
        (
            self.replicas,
            self.acked,
            self.refused,
            self.lost,
            self.unread,
            self.under_replicated_at_stop,
            self.joins,
            self.failures,
        ) == (
            o.replicas,
            o.acked,
            o.refused,
            o.lost,
            o.unread,
            o.under_replicated_at_stop,
            o.joins,
            o.failures,
        ) && self.full_replication_secs == o.full_replication_secs
    }
}

impl KvChurnRow {
    /// The row as JSON (what `--json` prints).
    pub fn to_json(&self) -> Value {
        json!({"replicas": self.replicas, "acked": self.acked, "refused": self.refused,
               "lost": self.lost, "unread": self.unread,
               "full_replication_secs": self.full_replication_secs,
               "under_replicated_at_stop": self.under_replicated_at_stop,
               "joins": self.joins, "failures": self.failures})
    }
}

/// Runs each replication factor (in parallel, one per core);
/// `progress(done, total)` after each.
pub fn kv_churn(cfg: &KvChurnConfig, progress: impl FnMut(usize, usize)) -> Vec<KvChurnRow> {
    super::run_each(&cfg.replicas, |&r| one(cfg, r), progress)
}

fn one(cfg: &KvChurnConfig, replicas: usize) -> KvChurnRow {
    let wall = Instant::now();
    let seed = cfg.seed.wrapping_mul(6151).wrapping_add(replicas as u64);
    let mut config = SimConfig {
        seed,
        latency: Latency::wide_area(),
        ..SimConfig::default()
    };
    config.node.replicas = replicas;
    config.node.successors = config.node.successors.max(replicas + 3);
    let mut s = Sim::new(config);
    let members = s.build_converged(cfg.nodes, 1);
    let mut churn = Churn::new(
        ChurnModel::Poisson { rate: cfg.rate },
        seed,
        &s,
        &members,
        1,
    );
    let mut rng = chordal_core::Rng::new(seed ^ 0x7772_6974);
    let (mut joins, mut failures) = (0, 0);
    let gap = Duration::from_secs_f64(1.0 / cfg.writes_per_sec.max(1e-3));
    let end = s.now() + cfg.duration;
    let mut next_write = s.now();
    let mut writes: Vec<(usize, OpId, String)> = Vec::new();
    while s.now() < end {
        let t = churn.next_at().min(next_write).min(end);
        s.run_until(t);
        for e in churn.apply_due(&mut s) {
            match e {
                crate::ChurnEvent::Joined(_) => joins += 1,
                crate::ChurnEvent::Failed(_) => failures += 1,
            }
        }
        if s.now() >= next_write && s.now() < end {
            let live = s.joined();
            let from = live[rng.below(live.len() as u64) as usize];
            let key = format!("k{}", writes.len());
            let op = s.start_put(from, key.as_bytes(), key.as_bytes());
            writes.push((from, op, key));
            next_write = next_write + gap;
        }
    }
    // Churn stops. From now on, every second: the writes acknowledged so
    // far, and whether each that survived is on all of its R holders.
    // Done when no write is still running and none is short.
    let stop = s.now();
    let outcome = |s: &Sim| {
        let mut acked = Vec::new();
        let (mut refused, mut running) = (0, 0);
        for (i, op, key) in &writes {
            match s.kv_result(*i, *op) {
                Some(Ok(Outcome::Stored { .. })) => acked.push(key.clone()),
                // A write whose coordinator crashed never gets an answer.
                None if s.is_alive(*i) => running += 1,
                _ => refused += 1,
            }
        }
        (acked, refused, running)
    };
    let (acked_at_stop, _, _) = outcome(&s);
    let under_replicated_at_stop =
        missing_copies(&s, &acked_at_stop, replicas).1 - lost(&s, &acked_at_stop);
    let mut full = None;
    let (mut acked, mut refused, mut running) = outcome(&s);
    while s.now().saturating_since(stop) <= cfg.settle_limit {
        (acked, refused, running) = outcome(&s);
        // Keys that are gone can never be fully replicated: wait for the rest.
        if running == 0 && missing_copies(&s, &acked, replicas).1 == lost(&s, &acked) {
            full = Some(s.now().saturating_since(stop).as_secs_f64());
            break;
        }
        s.run_for(Duration::from_secs(1));
    }
    refused += running;
    let lost_count = lost(&s, &acked);
    // Read every acknowledged key back through random members.
    let reads: Vec<(usize, OpId)> = acked
        .iter()
        .map(|key| {
            let live = s.alive();
            let from = live[rng.below(live.len() as u64) as usize];
            (from, s.start_get(from, key.as_bytes()))
        })
        .collect();
    s.run_for(Duration::from_secs(10));
    let unread = reads
        .iter()
        .filter(|(i, op)| !matches!(s.kv_result(*i, *op), Some(Ok(Outcome::Found { .. }))))
        .count();
    KvChurnRow {
        replicas,
        acked: acked.len(),
        refused,
        lost: lost_count,
        unread,
        full_replication_secs: full,
        under_replicated_at_stop,
        joins,
        failures,
        wall_secs: wall.elapsed().as_secs_f64(),
    }
}

/// Live node index of every live virtual node id.
fn node_index(s: &Sim) -> (Oracle, HashMap<Id, usize>) {
    let mut by_id = HashMap::new();
    for i in s.alive() {
        for v in s.node(i).vnodes() {
            by_id.insert(v.me().id, i);
        }
    }
    (s.oracle(), by_id)
}

/// (copies missing in total, keys short of their R holders).
fn missing_copies(s: &Sim, keys: &[String], replicas: usize) -> (usize, usize) {
    let (oracle, by_id) = node_index(s);
    let (mut missing, mut short) = (0, 0);
    for key in keys {
        let id = Id::of_key(key.as_bytes());
        let owner = oracle.successor(&id);
        let mut want = vec![owner];
        want.extend(oracle.successors(&owner, replicas.saturating_sub(1)));
        let absent = want
            .iter()
            .filter(|n| !s.holds(by_id[*n], key.as_bytes()))
            .count();
        missing += absent;
        short += (absent > 0) as usize;
    }
    (missing, short)
}

/// Acknowledged keys no live node holds.
fn lost(s: &Sim, keys: &[String]) -> usize {
    keys.iter()
        .filter(|key| s.holders(key.as_bytes()).is_empty())
        .count()
}

/// Lost writes and time to full replication vs R.
pub fn kv_churn_chart(rows: &[KvChurnRow]) -> Chart {
    Chart {
        title: "Key-value store under churn".into(),
        x_label: "replicas R".into(),
        y_label: "count / seconds".into(),
        log2_x: false,
        series: vec![
            Series {
                name: "acked writes lost".into(),
                points: rows
                    .iter()
                    .map(|r| (r.replicas as f64, r.lost as f64))
                    .collect(),
                dashed: false,
            },
            Series {
                name: "keys under R at stop".into(),
                points: rows
                    .iter()
                    .map(|r| (r.replicas as f64, r.under_replicated_at_stop as f64))
                    .collect(),
                dashed: false,
            },
            Series {
                name: "s to full replication".into(),
                points: rows
                    .iter()
                    .filter_map(|r| Some((r.replicas as f64, r.full_replication_secs?)))
                    .collect(),
                dashed: false,
            },
        ],
    }
}
