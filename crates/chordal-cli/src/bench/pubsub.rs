//! `chordal bench pubsub`: fan-out of one topic to many subscribers on an
//! in-process ring over loopback.
//!
//! `--subscribers` streams subscribe to one topic, spread round-robin over
//! the ring's nodes (with `--nodes` ≥ `--subscribers`, every subscriber is
//! a node of its own, so the topic's owner sends to each over TCP). One
//! node publishes `--messages` publications, `--window` of them in flight
//! (they stay in order); each carries its send time, and every stream
//! records when it got each one. Reported: deliveries per second (from the
//! first publish to the last delivery), delivery latency percentiles, and
//! per publication the time until every subscriber had it.

use anyhow::{Context, Result, bail};
use chordal_node::local::LocalRing;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct PubSubArgs {
    /// Nodes of the ring.
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Subscription streams, spread round-robin over the nodes.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publications.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Publications in flight at once (from one node, so kept in order).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Payload bytes per publication (at least 16).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const TOPIC: &[u8] = b"bench/fanout";

pub async fn run(args: PubSubArgs) -> Result<()> {
    if args.nodes == 0 || args.subscribers == 0 || args.messages == 0 {
        bail!("--nodes, --subscribers and --messages must be positive");
    }
    // Every stream keeps all publications: a drop would be a failed run.
    let config = chordal_node::Node::builder().subscription_buffer(args.messages + 16);
    eprintln!("starting {} nodes...", args.nodes);
    let limit = Duration::from_secs(60 + args.nodes as u64 / 10);
    let ring = LocalRing::start_settled(args.nodes, config, limit)
        .await?
        .context("the ring did not settle")?;
    let start = Instant::now();
    let mut readers = Vec::new();
    for s in 0..args.subscribers {
        let node = &ring.nodes[s % ring.nodes.len()];
        let mut sub = node
            .subscribe(TOPIC.to_vec())
            .await
            .context("subscribing")?;
        let expected = args.messages;
        readers.push(tokio::spawn(async move {
            let mut got: Vec<(u64, u64)> = Vec::with_capacity(expected);
            while got.len() < expected {
                let next = tokio::time::timeout(Duration::from_secs(30), sub.next()).await;
                let Ok(Some(p)) = next else { break };
                let now = start.elapsed().as_micros() as u64;
                let index = u64::from_le_bytes(p.payload[..8].try_into().unwrap());
                let sent = u64::from_le_bytes(p.payload[8..16].try_into().unwrap());
                got.push((index, now.saturating_sub(sent)));
            }
            (got, sub.missed())
        }));
    }
    // Subscriptions made right after the ring settled: give the owner's
    // replica pushes a moment, as a long-running ring would have had.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "{} subscribers on {} nodes; publishing {} messages...",
        args.subscribers,
        args.nodes.min(args.subscribers),
        args.messages
    );
    let publisher = ring.nodes[0].clone();
    let began = start.elapsed();
    let size = args.payload.max(16);
    let results: Vec<Result<u32, _>> = futures_util::stream::iter(0..args.messages)
        .map(|i| {
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let sent = start.elapsed().as_micros() as u64;
            payload[8..16].copy_from_slice(&sent.to_le_bytes());
            publisher.publish(TOPIC.to_vec(), payload)
        })
        .buffered(args.window.max(1))
        .collect()
        .await;
    let published = start.elapsed() - began;
    let subscriber_nodes = args.nodes.min(args.subscribers) as u32;
    for r in &results {
        match r {
            Ok(n) if *n == subscriber_nodes => {}
            Ok(n) => bail!("a publication reached {n} of {subscriber_nodes} subscribed nodes"),
            Err(e) => bail!("publish failed: {e}"),
        }
    }
    let mut delivery = Histogram::<u64>::new(3)?;
    let mut reach_all = vec![0u64; args.messages];
    let (mut deliveries, mut missed) = (0u64, 0u64);
    for r in readers {
        let (got, lost) = r.await?;
        missed += lost;
        for (index, latency) in got {
            delivery.record(latency.max(1))?;
            deliveries += 1;
            let slot = &mut reach_all[index as usize];
            *slot = (*slot).max(latency);
        }
    }
    let wall = start.elapsed() - began;
    let mut all = Histogram::<u64>::new(3)?;
    for l in &reach_all {
        all.record((*l).max(1))?;
    }
    let expected = (args.messages * args.subscribers) as u64;
    let row = json!({
        "nodes": args.nodes,
        "subscribers": args.subscribers,
        "subscriber_nodes": subscriber_nodes,
        "messages": args.messages,
        "window": args.window,
        "payload": size,
        "deliveries": deliveries,
        "expected": expected,
        "missed": missed,
        "publish_per_sec": args.messages as f64 / published.as_secs_f64(),
        "deliveries_per_sec": deliveries as f64 / wall.as_secs_f64(),
        "delivery_p50_us": delivery.value_at_quantile(0.5),
        "delivery_p99_us": delivery.value_at_quantile(0.99),
        "reach_all_p50_us": all.value_at_quantile(0.5),
        "reach_all_p99_us": all.value_at_quantile(0.99),
    });
    if args.json {
        println!("{}", json!({"bench": "pubsub", "results": [row]}));
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_header([
            "nodes",
            "subs (nodes)",
            "msgs",
            "publish/s",
            "deliveries/s",
            "delivery p50/p99 µs",
            "all reached p50/p99 µs",
            "lost",
        ]);
        t.add_row([
            args.nodes.to_string(),
            format!("{} ({subscriber_nodes})", args.subscribers),
            args.messages.to_string(),
            format!("{:.0}", row["publish_per_sec"].as_f64().unwrap_or(0.0)),
            format!("{:.0}", row["deliveries_per_sec"].as_f64().unwrap_or(0.0)),
            format!("{} / {}", row["delivery_p50_us"], row["delivery_p99_us"]),
            format!("{} / {}", row["reach_all_p50_us"], row["reach_all_p99_us"]),
            (expected - deliveries).to_string(),
        ]);
        println!("{t}");
    }
    if deliveries != expected {
        bail!(
            "{} of {expected} deliveries arrived ({missed} reported missed)",
            deliveries
        );
    }
    ring.leave_all().await;
    Ok(())
}
