//! `chordal sim`: the Chord papers' experiments on the real core, in the
//! discrete-event simulator.

use anyhow::{Context, Result, bail};
use chordal_sim::experiments::{self, BalanceConfig, PathlenConfig};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Path length vs ring size, recursive and iterative (SIGCOMM'01 Fig. 10).
    Pathlen(PathlenArgs),
    /// Keys per host vs virtual nodes per host (SIGCOMM'01 Figs. 8–9).
    Balance(BalanceArgs),
    /// Lookups after a fraction of the ring fails at once (SIGCOMM'01 Fig. 11).
    Failure(FailureArgs),
    /// Lookups while nodes join and fail continuously (SIGCOMM'01 Fig. 12).
    Churn(ChurnArgs),
    /// The key-value store under churn: lost writes and time to full
    /// replication for R = 2 … 5.
    KvChurn(KvChurnArgs),
    /// One-hop routing against Chord: hops per lookup and membership
    /// bandwidth against ring size and session time (NSDI'04, D1HT).
    Onehop(OneHopArgs),
}

#[derive(Args)]
pub struct OneHopArgs {
    /// Ring sizes; one run per size, session time and routing.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000")]
    nodes: Vec<usize>,
    /// Mean session times in seconds (10440 = Gnutella's 2.9 h).
    #[arg(long, value_delimiter = ',', default_value = "10440,600")]
    sessions: Vec<f64>,
    /// Lookups measured per run (10 per second).
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Seconds of churn before measuring.
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Skip the Chord runs.
    #[arg(long)]
    no_chord: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct KvChurnArgs {
    /// Nodes in the ring (it keeps about this size).
    #[arg(long, default_value_t = 200)]
    nodes: usize,
    /// Replication factors to try.
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5")]
    replicas: Vec<usize>,
    /// Crashes per second, and as many joins.
    #[arg(long, default_value_t = 0.5)]
    rate: f64,
    /// Seconds of churn while writing.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// New keys written per second.
    #[arg(long, default_value_t = 10.0)]
    writes: f64,
    /// Keys to write in all, spread evenly over --duration (instead of
    /// --writes).
    #[arg(long, conflicts_with = "writes")]
    keys: Option<usize>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct ChurnArgs {
    /// Nodes in the ring (it keeps about this size).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Joins and failures per second (each); one run per rate.
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.1,0.2,0.3,0.4")]
    rates: Vec<f64>,
    /// Lookups (of random keys) measured per rate, one per second of
    /// virtual time.
    #[arg(long, visible_alias = "keys", default_value_t = 1000)]
    lookups: usize,
    /// Seconds of churn before lookups start.
    #[arg(long, default_value_t = 300)]
    warmup: u64,
    /// How nodes come and go: `poisson` (paired joins and failures, the
    /// paper), `exponential` or `weibull:SHAPE` session times (a new node
    /// replaces each failed one; mean session = nodes / rate).
    #[arg(long, default_value = "poisson", value_parser = parse_sessions)]
    sessions: experiments::Sessions,
    #[command(flatten)]
    common: Common,
}

fn parse_sessions(s: &str) -> Result<experiments::Sessions, String> {
    match s {
        "poisson" => Ok(experiments::Sessions::Poisson),
        "exponential" => Ok(experiments::Sessions::Exponential),
        _ => match s.strip_prefix("weibull:").map(str::parse::<f64>) {
            Some(Ok(k)) if k > 0.0 => Ok(experiments::Sessions::Weibull(k)),
            _ => Err("expected poisson, exponential or weibull:SHAPE (SHAPE > 0)".into()),
        },
    }
}

#[derive(Args)]
pub struct FailureArgs {
    /// Nodes in the ring.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Fractions of the ring that fail.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3,0.4,0.5")]
    fractions: Vec<f64>,
    /// Lookups per fraction and phase.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// (c) Key-value pairs stored, then read back after the failure
    /// (0 skips part c).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// (c) Replication factor R.
    #[arg(long, default_value_t = 5)]
    replicas: usize,
    #[command(flatten)]
    common: Common,
}

/// Options every experiment has.
#[derive(Args)]
pub struct Common {
    /// Seed of everything random; printed first. Same seed, same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Write an SVG chart here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Args)]
pub struct PathlenArgs {
    /// Largest ring (N runs over powers of two from 8 up to this).
    #[arg(long, default_value_t = 16_384)]
    nodes: usize,
    /// Lookups (of random keys) per ring size and mode.
    #[arg(long, visible_alias = "keys", default_value_t = 10_000)]
    lookups: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct BalanceArgs {
    /// Hosts on the ring.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Keys placed: one run per count (several draw Fig. 8, keys per host
    /// vs total keys; one draws Fig. 9, vs virtual nodes).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    keys: Vec<usize>,
    /// Virtual nodes per host to try.
    #[arg(long, value_delimiter = ',', default_value = "1,2,5,10,20")]
    vnodes: Vec<usize>,
    #[command(flatten)]
    common: Common,
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn write_plot(path: &Option<PathBuf>, svg: String) -> Result<()> {
    if let Some(p) = path {
        std::fs::write(p, svg).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("chart written to {}", p.display());
    }
    Ok(())
}

/// One experiment's results, as every `chordal sim` subcommand shows them:
/// with `--json` one object (`experiment`, `seed`, the `extra` fields and
/// `results`, one per row); else the seed, a table and its `note`. Then
/// the chart, where `--plot` asks for it.
struct Results<'a, R> {
    experiment: &'static str,
    seed: u64,
    /// More fields of the JSON object (an object).
    extra: Value,
    rows: &'a [R],
    header: &'a [&'a str],
    note: Option<&'a str>,
}

impl<R> Results<'_, R> {
    fn show(
        self,
        common: &Common,
        json_of: impl Fn(&R) -> Value,
        cells: impl Fn(&R) -> Vec<String>,
        chart: String,
    ) -> Result<()> {
        if common.json {
            let mut out = json!({"experiment": self.experiment, "seed": self.seed});
            if let Value::Object(extra) = self.extra {
                for (k, v) in extra {
                    out[k] = v;
                }
            }
            out["results"] = Value::Array(self.rows.iter().map(json_of).collect());
            println!("{out}");
        } else {
            println!("seed {}", self.seed);
            let mut t = Table::new();
            t.load_style(UTF8_BORDERS_ONLY)
                .set_header(self.header.to_vec());
            for r in self.rows {
                t.add_row(cells(r));
            }
            println!("{t}");
            if let Some(note) = self.note {
                println!("{note}");
            }
        }
        write_plot(&common.plot, chart)
    }
}

pub fn run(cmd: SimCommand) -> Result<()> {
    match cmd {
        SimCommand::Pathlen(a) => pathlen(a),
        SimCommand::Balance(a) => balance(a),
        SimCommand::Failure(a) => failure(a),
        SimCommand::Churn(a) => churn(a),
        SimCommand::KvChurn(a) => kv_churn(a),
        SimCommand::Onehop(a) => onehop(a),
    }
}

fn onehop(a: OneHopArgs) -> Result<()> {
    if a.nodes.iter().any(|n| *n < 8) || a.lookups == 0 || a.sessions.iter().any(|s| *s <= 0.0) {
        bail!("--nodes ≥ 8, --lookups ≥ 1 and every session > 0 please");
    }
    let cfg = experiments::OneHopConfig {
        sizes: a.nodes.clone(),
        sessions: a.sessions.clone(),
        chord: !a.no_chord,
        lookups: a.lookups,
        warmup: std::time::Duration::from_secs(a.warmup),
        seed: a.common.seed,
    };
    eprintln!("seed {}", cfg.seed);
    let runs = cfg.sizes.len() * cfg.sessions.len() * if cfg.chord { 2 } else { 1 };
    let progress = bar(runs, "runs");
    let rows = experiments::onehop(&cfg, |done, _| progress.set_position(done as u64));
    progress.finish_and_clear();
    Results {
        experiment: "onehop",
        seed: cfg.seed,
        extra: json!({}),
        rows: &rows,
        header: &[
            "N",
            "routing",
            "session s",
            "changes/s",
            "mean hops",
            "99th pct",
            "one hop %",
            "failed",
            "membership B/s/node",
            "model B/s/node",
            "maintenance B/s/node",
            "table KiB",
        ],
        note: Some("NSDI'04 aims at 99 % of lookups in one hop (Gnutella sessions, 2.9 h)."),
    }
    .show(
        &a.common,
        |r| r.to_json(),
        |r| {
            vec![
                r.nodes.to_string(),
                r.routing.to_string(),
                format!("{:.0}", r.session_secs),
                format!("{:.2}", r.changes_per_s),
                format!("{:.3}", r.mean_hops),
                format!("{:.0}", r.p99_hops),
                format!("{:.1}", r.one_hop_pct),
                r.failed.to_string(),
                format!("{:.0}", r.membership_bytes_per_node_s),
                format!("{:.0}", r.model_bytes_per_node_s),
                format!("{:.0}", r.maintenance_bytes_per_node_s),
                format!("{:.0}", r.table_bytes / 1024.0),
            ]
        },
        experiments::onehop_chart(&rows).to_svg(),
    )?;
    Ok(())
}

fn pathlen(a: PathlenArgs) -> Result<()> {
    if a.nodes < 8 || a.lookups == 0 {
        bail!("--nodes must be at least 8 and --lookups at least 1");
    }
    let cfg = PathlenConfig {
        min_exp: 3,
        max_exp: (a.nodes as f64).log2().floor() as u32,
        lookups: a.lookups,
        seed: a.common.seed,
    };
    eprintln!("seed {}", cfg.seed);
    let start = Instant::now();
    let progress = bar((cfg.max_exp - cfg.min_exp + 1) as usize, "ring sizes");
    let rows = experiments::pathlen(&cfg, |done, _| progress.set_position(done as u64));
    progress.finish_and_clear();
    Results {
        experiment: "pathlen",
        seed: cfg.seed,
        extra: json!({"lookups": cfg.lookups}),
        rows: &rows,
        header: &[
            "N",
            "mode",
            "mean hops",
            "1st pct",
            "99th pct",
            "paper mean (½·log2 N)",
            "wrong",
        ],
        note: None,
    }
    .show(
        &a.common,
        |r| r.to_json(),
        |r| {
            vec![
                r.nodes.to_string(),
                r.mode.to_string(),
                format!("{:.2}", r.mean),
                format!("{:.0}", r.p1),
                format!("{:.0}", r.p99),
                format!("{:.2}", r.paper),
                r.wrong.to_string(),
            ]
        },
        experiments::pathlen_chart(&rows).to_svg(),
    )?;
    let secs = start.elapsed().as_secs_f64();
    // Each ring size's second row holds the events and time of both modes.
    let last: Vec<_> = rows.iter().filter(|r| r.mode == "iterative").collect();
    let events: u64 = last.iter().map(|r| r.events).sum();
    let lookup_secs: f64 = last.iter().map(|r| r.lookup_secs).sum();
    eprintln!(
        "pathlen: {} ring sizes in {:.1} s; lookups: {} events in {:.1} s ({:.2} M events/s)",
        rows.len() / 2,
        secs,
        events,
        lookup_secs,
        events as f64 / lookup_secs.max(1e-9) / 1e6
    );
    Ok(())
}

fn balance(a: BalanceArgs) -> Result<()> {
    if a.nodes == 0 || a.vnodes.contains(&0) || a.keys.contains(&0) {
        bail!("--nodes and every --vnodes and --keys value must be at least 1");
    }
    let cfg = BalanceConfig {
        nodes: a.nodes,
        keys: a.keys.clone(),
        vnodes: a.vnodes.clone(),
        seed: a.common.seed,
    };
    eprintln!("seed {}", cfg.seed);
    let start = Instant::now();
    let progress = bar(cfg.vnodes.len() * cfg.keys.len(), "configurations");
    let rows = experiments::balance(&cfg, |done, _| progress.set_position(done as u64));
    progress.finish_and_clear();
    Results {
        experiment: "balance",
        seed: cfg.seed,
        extra: json!({"nodes": cfg.nodes}),
        rows: &rows,
        header: &[
            "vnodes",
            "keys",
            "mean",
            "1st pct",
            "99th pct",
            "max",
            "p99/mean",
            "theory p99/mean",
        ],
        note: None,
    }
    .show(
        &a.common,
        |r| r.to_json(),
        |r| {
            vec![
                r.vnodes.to_string(),
                r.keys.to_string(),
                format!("{:.1}", r.mean),
                format!("{:.0}", r.p1),
                format!("{:.0}", r.p99),
                format!("{:.0}", r.max),
                format!("{:.2}", r.p99_ratio),
                format!("{:.2}", experiments::theory_p99_ratio(r.vnodes)),
            ]
        },
        experiments::balance_chart(&rows).to_svg(),
    )?;
    eprintln!(
        "balance: {} configurations in {:.1} s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn failure(a: FailureArgs) -> Result<()> {
    if a.nodes < 2 || a.lookups == 0 || a.fractions.iter().any(|p| !(0.0..1.0).contains(p)) {
        bail!("--nodes ≥ 2, --lookups ≥ 1 and every fraction in [0, 1) please");
    }
    if a.replicas == 0 || a.replicas > 20 {
        bail!("--replicas must be 1 ..= 20 (the successor list holds 20)");
    }
    let cfg = experiments::FailureConfig {
        nodes: a.nodes,
        fractions: a.fractions.clone(),
        lookups: a.lookups,
        keys: a.keys,
        replicas: a.replicas,
        seed: a.common.seed,
    };
    eprintln!("seed {}", cfg.seed);
    let start = Instant::now();
    let progress = bar(cfg.fractions.len(), "failure fractions");
    let rows = experiments::failure(&cfg, |done, _| progress.set_position(done as u64));
    progress.finish_and_clear();
    Results {
        experiment: "failure",
        seed: cfg.seed,
        extra: json!({"nodes": cfg.nodes, "lookups": cfg.lookups}),
        rows: &rows,
        header: &[
            "p",
            "(a) keys lost",
            "paper ≈ p",
            "(a) failed after stabilizing",
            "(b) failed, frozen r=20",
            "(b) mean hops",
            "(b) p99 hops",
            "(b) timeouts/lookup",
            "ToN hops, timeouts",
            "(c) reads failed",
            "(c) keys lost",
            "(c) theory p^R",
        ],
        note: None,
    }
    .show(
        &a.common,
        |r| r.to_json(),
        |r| {
            vec![
                format!("{:.2}", r.fraction),
                format!("{:.3}", r.keys_lost),
                format!("{:.2}", r.fraction),
                format!("{:.4}", r.stabilized_failed),
                format!("{:.4}", r.frozen_failed),
                format!("{:.2}", r.frozen_hops),
                format!("{:.0}", r.frozen_p99_hops),
                format!("{:.2}", r.frozen_timeouts),
                r.paper_frozen
                    .map_or("—".into(), |(h, t)| format!("{h:.2}, {t:.2}")),
                format!("{:.4}", r.kv_unread),
                format!("{:.4}", r.kv_lost),
                format!("{:.4}", r.kv_theory),
            ]
        },
        experiments::failure_chart(&rows).to_svg(),
    )?;
    eprintln!(
        "failure: {} fractions in {:.1} s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn churn(a: ChurnArgs) -> Result<()> {
    if a.nodes < 8 || a.lookups == 0 || a.rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
        bail!("--nodes ≥ 8, --lookups ≥ 1 and every rate > 0 please");
    }
    let cfg = experiments::ChurnConfig {
        nodes: a.nodes,
        rates: a.rates.clone(),
        sessions: a.sessions,
        lookups: a.lookups,
        warmup: std::time::Duration::from_secs(a.warmup),
        seed: a.common.seed,
    };
    eprintln!("seed {}", cfg.seed);
    let start = Instant::now();
    let progress = bar(cfg.rates.len(), "churn rates");
    let rows = experiments::churn(&cfg, |done, _| progress.set_position(done as u64));
    progress.finish_and_clear();
    Results {
        experiment: "churn",
        seed: cfg.seed,
        extra: json!({"nodes": cfg.nodes, "sessions": format!("{:?}", cfg.sessions)}),
        rows: &rows,
        header: &[
            "rate/s",
            "failed /10^4",
            "model /10^4",
            "timeouts/lookup",
            "mean hops",
            "p99 hops",
            "paper ½·log2 N",
            "Chord B/node/s",
            "of which ring",
            "store sync B/node/s",
            "joins",
            "failures",
        ],
        note: None,
    }
    .show(
        &a.common,
        |r| r.to_json(),
        |r| {
            vec![
                format!("{:.2}", r.rate),
                format!("{:.1}", r.failed_per_10k),
                format!("{:.1}", r.model_per_10k),
                format!("{:.3}", r.timeouts),
                format!("{:.2}", r.mean_hops),
                format!("{:.0}", r.p99_hops),
                format!("{:.2}", (cfg.nodes as f64).log2() / 2.0),
                format!("{:.0}", r.bytes_per_node_s),
                format!("{:.0}", r.ring_bytes_per_node_s),
                format!("{:.0}", r.store_bytes_per_node_s),
                r.joins.to_string(),
                r.failures.to_string(),
            ]
        },
        experiments::churn_chart(&rows).to_svg(),
    )?;
    let events: u64 = rows.iter().map(|r| r.events).sum();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "churn: {} rates in {:.1} s ({:.2} M events/s per simulation while measuring)",
        rows.len(),
        secs,
        events as f64 / rows.iter().map(|r| r.wall_secs).sum::<f64>().max(1e-9) / 1e6
    );
    Ok(())
}

fn kv_churn(a: KvChurnArgs) -> Result<()> {
    if a.nodes < 8 || a.replicas.iter().any(|r| !(1..=16).contains(r)) {
        bail!("--nodes ≥ 8 and every --replicas value in 1 ..= 16 please");
    }
    let writes = match a.keys {
        Some(keys) => keys as f64 / a.duration.max(1) as f64,
        None => a.writes,
    };
    if !(a.rate > 0.0 && a.rate.is_finite() && writes > 0.0 && writes.is_finite()) {
        bail!("--rate and --writes (or --keys) must be positive");
    }
    let cfg = experiments::KvChurnConfig {
        nodes: a.nodes,
        replicas: a.replicas.clone(),
        rate: a.rate,
        duration: std::time::Duration::from_secs(a.duration),
        writes_per_sec: writes,
        seed: a.common.seed,
        ..Default::default()
    };
    eprintln!("seed {}", cfg.seed);
    let start = Instant::now();
    let progress = bar(cfg.replicas.len(), "replication factors");
    let rows = experiments::kv_churn(&cfg, |done, _| progress.set_position(done as u64));
    progress.finish_and_clear();
    Results {
        experiment: "kv-churn",
        seed: cfg.seed,
        extra: json!({
            "nodes": cfg.nodes,
            "rate": cfg.rate,
            "duration_secs": a.duration,
            "writes_per_sec": cfg.writes_per_sec,
        }),
        rows: &rows,
        header: &[
            "R",
            "acked writes",
            "refused",
            "acked lost",
            "reads failed",
            "keys under R at stop",
            "s to full replication",
            "joins",
            "failures",
        ],
        note: None,
    }
    .show(
        &a.common,
        |r| r.to_json(),
        |r| {
            vec![
                r.replicas.to_string(),
                r.acked.to_string(),
                r.refused.to_string(),
                r.lost.to_string(),
                r.unread.to_string(),
                r.under_replicated_at_stop.to_string(),
                r.full_replication_secs
                    .map_or("not reached".to_string(), |s| format!("{s:.0}")),
                r.joins.to_string(),
                r.failures.to_string(),
            ]
        },
        experiments::kv_churn_chart(&rows).to_svg(),
    )?;
    eprintln!(
        "kv-churn: {} replication factors in {:.1} s",
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
