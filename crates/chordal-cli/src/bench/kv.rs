//! `chordal bench kv`: throughput and latency of the replicated store on a
//! local cluster (started here) or an existing one (`--target`).
//!
//! Each run is a put phase (every key written once) then a get phase
//! (every key read back and checked), at each concurrency level, through
//! the in-process node handle (`--via node`, the library path) or HTTP
//! (`--via http`, round-robin over the nodes' APIs). With `--via node`,
//! the `send` and `request` phases measure application messages instead:
//! every node runs an echo application, `send` waits for the owner's
//! application to take each message, `request` for its echo.

use crate::member::Member;
use anyhow::{Context, Result, bail};
use chordal_core::Id;
use chordal_http::ApiConfig;
use chordal_node::KeyValue;
use chordal_node::{Client, ClientConfig, Node};
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// The in-process `Node` handle (what an embedding application uses).
    Node,
    /// HTTP requests to the nodes' APIs.
    Http,
    /// The native client (not a ring member): peer protocol, straight to
    /// each key's owner.
    Client,
}

/// One phase of a run: every key gets one operation of this kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Put,
    Get,
    Del,
    /// An application message to each key's owner (`Node::send`).
    Send,
    /// A request to each key's owner, answered by its echo (`Node::request`).
    Request,
    /// A lookup of each key's owner (`GET /v1/locate/KEY`, `Node::locate`);
    /// the row also gives the mean hops.
    Locate,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Put => "put",
            Phase::Get => "get",
            Phase::Del => "del",
            Phase::Send => "send",
            Phase::Request => "request",
            Phase::Locate => "locate",
        }
    }
}

/// Which API an HTTP operation enters at (`--route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Route {
    /// The next API in turn.
    Any,
    /// The key's owner's API.
    Owner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Memory,
    Redb,
}

#[derive(Args)]
pub struct KvArgs {
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Bench an existing ring instead: its nodes' API addresses (with
    /// --via http, implied unless --via client), or peer addresses to
    /// connect the native client through (--via client).
    #[arg(long, value_delimiter = ',')]
    target: Vec<SocketAddr>,
    #[arg(long, value_enum, default_value_t = Via::Node)]
    via: Via,
    /// Which API an HTTP operation enters at: the next in turn (`any`,
    /// what a plain HTTP client does), or its key's owner's, from a ring
    /// walk (`owner`: a client that knows the ring, as Redis Cluster
    /// clients know the slots).
    #[arg(long, value_enum, default_value_t = Route::Any)]
    route: Route,
    /// Storage of the local cluster (redb: in a temporary directory).
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// Replication factor of the local cluster.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Concurrency levels to run (operations in flight).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Distinct keys (each phase does one operation per key).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Phases of each run, in order (get and del need a put before them;
    /// send and request need --via node).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "put,get")]
    phases: Vec<Phase>,
    /// Mutual TLS between the nodes of the local cluster (a throw-away
    /// CA); the client then uses a client certificate and HTTP is HTTPS.
    #[arg(long)]
    tls: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where operations go.
enum Backend {
    Nodes(Vec<Node>),
    Client(Client),
    Http(Http),
}

/// An HTTP client and the APIs it spreads operations over.
struct Http {
    client: reqwest::Client,
    /// `http` or `https`.
    scheme: &'static str,
    apis: Vec<SocketAddr>,
    /// With `--route owner`: every vnode's id and API address, in id
    /// order, so that each operation goes to its key's owner's API.
    owners: Vec<(Id, SocketAddr)>,
}

impl Http {
    fn new(client: reqwest::Client, scheme: &'static str, apis: Vec<SocketAddr>) -> Http {
        Http {
            client,
            scheme,
            apis,
            owners: Vec::new(),
        }
    }

    /// The URL of `path` + `key` for operation `i`: at its key's owner
    /// (`--route owner`), else at the next API in turn.
    fn url(&self, i: usize, path: &str, key: &str) -> String {
        let api = if self.owners.is_empty() {
            self.apis[i % self.apis.len()]
        } else {
            let id = Id::of_key(key.as_bytes());
            let at = self.owners.partition_point(|(v, _)| *v < id);
            self.owners[at % self.owners.len()].1
        };
        format!("{}://{api}/{path}/{key}", self.scheme)
    }

    /// Learns every vnode's API from a ring walk (`/v1/ring`).
    async fn learn_owners(&mut self) -> Result<()> {
        let url = format!("{}://{}/v1/ring", self.scheme, self.apis[0]);
        let ring: serde_json::Value = self.client.get(url).send().await?.json().await?;
        let mut owners = Vec::new();
        for n in ring["nodes"].as_array().context("no nodes in /v1/ring")? {
            let id: Id = n["id"].as_str().context("a node without id")?.parse()?;
            let api: SocketAddr = n["api"]
                .as_str()
                .context("a node without an API address")?
                .parse()?;
            owners.push((id, api));
        }
        owners.sort();
        self.owners = owners;
        Ok(())
    }
}

impl Backend {
    async fn put(&self, i: usize, key: &str, value: Vec<u8>) -> Result<()> {
        match self {
            Backend::Client(c) => {
                c.put(key.as_bytes().to_vec(), value).await?;
                Ok(())
            }
            Backend::Nodes(nodes) => {
                let node = &nodes[i % nodes.len()];
                node.put(key.as_bytes().to_vec(), value).await?;
                Ok(())
            }
            Backend::Http(h) => {
                let resp = h
                    .client
                    .put(h.url(i, "v1/kv", key))
                    .body(value)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("put {key}: HTTP {}", resp.status());
                }
                Ok(())
            }
        }
    }

    async fn del(&self, i: usize, key: &str) -> Result<()> {
        let outcome = match self {
            Backend::Client(c) => c.delete(key.as_bytes().to_vec()).await?,
            Backend::Nodes(nodes) => {
                nodes[i % nodes.len()]
                    .delete(key.as_bytes().to_vec())
                    .await?
            }
            Backend::Http(h) => {
                let resp = h.client.delete(h.url(i, "v1/kv", key)).send().await?;
                if !resp.status().is_success() {
                    bail!("del {key}: HTTP {}", resp.status());
                }
                return Ok(());
            }
        };
        match outcome {
            Some(_) => Ok(()),
            None => bail!("del {key}: not found"),
        }
    }

    /// The node handles, for application messages (only `--via node`).
    fn nodes(&self) -> Result<&[Node]> {
        match self {
            Backend::Nodes(nodes) => Ok(nodes),
            _ => bail!("the send and request phases need --via node"),
        }
    }

    async fn send(&self, i: usize, key: &str, payload: Vec<u8>) -> Result<()> {
        let nodes = self.nodes()?;
        let node = &nodes[i % nodes.len()];
        Ok(node.send(key.as_bytes().to_vec(), payload).await?)
    }

    async fn request(&self, i: usize, key: &str, payload: Vec<u8>) -> Result<Vec<u8>> {
        let nodes = self.nodes()?;
        let node = &nodes[i % nodes.len()];
        Ok(node.request(key.as_bytes().to_vec(), payload).await?)
    }

    /// Looks up `key`'s owner; returns the lookup's hops.
    async fn locate(&self, i: usize, key: &str) -> Result<u32> {
        match self {
            Backend::Client(_) => bail!("the locate phase needs --via node or http"),
            Backend::Nodes(nodes) => Ok(nodes[i % nodes.len()].locate(key.as_bytes()).await?.hops),
            Backend::Http(h) => {
                let resp = h.client.get(h.url(i, "v1/locate", key)).send().await?;
                if !resp.status().is_success() {
                    bail!("locate {key}: HTTP {}", resp.status());
                }
                let body: serde_json::Value = resp.json().await?;
                let hops = body["hops"].as_u64().context("locate: no hops")?;
                Ok(hops as u32)
            }
        }
    }

    async fn get(&self, i: usize, key: &str) -> Result<Vec<u8>> {
        match self {
            Backend::Client(c) => match c.get(key.as_bytes().to_vec()).await? {
                Some(v) => Ok(v.value),
                None => bail!("get {key}: not found"),
            },
            Backend::Nodes(nodes) => {
                match nodes[i % nodes.len()].get(key.as_bytes().to_vec()).await? {
                    Some(v) => Ok(v.value),
                    None => bail!("get {key}: not found"),
                }
            }
            Backend::Http(h) => {
                let resp = h.client.get(h.url(i, "v1/kv", key)).send().await?;
                if !resp.status().is_success() {
                    bail!("get {key}: HTTP {}", resp.status());
                }
                Ok(resp.bytes().await?.to_vec())
            }
        }
    }
}

fn value_of(key: usize, size: usize) -> Vec<u8> {
    let tag = format!("{key}:");
    tag.bytes()
        .chain(std::iter::repeat(b'v'))
        .take(size.max(tag.len()))
        .collect()
}

/// One phase: `keys` operations by `concurrency` workers. Returns the
/// latency histogram (µs), the wall time and the hops of the lookups
/// (locate phase; 0 otherwise), summed.
async fn phase(
    backend: &Arc<Backend>,
    phase_kind: Phase,
    args: &KvArgs,
    run: &str,
    concurrency: usize,
) -> Result<(Histogram<u64>, Duration, u64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let hops = Arc::new(AtomicUsize::new(0));
    let bar = ProgressBar::new(args.keys as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} {bar:40} {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{run} {}", phase_kind.name()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let backend = backend.clone();
        let next = next.clone();
        let hops = hops.clone();
        let bar = bar.clone();
        let (keys, size) = (args.keys, args.value_size);
        let run = run.to_string();
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= keys {
                    return Ok::<_, anyhow::Error>(hist);
                }
                let key = format!("bench-{run}-{k}");
                let t0 = Instant::now();
                match phase_kind {
                    Phase::Put => backend.put(k, &key, value_of(k, size)).await?,
                    Phase::Get => {
                        let got = backend.get(k + 1, &key).await?;
                        if got != value_of(k, size) {
                            bail!("get {key}: wrong value");
                        }
                    }
                    Phase::Del => backend.del(k + 2, &key).await?,
                    Phase::Send => backend.send(k, &key, value_of(k, size)).await?,
                    Phase::Request => {
                        let got = backend.request(k + 1, &key, value_of(k, size)).await?;
                        if got != value_of(k, size) {
                            bail!("request {key}: wrong echo");
                        }
                    }
                    Phase::Locate => {
                        let h = backend.locate(k + 1, &key).await?;
                        hops.fetch_add(h as usize, Ordering::Relaxed);
                    }
                }
                hist.saturating_record(t0.elapsed().as_micros() as u64);
                bar.inc(1);
            }
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for w in workers {
        total
            .add(w.await.context("worker panicked")??)
            .context("merging histograms")?;
    }
    bar.finish_and_clear();
    let hops = hops.load(Ordering::Relaxed) as u64;
    Ok((total, start.elapsed(), hops))
}

/// The number of processes of the ring an external `--target` reaches:
/// by walking it (`/v1/ring`), or the native client's view of it.
async fn external_ring_size(backend: &Backend) -> Result<usize> {
    match backend {
        Backend::Http(h) => {
            let url = format!("{}://{}/v1/ring", h.scheme, h.apis[0]);
            let ring: serde_json::Value = h.client.get(url).send().await?.json().await?;
            let mut addrs: Vec<&str> = ring["nodes"]
                .as_array()
                .context("no nodes in /v1/ring")?
                .iter()
                .filter_map(|n| n["addr"].as_str())
                .collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs.len())
        }
        Backend::Client(c) => {
            let mut addrs: Vec<SocketAddr> = c.ring().iter().map(|n| n.addr).collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs.len())
        }
        Backend::Nodes(nodes) => Ok(nodes.len()),
    }
}

pub async fn run(args: KvArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = if args.tls && args.target.is_empty() {
        Some(super::pki::BenchPki::new()?)
    } else {
        None
    };
    let mut members: Vec<Member> = Vec::new();
    let backend = if !args.target.is_empty() {
        if args.tls {
            bail!("--tls is for the local cluster (an existing one's CA is not ours)");
        }
        if args.via == Via::Client {
            let seeds = args.target.iter().map(|a| a.to_string()).collect();
            Backend::Client(Client::connect(ClientConfig::new(seeds)).await?)
        } else {
            Backend::Http(Http::new(
                reqwest::Client::new(),
                "http",
                args.target.clone(),
            ))
        }
    } else {
        if args.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        eprintln!(
            "starting {} nodes ({:?} store{})...",
            args.nodes,
            args.store,
            if args.tls { ", TLS" } else { "" }
        );
        let certs = match &pki {
            Some(pki) => pki.members(args.nodes)?.into_iter().map(Some).collect(),
            None => vec![None; args.nodes],
        };
        for (i, cert) in certs.iter().enumerate() {
            let seeds = members
                .first()
                .map(|m| vec![m.node.addr().to_string()])
                .unwrap_or_default();
            let mut config = Node::builder().seeds(seeds).replicas(args.replicas);
            if args.store == StoreKind::Redb {
                config = config.data_dir(dir.path().join(format!("node-{i}")));
            }
            let mut api = ApiConfig::default();
            if let Some(dir) = cert {
                config = config.tls_dir(dir);
                let files = chordal_tls::TlsFiles::load(dir)?;
                api.tls = Some(files.api_server_config()?);
            }
            members.push(
                Member::start(config, "127.0.0.1:0".parse()?, Default::default(), api).await?,
            );
        }
        // Wait until every successor list has filled, so that every write
        // has all its replicas.
        let ring = chordal_node::local::LocalRing {
            nodes: members.iter().map(|m| m.node.clone()).collect(),
        };
        ring.settle(chordal_node::local::Check::SuccessorLists)
            .await
            .context("successor lists did not fill")?;
        // And every range has a decider (authority): a write before
        // would wait for its term, or be caught by a term change.
        ring.settle(chordal_node::local::Check::Decides)
            .await
            .context("the ring's ranges never all had a decider")?;
        match args.via {
            Via::Node => Backend::Nodes(members.iter().map(|m| m.node.clone()).collect()),
            Via::Http => {
                let apis = members.iter().map(|m| m.api).collect();
                match &pki {
                    Some(pki) => {
                        let tls = chordal_tls::https_client_config(&pki.ca_cert())?;
                        let http = reqwest::Client::builder()
                            .tls_backend_preconfigured((*tls).clone())
                            .build()?;
                        Backend::Http(Http::new(http, "https", apis))
                    }
                    None => Backend::Http(Http::new(reqwest::Client::new(), "http", apis)),
                }
            }
            Via::Client => {
                let mut config = ClientConfig::new(vec![members[0].node.addr().to_string()]);
                config.tls_dir = pki.as_ref().map(|p| p.client()).transpose()?;
                Backend::Client(Client::connect(config).await?)
            }
        }
    };
    let mut backend = backend;
    if let Backend::Http(h) = &mut backend
        && args.route == Route::Owner
    {
        h.learn_owners()
            .await
            .context("learning the ring's owners")?;
    }
    // Every node's application echoes requests (and takes sends).
    if let Backend::Nodes(nodes) = &backend {
        for node in nodes {
            let mut inbox = node.messages().context("inbox already taken")?;
            tokio::spawn(async move {
                while let Some(msg) = inbox.next().await {
                    let echo = msg.payload.clone();
                    msg.reply(echo);
                }
            });
        }
    }
    let via = match backend {
        Backend::Http(..) => "http",
        Backend::Client(_) => "client",
        Backend::Nodes(_) => "node",
    };
    // What was measured, truly: an existing ring's size is found by
    // walking it, and its storage is not ours to know.
    let (ring_nodes, store) = if args.target.is_empty() {
        (args.nodes, Some(format!("{:?}", args.store).to_lowercase()))
    } else {
        (external_ring_size(&backend).await?, None)
    };
    let backend = Arc::new(backend);
    let mut rows = Vec::new();
    for (n, &c) in args.concurrency.iter().enumerate() {
        let run = format!("c{c}-{n}");
        for &p in &args.phases {
            let (hist, wall, hops) = phase(&backend, p, &args, &run, c).await?;
            let mean_hops = (p == Phase::Locate).then(|| hops as f64 / hist.len().max(1) as f64);
            rows.push(json!({
                "mean_hops": mean_hops,
                "route": (via == "http").then(|| format!("{:?}", args.route).to_lowercase()),
                "op": p.name(),
                "via": via,
                "store": store,
                "tls": args.tls,
                "concurrency": c,
                "ops": hist.len(),
                "ops_per_sec": hist.len() as f64 / wall.as_secs_f64(),
                "p50_us": hist.value_at_quantile(0.5),
                "p99_us": hist.value_at_quantile(0.99),
                "max_us": hist.max(),
            }));
        }
    }
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "kv",
                "nodes": ring_nodes,
                "target": (!args.target.is_empty()).then(|| args.target.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
                "value_size": args.value_size,
                "results": rows,
            })
        );
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_BORDERS_ONLY).set_header([
            "op", "via", "tls", "store", "conc.", "ops/s", "p50 µs", "p99 µs", "hops",
        ]);
        for r in &rows {
            t.add_row([
                r["op"].as_str().unwrap_or("").to_string(),
                r["via"].as_str().unwrap_or("").to_string(),
                r["tls"].to_string(),
                r["store"].as_str().unwrap_or("(external)").to_string(),
                r["concurrency"].to_string(),
                format!("{:.0}", r["ops_per_sec"].as_f64().unwrap_or(0.0)),
                r["p50_us"].to_string(),
                r["p99_us"].to_string(),
                r["mean_hops"]
                    .as_f64()
                    .map_or("—".into(), |h| format!("{h:.2}")),
            ]);
        }
        println!("{t}");
    }
    for m in members {
        m.stop().await;
    }
    Ok(())
}
