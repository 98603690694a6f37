//! What a node starts with ([`NodeConfig`], filled in by a
//! [`crate::NodeBuilder`]) and why a start can fail ([`StartError`]).

use crate::tls;
use chordal_core::Id;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything needed to start a node: what a [`NodeBuilder`] fills in.
/// The default listens on 127.0.0.1 with a free port and creates a new
/// ring.
#[derive(Clone, Debug)]
pub(crate) struct NodeConfig {
    /// Peer-protocol address to bind (port 0 picks one).
    pub listen: SocketAddr,
    /// Address other nodes use to reach us; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// Our HTTP API address, announced to peers (for ring walks).
    pub api: Option<SocketAddr>,
    /// Nodes of different clusters refuse each other.
    pub cluster: String,
    /// Seeds to join through (`host:port`, names may resolve to several
    /// addresses); empty creates a new ring.
    pub seeds: Vec<String>,
    /// Fixed id of the first virtual node (default: SHA-1 of the advertised address).
    pub id: Option<Id>,
    /// Mutual TLS on the peer protocol from `ca.crt`, `node.crt` and
    /// `node.key` here; the ids then come from the certificate.
    pub tls_dir: Option<PathBuf>,
    /// How often `tls_dir/node.crt` is checked for a renewed certificate.
    pub tls_reload: Duration,
    /// Virtual nodes hosted by this process.
    pub vnodes: usize,
    /// Protocol parameters.
    pub core: chordal_core::Config,
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Bound on established peer connections (and on handshakes in progress).
    pub max_connections: usize,
    /// Bytes queued per peer before new frames are dropped.
    pub peer_buffer: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Connections silent this long are closed (they reopen on demand).
    pub idle_timeout: Duration,
    /// How long `start` waits for the join.
    pub join_timeout: Duration,
    /// Where data and identity live (a redb database); `None` keeps data
    /// in memory and derives the id from the address.
    pub data_dir: Option<PathBuf>,
    /// Application messages waiting for the application (`Node::messages`);
    /// more are refused until it catches up.
    pub app_inbox: usize,
    /// Largest application message payload `send`/`request`/`publish`
    /// accept.
    pub max_message: usize,
    /// Publications each [`Subscription`] buffers for a slow reader; more
    /// are dropped (and counted in [`Subscription::missed`]).
    pub subscription_buffer: usize,
    /// URL of a service instance running beside this node, announced to
    /// peers and clients (a gateway sends the clients this node owns
    /// there).
    pub service: Option<String>,
    /// Where this node serves the Redis protocol, announced to peers: a
    /// node's `CLUSTER SLOTS` names every owner by it.
    pub resp: Option<SocketAddr>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            api: None,
            cluster: "chordal".to_string(),
            seeds: Vec::new(),
            id: None,
            tls_dir: None,
            tls_reload: Duration::from_secs(30),
            vnodes: 1,
            core: chordal_core::Config::default(),
            max_frame: chordal_wire::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            peer_buffer: 32 * 1024 * 1024,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(120),
            join_timeout: Duration::from_secs(20),
            data_dir: None,
            app_inbox: 1024,
            max_message: 1024 * 1024,
            subscription_buffer: 1024,
            service: None,
            resp: None,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot bind {addr}: {source}")]
    /// The peer address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    #[error(
        "listening on {0}, which peers cannot reach: set the address peers dial with --advertise HOST:PORT (NodeBuilder::advertise)"
    )]
    /// The listen address is unspecified (0.0.0.0 or ::) and no address to advertise was set.
    Unspecified(SocketAddr),
    #[error("seed {seed:?} does not resolve: {reason}")]
    /// A seed name does not resolve.
    Seed {
        /// The seed as given.
        seed: String,
        /// The resolver's error.
        reason: String,
    },
    #[error("could not join through any seed")]
    /// No seed answered the join.
    JoinFailed,
    #[error("join did not finish within {0:?}")]
    /// The join did not finish in time.
    JoinTimeout(Duration),
    #[error("storage: {0}")]
    /// The data directory could not be opened.
    Store(#[from] chordal_store::StoreError),
    #[error("the data directory belongs to another node: {0}")]
    /// The data directory holds another node's identity.
    Identity(String),
    #[error("TLS: {0}")]
    /// The TLS material could not be loaded, or does not allow this node
    /// to join (a client certificate).
    Tls(String),
    #[error("a fixed id cannot be set with TLS: the id is the certificate's")]
    /// `id` was set together with `tls_dir`.
    IdWithTls,
    #[error("{0} virtual nodes under TLS; at most {max}", max = tls::MAX_TLS_VNODES)]
    /// More virtual nodes than a TLS peer accepts.
    TooManyVnodes(usize),
}
