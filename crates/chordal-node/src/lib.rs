//! # chordal-node: a Chord node on tokio
//!
//! [`NodeBuilder::start`] binds the peer port, creates or joins a ring and returns a
//! handle once every virtual node has joined. The protocol itself lives in
//! `chordal-core`; this crate only moves its messages over TCP
//! (`chordal-wire` framing), runs its timers and answers the handle.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chordal_node::{KeyValue, Node};
//! let first = Node::builder().start().await?; // creates a ring on 127.0.0.1
//! let second = Node::builder().join(first.addr().to_string()).start().await?;
//! // Alone or not, a node stores and serves any key of the ring.
//! let written = second.put(b"user:42".to_vec(), b"Ada".to_vec()).await?;
//! let read = first.get(b"user:42".to_vec()).await?.expect("stored");
//! assert_eq!(read.value, b"Ada");
//! // The same write (a later term of the key's owner may have raised its
//! // term: the version's clock and writer name the write).
//! assert!(read.version.same_write(&written.version));
//! let owner = second.locate(b"user:42").await?.owner;
//! println!("{} owns user:42", owner.id);
//! second.leave().await;
//! first.leave().await;
//! # Ok(()) }
//! ```
//!
//! [`Node::builder`] sets what differs from the defaults: it is the one way
//! to configure a node.
//!
//! ## Building an application on the ring
//!
//! A program does not need to know the other nodes: it names keys.
//!
//! - **Where does a key live?** [`Node::locate`] gives its owner and the
//!   nodes after it. A key with a hash tag lives where its tag does (see
//!   [`chordal_core::Id::of_key`]): `{user:42}:cart` and
//!   `{user:42}:profile` share an owner and their copies.
//! - **Talk to a key's owner.** [`Node::send`] delivers bytes to the
//!   application of the node that owns a key (acknowledged once that
//!   application took them); [`Node::request`] also waits for its answer.
//!   Each node's application reads [`Node::messages`] and answers requests
//!   through their [`Responder`]. Everything is bounded: a full inbox, an
//!   application that does not listen or one that never answers makes the
//!   sender's call fail with `Refused`, never hang or grow memory.
//! - **Follow ownership.** [`Node::events`] reports joins, neighbour
//!   changes and the exact key ranges this node gained and lost
//!   ([`NodeEvent::RangeGained`], [`NodeEvent::RangeLost`]): move your own
//!   state when they come. Replayed, they always add up to the range the
//!   node owns, and the ranges of all nodes cover the ring once.
//! - **Publish and subscribe.** [`Node::subscribe`] returns a stream of
//!   what [`Node::publish`] sends to a topic from any node; each
//!   publisher's messages arrive in order, and a subscription survives
//!   the crash of the node that owns the topic.
//! - **Store data** with the [`KeyValue`] operations on a `Node`: put, get,
//!   delete, with expiries, conditions (create-only, compare-version),
//!   increments and appends decided atomically at the owner, and reads from
//!   a quorum of copies (replicated, persistent) — or from outside the
//!   ring, the same operations on a [`Client`].
//!
//! ```no_run
//! # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
//! // Every node runs this: answer whatever arrives for our keys.
//! let mut inbox = node.messages().expect("taken once");
//! tokio::spawn(async move {
//!     while let Some(msg) = inbox.next().await {
//!         let answer = format!("{} bytes for {:?}", msg.payload.len(), msg.key);
//!         msg.reply(answer.into_bytes());
//!     }
//! });
//! // Any node can then ask the owner of any key.
//! let answer = node.request(b"user:42".to_vec(), b"hello".to_vec()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod accept;
mod app;
mod bindings;
mod builder;
mod client;
mod conn;
mod driver;
mod error;
mod events;
pub mod glob;
mod kv;
pub mod local;
mod metrics;
pub mod notify;
mod outbox;
mod pool;
mod status;
mod survey;
mod tls;
pub mod tokens;
mod topics;
mod walk;

pub use app::{Incoming, Messages, Responder};
pub use builder::NodeBuilder;
/// The store's option and result types ([`KeyValue`]).
pub use chordal_core::{Change, Condition, Consistency, Expiry, PutOptions, Replaced, Updated};
/// The core's types this crate's API uses, re-exported so that an
/// application depends on `chordal-node` alone.
pub use chordal_core::{
    Config, Id, KeyRange, LeaveReport, LookupError, LookupMode, LookupResult, Neighbors, NodeRef,
    OpError, Oracle, Record, Version, Versioned, Written,
};
/// Why a data directory could not be opened ([`StartError::Store`]).
pub use chordal_store::StoreError;
pub use chordal_wire::{PROTOCOL_VERSIONS, Versions};
pub use client::{Client, ClientConfig};
pub use conn::{WireStats, probe};
pub use driver::wall_clock;
pub use error::Error;
pub use events::{NodeEvent, NodeEvents};
pub use kv::{KeyValue, StoreOp, restore, scan_cursor};
pub use status::{DEPARTED_FOR, Departed, Finger, MAX_DEPARTED, Status, VNodeStatus};
pub use survey::RingSurvey;
pub use topics::{Publication, Subscription};

use chordal_core::{Event, Outcome};
use chordal_store::Store;
use driver::{Command, Driver, DriverSettings, KeyOp};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;
use walk::{RingWalk, Stride};

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

/// One node of a ring walk: a virtual node, its process's API address and
/// how many records its process stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingMember {
    /// The virtual node.
    pub node: NodeRef,
    /// Its process's HTTP API address, if it announced one.
    pub api: Option<SocketAddr>,
    /// The service beside it (`--service`), if declared.
    pub service: Option<String>,
    /// Its predecessor and successor list when asked.
    pub predecessor: Option<NodeRef>,
    /// Its successor list when asked, nearest first.
    pub successors: Vec<NodeRef>,
    /// Records its process stores.
    pub keys_stored: u64,
}

/// What a peer process declared about itself when it connected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its HTTP API address.
    pub api: Option<SocketAddr>,
    /// The service beside it (`--service`).
    pub service: Option<String>,
}

/// A lookup's answer with what the processes it names declared
/// ([`Node::lookup_with_infos`]).
#[derive(Clone, Debug)]
pub struct Located {
    /// The lookup's answer.
    pub result: LookupResult,
    /// By peer address: the owner's, its successors' and the path's.
    pub infos: HashMap<SocketAddr, PeerInfo>,
}

/// Handle to a running node. Cheap to clone; the node leaves the ring when
/// [`Node::leave`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    addr: SocketAddr,
    ids: Vec<Id>,
    stats: Arc<WireStats>,
    app: Arc<app::AppShared>,
    max_message: usize,
    subscription_buffer: usize,
    /// Length `r` of its successor lists.
    successor_list: usize,
    /// Replication factor `R`.
    replicas: usize,
    /// Cancelled when the node stops.
    stopped: CancellationToken,
    /// The local store, for reads that bypass the driver (backups).
    store: Arc<dyn Store>,
    /// Keyspace notifications to publish (`notify::parse`'s flags; 0:
    /// none).
    keyspace_events: Arc<std::sync::atomic::AtomicU32>,
}

impl KeyValue for Node {
    async fn run(&self, op: StoreOp) -> Result<Outcome, Error> {
        let flags = self
            .keyspace_events
            .load(std::sync::atomic::Ordering::Relaxed);
        if flags == 0 {
            return self.kv(KeyOp::Store(op)).await;
        }
        let event = notify::event_of(&op);
        let outcome = self.kv(KeyOp::Store(op)).await;
        if let (Ok(o), Some((event, changed))) = (&outcome, event)
            && changed(o)
        {
            self.publish_events(flags, &event).await;
        }
        outcome
    }

    /// Starts every operation in one go: what they send to one owner
    /// leaves in one write.
    async fn run_many(&self, ops: Vec<StoreOp>) -> Vec<Result<Outcome, Error>> {
        let (ops, answers): (Vec<_>, Vec<_>) = ops
            .into_iter()
            .map(|op| {
                let (tx, rx) = oneshot::channel();
                ((op, tx), rx)
            })
            .unzip();
        let n = answers.len();
        let flags = self
            .keyspace_events
            .load(std::sync::atomic::Ordering::Relaxed);
        let events: Vec<_> = match flags {
            0 => Vec::new(),
            _ => ops.iter().map(|(op, _)| notify::event_of(op)).collect(),
        };
        if self.commands.send(Command::KvMany { ops }).await.is_err() {
            return (0..n).map(|_| Err(Error::Stopped)).collect();
        }
        let mut out = Vec::with_capacity(n);
        for rx in answers {
            out.push(match rx.await {
                Ok(r) => r.map_err(Error::Op),
                Err(_) => Err(Error::Stopped),
            });
        }
        for (outcome, event) in out.iter().zip(events) {
            if let (Ok(o), Some((event, changed))) = (outcome, event)
                && changed(o)
            {
                self.publish_events(flags, &event).await;
            }
        }
        out
    }
}

impl Node {
    /// Switches keyspace notifications to `flags` (Redis's
    /// `notify-keyspace-events` letters: `KEA`, `Kh`, `""` for none);
    /// `false` for an unknown letter (nothing changes). See `notify.rs`.
    pub fn set_keyspace_events(&self, flags: &str) -> bool {
        match notify::parse(flags) {
            Some(f) => {
                self.keyspace_events
                    .store(f, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The keyspace notifications published, as `notify-keyspace-events`
    /// letters.
    pub fn keyspace_events(&self) -> String {
        notify::show(
            self.keyspace_events
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Publishes `event` on the channels `flags` ask for. A failed
    /// publication is logged, not the write's failure.
    async fn publish_events(&self, flags: u32, event: &notify::Event) {
        for (topic, payload) in notify::publications(flags, event) {
            if let Err(e) = self.publish(topic, payload).await {
                tracing::debug!(error = %e, "keyspace notification not published");
            }
        }
    }

    /// The replication factor `R`: each key on its owner and `R - 1`
    /// further processes.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Length `r` of this node's successor lists.
    pub fn successor_list_len(&self) -> usize {
        self.successor_list
    }

    /// A [`NodeBuilder`] with the default configuration: the usual way to
    /// start a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Binds, creates or joins a ring, and returns once every virtual node
    /// has joined (what [`NodeBuilder::start`] does).
    pub(crate) async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = config.advertise.unwrap_or(bound);
        if addr.ip().is_unspecified() {
            return Err(StartError::Unspecified(addr));
        }
        let mut seeds = Vec::new();
        for seed in &config.seeds {
            let resolved =
                tokio::net::lookup_host(seed.as_str())
                    .await
                    .map_err(|e| StartError::Seed {
                        seed: seed.clone(),
                        reason: e.to_string(),
                    })?;
            seeds.extend(resolved.filter(|a| *a != addr));
        }
        if !config.seeds.is_empty() && seeds.is_empty() {
            return Err(StartError::Seed {
                seed: config.seeds.join(","),
                reason: "resolves only to this node".into(),
            });
        }
        let tls = match &config.tls_dir {
            Some(dir) => Some(tls::TlsSlot::new(load_member_tls(dir, &config)?)),
            None => {
                if let Some(warning) = tls::plain_warning(bound) {
                    warn!("{warning}");
                }
                None
            }
        };
        let store = chordal_store::open(config.data_dir.as_deref())?;
        let ids = identity(
            &config,
            addr,
            tls.as_ref().map(|t| t.current().identity().id),
            store.as_ref(),
        )?;
        let mut core_config = config.core.clone();
        // Under TLS every message's sender is certified, so what a member
        // says about others can be checked with them.
        core_config.verify_members |= tls.is_some();
        let mut core = chordal_core::Node::new(core_config, addr, &ids, random_seed());
        // Versions go above everything on disk, even if the wall clock is
        // now behind the one that wrote it (an NTP step, a VM resume).
        core.seed_clock(store.max_hlc()?);
        // What this process promised before it stopped (authority): kept,
        // and every lease counted live for one more lease.
        let promises = store.meta(chordal_store::PROMISES)?;
        if !core.restore_promises(driver::wall_clock(), promises.as_deref()) {
            return Err(StartError::Store(chordal_store::StoreError::Io(
                "the saved promise table is damaged".into(),
            )));
        }
        let (inbound_tx, inbound_rx) = mpsc::channel(4096);
        let (commands, commands_rx) = mpsc::channel(1024);
        let (events, _) = broadcast::channel(1024);
        let stats = Arc::new(WireStats::default());
        let hello = chordal_wire::encode_hello(&chordal_wire::Hello {
            cluster: config.cluster.clone(),
            addr: Some(addr),
            api: config.api,
            ids: ids.clone(),
            service: config.service.clone(),
        });
        let stopped = CancellationToken::new();
        if let (Some(slot), Some(dir)) = (&tls, &config.tls_dir) {
            tokio::spawn(
                slot.clone()
                    .watch(dir.clone(), config.tls_reload, stopped.clone()),
            );
        }
        let ctx = conn::ConnContext {
            hello: hello.into(),
            cluster: config.cluster.clone(),
            max_frame: config.max_frame,
            handshake_timeout: config.handshake_timeout,
            connect_timeout: config.connect_timeout,
            peer_buffer: config.peer_buffer,
            max_connections: config.max_connections,
            inbound: inbound_tx,
            shutdown: stopped.clone(),
            tasks: tokio_util::task::TaskTracker::new(),
            stats: stats.clone(),
            tls,
        };
        let settings = DriverSettings {
            cluster: config.cluster.clone(),
            api: config.api,
            service: config.service.clone(),
            idle_timeout: config.idle_timeout,
        };
        let (joined_tx, joined_rx) = oneshot::channel();
        let (inbox_tx, inbox_rx) = mpsc::channel(config.app_inbox.max(1));
        let app = Arc::new(app::AppShared {
            listening: std::sync::atomic::AtomicBool::new(false),
            inbox: std::sync::Mutex::new(Some(inbox_rx)),
        });
        let local_store = store.clone();
        let driver = Driver::new(
            core,
            store,
            settings,
            ctx,
            events.clone(),
            joined_tx,
            app::AppChannels {
                shared: app.clone(),
                inbox: inbox_tx,
            },
        );
        // One span per node: every log line of its driver says which node.
        let span = tracing::info_span!("node", id = %ids[0].short(), addr = %addr);
        tokio::spawn(tracing::Instrument::instrument(
            driver.run(listener, seeds, commands_rx, inbound_rx),
            span,
        ));
        let node = Node {
            commands,
            events,
            addr,
            ids,
            stats,
            app,
            max_message: config.max_message,
            subscription_buffer: config.subscription_buffer,
            successor_list: config.core.successors,
            replicas: config.core.replicas,
            stopped: stopped.clone(),
            store: local_store,
            keyspace_events: Default::default(),
        };
        match tokio::time::timeout(config.join_timeout, joined_rx).await {
            Ok(Ok(Ok(()))) => Ok(node),
            Ok(_) => {
                node.leave().await;
                Err(StartError::JoinFailed)
            }
            Err(_) => {
                node.leave().await;
                Err(StartError::JoinTimeout(config.join_timeout))
            }
        }
    }

    /// Our peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Our id on the ring (the first virtual node's): the keys in
    /// `(predecessor, id]` are ours.
    pub fn id(&self) -> Id {
        self.ids[0]
    }

    /// Our virtual node ids; the first is the primary.
    pub fn ids(&self) -> &[Id] {
        &self.ids
    }

    /// The primary virtual node.
    pub fn me(&self) -> NodeRef {
        NodeRef::new(self.ids[0], self.addr)
    }

    /// Wire counters.
    pub fn wire_stats(&self) -> &WireStats {
        &self.stats
    }

    /// This node's place on the ring as it changes, from now on: joins,
    /// neighbours, and the exact key ranges gained and lost.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) {
    /// use chordal_node::NodeEvent;
    /// let mut events = node.events();
    /// while let Some(e) = events.next().await {
    ///     match e {
    ///         NodeEvent::RangeLost { range, .. } => { /* hand state in `range` over */ }
    ///         NodeEvent::RangeGained { range, .. } => { /* take state in `range` on */ }
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> NodeEvents {
        NodeEvents::new(self.events.subscribe(), self.stopped.clone())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// `find_successor(key)`: the owner of a key id and the nodes after it.
    ///
    /// Fails with `Error::Op(OpError::Lookup(_))` or `Error::Stopped`.
    pub async fn lookup(&self, key: Id, mode: LookupMode) -> Result<LookupResult, Error> {
        Ok(self.lookup_with_infos(key, mode).await?.result)
    }

    /// [`Node::lookup`] together with what each node of the answer (owner,
    /// successors, path) declared, in one trip to the driver: what a
    /// locate shows a user.
    pub async fn lookup_with_infos(&self, key: Id, mode: LookupMode) -> Result<Located, Error> {
        Ok(self
            .ask(|reply| Command::Lookup { key, mode, reply })
            .await??)
    }

    /// The owner of a key (by its bytes), with a recursive lookup.
    pub async fn locate(&self, key: &[u8]) -> Result<LookupResult, Error> {
        self.lookup(Id::of_key(key), LookupMode::Recursive).await
    }

    /// Sends `payload` to the application of `key`'s owner, wherever it is;
    /// returns once that application took it (`Incoming` in its
    /// [`Node::messages`]). `OpError::Refused` if it refused, was too busy
    /// or does not listen.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// node.send(b"user:42".to_vec(), b"hello".to_vec()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, key: Vec<u8>, payload: Vec<u8>) -> Result<(), Error> {
        self.check_size(&payload)?;
        let op = KeyOp::Send { key, payload };
        Ok(self.kv(op).await?.delivered()?)
    }

    /// Sends `payload` to the application of `key`'s owner and returns its
    /// answer ([`Responder::reply`]).
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// let answer = node.request(b"counter".to_vec(), b"incr".to_vec()).await?;
    /// println!("{}", String::from_utf8_lossy(&answer));
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, key: Vec<u8>, payload: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.check_size(&payload)?;
        let op = KeyOp::Request { key, payload };
        Ok(self.kv(op).await?.replied()?)
    }

    /// Sends `payload` to the application of node `to` itself, whatever
    /// keys it owns (for services that already know their peers, like a
    /// topic owner fanning out to subscribers). Tried once:
    /// `OpError::Unreachable` if `to` does not answer.
    pub async fn send_to(&self, to: NodeRef, payload: Vec<u8>) -> Result<(), Error> {
        Ok(self.direct(to, payload, false).await?.delivered()?)
    }

    /// `send_to`, returning the application's answer.
    pub async fn request_to(&self, to: NodeRef, payload: Vec<u8>) -> Result<Vec<u8>, Error> {
        Ok(self.direct(to, payload, true).await?.replied()?)
    }

    async fn direct(
        &self,
        to: NodeRef,
        payload: Vec<u8>,
        want_reply: bool,
    ) -> Result<Outcome, Error> {
        self.check_size(&payload)?;
        let r = self
            .ask(|reply| Command::Direct {
                to,
                payload,
                want_reply,
                reply,
            })
            .await?;
        Ok(r?)
    }

    /// Subscribes to `topic`: the returned stream gets what is published
    /// there from now on, each publisher's in order. Returns once the
    /// topic's owner has registered this node. The node renews the
    /// subscription (so it survives the owner's failure) until every
    /// stream of the topic is dropped.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// let mut news = node.subscribe(b"news".to_vec()).await?;
    /// while let Some(p) = news.next().await {
    ///     println!("{}", String::from_utf8_lossy(&p.payload));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, topic: Vec<u8>) -> Result<Subscription, Error> {
        let (stream, sub) = topics::stream(topic.clone(), self.subscription_buffer);
        let r = self
            .ask(|reply| Command::Subscribe { topic, sub, reply })
            .await?;
        r?.delivered()?;
        Ok(stream)
    }

    /// Publishes `payload` on `topic`; returns the number of subscribed
    /// nodes the topic's owner queued it for. Publications of this node
    /// to one topic reach every subscriber in the order of the calls.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// let nodes = node.publish(b"news".to_vec(), b"hello".to_vec()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, topic: Vec<u8>, payload: Vec<u8>) -> Result<u32, Error> {
        self.check_size(&payload)?;
        let r = self
            .ask(|reply| Command::Publish {
                topic,
                payload,
                reply,
            })
            .await?;
        Ok(r?.published()?)
    }

    /// The messages sent to keys this node owns, for its application. The
    /// first call takes the inbox; later calls get `None`. Until it is
    /// taken, messages to this node are refused.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) {
    /// let mut inbox = node.messages().expect("first call");
    /// while let Some(msg) = inbox.next().await {
    ///     let answer = msg.payload.to_ascii_uppercase();
    ///     msg.reply(answer); // a plain `send` needs no answer
    /// }
    /// # }
    /// ```
    pub fn messages(&self) -> Option<Messages> {
        self.app.take()
    }

    fn check_size(&self, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > self.max_message {
            return Err(Error::Op(OpError::TooLarge {
                size: payload.len() as u64,
                limit: self.max_message as u64,
            }));
        }
        Ok(())
    }

    async fn kv(&self, op: KeyOp) -> Result<Outcome, Error> {
        let r = self.ask(|reply| Command::Kv { op, reply }).await?;
        Ok(r?)
    }

    /// This node's metrics in Prometheus text format (what `GET /metrics`
    /// serves): messages and bytes by type, lookups and hops, latencies,
    /// stabilization, routing changes, connections, keys, errors by kind.
    pub async fn metrics(&self) -> Result<String, Error> {
        self.ask(|reply| Command::Metrics { reply }).await
    }

    /// This node's own copy of `key` (a tombstone included), without
    /// routing: for inspecting replicas.
    pub async fn local_get(&self, key: Vec<u8>) -> Result<Option<chordal_core::Record>, Error> {
        self.ask(|reply| Command::LocalGet { key, reply }).await
    }

    /// This node's own records (tombstones and expired values included)
    /// whose key ids lie in the ring interval `(start, end]` (the whole
    /// ring if `start == end`), after `after`, in key-id order, as one
    /// moment saw them ([`chordal_store::Store::scan_snapshot`]): what
    /// `chordal backup` reads, range by range from each range's owner.
    /// The records come in pages of at most `page_records` records or
    /// `page_bytes` bytes of keys and values; the channel holds two pages,
    /// so a slow reader slows the scan, and dropping the receiver ends it.
    /// The read runs on a blocking thread: it does not hold up the node.
    pub fn stream_records(
        &self,
        (start, end): (Id, Id),
        after: Option<(Id, Vec<u8>)>,
        (page_records, page_bytes): (usize, usize),
    ) -> mpsc::Receiver<Result<Vec<chordal_core::Record>, Error>> {
        let (tx, rx) = mpsc::channel(2);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let resume = after.as_ref().map(|(id, key)| (id, key.as_slice()));
            let (mut page, mut bytes) = (Vec::new(), 0usize);
            let mut open = true;
            let scanned = store.scan_snapshot(&start, &end, resume, &mut |r| {
                bytes += r.key.len() + r.value.as_ref().map_or(0, Vec::len);
                page.push(r);
                if page.len() >= page_records.max(1) || bytes >= page_bytes {
                    bytes = 0;
                    open = tx.blocking_send(Ok(std::mem::take(&mut page))).is_ok();
                }
                open
            });
            let last = match scanned {
                Ok(()) if page.is_empty() => return,
                Ok(()) => Ok(page),
                Err(e) => Err(Error::Storage(e.to_string())),
            };
            let _ = tx.blocking_send(last);
        });
        rx
    }

    /// A snapshot of our routing state and counters.
    pub async fn status(&self) -> Result<Status, Error> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Asks `node` for its predecessor and successor list.
    pub async fn neighbors_of(&self, node: NodeRef) -> Result<Option<Neighbors>, Error> {
        self.ask(|reply| Command::QueryNeighbors { node, reply })
            .await
    }

    /// The API address of the process at peer address `addr`, if known.
    pub async fn api_of(&self, addr: SocketAddr) -> Result<Option<SocketAddr>, Error> {
        Ok(self.peer_info(addr).await?.api)
    }

    /// What the process at peer address `addr` declared in its Hello (its
    /// API address and service URL), as far as this node knows it.
    pub async fn peer_info(&self, addr: SocketAddr) -> Result<PeerInfo, Error> {
        let mut infos = self.peer_infos(vec![addr]).await?;
        Ok(infos.pop().unwrap_or_default())
    }

    /// The authority state (terms held, promises, leases) as text, for
    /// debugging a node that will not settle or leave.
    #[doc(hidden)]
    pub async fn debug_authority(&self) -> Result<String, Error> {
        self.ask(|reply| Command::DebugAuthority { reply }).await
    }

    /// Every vnode in this node's one-hop membership table, in id order
    /// (empty under Chord routing): who it would send a key's requests to.
    pub async fn membership_entries(&self) -> Result<Vec<chordal_core::NodeRef>, Error> {
        self.ask(|reply| Command::Members { reply }).await
    }

    /// [`Node::peer_info`] of several addresses in one trip to the driver,
    /// in the same order.
    pub async fn peer_infos(&self, addrs: Vec<SocketAddr>) -> Result<Vec<PeerInfo>, Error> {
        self.ask(|reply| Command::PeerInfo { addrs, reply }).await
    }

    /// Walks the ring by successor pointers from our primary virtual node
    /// until it comes back (or `limit` nodes): every member in ring order.
    /// A node that does not answer is skipped via the previous node's
    /// successor list.
    pub async fn walk_ring(&self, limit: usize) -> Result<Vec<RingMember>, Error> {
        Ok(self.survey_ring(limit).await?.members)
    }

    /// Walks the ring like [`Node::walk_ring`], also noting the nodes that
    /// did not answer; [`RingSurvey::problems`] says what looks wrong.
    pub async fn survey_ring(&self, limit: usize) -> Result<RingSurvey, Error> {
        let mut walk = RingWalk::new(self.me().into(), Stride::Every, limit);
        while let Some(t) = walk.next() {
            // A survey starts at a named node and follows named nodes.
            let answer = match t.id {
                Some(id) => self.neighbors_of(NodeRef::new(id, t.addr)).await?,
                None => None,
            };
            walk.answered(answer);
        }
        let found = walk.finish();
        let mut members = Vec::with_capacity(found.answers.len());
        for n in found.answers {
            let peer = self.peer_info(n.node.addr).await?;
            members.push(RingMember {
                node: n.node,
                api: peer.api,
                service: peer.service,
                keys_stored: n.keys_stored,
                predecessor: n.predecessor,
                successors: n.successors,
            });
        }
        let unreachable = found
            .unreachable
            .into_iter()
            .filter_map(|(node, named_by)| Some((node, named_by?)))
            .collect();
        Ok(RingSurvey {
            members,
            unreachable,
        })
    }

    /// Stops at once without a word to anyone, as if the process crashed:
    /// connections close, the port stops answering. For failure tests and
    /// benchmarks; use [`Node::leave`] otherwise.
    pub async fn abort(&self) {
        let _ = self.ask(|reply| Command::Abort { reply }).await;
    }

    /// Leaves the ring gracefully: every range this node owns is handed to
    /// its successor and acknowledged there (at most the configured
    /// `leave_drain`, 2 minutes by default), then the neighbours are told
    /// and connections flushed. Returns what was handed over (default if
    /// the node had already stopped).
    pub async fn leave(&self) -> chordal_core::LeaveReport {
        self.ask(|reply| Command::Leave { reply })
            .await
            .unwrap_or_default()
    }
}

/// Loads a member's TLS material and checks it fits the rest of `config`.
fn load_member_tls(dir: &std::path::Path, config: &NodeConfig) -> Result<tls::PeerTls, StartError> {
    if config.id.is_some() {
        return Err(StartError::IdWithTls);
    }
    if config.vnodes > tls::MAX_TLS_VNODES {
        return Err(StartError::TooManyVnodes(config.vnodes));
    }
    let tls = tls::PeerTls::load(dir).map_err(|e| StartError::Tls(e.to_string()))?;
    if tls.identity().role != chordal_tls::Role::Member {
        return Err(StartError::Tls(format!(
            "{} holds a client certificate: a node needs a member certificate",
            dir.display()
        )));
    }
    Ok(tls)
}

/// A seed for the core's jitter that differs between processes: hashing
/// with std's randomly keyed hasher avoids a dependency on an RNG crate.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// The virtual node ids this node runs with. Without a data directory:
/// `--id` or derived from the address. With one: the ids stored there (a
/// restarted node comes back at the same place), or, on first start, the
/// ids chosen as above, which are then stored.
///
/// Under TLS (`certified`: the certificate's id) the ids are
/// `vnode_ids_from` that id, always; a data directory must hold the same.
fn identity(
    config: &NodeConfig,
    addr: SocketAddr,
    certified: Option<Id>,
    store: &dyn Store,
) -> Result<Vec<Id>, StartError> {
    let mut fresh = match certified {
        Some(id) => chordal_core::Node::vnode_ids_from(id, config.vnodes),
        None => chordal_core::Node::vnode_ids(&addr.to_string(), config.vnodes),
    };
    if let Some(id) = config.id {
        fresh[0] = id;
    }
    if config.data_dir.is_none() {
        return Ok(fresh);
    }
    match store.meta("vnode_ids")? {
        Some(bytes) => {
            let ids: Vec<Id> = bytes
                .chunks(chordal_core::ID_BYTES)
                .filter_map(Id::from_slice)
                .collect();
            if ids.is_empty() || ids.len() * chordal_core::ID_BYTES != bytes.len() {
                return Err(StartError::Identity("stored ids are corrupt".into()));
            }
            if ids.len() != config.vnodes.max(1) {
                return Err(StartError::Identity(format!(
                    "it was created with {} virtual nodes, not {}",
                    ids.len(),
                    config.vnodes
                )));
            }
            if let Some(id) = config.id.filter(|id| *id != ids[0]) {
                return Err(StartError::Identity(format!(
                    "it holds node {}, not {id}",
                    ids[0]
                )));
            }
            if certified.is_some() && ids != fresh {
                return Err(StartError::Identity(format!(
                    "it holds node {}, the certificate gives {}",
                    ids[0], fresh[0]
                )));
            }
            Ok(ids)
        }
        None => {
            let bytes: Vec<u8> = fresh.iter().flat_map(|id| id.0).collect();
            store.set_meta("vnode_ids", &bytes)?;
            Ok(fresh)
        }
    }
}
