//! `chordal bench big-store`: a ring whose nodes each hold ~10^6 records
//! on redb keeps answering lookups quickly while range syncs and sweeps
//! run over those records, and no node is ever taken for failed.
//!
//! Every node's store is filled before it starts with the same `--keys`
//! records (as if each held a full copy), so the first sync rounds
//! summarize about a million records per range and the first sweeps drop
//! the quarter each node does not need to keep. Meanwhile one node looks
//! up random keys in a loop; the table reports lookup p50/p99/max and the
//! neighbour changes seen (any is a node wrongly declared failed).

use anyhow::{Context, Result, bail};
use chordal_core::{Id, LookupMode, Record, Version};
use chordal_node::local::{Check, LocalRing};

use chordal_store::{RedbStore, Store};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BigArgs {
    /// Records in each node's store.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Nodes in the ring (R = 3).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// How long lookups run, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Range sync interval, in ms (short: more summaries and sweeps).
    #[arg(long, default_value_t = 1000)]
    sync_ms: u64,
    #[arg(long)]
    json: bool,
}

/// Fills the store in `dir` with records `0..keys` (100-byte values).
fn prefill(dir: &std::path::Path, keys: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let store = RedbStore::open(&dir.join("chordal.redb"))?;
    let version = Version {
        term: 0,
        hlc: 1,
        node: Id::from_u64(1),
    };
    let mut k = 0;
    while k < keys {
        let batch: Vec<Record> = (k..(k + 20_000).min(keys))
            .map(|i| {
                Record::new(
                    format!("big-{i}").into_bytes(),
                    version,
                    Some(vec![i as u8; 100]),
                )
            })
            .collect();
        k += batch.len() as u64;
        store.apply(&batch)?;
    }
    Ok(())
}

pub async fn run(args: BigArgs) -> Result<()> {
    if args.nodes < 2 || args.keys == 0 {
        bail!("--nodes must be at least 2 and --keys at least 1");
    }
    let dir = tempfile::tempdir()?;
    let fill = Instant::now();
    for i in 0..args.nodes {
        let d = dir.path().join(format!("n{i}"));
        let keys = args.keys;
        tokio::task::spawn_blocking(move || prefill(&d, keys)).await??;
    }
    eprintln!(
        "filled {} stores with {} records each in {:.1} s",
        args.nodes,
        args.keys,
        fill.elapsed().as_secs_f64()
    );
    let ring = LocalRing::start_each(args.nodes, |i| {
        chordal_node::local::quick()
            .core_with(|c| c.sync_interval = Duration::from_millis(args.sync_ms))
            .data_dir(dir.path().join(format!("n{i}")))
    })
    .await?;
    ring.healed(Duration::from_secs(60))
        .await
        .context("the ring did not settle")?;
    let before = changes(&ring).await;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut failed = 0u64;
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        i += 1;
        let key = Id::hash(format!("probe-{i}").as_bytes());
        let t = Instant::now();
        match ring.nodes[0].lookup(key, LookupMode::Recursive).await {
            Ok(_) => hist.record(t.elapsed().as_micros() as u64)?,
            Err(_) => failed += 1,
        }
    }
    let after = changes(&ring).await;
    let mut held = Vec::new();
    for n in &ring.nodes {
        held.push(n.status().await.map(|s| s.keys_stored).unwrap_or(0));
    }
    let wrong = ring.wrong(Check::Neighbours).await;
    let (p50, p99, max) = (
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );
    if args.json {
        println!(
            "{}",
            json!({"bench": "big-store", "keys": args.keys, "nodes": args.nodes,
                   "lookups": hist.len(), "failed": failed, "p50_ms": p50, "p99_ms": p99,
                   "max_ms": max, "neighbour_changes": after - before,
                   "records_held": held, "wrong_neighbours": wrong})
        );
    } else {
        println!(
            "{} nodes x {} records: {} lookups, {} failed, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; \
             neighbour changes during the run {} (0 = nobody taken for failed); records now held {:?}; \
             wrong neighbours {}",
            args.nodes,
            args.keys,
            hist.len(),
            failed,
            p50,
            p99,
            max,
            after - before,
            held,
            wrong
        );
    }
    for n in &ring.nodes {
        n.abort().await;
    }
    Ok(())
}

/// Successor and predecessor changes, summed over the ring's nodes.
async fn changes(ring: &LocalRing) -> u64 {
    let mut total = 0;
    for n in &ring.nodes {
        if let Ok(text) = n.metrics().await {
            total += neighbour_changes(&text);
        }
    }
    total
}

/// `chordal_routing_changes_total{part="neighbour"}` in a metrics text.
fn neighbour_changes(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("chordal_routing_changes_total") && l.contains("neighbour"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
