//! `chordal node` and `chordal cluster`: ring members with their HTTP API.

use anyhow::{Context, Result, bail};
use chordal_core::Id;
use chordal_http::ApiConfig;
use chordal_node::accept::ConnLimits;
use chordal_node::{Node, NodeBuilder};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod args;

pub use args::{ClusterArgs, NodeArgs};

/// A running ring member: the node, its HTTP server and the other front
/// ends it serves (RESP).
pub struct Member {
    pub node: Node,
    pub api: SocketAddr,
    /// The Redis-protocol address, if served.
    pub resp: Option<SocketAddr>,
    /// The VoidPhone DHT API address, if served.
    pub dht_api: Option<SocketAddr>,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_servers: CancellationToken,
}

/// Which API address a node announces to the ring (what the dashboard,
/// `chordal ring` and the gateway use to reach it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Announce {
    /// Announce exactly this (`--advertise-api`).
    pub api: Option<SocketAddr>,
    /// The host others reach this node at (`--advertise`'s, or a
    /// specific `--listen` address's): used with the API's port when the
    /// API listens on every address.
    pub host: Option<IpAddr>,
}

impl Announce {
    /// The address to announce for an API bound at `bound`.
    pub fn api_for(&self, bound: SocketAddr) -> SocketAddr {
        self.api.unwrap_or_else(|| self.host_for(bound))
    }

    /// The address to announce for a listener bound at `bound`: with the
    /// host others reach us at if it binds every address.
    pub fn host_for(&self, bound: SocketAddr) -> SocketAddr {
        match self.host {
            Some(host) if bound.ip().is_unspecified() => SocketAddr::new(host, bound.port()),
            _ => bound,
        }
    }
}

/// Resolves `HOST:PORT` to its first address; `what` names the flag in the
/// error.
pub fn resolve(value: &str, what: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    value
        .to_socket_addrs()
        .with_context(|| format!("{what} {value:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{what} {value:?} resolves to no address"))
}

impl Member {
    /// Binds the API first (so that the node can announce its real
    /// address, as `announce` says), starts the node, then serves the API.
    pub async fn start(
        config: NodeBuilder,
        api: SocketAddr,
        announce: Announce,
        api_config: ApiConfig,
    ) -> Result<Member> {
        let listener = TcpListener::bind(api)
            .await
            .with_context(|| format!("cannot bind the API address {api}"))?;
        let api = announce.api_for(listener.local_addr()?);
        let node = config
            .api(api)
            .start()
            .await
            .context("cannot start the node")?;
        let stop_servers = CancellationToken::new();
        let stop = stop_servers.clone();
        let http = tokio::spawn(chordal_http::serve(
            listener,
            node.clone(),
            api_config,
            async move { stop.cancelled().await },
        ));
        Ok(Member {
            node,
            api,
            resp: None,
            dht_api: None,
            servers: vec![http],
            stop_servers,
        })
    }

    /// Binds the Redis protocol address before the node starts, so that
    /// the node announces it (peers' `CLUSTER SLOTS` name it): returns
    /// the listener for [`Member::serve_resp`] and the address to
    /// announce (`announce`'s host if the listener binds every address).
    pub async fn bind_resp(
        addr: SocketAddr,
        announce: &Announce,
    ) -> Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the RESP address {addr}"))?;
        let announced = announce.host_for(listener.local_addr()?);
        Ok((listener, announced))
    }

    /// Also serves the Redis protocol on `listener` (from
    /// [`Member::bind_resp`]).
    pub async fn serve_resp(
        &mut self,
        listener: TcpListener,
        config: chordal_resp::RespConfig,
    ) -> Result<()> {
        self.resp = Some(listener.local_addr()?);
        let stop = self.stop_servers.clone();
        self.servers.push(tokio::spawn(chordal_resp::serve(
            listener,
            self.node.clone(),
            config,
            async move { stop.cancelled().await },
        )));
        Ok(())
    }

    /// Also serves the VoidPhone DHT API on `addr`.
    pub async fn serve_dht_api(
        &mut self,
        addr: SocketAddr,
        config: chordal_dhtapi::DhtApiConfig,
    ) -> Result<()> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the DHT API address {addr}"))?;
        self.dht_api = Some(listener.local_addr()?);
        let stop = self.stop_servers.clone();
        self.servers.push(tokio::spawn(chordal_dhtapi::serve(
            listener,
            self.node.clone(),
            config,
            async move { stop.cancelled().await },
        )));
        Ok(())
    }

    /// The JSON line printed once a node serves: every address it serves.
    pub fn address_line(&self) -> String {
        let mut line = serde_json::json!({
            "id": self.node.ids()[0].to_hex(),
            "addr": self.node.addr().to_string(),
            "api": self.api.to_string(),
        });
        if let Some(resp) = self.resp {
            line["resp"] = serde_json::json!(resp.to_string());
        }
        if let Some(dht_api) = self.dht_api {
            line["dht_api"] = serde_json::json!(dht_api.to_string());
        }
        line.to_string()
    }

    /// Graceful leave, then the front ends stop.
    pub async fn stop(self) {
        self.node.leave().await;
        self.stop_servers.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }
}

pub async fn run_node(args: NodeArgs) -> Result<()> {
    args.validate()?;
    let mut config = args.ring.node_config(
        args.listen,
        args.join.clone(),
        args.id,
        args.data_dir.clone(),
    );
    if let Some(service) = &args.service {
        config = config.service(service.clone());
    }
    if let Some(dir) = &args.tls_dir {
        config = config.tls_dir(dir.clone());
    }
    let mut api = ApiConfig::default();
    api.limits = args.conn_limits(api.limits);
    api.timeouts.handshake = Duration::from_secs(args.client_auth_timeout.max(1));
    api.timeouts.header_read = Duration::from_secs(args.http_header_timeout.max(1));
    // RESP is TLS whenever the API is: its AUTH carries the same tokens.
    let mut resp_tls = None;
    if args.api_tls || args.resp_tls {
        let dir = args
            .tls_dir
            .as_deref()
            .expect("clap: --api-tls and --resp-tls require --tls-dir");
        let files = chordal_tls::TlsFiles::load(dir).context("cannot use the TLS files")?;
        let https = files
            .api_server_config()
            .context("cannot build the HTTPS configuration")?;
        // Redis clients offer no ALPN, or not HTTP's.
        let mut resp = (*https).clone();
        resp.alpn_protocols.clear();
        resp_tls = Some(std::sync::Arc::new(resp));
        if args.api_tls {
            api.tls = Some(https);
        }
    }
    if args.api_tls && args.api_tokens.is_none() {
        tracing::warn!(
            "--api-tls without --api-tokens: the API is encrypted but open, so anyone who \
             reaches {} can read, write and delete (add --api-tokens)",
            args.api
        );
    } else if !args.api_tls && !args.api.ip().is_loopback() && args.api_tokens.is_none() {
        tracing::warn!(
            "the HTTP API on {} is reachable beyond this host with neither TLS nor tokens: \
             anyone who reaches it can read, write and delete (use --api-tls and --api-tokens)",
            args.api
        );
    }
    if let Some(path) = &args.api_tokens {
        let tokens = chordal_http::Tokens::load(path).context("cannot use the API tokens")?;
        api.tokens = Some(std::sync::Arc::new(tokens));
    }
    let advertise = match &args.advertise {
        Some(value) => Some(resolve(value, "--advertise")?),
        None => None,
    };
    if let Some(addr) = advertise {
        config = config.advertise(addr);
    }
    let announce = Announce {
        api: match &args.advertise_api {
            Some(value) => Some(resolve(value, "--advertise-api")?),
            None => None,
        },
        host: advertise
            .map(|a| a.ip())
            .or_else(|| Some(args.listen.ip()).filter(|ip| !ip.is_unspecified())),
    };
    // `POST /v1/admin/leave` (`chordal leave`) stops this process as
    // SIGTERM does.
    let leave = CancellationToken::new();
    api.leave = Some(leave.clone());
    let tokens = api.tokens.clone();
    let api_limits = api.limits;
    let resp_listener = match args.resp {
        Some(addr) => {
            let (listener, announced) = Member::bind_resp(addr, &announce).await?;
            config = config.resp(announced);
            Some(listener)
        }
        None => None,
    };
    let mut member = Member::start(config, args.api, announce, api).await?;
    let idle = Duration::from_secs(args.client_idle_timeout);
    if let (Some(addr), Some(listener)) = (args.resp, resp_listener) {
        if !addr.ip().is_loopback() && tokens.is_none() {
            tracing::warn!(
                "the Redis protocol on {addr} is reachable beyond this host without tokens: \
                 anyone who reaches it can read, write and delete (use --api-tokens)"
            );
        }
        let mut resp = chordal_resp::RespConfig::default();
        resp.tokens = tokens;
        resp.tls = resp_tls;
        resp.limits = args.conn_limits(resp.limits);
        resp.idle_timeout = idle;
        resp.auth_timeout = Duration::from_secs(args.client_auth_timeout.max(1));
        member.serve_resp(listener, resp).await?;
    }
    if let Some(addr) = args.dht_api {
        // The VoidPhone API has no authentication: a warning beyond
        // loopback, and no start beside tokens without --dht-api-insecure
        // (validate).
        if !addr.ip().is_loopback() || args.dht_api_insecure {
            tracing::warn!(
                "the DHT API on {addr} has no authentication: whoever reaches it reads and \
                 writes keys of 32 bytes"
            );
        }
        let mut dht = chordal_dhtapi::DhtApiConfig::default();
        dht.limits = args.conn_limits(dht.limits);
        if !idle.is_zero() {
            dht.idle_timeout = idle;
        } else {
            dht.idle_timeout = Duration::from_secs(u64::from(u32::MAX));
        }
        member.serve_dht_api(addr, dht).await?;
    }
    // Every bound together must fit in the process's file descriptors,
    // or a flood on one port starves the others (docs/security.md, "Every client port").
    let mut needed = api_limits.max_connections + 1024 + 256;
    if args.resp.is_some() {
        needed += args.conn_limits(ConnLimits::default()).max_connections;
    }
    if args.dht_api.is_some() {
        needed += args.conn_limits(ConnLimits::default()).max_connections;
    }
    if let Some(limit) = open_files_limit()
        && limit < needed as u64
    {
        tracing::warn!(
            "the connection bounds add up to {needed} file descriptors but this process may \
             open {limit}: raise `ulimit -n` (LimitNOFILE=) or lower --max-client-connections"
        );
    }
    println!("{}", member.address_line());
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = leave.cancelled() => {}
    }
    member.stop().await;
    Ok(())
}

pub async fn run_cluster(args: ClusterArgs) -> Result<()> {
    args.ring.validate()?;
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let port = |base: u16, i: usize| -> Result<u16> {
        if base == 0 {
            return Ok(0);
        }
        u16::try_from(base as usize + i).context("port out of range")
    };
    let mut members: Vec<Member> = Vec::new();
    for i in 0..args.nodes {
        let listen = SocketAddr::from(([127, 0, 0, 1], port(args.base_port, i)?));
        let api = SocketAddr::from(([127, 0, 0, 1], port(args.api_base_port, i)?));
        let seeds = members
            .first()
            .map(|m| vec![m.node.addr().to_string()])
            .unwrap_or_default();
        let dir = args.data_dir.as_ref().map(|d| d.join(format!("node-{i}")));
        let mut config = args.ring.node_config(listen, seeds, None, dir);
        let resp = match args.resp_base_port {
            Some(base) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], port(base, i)?));
                let (listener, announced) = Member::bind_resp(addr, &Announce::default())
                    .await
                    .with_context(|| format!("node {i}"))?;
                config = config.resp(announced);
                Some(listener)
            }
            None => None,
        };
        let mut member = Member::start(config, api, Announce::default(), ApiConfig::default())
            .await
            .with_context(|| format!("node {i}"))?;
        if let Some(listener) = resp {
            member
                .serve_resp(listener, chordal_resp::RespConfig::default())
                .await
                .with_context(|| format!("node {i}"))?;
        }
        println!("{}", member.address_line());
        members.push(member);
    }
    let bound = Duration::from_secs(args.form_timeout_secs);
    let waited = std::time::Instant::now();
    if formed(&members, bound).await {
        eprintln!(
            "{} nodes running, the ring formed in {:.1} s. Dashboard: http://{}/   Try: chordal ring --node {}   (Ctrl-C stops them)",
            members.len(),
            waited.elapsed().as_secs_f64(),
            members[0].api,
            members[0].api
        );
    } else {
        eprintln!(
            "{} nodes running, but the ring has not formed after {} s: see chordal ring --node {}   (Ctrl-C stops them)",
            members.len(),
            bound.as_secs(),
            members[0].api
        );
    }
    if let Some(resp) = members[0].resp {
        eprintln!("Redis protocol: redis-cli -p {}", resp.port());
    }
    shutdown_signal().await;
    for m in members {
        m.stop().await;
    }
    Ok(())
}

/// Waits (at most `bound`) until the ring of `members` has formed: every
/// vnode joined, its successor list and predecessor the true ones (by id
/// among all the members' vnodes). Until then lookups may take a wrong turn and a
/// `chordal ring` sees part of it. False if the bound passed.
async fn formed(members: &[Member], bound: Duration) -> bool {
    let mut ids: Vec<Id> = members
        .iter()
        .flat_map(|m| m.node.ids().iter().copied())
        .collect();
    ids.sort();
    let n = ids.len();
    // The true successor list (as long as the nodes keep, and the ring
    // allows) and predecessor of `id`.
    let neighbours = |id: &Id, len: usize| {
        let i = ids.binary_search(id).unwrap_or(0);
        let next: Vec<Id> = (1..=len.min(n - 1)).map(|k| ids[(i + k) % n]).collect();
        (next, ids[(i + n - 1) % n])
    };
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let mut all = true;
        for m in members {
            let Ok(status) = m.node.status().await else {
                all = false;
                break;
            };
            let len = m.node.successor_list_len();
            all &= status.vnodes.iter().all(|v| {
                let (next, prev) = neighbours(&v.me.id, len);
                let have: Vec<Id> = v.successors.iter().map(|s| s.id).take(next.len()).collect();
                n == 1 || (v.joined && have == next && v.predecessor.map(|p| p.id) == Some(prev))
            });
        }
        if all {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The soft limit on open files of this process (Linux: from
/// /proc/self/limits), if it can be read and is not unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
