//! The flags of `chordal node` and `chordal cluster`, checked, and the
//! node settings they make.

use super::*;

#[derive(Args, Clone, Debug)]
pub struct NodeArgs {
    /// Peer-protocol address (port 0 picks a free port).
    #[arg(long, env = "CHORDAL_LISTEN", default_value = "127.0.0.1:7000")]
    pub(super) listen: SocketAddr,
    /// HTTP API address (port 0 picks a free port).
    #[arg(long, env = "CHORDAL_API", default_value = "127.0.0.1:8000")]
    pub(super) api: SocketAddr,
    /// Seeds to join through, HOST:PORT[,HOST:PORT...]; without it a new ring starts.
    #[arg(long, env = "CHORDAL_JOIN", value_delimiter = ',')]
    pub(super) join: Vec<String>,
    #[command(flatten)]
    pub(super) ring: RingArgs,
    /// Fixed node id (40 hex digits); default SHA-1 of the peer address.
    #[arg(long, env = "CHORDAL_ID")]
    pub(super) id: Option<Id>,
    /// Keep data and identity here (a redb database); without it, data is
    /// in memory only.
    #[arg(long, env = "CHORDAL_DATA_DIR")]
    pub(super) data_dir: Option<PathBuf>,
    /// URL of a service instance running beside this node (e.g.
    /// http://127.0.0.1:9000): announced to the ring, where `chordal
    /// gateway` sends the clients this node owns.
    #[arg(long, env = "CHORDAL_SERVICE")]
    pub(super) service: Option<String>,
    /// Demand bearer tokens on the HTTP API: a file of `TOKEN ROLE` lines
    /// (roles read, write, admin; `GET /v1/health` stays open).
    #[arg(long, env = "CHORDAL_API_TOKENS")]
    pub(super) api_tokens: Option<PathBuf>,
    /// Mutual TLS on the peer protocol from DIR/ca.crt, DIR/node.crt and
    /// DIR/node.key (`chordal ca issue`): the node id is the
    /// certificate's, and only peers of the same CA get in.
    #[arg(long, env = "CHORDAL_TLS_DIR", conflicts_with = "id")]
    pub(super) tls_dir: Option<PathBuf>,
    /// Serve the HTTP API over HTTPS with the node's certificate (needs
    /// --tls-dir; issue it with --san for the names clients use).
    #[arg(long, env = "CHORDAL_API_TLS", requires = "tls_dir")]
    pub(super) api_tls: bool,
    /// Serve the Redis protocol (RESP2, RESP3 via HELLO 3) here: any Redis
    /// client reaches the ring's data through this node.
    #[arg(long, env = "CHORDAL_RESP", value_name = "HOST:PORT")]
    pub(super) resp: Option<SocketAddr>,
    /// Serve the Redis protocol over TLS with the node's certificate
    /// (needs --tls-dir). Implied by --api-tls, so that AUTH's tokens never
    /// cross the network in clear when the API's do not.
    #[arg(long, env = "CHORDAL_RESP_TLS", requires = "tls_dir")]
    pub(super) resp_tls: bool,
    /// Serve the VoidPhone DHT API (messages 650-653) here. It has no
    /// authentication: with --api-tokens it also needs --dht-api-insecure.
    #[arg(long, env = "CHORDAL_DHT_API", value_name = "HOST:PORT")]
    pub(super) dht_api: Option<SocketAddr>,
    /// Serve --dht-api although the API demands tokens: anyone who reaches
    /// the DHT API's port reads and writes keys of 32 bytes without one.
    #[arg(long, env = "CHORDAL_DHT_API_INSECURE")]
    pub(super) dht_api_insecure: bool,
    /// Client connections each front end (HTTP, RESP, DHT API) serves at
    /// once; more are refused at once. Default 4096 for HTTP, 1024 for
    /// the others.
    #[arg(long, env = "CHORDAL_MAX_CLIENT_CONNECTIONS", value_name = "N")]
    pub(super) max_client_connections: Option<usize>,
    /// Client connections one source address may hold on each front end;
    /// more are refused at once. Default 256 for HTTP, 128 for the others.
    #[arg(long, env = "CHORDAL_MAX_CONNECTIONS_PER_SOURCE", value_name = "N")]
    pub(super) max_connections_per_source: Option<usize>,
    /// Seconds a RESP or DHT API connection may stay silent between
    /// commands before it is closed (0: never).
    #[arg(long, env = "CHORDAL_CLIENT_IDLE_TIMEOUT", default_value_t = 300)]
    pub(super) client_idle_timeout: u64,
    /// Seconds a client has to finish its TLS handshake (HTTPS, RESP over
    /// TLS) and, on RESP with tokens, its AUTH.
    #[arg(long, env = "CHORDAL_CLIENT_AUTH_TIMEOUT", default_value_t = 10)]
    pub(super) client_auth_timeout: u64,
    /// Seconds an HTTP request's header may take to arrive; also how long
    /// a kept-alive HTTP connection may sit idle.
    #[arg(long, env = "CHORDAL_HTTP_HEADER_TIMEOUT", default_value_t = 30)]
    pub(super) http_header_timeout: u64,
    /// Read settings from FILE, below flags and CHORDAL_* variables: TOML
    /// with the long flag names as keys (`join` a list), or a VoidPhone
    /// .ini file's `[dht]` section (p2p_address, api_address,
    /// bootstrapper, http_address, data_dir). `chordal config check FILE`
    /// shows the result.
    #[arg(long, env = "CHORDAL_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// The peer address other nodes dial (HOST:PORT, resolved at start),
    /// when it is not the --listen address: needed when listening on
    /// 0.0.0.0 or behind NAT. Its host is also the API address announced
    /// to the ring when --api listens on 0.0.0.0.
    #[arg(long, env = "CHORDAL_ADVERTISE", value_name = "HOST:PORT")]
    pub(super) advertise: Option<String>,
    /// The API address announced to the ring (the dashboard's links, `chordal
    /// ring`, the gateway), when not --api's; default --api, or
    /// --advertise's host with --api's port when --api listens on 0.0.0.0.
    #[arg(long, env = "CHORDAL_ADVERTISE_API", value_name = "HOST:PORT")]
    pub(super) advertise_api: Option<String>,
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
    pub(super) fn conn_limits(&self, defaults: ConnLimits) -> ConnLimits {
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
    pub(super) replicas: usize,
    /// Length of the successor list.
    #[arg(long, env = "CHORDAL_SUCCESSORS", default_value_t = 8)]
    pub(super) successors: usize,
    /// Virtual nodes per process.
    #[arg(long, env = "CHORDAL_VNODES", default_value_t = 1)]
    pub(super) vnodes: usize,
    /// Interval of stabilize, fix_fingers and check_predecessor, in ms.
    #[arg(long, env = "CHORDAL_STABILIZE_MS", default_value_t = 500)]
    pub(super) stabilize_ms: u64,
    /// Copies that must be durable before a write is acknowledged (default:
    /// a majority of R). Counted against R: a write that cannot reach W
    /// processes fails with 503 quorum_unavailable, unless the whole ring
    /// has fewer processes.
    #[arg(long, env = "CHORDAL_WRITE_QUORUM")]
    pub(super) write_quorum: Option<usize>,
    /// A graceful leave (SIGTERM) waits at most this long, in seconds, for
    /// the successors to acknowledge every record handed over.
    #[arg(long, env = "CHORDAL_DRAIN_TIMEOUT", default_value_t = 120)]
    pub(super) drain_timeout: u64,
    /// Interval of range sync between owners and replicas, in ms.
    #[arg(long, env = "CHORDAL_SYNC_MS", default_value_t = 5000)]
    pub(super) sync_ms: u64,
    /// Cluster name; nodes of other clusters are refused.
    #[arg(long, env = "CHORDAL_CLUSTER", default_value = "chordal")]
    pub(super) cluster: String,
    /// How requests find their owner: `onehop` (a membership table of the
    /// whole ring, requests straight to the owner, Chord as the fallback)
    /// or `chord` (finger-table lookups, O(log N) hops). Use one setting
    /// for the whole ring.
    #[arg(long, env = "CHORDAL_ROUTING", default_value = "onehop", value_parser = ["onehop", "chord"])]
    pub(super) routing: String,
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
    pub(super) authority: bool,
    /// Authority: how long a grant keeps other holders out, in ms (a
    /// crashed owner's keys wait this long after its failure is noticed).
    #[arg(long, env = "CHORDAL_LEASE_MS", default_value_t = 2000)]
    pub(super) lease_ms: u64,
    /// Authority: the most two processes' clock rates may differ, in
    /// millionths (leases count as lease × (1 − 2 × drift)).
    #[arg(long, env = "CHORDAL_CLOCK_DRIFT_PPM", default_value_t = 10_000)]
    pub(super) clock_drift_ppm: u32,
    /// Authority: re-form a ring from survivors when fewer than a majority
    /// of some keys' copies are left (etcd's --force-new-cluster). Start
    /// one survivor with it, on its data and without --join; it takes
    /// every range in a term above all before, without the copies that are
    /// gone (a write acknowledged only on those is lost). Start the other
    /// survivors without it, joining this one. Never on a healthy ring.
    #[arg(long)]
    pub(super) force_new_ring: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 8)]
    pub(super) nodes: usize,
    /// Peer port of the first node (the others count up); 0 picks free ports.
    #[arg(long, default_value_t = 7000)]
    pub(super) base_port: u16,
    /// API port of the first node (the others count up); 0 picks free ports.
    #[arg(long, default_value_t = 8000)]
    pub(super) api_base_port: u16,
    /// Serve the Redis protocol too, the first node on PORT (the others
    /// count up; 0 picks free ports): `redis-cli -p PORT`.
    #[arg(long, value_name = "PORT")]
    pub(super) resp_base_port: Option<u16>,
    /// How long to wait for the ring to form (every node's successor and
    /// predecessor the true ones) before saying it is running.
    #[arg(long, default_value_t = 60)]
    pub(super) form_timeout_secs: u64,
    /// Keep each node's data in DIR/node-N (N counts from 0); without it, in memory.
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub(super) ring: RingArgs,
}

impl RingArgs {
    pub(super) fn validate(&self) -> Result<()> {
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

    pub(super) fn node_config(
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
