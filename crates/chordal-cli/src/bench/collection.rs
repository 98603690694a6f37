//! `chordal bench collection`: an element write costs the same in a hash
//! of 10 fields and in one of 10^6, because each field is a record of its
//! own (`chordal_core::collection`) and a write touches only its field's
//! record and the header.
//!
//! Fills a small and a big hash on an in-process ring (R = 3), then times
//! HSET of an existing field and HGET on each, interleaved in rounds (so
//! that the machine's noise falls on both alike), and reports p50, p99,
//! operations per second and the big-to-small ratio of the medians.

use super::stats::percentile;
use anyhow::{Context, Result, bail};
use chordal_core::Kind;
use chordal_core::collection::{CollOp, CollReply};
use chordal_node::KeyValue;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct CollectionArgs {
    /// Fields of the big hash.
    #[arg(long, default_value_t = 1_000_000)]
    big: u64,
    /// Fields of the small hash.
    #[arg(long, default_value_t = 10)]
    small: u64,
    /// Writes and reads timed on each hash.
    #[arg(long, default_value_t = 4_000)]
    ops: u64,
    /// Nodes in the ring (R = 3).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Keep the records in redb files (else in memory).
    #[arg(long)]
    redb: bool,
    #[arg(long)]
    json: bool,
}

/// Fields written per HSET while filling.
const FILL_BATCH: u64 = 1_000;

fn field(i: u64) -> Vec<u8> {
    format!("field-{i:08}").into_bytes()
}

/// Fills the hash at `key` with fields `0..n` (16-byte values).
async fn fill(node: &chordal_node::Node, key: &[u8], n: u64) -> Result<()> {
    let mut i = 0;
    while i < n {
        let pairs = (i..(i + FILL_BATCH).min(n))
            .map(|f| (field(f), vec![b'v'; 16]))
            .collect::<Vec<_>>();
        i += pairs.len() as u64;
        node.hset(key.to_vec(), pairs)
            .await
            .with_context(|| format!("filling {}", String::from_utf8_lossy(key)))?;
    }
    Ok(())
}

/// One timed operation on the hash at `key` of `n` fields: an HSET of an
/// existing field, or an HGET.
async fn one(
    node: &chordal_node::Node,
    key: &[u8],
    n: u64,
    i: u64,
    write: bool,
) -> Result<Duration> {
    let f = field(i.wrapping_mul(2_654_435_761) % n);
    let started = Instant::now();
    if write {
        node.hset(key.to_vec(), vec![(f, i.to_le_bytes().to_vec())])
            .await?;
    } else {
        let op = CollOp::Get { fields: vec![f] };
        match node.collection(key.to_vec(), Kind::Hash, op).await? {
            CollReply::Values(v) if v[0].is_some() => {}
            other => bail!("a field of the hash is missing: {other:?}"),
        }
    }
    Ok(started.elapsed())
}

pub async fn run(args: CollectionArgs) -> Result<()> {
    if args.small == 0 || args.big == 0 || args.ops == 0 || args.nodes == 0 {
        bail!("--small, --big, --ops and --nodes must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let redb = args.redb;
    let builder_of = |i: usize| {
        let builder = chordal_node::Node::builder();
        match redb {
            true => builder.data_dir(dir.path().join(format!("n{i}"))),
            false => builder,
        }
    };
    let ring = super::start_ring(args.nodes, builder_of, false).await?;
    let node = &ring.nodes[0];
    let (small, big) = (b"{bench}small".as_slice(), b"{bench}big".as_slice());
    let filled = Instant::now();
    fill(node, small, args.small).await?;
    fill(node, big, args.big).await?;
    eprintln!(
        "filled hashes of {} and {} fields in {:.1} s",
        args.small,
        args.big,
        filled.elapsed().as_secs_f64()
    );
    // Interleaved rounds: each round times a slice of writes and reads on
    // the small hash, then on the big one.
    let rounds = 10u64;
    let per = args.ops.div_ceil(rounds);
    let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
    for r in 0..rounds {
        for (h, (key, n)) in [(small, args.small), (big, args.big)]
            .into_iter()
            .enumerate()
        {
            for (w, write) in [true, false].into_iter().enumerate() {
                for i in 0..per {
                    times[h][w].push(one(node, key, n, r * per + i, write).await?);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (h, (name, n)) in [("small", args.small), ("big", args.big)]
        .into_iter()
        .enumerate()
    {
        for (w, what) in ["HSET", "HGET"].into_iter().enumerate() {
            let t = &mut times[h][w];
            t.sort();
            let total: Duration = t.iter().sum();
            rows.push(json!({
                "hash": name,
                "fields": n,
                "op": what,
                "p50_us": percentile(t, 0.50).as_micros() as u64,
                "p99_us": percentile(t, 0.99).as_micros() as u64,
                "ops_per_s": (t.len() as f64 / total.as_secs_f64()).round(),
            }));
        }
    }
    let ratio = |w: usize| {
        let p50 = |h: usize| percentile(&times[h][w], 0.50).as_secs_f64();
        p50(1) / p50(0)
    };
    let (write_ratio, read_ratio) = (ratio(0), ratio(1));
    if args.json {
        let out = json!({
            "nodes": args.nodes,
            "store": if args.redb { "redb" } else { "memory" },
            "rows": rows,
            "hset_p50_ratio_big_to_small": write_ratio,
            "hget_p50_ratio_big_to_small": read_ratio,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(["hash", "fields", "op", "p50 µs", "p99 µs", "ops/s"]);
    for r in &rows {
        table.add_row([
            r["hash"].to_string().trim_matches('"').to_string(),
            r["fields"].to_string(),
            r["op"].to_string().trim_matches('"').to_string(),
            r["p50_us"].to_string(),
            r["p99_us"].to_string(),
            r["ops_per_s"].to_string(),
        ]);
    }
    println!("{table}");
    println!(
        "p50 big/small: HSET {write_ratio:.2}×, HGET {read_ratio:.2}× ({} nodes, {} store)",
        args.nodes,
        if args.redb { "redb" } else { "memory" }
    );
    Ok(())
}
