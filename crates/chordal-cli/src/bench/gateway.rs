//! `chordal bench gateway`: what the gateway adds, on loopback.
//!
//! A ring of `--nodes` in-process nodes, each with a tiny HTTP service
//! beside it (answers `ok` at once), and one gateway in front. Measured:
//! request latency calling one service directly vs through the gateway
//! (one request at a time, the same clients), requests per second through
//! the gateway at `--concurrency`, and failover: a client's node dies
//! (node and service stop at once) while the client sends a request every
//! millisecond — how long until it is served again, and how many of its
//! requests failed.

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::any;
use chordal_gateway::{ClientKey, Gateway, GatewayConfig};
use chordal_node::Node;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct GatewayBenchArgs {
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Requests per latency measurement (direct and through the gateway).
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Requests in flight for the throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Failovers measured (the median is reported).
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Clients of the balance runs (0 skips them).
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Virtual nodes per process in the balance runs.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    vnodes: Vec<usize>,
    /// Bound c of the bounded-load balance runs.
    #[arg(long, default_value_t = 1.25)]
    bound: f64,
    #[arg(long)]
    json: bool,
}

/// A node with its service.
struct Instance {
    node: Node,
    service: SocketAddr,
    serving: JoinHandle<()>,
}

async fn start_instance(seed: Option<SocketAddr>) -> Result<Instance> {
    start_instance_with(seed, 1).await
}

async fn start_instance_with(seed: Option<SocketAddr>, vnodes: usize) -> Result<Instance> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let service = listener.local_addr()?;
    let serving = tokio::spawn(async move {
        let app = Router::new().fallback(any(|| async { "ok" }));
        let _ = axum::serve(listener, app).await;
    });
    let mut b = Node::builder()
        .vnodes(vnodes)
        .service(format!("http://{service}"))
        .maintenance_interval(Duration::from_millis(100));
    if let Some(s) = seed {
        b = b.join(s.to_string());
    }
    let node = b.start().await.context("starting a node")?;
    Ok(Instance {
        node,
        service,
        serving,
    })
}

/// Starts a gateway on a free port once its ring view has `members`
/// (virtual) nodes; cancel the token to stop it.
async fn spawn_gateway(
    config: GatewayConfig,
    members: usize,
) -> Result<(SocketAddr, CancellationToken, Arc<Gateway>)> {
    let gateway = Gateway::start(config).await?;
    wait_for_view(&gateway, members).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone().cancelled_owned();
    tokio::spawn(chordal_gateway::serve(listener, gateway.clone(), stopped));
    Ok((addr, stop, gateway))
}

/// Waits (10 s at most) until the gateway sees `members` (virtual) nodes.
async fn wait_for_view(gateway: &Gateway, members: usize) -> Result<()> {
    let started = Instant::now();
    while gateway.view().members().len() != members {
        if started.elapsed() > Duration::from_secs(10) {
            bail!(
                "the gateway sees {} of {members} members",
                gateway.view().members().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The id in a gateway response's `X-Chordal-Node`.
fn serving_node(resp: &reqwest::Response) -> Result<String> {
    Ok(resp
        .headers()
        .get(chordal_gateway::NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .context("no X-Chordal-Node")?
        .to_string())
}

async fn get(http: &reqwest::Client, url: &str, client: &str) -> Result<reqwest::Response> {
    Ok(http.get(url).header("x-client-id", client).send().await?)
}

pub async fn run(args: GatewayBenchArgs) -> Result<()> {
    if args.nodes < 3 {
        bail!("--nodes must be at least 3 (failover needs replica holders)");
    }
    let mut ring = vec![start_instance(None).await?];
    for _ in 1..args.nodes {
        let seed = ring[0].node.addr();
        ring.push(start_instance(Some(seed)).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // successor lists fill
    let config = GatewayConfig::new(
        vec![ring[0].node.addr().to_string()],
        "header:X-Client-Id".parse::<ClientKey>()?,
    );
    let (gw, stop, _) = spawn_gateway(config, args.nodes).await?;
    let http = reqwest::Client::new();

    // Latency, one at a time: the same service directly, then via the gateway.
    let direct_url = format!("http://{}/x", ring[0].service);
    let via_url = format!("http://{gw}/x");
    let mut direct = Histogram::<u64>::new(3)?;
    let mut via = Histogram::<u64>::new(3)?;
    for i in 0..args.requests + 500 {
        let client = format!("c{}", i % 100);
        let t = Instant::now();
        get(&http, &direct_url, &client).await?.bytes().await?;
        let d = t.elapsed().as_micros() as u64;
        let t = Instant::now();
        let resp = get(&http, &via_url, &client).await?;
        if !resp.status().is_success() {
            bail!("gateway answered {}", resp.status());
        }
        resp.bytes().await?;
        let v = t.elapsed().as_micros() as u64;
        if i >= 500 {
            // The first 500 warm the connection pools.
            direct.record(d.max(1))?;
            via.record(v.max(1))?;
        }
    }

    // Throughput through the gateway.
    let started = Instant::now();
    let ok: usize = futures_util::stream::iter(0..args.requests * 4)
        .map(|i| {
            let (http, url) = (&http, &via_url);
            async move {
                let client = format!("client-{}", i % 1000);
                matches!(get(http, url, &client).await, Ok(r) if r.status().is_success()) as usize
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .fold(0, |a, b| async move { a + b })
        .await;
    let rps = ok as f64 / started.elapsed().as_secs_f64();
    if ok != args.requests * 4 {
        bail!(
            "{} of {} requests failed",
            args.requests * 4 - ok,
            args.requests * 4
        );
    }

    // Failover: kill the node serving a client while it keeps asking.
    let mut gaps = Vec::new();
    let mut failed = 0;
    for f in 0..args.failovers.min(args.nodes - 2) {
        let client = format!("failover-{f}");
        let serving = serving_node(&get(&http, &via_url, &client).await?)?;
        let victim = ring
            .iter()
            .position(|i| i.node.ids().iter().any(|id| id.to_hex() == serving))
            .context("serving node not found")?;
        let dead = ring.remove(victim);
        dead.serving.abort();
        dead.node.abort().await;
        let killed = Instant::now();
        let dead_ids: Vec<String> = dead.node.ids().iter().map(|id| id.to_hex()).collect();
        loop {
            // Served, and not by the dead node (its service's last
            // connections may still be draining in this process).
            let ok = match get(&http, &via_url, &client).await {
                Ok(r) if r.status().is_success() => r
                    .headers()
                    .get(chordal_gateway::NODE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|id| !dead_ids.iter().any(|d| d == id)),
                _ => false,
            };
            if ok {
                gaps.push(killed.elapsed());
                break;
            }
            failed += 1;
            if killed.elapsed() > Duration::from_secs(30) {
                bail!("client not served 30 s after its node died");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // the ring heals
    }
    gaps.sort();
    let median_gap = gaps.get(gaps.len() / 2).copied().unwrap_or_default();

    let row = json!({
        "nodes": args.nodes,
        "direct_p50_us": direct.value_at_quantile(0.5),
        "direct_p99_us": direct.value_at_quantile(0.99),
        "gateway_p50_us": via.value_at_quantile(0.5),
        "gateway_p99_us": via.value_at_quantile(0.99),
        "added_p50_us": via.value_at_quantile(0.5) as i64 - direct.value_at_quantile(0.5) as i64,
        "added_p99_us": via.value_at_quantile(0.99) as i64 - direct.value_at_quantile(0.99) as i64,
        "gateway_rps": rps,
        "concurrency": args.concurrency,
        "failover_ms": gaps.iter().map(|g| g.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        "failover_median_ms": median_gap.as_secs_f64() * 1000.0,
        "failed_requests_during_failover": failed,
    });
    if args.json {
        println!("{}", json!({"bench": "gateway", "results": [row]}));
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_header([
            "nodes",
            "direct p50/p99 µs",
            "gateway p50/p99 µs",
            "added p50/p99 µs",
            "req/s (conc.)",
            "failover median ms",
            "failed reqs",
        ]);
        t.add_row([
            args.nodes.to_string(),
            format!("{} / {}", row["direct_p50_us"], row["direct_p99_us"]),
            format!("{} / {}", row["gateway_p50_us"], row["gateway_p99_us"]),
            format!("{} / {}", row["added_p50_us"], row["added_p99_us"]),
            format!("{rps:.0} ({})", args.concurrency),
            format!("{:.1}", median_gap.as_secs_f64() * 1000.0),
            failed.to_string(),
        ]);
        println!("{t}");
    }
    stop.cancel();
    for i in ring {
        i.node.leave().await;
        i.serving.abort();
    }
    if args.clients > 0 {
        balance(&args).await?;
    }
    Ok(())
}

/// How evenly clients spread over processes, with and without bounded
/// loads, how sticky placement is, and how many clients move when a node
/// joins.
async fn balance(args: &GatewayBenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    for &v in &args.vnodes {
        for bound in [None, Some(args.bound)] {
            let mut ring = vec![start_instance_with(None, v).await?];
            for _ in 1..args.nodes {
                let seed = ring[0].node.addr();
                ring.push(start_instance_with(Some(seed), v).await?);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mut config = GatewayConfig::new(
                vec![ring[0].node.addr().to_string()],
                "header:X-Client-Id".parse::<ClientKey>()?,
            );
            config.bounded_load = bound;
            let (gw, stop, gateway) = spawn_gateway(config, args.nodes * v).await?;
            let url = format!("http://{gw}/x");
            let http = reqwest::Client::new();
            let first = placement(&http, &url, args.clients).await?;
            let second = placement(&http, &url, args.clients).await?;
            let same = first.iter().zip(&second).filter(|(a, b)| a == b).count();
            // Which process each serving (virtual) node id belongs to.
            let process_of = |id: &str, ring: &[Instance]| {
                ring.iter()
                    .position(|i| i.node.ids().iter().any(|x| x.to_hex() == id))
            };
            let mut per_process = vec![0usize; ring.len()];
            for id in &first {
                if let Some(p) = process_of(id, &ring) {
                    per_process[p] += 1;
                }
            }
            let max = *per_process.iter().max().unwrap_or(&0);
            let mean = args.clients as f64 / ring.len() as f64;
            // One more node joins; the gateway's view follows within a
            // refresh period.
            let seed = ring[0].node.addr();
            ring.push(start_instance_with(Some(seed), v).await?);
            wait_for_view(&gateway, (args.nodes + 1) * v).await?;
            let third = placement(&http, &url, args.clients).await?;
            let moved = first.iter().zip(&third).filter(|(a, b)| a != b).count();
            rows.push(json!({
                "vnodes": v,
                "bounded_load": bound,
                "max_over_mean": max as f64 / mean,
                "sticky": same as f64 / args.clients as f64,
                "moved_on_join": moved as f64 / args.clients as f64,
                "ideal_moved_on_join": 1.0 / (args.nodes + 1) as f64,
            }));
            stop.cancel();
            for i in ring {
                i.node.leave().await;
                i.serving.abort();
            }
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"bench": "gateway-balance", "nodes": args.nodes, "clients": args.clients, "results": rows})
        );
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_header([
            "vnodes",
            "bounded load",
            "max/mean clients",
            "same node again",
            "moved when a node joins",
            "ideal (1/(n+1))",
        ]);
        for r in &rows {
            t.add_row([
                r["vnodes"].to_string(),
                r["bounded_load"]
                    .as_f64()
                    .map(|c| format!("c = {c}"))
                    .unwrap_or("off".into()),
                format!("{:.2}", r["max_over_mean"].as_f64().unwrap_or(0.0)),
                format!("{:.1}%", 100.0 * r["sticky"].as_f64().unwrap_or(0.0)),
                format!("{:.1}%", 100.0 * r["moved_on_join"].as_f64().unwrap_or(0.0)),
                format!(
                    "{:.1}%",
                    100.0 * r["ideal_moved_on_join"].as_f64().unwrap_or(0.0)
                ),
            ]);
        }
        println!("{} nodes, {} clients", args.nodes, args.clients);
        println!("{t}");
    }
    Ok(())
}

/// One request per client; the serving node id of each, in client order.
async fn placement(http: &reqwest::Client, url: &str, clients: usize) -> Result<Vec<String>> {
    let served: Vec<Result<(usize, String)>> = futures_util::stream::iter(0..clients)
        .map(|c| async move {
            let resp = get(http, url, &format!("client-{c}")).await?;
            Ok((c, serving_node(&resp)?))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut out = vec![String::new(); clients];
    for r in served {
        let (c, node) = r?;
        out[c] = node;
    }
    Ok(out)
}
