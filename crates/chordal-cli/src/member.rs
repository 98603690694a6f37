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

#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// Peer-protocol address (port 0 picks a free port).
    #[arg(long, env = "CHORDAL_LISTEN", default_value = "127.0.0.1:7000")]
    listen: SocketAddr,
    /// HTTP API address (port 0 picks a free port).
    #[arg(long, env = "CHORDAL_API", default_value = "127.0.0.1:8000")]
    api: SocketAddr,
    /// Seeds to join through, HOST:PORT[,HOST:PORT...]; without it a new ring starts.
    #[arg(long, env = "CHORDAL_JOIN", value_delimiter = ',')]
    join: Vec<String>,
    #[command(flatten)]
    ring: RingArgs,
    /// Fixed node id (40 hex digits); default SHA-1 of the peer address.
    #[arg(long, env = "CHORDAL_ID")]
    id: Option<Id>,
    /// Keep data and identity here (a redb database); without it, data is
    /// in memory only.
    #[arg(long, env = "CHORDAL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// URL of a service instance running beside this node (e.g.
    /// http://127.0.0.1:9000): announced to the ring, where `chordal
    /// gateway` sends the clients this node owns.
    #[arg(long, env = "CHORDAL_SERVICE")]
    service: Option<String>,
    /// Demand bearer tokens on the HTTP API: a file of `TOKEN ROLE` lines
    /// (roles read, write, admin; `GET /v1/health` stays open).
    #[arg(long, env = "CHORDAL_API_TOKENS")]
    api_tokens: Option<PathBuf>,
    /// Mutual TLS on the peer protocol from DIR/ca.crt, DIR/node.crt and
    /// DIR/node.key (`chordal ca issue`): the node id is the
    /// certificate's, and only peers of the same CA get in.
    #[arg(long, env = "CHORDAL_TLS_DIR", conflicts_with = "id")]
    tls_dir: Option<PathBuf>,
    /// Serve the HTTP API over HTTPS with the node's certificate (needs
    /// --tls-dir; issue it with --san for the names clients use).
    #[arg(long, env = "CHORDAL_API_TLS", requires = "tls_dir")]
    api_tls: bool,
    /// Serve the Redis protocol (RESP2, RESP3 via HELLO 3) here: any Redis
    /// client reaches the ring's data through this node.
    #[arg(long, env = "CHORDAL_RESP", value_name = "HOST:PORT")]
    resp: Option<SocketAddr>,
    /// Serve the Redis protocol over TLS with the node's certificate
    /// (needs --tls-dir). Implied by --api-tls, so that AUTH's tokens never
    /// cross the network in clear when the API's do not.
    #[arg(long, env = "CHORDAL_RESP_TLS", requires = "tls_dir")]
    resp_tls: bool,
    /// Serve the VoidPhone DHT API (messages 650-653) here. It has no
    /// authentication: with --api-tokens it also needs --dht-api-insecure.
    #[arg(long, env = "CHORDAL_DHT_API", value_name = "HOST:PORT")]
    dht_api: Option<SocketAddr>,
    /// Serve --dht-api although the API demands tokens: anyone who reaches
    /// the DHT API's port reads and writes keys of 32 bytes without one.
    #[arg(long, env = "CHORDAL_DHT_API_INSECURE")]
    dht_api_insecure: bool,
    /// Client connections each front end (HTTP, RESP, DHT API) serves at
    /// once; more are refused at once. Default 4096 for HTTP, 1024 for
    /// the others.
    #[arg(long, env = "CHORDAL_MAX_CLIENT_CONNECTIONS", value_name = "N")]
    max_client_connections: Option<usize>,
    /// Client connections one source address may hold on each front end;
    /// more are refused at once. Default 256 for HTTP, 128 for the others.
    #[arg(long, env = "CHORDAL_MAX_CONNECTIONS_PER_SOURCE", value_name = "N")]
    max_connections_per_source: Option<usize>,
    /// Seconds a RESP or DHT API connection may stay silent between
    /// commands before it is closed (0: never).
    #[arg(long, env = "CHORDAL_CLIENT_IDLE_TIMEOUT", default_value_t = 300)]
    client_idle_timeout: u64,
    /// Seconds a client has to finish its TLS handshake (HTTPS, RESP over
    /// TLS) and, on RESP with tokens, its AUTH.
    #[arg(long, env = "CHORDAL_CLIENT_AUTH_TIMEOUT", default_value_t = 10)]
    client_auth_timeout: u64,
    /// Seconds an HTTP request's header may take to arrive; also how long
    /// a kept-alive HTTP connection may sit idle.
    #[arg(long, env = "CHORDAL_HTTP_HEADER_TIMEOUT", default_value_t = 30)]
    http_header_timeout: u64,
    /// Read settings from FILE, below flags and CHORDAL_* variables: TOML
    /// with the long flag names as keys (`join` a list), or a VoidPhone
    /// .ini file's `[dht]` section (p2p_address, api_address,
    /// bootstrapper, http_address, data_dir). `chordal config check FILE`
    /// shows the result.
    #[arg(long, env = "CHORDAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The peer address other nodes dial (HOST:PORT, resolved at start),
    /// when it is not the --listen address: needed when listening on
    /// 0.0.0.0 or behind NAT. Its host is also the API address announced
    /// to the ring when --api listens on 0.0.0.0.
    #[arg(long, env = "CHORDAL_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// The API address announced to the ring (the dashboard's links, `chordal
    /// ring`, the gateway), when not --api's; default --api, or
    /// --advertise's host with --api's port when --api listens on 0.0.0.0.
    #[arg(long, env = "CHORDAL_ADVERTISE_API", value_name = "HOST:PORT")]
    advertise_api: Option<String>,
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, env = "CHORDAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::LogFormat,
    /// Threads of the async runtime: 1 (default) runs the node's driver,
    /// sessions and HTTP on one thread, so a request crosses no thread
    /// inside the process (a ring of many processes is the thread-per-core
    /// shape); 0 one per core, N that many (for one node alone on a
    /// many-core machine serving much HTTP or TLS).
    #[arg(long, env = "CHORDAL_THREADS", default_value_t = 1)]
    pub threads: usize,
}

impl NodeArgs {
    /// Checks the settings a node cannot run with (counts of zero, a write
    /// quorum above R, a front end that would be open beside secured
    /// ones), before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.dht_api.is_some() && self.api_tokens.is_some() && !self.dht_api_insecure {
            bail!(
                "--dht-api has no authentication, so it would serve anonymously the keys \
                 that --api-tokens protects: add --dht-api-insecure to serve it anyway"
            );
        }
        if self.max_client_connections == Some(0) || self.max_connections_per_source == Some(0) {
            bail!("--max-client-connections and --max-connections-per-source must be at least 1");
        }
        self.ring.validate()
    }

    /// `defaults` with the connection bounds the flags set.
    fn conn_limits(&self, defaults: ConnLimits) -> ConnLimits {
        ConnLimits {
            max_connections: self
                .max_client_connections
                .unwrap_or(defaults.max_connections),
            max_per_source: self
                .max_connections_per_source
                .unwrap_or(defaults.max_per_source),
        }
    }
}

/// Protocol settings shared by `node` and `cluster`.
#[derive(Args, Clone, Debug)]
pub struct RingArgs {
    /// Replication factor R (owner + R-1 successors).
    #[arg(long, env = "CHORDAL_REPLICAS", default_value_t = 3)]
    replicas: usize,
    /// Length of the successor list.
    #[arg(long, env = "CHORDAL_SUCCESSORS", default_value_t = 8)]
    successors: usize,
    /// Virtual nodes per process.
    #[arg(long, env = "CHORDAL_VNODES", default_value_t = 1)]
    vnodes: usize,
    /// Interval of stabilize, fix_fingers and check_predecessor, in ms.
    #[arg(long, env = "CHORDAL_STABILIZE_MS", default_value_t = 500)]
    stabilize_ms: u64,
    /// Copies that must be durable before a write is acknowledged (default:
    /// a majority of R). Counted against R: a write that cannot reach W
    /// processes fails with 503 quorum_unavailable, unless the whole ring
    /// has fewer processes.
    #[arg(long, env = "CHORDAL_WRITE_QUORUM")]
    write_quorum: Option<usize>,
    /// A graceful leave (SIGTERM) waits at most this long, in seconds, for
    /// the successors to acknowledge every record handed over.
    #[arg(long, env = "CHORDAL_DRAIN_TIMEOUT", default_value_t = 120)]
    drain_timeout: u64,
    /// Interval of range sync between owners and replicas, in ms.
    #[arg(long, env = "CHORDAL_SYNC_MS", default_value_t = 5000)]
    sync_ms: u64,
    /// Cluster name; nodes of other clusters are refused.
    #[arg(long, env = "CHORDAL_CLUSTER", default_value = "chordal")]
    cluster: String,
    /// How requests find their owner: `onehop` (a membership table of the
    /// whole ring, requests straight to the owner, Chord as the fallback)
    /// or `chord` (finger-table lookups, O(log N) hops). Use one setting
    /// for the whole ring.
    #[arg(long, env = "CHORDAL_ROUTING", default_value = "onehop", value_parser = ["onehop", "chord"])]
    routing: String,
    /// Decide for a key only under a term granted by a majority of its
    /// copies, with leases and fences: linearizable keys
    /// (docs/consistency.md). On by default; `--authority=false` turns it
    /// off: then the owner Chord names decides alone, and two nodes may
    /// both decide during a join, a restart or a partition. Use one
    /// setting for the whole ring.
    #[arg(
        long,
        env = "CHORDAL_AUTHORITY",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    authority: bool,
    /// Authority: how long a grant keeps other holders out, in ms (a
    /// crashed owner's keys wait this long after its failure is noticed).
    #[arg(long, env = "CHORDAL_LEASE_MS", default_value_t = 2000)]
    lease_ms: u64,
    /// Authority: the most two processes' clock rates may differ, in
    /// millionths (leases count as lease × (1 − 2 × drift)).
    #[arg(long, env = "CHORDAL_CLOCK_DRIFT_PPM", default_value_t = 10_000)]
    clock_drift_ppm: u32,
    /// Authority: re-form a ring from survivors when fewer than a majority
    /// of some keys' copies are left (etcd's --force-new-cluster). Start
    /// one survivor with it, on its data and without --join; it takes
    /// every range in a term above all before, without the copies that are
    /// gone (a write acknowledged only on those is lost). Start the other
    /// survivors without it, joining this one. Never on a healthy ring.
    #[arg(long)]
    force_new_ring: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Peer port of the first node (the others count up); 0 picks free ports.
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    /// API port of the first node (the others count up); 0 picks free ports.
    #[arg(long, default_value_t = 8000)]
    api_base_port: u16,
    /// Serve the Redis protocol too, the first node on PORT (the others
    /// count up; 0 picks free ports): `redis-cli -p PORT`.
    #[arg(long, value_name = "PORT")]
    resp_base_port: Option<u16>,
    /// How long to wait for the ring to form (every node's successor and
    /// predecessor the true ones) before saying it is running.
    #[arg(long, default_value_t = 60)]
    form_timeout_secs: u64,
    /// Keep each node's data in DIR/node-N (N counts from 0); without it, in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    ring: RingArgs,
}

impl RingArgs {
    fn validate(&self) -> Result<()> {
        let counts = [self.successors, self.vnodes, self.replicas];
        if counts.contains(&0) || self.stabilize_ms == 0 || self.sync_ms == 0 {
            bail!(
                "--successors, --vnodes, --replicas, --stabilize-ms and --sync-ms must be at least 1"
            );
        }
        if self.vnodes > 64 {
            bail!("--vnodes is at most 64");
        }
        if self.force_new_ring && !self.authority {
            bail!("--force-new-ring needs --authority");
        }
        if self.lease_ms < 100 || self.clock_drift_ppm > 200_000 {
            bail!("--lease-ms must be at least 100 and --clock-drift-ppm at most 200000");
        }
        if let Some(w) = self.write_quorum
            && (w == 0 || w > self.replicas)
        {
            bail!(
                "--write-quorum must be between 1 and --replicas ({})",
                self.replicas
            );
        }
        Ok(())
    }

    fn node_config(
        &self,
        listen: SocketAddr,
        seeds: Vec<String>,
        id: Option<Id>,
        data_dir: Option<PathBuf>,
    ) -> NodeBuilder {
        let every = Duration::from_millis(self.stabilize_ms);
        let core = chordal_core::Config {
            successors: self.successors,
            replicas: self.replicas,
            write_quorum: self.write_quorum,
            leave_drain: Duration::from_secs(self.drain_timeout),
            sync_interval: Duration::from_millis(self.sync_ms),
            authority: self.authority,
            lease: Duration::from_millis(self.lease_ms),
            clock_drift_ppm: self.clock_drift_ppm,
            // The wall clock in µs: above any term a ring counts to (terms
            // start at 1 and go up by one per change of holder).
            force_new_ring_above: if self.force_new_ring {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as u64)
            } else {
                0
            },
            routing: if self.routing == "chord" {
                chordal_core::Routing::Chord
            } else {
                chordal_core::Routing::OneHop
            },
            ..chordal_core::Config::default().with_maintenance_interval(every)
        };
        let mut builder = Node::builder()
            .listen(listen)
            .cluster(self.cluster.clone())
            .seeds(seeds)
            .vnodes(self.vnodes)
            .core(core);
        if let Some(id) = id {
            builder = builder.id(id);
        }
        if let Some(dir) = data_dir {
            builder = builder.data_dir(dir);
        }
        builder
    }
}

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
