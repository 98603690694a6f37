//! `chordal bench repair`: how fast the store gets back to R copies after
//! a crash, and how fast a graceful leave hands its data over, at real
//! data volumes on redb.
//!
//! A ring of R + 1 in-process nodes on redb (temporary directories) is
//! filled until each node holds about `--mb` MB. Then one node crashes
//! (`abort`): the R survivors must each end up holding every record, so
//! each receives what it was missing — about `--mb` MB across the ring.
//! The time from the crash to the last survivor holding everything, and
//! that volume divided by it, are reported. A second run measures a
//! graceful leave of one node with R = 1 (its whole range goes to its
//! successor): time from `leave()` to its return, and MB/s.

use anyhow::{Context, Result, bail};
use chordal_node::KeyValue;
use chordal_node::Node;
use clap::Args;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct RepairArgs {
    /// Data per node to fill to, in MB (several: one run each).
    #[arg(long, value_delimiter = ',', default_value = "60")]
    mb: Vec<u64>,
    /// Replication factor R of the crash run (the ring has R + 1 nodes).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Size of each value, in bytes.
    #[arg(long, default_value_t = 100_000)]
    value_bytes: usize,
    /// Writers filling the ring.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    #[arg(long)]
    json: bool,
}

/// One measurement.
struct Run {
    what: &'static str,
    mb_per_node: u64,
    moved_mb: f64,
    seconds: f64,
}

pub async fn run(args: RepairArgs) -> Result<()> {
    if args.replicas == 0 || args.value_bytes == 0 {
        bail!("--replicas and --value-bytes must be at least 1");
    }
    let mut runs = Vec::new();
    for &mb in &args.mb {
        runs.push(crash(&args, mb).await?);
        runs.push(leave(&args, mb).await?);
    }
    if args.json {
        let rows: Vec<_> = runs
            .iter()
            .map(|r| {
                json!({"what": r.what, "mb_per_node": r.mb_per_node, "moved_mb": r.moved_mb,
                       "seconds": r.seconds, "mb_per_s": r.moved_mb / r.seconds})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::UTF8_BORDERS_ONLY);
        t.set_header(["what", "MB per node", "MB moved", "seconds", "MB/s"]);
        for r in &runs {
            t.add_row([
                r.what.to_string(),
                r.mb_per_node.to_string(),
                format!("{:.0}", r.moved_mb),
                format!("{:.2}", r.seconds),
                format!("{:.0}", r.moved_mb / r.seconds),
            ]);
        }
        println!("{t}");
    }
    Ok(())
}

/// A settled ring of `n` redb nodes in `dir`.
async fn ring(dir: &std::path::Path, n: usize, replicas: usize) -> Result<Vec<Node>> {
    let ring = chordal_node::local::LocalRing::start_each(n, |i| {
        chordal_node::local::quick()
            .replicas(replicas)
            .core_with(|c| c.sync_interval = Duration::from_secs(1))
            .data_dir(dir.join(format!("n{i}")))
    })
    .await?;
    ring.wait_for(
        chordal_node::local::Check::Successors,
        Duration::from_millis(20),
        Duration::from_secs(30),
    )
    .await
    .context("the ring did not settle")?;
    Ok(ring.nodes)
}

/// Puts `count` values from `writers` tasks spread over `nodes`.
async fn fill(nodes: &[Node], count: usize, value_bytes: usize, writers: usize) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let nodes: Vec<Node> = nodes.to_vec();
        tasks.spawn(async move {
            for k in (w..count).step_by(writers) {
                let mut value = vec![(k % 251) as u8; value_bytes];
                value[..8].copy_from_slice(&(k as u64).to_be_bytes());
                let node = &nodes[k % nodes.len()];
                if let Err(e) = node.put(format!("repair-{k}").into_bytes(), value).await {
                    return Err(anyhow::anyhow!("put {k}: {e}"));
                }
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Records in each node's store.
async fn counts(nodes: &[&Node]) -> Vec<u64> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(n.status().await.map(|s| s.keys_stored).unwrap_or(0));
    }
    out
}

/// Crash one of R + 1 nodes; time until each survivor holds every record.
async fn crash(args: &RepairArgs, mb: u64) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let n = args.replicas + 1;
    let nodes = ring(dir.path(), n, args.replicas).await?;
    // Each node holds R / n of the records.
    let total_bytes = mb * 1_000_000 * n as u64 / args.replicas as u64;
    let count = (total_bytes / args.value_bytes as u64).max(1) as usize;
    eprintln!("crash run: filling {n} nodes to ~{mb} MB each ({count} values)");
    fill(&nodes, count, args.value_bytes, args.writers).await?;
    // Let the initial replication settle: every key on R nodes.
    let all: Vec<&Node> = nodes.iter().collect();
    let want = (count * args.replicas) as u64;
    let settle = Instant::now();
    while counts(&all).await.iter().sum::<u64>() < want
        && settle.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = n - 1;
    nodes[victim].abort().await;
    let start = Instant::now();
    let survivors: Vec<&Node> = nodes[..victim].iter().collect();
    loop {
        let c = counts(&survivors).await;
        if c.iter().all(|k| *k >= count as u64) {
            break;
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("re-replication did not finish in 30 minutes: {c:?} of {count}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    // What the survivors were missing: the victim's share, once each.
    let moved_mb = (count * args.value_bytes) as f64 / 1e6 * (n - 1) as f64 / n as f64;
    for node in &nodes[..victim] {
        node.abort().await;
    }
    Ok(Run {
        what: "crash: back to R copies",
        mb_per_node: mb,
        moved_mb,
        seconds,
    })
}

/// A graceful leave with R = 1: the leaving node's whole range goes to
/// its successor.
async fn leave(args: &RepairArgs, mb: u64) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let n = 3;
    let nodes = ring(dir.path(), n, 1).await?;
    let count = (mb * 1_000_000 * n as u64 / args.value_bytes as u64).max(1) as usize;
    eprintln!("leave run: filling {n} nodes to ~{mb} MB each ({count} values)");
    fill(&nodes, count, args.value_bytes, args.writers).await?;
    // The node holding the most leaves (ids are random: ranges differ).
    let all: Vec<&Node> = nodes.iter().collect();
    let held = counts(&all).await;
    let leaving = (0..n).max_by_key(|i| held[*i]).unwrap_or(0);
    let start = Instant::now();
    let report = nodes[leaving].leave().await;
    let seconds = start.elapsed().as_secs_f64();
    if report.ranges_not_handed_over > 0 {
        bail!("the leave did not hand everything over: {report:?}");
    }
    for (i, node) in nodes.iter().enumerate() {
        if i != leaving {
            node.abort().await;
        }
    }
    Ok(Run {
        what: "graceful leave (R = 1)",
        mb_per_node: mb,
        moved_mb: report.bytes as f64 / 1e6,
        seconds,
    })
}
