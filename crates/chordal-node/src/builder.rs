//! [`NodeBuilder`]: the readable way to configure and start a node.

use crate::{Node, NodeConfig, StartError};
use chordal_core::{Config, Id};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Configures a node step by step — the one way to configure and start a
/// node; [`NodeBuilder::start`] binds, creates or joins the ring and
/// returns once joined. Get one from [`Node::builder`]. Everything not set
/// keeps its default (each setter says it). Cheap to clone: start several
/// nodes from one builder (see [`LocalRing`](crate::local::LocalRing)).
///
/// ```no_run
/// # async fn demo() -> Result<(), chordal_node::StartError> {
/// use chordal_node::Node;
/// let first = Node::builder().start().await?; // a new ring on 127.0.0.1
/// let second = Node::builder()
///     .join(first.addr().to_string())
///     .vnodes(4)
///     .start()
///     .await?;
/// println!("{} owns \"k\"", second.locate(b"k").await.unwrap().owner.id);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `start`"]
pub struct NodeBuilder {
    config: NodeConfig,
}

impl NodeBuilder {
    /// Peer-protocol address to bind (default 127.0.0.1, any free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Address other nodes use to reach us, if not the bound one.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.config.advertise = Some(addr);
        self
    }

    /// Our HTTP API address, announced to peers (ring walks show it).
    pub fn api(mut self, addr: SocketAddr) -> Self {
        self.config.api = Some(addr);
        self
    }

    /// Our Redis protocol address, announced to peers (their `CLUSTER
    /// SLOTS` name it for the keys we own).
    pub fn resp(mut self, addr: SocketAddr) -> Self {
        self.config.resp = Some(addr);
        self
    }

    /// Joins the ring through this member (`host:port`; may be called
    /// again for more seeds; a name may resolve to several addresses, all
    /// tried). Without any, `start` creates a new ring.
    pub fn join(mut self, seed: impl Into<String>) -> Self {
        self.config.seeds.push(seed.into());
        self
    }

    /// Joins through these seeds, replacing any set before (an empty list
    /// creates a new ring).
    pub fn seeds(mut self, seeds: Vec<String>) -> Self {
        self.config.seeds = seeds;
        self
    }

    /// Declares the service instance running beside this node (its URL,
    /// e.g. `http://127.0.0.1:9000`): peers, clients and gateways see it.
    pub fn service(mut self, url: impl Into<String>) -> Self {
        self.config.service = Some(url.into());
        self
    }

    /// Nodes of different clusters refuse each other.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.config.cluster = name.into();
        self
    }

    /// Fixed id of the first virtual node (default: SHA-1 of the
    /// advertised address, or the one kept in the data directory).
    pub fn id(mut self, id: Id) -> Self {
        self.config.id = Some(id);
        self
    }

    /// Mutual TLS on the peer protocol (`chordal node --tls-dir`): loads
    /// `ca.crt`, `node.crt` and `node.key` from `dir` (written by
    /// `chordal ca issue --role member`). The node's id is then its
    /// certificate's ([`id`](Self::id) is refused), and only peers with a
    /// certificate of the same CA get in.
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.tls_dir = Some(dir.into());
        self
    }

    /// How often the TLS directory is checked for a renewed certificate
    /// (default 30 s); one with the same key (`chordal ca issue --renew`)
    /// is used for new connections from then on.
    pub fn tls_reload(mut self, every: Duration) -> Self {
        self.config.tls_reload = every;
        self
    }

    /// Virtual nodes hosted by this process (spreads its load).
    pub fn vnodes(mut self, n: usize) -> Self {
        self.config.vnodes = n;
        self
    }

    /// Replication factor `R` of the store (and of topic subscriber lists).
    pub fn replicas(mut self, r: usize) -> Self {
        self.config.core.replicas = r;
        self
    }

    /// Keep data and identity in a redb database here (default: memory).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Stabilization, finger fixing and predecessor checks every `every`
    /// (default 500 ms; shorter heals faster and costs more traffic).
    pub fn maintenance_interval(mut self, every: Duration) -> Self {
        self.config.core = self.config.core.with_maintenance_interval(every);
        self
    }

    /// Protocol parameters in full (default [`Config::default`]).
    pub fn core(mut self, core: Config) -> Self {
        self.config.core = core;
        self
    }

    /// Changes some protocol parameters, keeping the others:
    /// `builder.core_with(|c| c.write_quorum = Some(2))`.
    pub fn core_with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config.core);
        self
    }

    /// The protocol parameters set so far.
    pub fn core_config(&self) -> &Config {
        &self.config.core
    }

    /// Application messages waiting for the application before more are
    /// refused (default 1,024).
    pub fn app_inbox(mut self, n: usize) -> Self {
        self.config.app_inbox = n;
        self
    }

    /// Largest payload `send`, `request` and `publish` accept (default 1 MiB).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.config.max_message = bytes;
        self
    }

    /// Publications a subscription buffers for a slow reader (default 1,024).
    pub fn subscription_buffer(mut self, n: usize) -> Self {
        self.config.subscription_buffer = n;
        self
    }

    /// How long `start` waits for the join before giving up (default 20 s).
    pub fn join_timeout(mut self, limit: Duration) -> Self {
        self.config.join_timeout = limit;
        self
    }

    /// Binds the peer port, creates or joins the ring, and returns once
    /// every virtual node has joined (or [`StartError`]: the address is
    /// taken, no seed answers, the join timed out, the data directory is
    /// unusable or belongs to another node).
    pub async fn start(self) -> Result<Node, StartError> {
        Node::start(self.config).await
    }
}
