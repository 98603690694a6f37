//! `chordal bench`: measurements on an in-process ring over loopback.
//!
//! - `lookup`: latency percentiles and hop counts, recursive vs iterative.
//! - `heal`: time until every successor pointer (hence every lookup) is
//!   right again after a join and after a crash.
//! - `idle`: CPU and memory of an idle ring.
//! - `metrics`: time to render a node's /metrics in a busy ring.
//! - `kv`, `pubsub`, `gateway`, `big-store`, `repair` and `collection`:
//!   one file each in this folder; `stats.rs` (percentiles) and `pki.rs`
//!   (a throw-away CA for the TLS runs) are what they share.

mod big;
mod collection;
mod gateway;
mod kv;
mod pki;
mod pubsub;
mod repair;
mod stats;

use anyhow::{Context, Result, bail};
use chordal_core::{Id, LookupMode};
use chordal_node::KeyValue;
use chordal_node::local::{Check, LocalRing};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use pki::{BenchPki, handshake_time, handshakes};
use serde_json::json;
use stats::{micros, percentile};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Lookup latency (p50/p99) and mean hops at several ring sizes.
    Lookup(LookupArgs),
    /// Time to correct lookups after one join and after one crash.
    Heal(HealArgs),
    /// CPU and memory of an idle ring with default intervals.
    Idle(IdleArgs),
    /// Put and get throughput and latency of the replicated store.
    Kv(kv::KvArgs),
    /// Pub/sub fan-out: one topic, many subscribers.
    Pubsub(pubsub::PubSubArgs),
    /// Latency the gateway adds, its throughput, and failover time.
    Gateway(gateway::GatewayBenchArgs),
    /// Time to render a node's /metrics in a busy ring.
    Metrics(MetricsArgs),
    /// Lookups while every node syncs and sweeps ~10^6 records on redb.
    BigStore(big::BigArgs),
    /// Re-replication after a crash and a graceful leave's handover, at
    /// real data volumes on redb (MB/s, seconds).
    Repair(repair::RepairArgs),
    /// An element write and read in a hash of 10 fields vs one of 10^6.
    Collection(collection::CollectionArgs),
}

#[derive(Args)]
pub struct MetricsArgs {
    #[arg(long, default_value_t = 128)]
    nodes: usize,
    /// Renders timed.
    #[arg(long, default_value_t = 500)]
    scrapes: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LookupArgs {
    /// Runtime of the in-process ring.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Multi)]
    runtime: RuntimeKind,
    /// Ring sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,64,128")]
    nodes: Vec<usize>,
    /// Lookups per size and mode.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// Untimed lookups first (other keys), so that the timed ones run over
    /// established connections as in a long-running ring.
    #[arg(long, default_value_t = 2000)]
    warmup: usize,
    /// Mutual TLS between the nodes (a throw-away CA, a certificate per
    /// node); also measures a handshake's cost.
    #[arg(long)]
    tls: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct HealArgs {
    /// Runtime of the in-process ring.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Multi)]
    runtime: RuntimeKind,
    #[arg(long, default_value_t = 128)]
    nodes: usize,
    /// Joins and crashes measured (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct IdleArgs {
    /// Runtime of the in-process ring.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Multi)]
    runtime: RuntimeKind,
    #[arg(long, default_value_t = 128)]
    nodes: usize,
    /// Length of the measured window.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long)]
    json: bool,
}

/// Which tokio runtime the measured ring runs on.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Multi-threaded, one worker per core (what `chordal node` uses).
    #[default]
    Multi,
    /// One thread for every node: no cross-thread wake-ups.
    Current,
}

/// Runs a benchmark on the runtime it asks for.
pub fn run_blocking(cmd: BenchCommand) -> Result<()> {
    let kind = match &cmd {
        BenchCommand::Lookup(a) => a.runtime,
        BenchCommand::Heal(a) => a.runtime,
        BenchCommand::Idle(a) => a.runtime,
        BenchCommand::Kv(_)
        | BenchCommand::Pubsub(_)
        | BenchCommand::Gateway(_)
        | BenchCommand::Metrics(_)
        | BenchCommand::Repair(_)
        | BenchCommand::Collection(_)
        | BenchCommand::BigStore(_) => RuntimeKind::Multi,
    };
    let rt = match kind {
        RuntimeKind::Multi => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        RuntimeKind::Current => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    rt.block_on(run(cmd))
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Lookup(a) => lookup(a).await,
        BenchCommand::Heal(a) => heal(a).await,
        BenchCommand::Idle(a) => idle(a).await,
        BenchCommand::Kv(a) => kv::run(a).await,
        BenchCommand::Pubsub(a) => pubsub::run(a).await,
        BenchCommand::Gateway(a) => gateway::run(a).await,
        BenchCommand::Metrics(a) => metrics(a).await,
        BenchCommand::Repair(a) => repair::run(a).await,
        BenchCommand::BigStore(a) => big::run(a).await,
        BenchCommand::Collection(a) => collection::run(a).await,
    }
}

/// Renders node 0's metrics after every node did some of everything
/// (puts, gets, lookups), so that every series exists.
async fn metrics(args: MetricsArgs) -> Result<()> {
    eprintln!("starting {} nodes...", args.nodes);
    let ring = ready_ring(args.nodes).await?;
    for (i, node) in ring.nodes.iter().enumerate() {
        for k in 0..5 {
            let key = format!("m-{i}-{k}").into_bytes();
            node.put(key.clone(), b"v".to_vec()).await?;
            node.get(key.clone()).await?;
            node.locate(&key).await?;
        }
    }
    let node = &ring.nodes[0];
    let text = node.metrics().await?;
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let mut took = Vec::with_capacity(args.scrapes);
    for _ in 0..args.scrapes {
        let t0 = Instant::now();
        let text = node.metrics().await?;
        took.push(t0.elapsed());
        std::hint::black_box(text);
    }
    took.sort();
    let (p50, p99) = (percentile(&took, 0.5), percentile(&took, 0.99));
    if args.json {
        println!(
            "{}",
            json!({"bench": "metrics", "nodes": args.nodes, "series": series, "bytes": text.len(),
                   "render_p50_us": micros(p50), "render_p99_us": micros(p99)})
        );
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_header([
            "nodes",
            "series",
            "bytes",
            "render p50 µs",
            "render p99 µs",
        ]);
        t.add_row([
            args.nodes.to_string(),
            series.to_string(),
            text.len().to_string(),
            format!("{:.0}", micros(p50)),
            format!("{:.0}", micros(p99)),
        ]);
        println!("{t}");
    }
    ring.leave_all().await;
    Ok(())
}

/// A converged ring with exact fingers, ready to be measured.
async fn ready_ring(n: usize) -> Result<LocalRing> {
    ready_ring_with(n, None).await
}

/// `ready_ring`, with mutual TLS if `pki` is given.
async fn ready_ring_with(n: usize, pki: Option<&BenchPki>) -> Result<LocalRing> {
    if n == 0 {
        bail!("a ring needs at least one node");
    }
    let certs = match pki {
        Some(pki) => pki.members(n)?.into_iter().map(Some).collect(),
        None => vec![None; n],
    };
    let builder_of = |i: usize| {
        let builder = chordal_node::Node::builder();
        match &certs[i] {
            Some(dir) => builder.tls_dir(dir),
            None => builder,
        }
    };
    start_ring(n, builder_of, true).await
}

/// Starts `n` nodes, node `i` as `builder_of(i)` makes it, and waits (at
/// most 2 minutes each) until successors are right, every range has a
/// decider, and with `fingers` every finger is exact.
pub(super) async fn start_ring(
    n: usize,
    builder_of: impl FnMut(usize) -> chordal_node::NodeBuilder,
    fingers: bool,
) -> Result<LocalRing> {
    let ring = LocalRing::start_each(n, builder_of)
        .await
        .context("starting the ring")?;
    let limit = Duration::from_secs(120);
    ring.wait_for(Check::Neighbours, Duration::from_millis(100), limit)
        .await
        .context("the ring did not converge")?;
    if fingers {
        ring.wait_for(Check::Fingers, Duration::from_millis(250), limit)
            .await
            .context("the fingers did not become exact")?;
    }
    ring.wait_for(Check::Decides, Duration::from_millis(100), limit)
        .await
        .context("the ring's ranges never all had a decider")?;
    Ok(ring)
}

async fn lookup(args: LookupArgs) -> Result<()> {
    let mut rows = Vec::new();
    let pki = if args.tls {
        Some(BenchPki::new()?)
    } else {
        None
    };
    let client_cert = pki.as_ref().map(|p| p.client()).transpose()?;
    for &n in &args.nodes {
        eprintln!(
            "starting {n} nodes{}...",
            if args.tls { " (TLS)" } else { "" }
        );
        let ring = ready_ring_with(n, pki.as_ref()).await?;
        let oracle = ring.oracle();
        let (handshake_p50, handshake_p99) =
            handshake_time(ring.nodes[0].addr(), client_cert.as_deref(), 200).await?;
        for mode in [LookupMode::Recursive, LookupMode::Iterative] {
            for k in 0..args.warmup {
                let key = Id::hash(format!("warmup-{k}").as_bytes());
                ring.nodes[k % n].lookup(key, mode).await?;
            }
            let handshakes_before = handshakes(&ring.nodes);
            let mut latencies = Vec::with_capacity(args.lookups);
            let mut hops = 0u64;
            let mut wrong = 0usize;
            for k in 0..args.lookups {
                let node = &ring.nodes[k % n];
                let key = Id::hash(format!("bench-{k}").as_bytes());
                let t0 = Instant::now();
                let r = node.lookup(key, mode).await?;
                latencies.push(t0.elapsed());
                hops += r.hops as u64;
                if r.owner.id != oracle.successor(&key) {
                    wrong += 1;
                }
            }
            latencies.sort();
            rows.push(json!({
                "nodes": n,
                "tls": args.tls,
                "mode": format!("{mode:?}").to_lowercase(),
                "handshakes_during": handshakes(&ring.nodes) - handshakes_before,
                "handshakes_total": handshakes(&ring.nodes),
                "peer_pairs": n * (n - 1) / 2,
                "handshake_p50_us": micros(handshake_p50),
                "handshake_p99_us": micros(handshake_p99),
                "lookups": args.lookups,
                "warmup": args.warmup,
                "p50_us": micros(percentile(&latencies, 0.5)),
                "p99_us": micros(percentile(&latencies, 0.99)),
                "mean_hops": hops as f64 / args.lookups as f64,
                "hop_bound": 0.5 * (n as f64).log2() + 1.0,
                "wrong_owner": wrong,
            }));
        }
        ring.leave_all().await;
    }
    if args.json {
        println!("{}", json!({"bench": "lookup", "results": rows}));
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_header([
            "nodes",
            "mode",
            "p50 µs",
            "p99 µs",
            "mean hops",
            "½·log2 N + 1",
            "wrong",
            "new conns",
            "handshake p50 µs",
        ]);
        for r in &rows {
            t.add_row([
                r["nodes"].to_string(),
                r["mode"].as_str().unwrap_or("").to_string(),
                format!("{:.0}", r["p50_us"].as_f64().unwrap_or(0.0)),
                format!("{:.0}", r["p99_us"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", r["mean_hops"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", r["hop_bound"].as_f64().unwrap_or(0.0)),
                r["wrong_owner"].to_string(),
                r["handshakes_during"].to_string(),
                format!("{:.0}", r["handshake_p50_us"].as_f64().unwrap_or(0.0)),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}

async fn heal(args: HealArgs) -> Result<()> {
    eprintln!("starting {} nodes...", args.nodes);
    let mut ring = ready_ring(args.nodes).await?;
    let every = Duration::from_millis(5);
    let limit = Duration::from_secs(30);
    let mut joins = Vec::new();
    let mut crashes = Vec::new();
    for round in 0..args.rounds {
        // A join: from the start call until every successor pointer is right.
        let t0 = Instant::now();
        let seed = ring.nodes[round % ring.nodes.len()].addr().to_string();
        let node = chordal_node::Node::builder().join(seed).start().await?;
        ring.nodes.push(node);
        ring.wait_for(Check::Successors, every, limit)
            .await
            .context("join did not heal")?;
        joins.push(t0.elapsed());
        // A crash: from the abort until every successor pointer is right.
        let victim = 1 + (round * 7919) % (ring.nodes.len() - 1);
        let dead = ring.nodes.remove(victim);
        let t0 = Instant::now();
        dead.abort().await;
        ring.wait_for(Check::Successors, every, limit)
            .await
            .context("crash did not heal")?;
        crashes.push(t0.elapsed());
        // Let predecessors settle before the next round.
        ring.wait_for(Check::Neighbours, every, limit)
            .await
            .context("ring did not settle")?;
    }
    joins.sort();
    crashes.sort();
    let med = |v: &[Duration]| micros(percentile(v, 0.5)) / 1000.0;
    let max = |v: &[Duration]| v.last().map(|d| micros(*d) / 1000.0).unwrap_or(0.0);
    let result = json!({
        "bench": "heal",
        "nodes": args.nodes,
        "rounds": args.rounds,
        "join_median_ms": med(&joins),
        "join_max_ms": max(&joins),
        "crash_median_ms": med(&crashes),
        "crash_max_ms": max(&crashes),
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{} nodes, {} rounds\njoin:  median {:.1} ms, max {:.1} ms\ncrash: median {:.1} ms, max {:.1} ms",
            args.nodes,
            args.rounds,
            med(&joins),
            max(&joins),
            med(&crashes),
            max(&crashes)
        );
    }
    ring.leave_all().await;
    Ok(())
}

/// CPU seconds (user + system) this process has used, from /proc.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ is 100 on every Linux platform we build for.
    Ok(ticks / 100.0)
}

/// Resident memory of this process in bytes, from /proc.
fn rss_bytes() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("odd VmRSS")?
        .parse()?;
    Ok(kb * 1024)
}

async fn idle(args: IdleArgs) -> Result<()> {
    let rss_before = rss_bytes()?;
    eprintln!("starting {} nodes...", args.nodes);
    let ring = ready_ring(args.nodes).await?;
    let rss_after = rss_bytes()?;
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let cpu = cpu_seconds()? - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let mut frames = 0u64;
    for n in &ring.nodes {
        frames += n
            .wire_stats()
            .frames_out
            .load(std::sync::atomic::Ordering::Relaxed);
    }
    let per_node_kib = (rss_after.saturating_sub(rss_before)) as f64 / args.nodes as f64 / 1024.0;
    let result = json!({
        "bench": "idle",
        "nodes": args.nodes,
        "seconds": wall,
        "cpu_percent_of_one_core": 100.0 * cpu / wall,
        "rss_total_mib": rss_after as f64 / 1048576.0,
        "rss_per_node_kib": per_node_kib,
        "frames_out_total": frames,
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{} idle nodes for {:.1} s: {:.1}% of one core, {:.0} KiB RSS per node ({:.1} MiB total)",
            args.nodes,
            wall,
            100.0 * cpu / wall,
            per_node_kib,
            rss_after as f64 / 1048576.0
        );
    }
    ring.leave_all().await;
    Ok(())
}
