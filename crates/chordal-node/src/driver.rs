//! The driver: one task that owns the sans-IO core and does all of a
//! node's common-path I/O. It reads every peer connection itself and writes
//! straight into their outboxes, so a message costs one task wake-up.
//! Handshakes, the listener and API calls reach it through bounded channels.

use crate::app::{Answer, AppChannels, AppShared, Incoming, Responder};
use crate::bindings::{self, Bindings, Verdict};
use crate::conn::{self, ConnContext, Established, Inbound, ReadItem};
use crate::kv::StoreOp;
use crate::metrics::{NodeMetrics, Snapshot};
use crate::outbox::Outbox;
use crate::pool::{Peer, Pool, Route};
use crate::status::{Finger, Status, VNodeStatus};
use crate::tls::Standing;
use crate::topics::{LocalSub, LocalTopics, Publication};
use bytes::BytesMut;
use chordal_core::{
    Event, Id, LeaveReport, LookupError, LookupId, LookupMode, LookupResult, Neighbors,
    Node as Core, NodeRef, OpError, OpId, Outcome, QueryId, StoreKind, StoreOpId, StoreRequest,
    StoreResult, Time,
};
use chordal_store::Store;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Where the answer to a key-value (or message, pub/sub) operation goes.
type Reply = oneshot::Sender<Result<Outcome, OpError>>;

/// What the [`crate::Node`] handle asks of the driver.
pub enum Command {
    Lookup {
        key: chordal_core::Id,
        mode: LookupMode,
        /// The answer with what each node it names declared, so that a
        /// locate needs one trip to the driver.
        reply: oneshot::Sender<Result<crate::Located, LookupError>>,
    },
    QueryNeighbors {
        node: chordal_core::NodeRef,
        reply: oneshot::Sender<Option<Neighbors>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    /// The node's metrics in Prometheus text format.
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// This node's own copy of a key, without routing.
    LocalGet {
        key: Vec<u8>,
        reply: oneshot::Sender<Option<chordal_core::Record>>,
    },
    /// The authority state, for debugging (`chordal_core::Node::debug_authority`).
    DebugAuthority {
        reply: oneshot::Sender<String>,
    },
    /// Every entry of the one-hop membership table, in id order.
    Members {
        reply: oneshot::Sender<Vec<NodeRef>>,
    },
    /// What the processes at these peer addresses declared, in order.
    PeerInfo {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Vec<crate::PeerInfo>>,
    },
    Kv {
        op: KeyOp,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    /// Several store operations started together, so that what they send
    /// to one owner leaves in one write.
    KvMany {
        ops: Vec<(StoreOp, oneshot::Sender<Result<Outcome, OpError>>)>,
    },
    /// An application message to node `to` itself.
    Direct {
        to: chordal_core::NodeRef,
        payload: Vec<u8>,
        want_reply: bool,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    /// Subscribe to a topic, feeding `sub`; answered once the topic's
    /// owner registered this node.
    Subscribe {
        topic: Vec<u8>,
        sub: LocalSub,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    Publish {
        topic: Vec<u8>,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    /// Leave gracefully and stop: hand every range over (acknowledged),
    /// then say goodbye; answered once farewells are flushed.
    Leave {
        reply: oneshot::Sender<LeaveReport>,
    },
    /// Stop at once without telling anyone, like a crash.
    Abort {
        reply: oneshot::Sender<()>,
    },
}

/// An operation on a key's owner, as the handle asks for it.
#[derive(Debug)]
pub enum KeyOp {
    /// A store operation (its expiry made absolute when it starts).
    Store(StoreOp),
    /// An application message for the owner's application.
    Send { key: Vec<u8>, payload: Vec<u8> },
    /// The same, waiting for the application's answer.
    Request { key: Vec<u8>, payload: Vec<u8> },
}

/// Most frames (or commands) the driver takes in one wake-up before it
/// writes: enough to coalesce a burst, few enough that timers and the
/// other sources are not starved.
const DRAIN_PER_WAKE: usize = 64;

/// Whether the driver goes on after a command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flow {
    Continue,
    Stop,
}

/// Settings the driver needs beyond the core's.
pub struct DriverSettings {
    pub cluster: String,
    pub api: Option<SocketAddr>,
    /// The service beside this node (`--service`).
    pub service: Option<String>,
    /// Where this node serves the Redis protocol, if it does.
    pub resp: Option<SocketAddr>,
    /// Connections silent this long are closed (they reopen on demand).
    pub idle_timeout: Duration,
}

/// An established connection the driver reads.
struct Conn {
    addr: SocketAddr,
    close: CancellationToken,
    last_active: Instant,
    /// What the peer may send.
    standing: Standing,
    /// When the peer's certificate expires (TLS only).
    expires: Option<std::time::SystemTime>,
    /// We dialled it (else the peer did).
    outbound: bool,
}

pub struct Driver {
    core: Core,
    store: Arc<dyn Store>,
    /// Durable writes come back here from the store's writer thread.
    applied_tx: mpsc::UnboundedSender<(StoreOpId, StoreResult)>,
    applied_rx: mpsc::UnboundedReceiver<(StoreOpId, StoreResult)>,
    /// Operations the handle waits for: where to answer, when they
    /// started and what kind they are (for metrics).
    kv_ops: HashMap<OpId, (Reply, Instant, &'static str)>,
    start: Instant,
    /// `now()` at `start`, in microseconds since the Unix epoch.
    epoch: u64,
    settings: DriverSettings,
    ctx: ConnContext,
    /// Where to write, per peer address.
    pool: Pool,
    /// Every established connection, by id.
    conns: HashMap<u64, Conn>,
    /// The read sides of all connections.
    readers: SelectAll<BoxStream<'static, ReadItem>>,
    /// API addresses of peers, from their Hellos (proven ones only, under
    /// TLS: see `bindings`).
    peers: HashMap<SocketAddr, crate::PeerInfo>,
    /// Processes seen failing or leaving lately, oldest first: (one of
    /// their vnodes, its API address, a graceful leave?, when); see
    /// `Status::departed`.
    departed: std::collections::VecDeque<(NodeRef, Option<SocketAddr>, bool, Instant)>,
    /// Under TLS, which certified ids our dials met at which address, and
    /// the inbound connections waiting for such proof.
    bindings: Bindings,
    lookups: HashMap<
        LookupId,
        (
            oneshot::Sender<Result<crate::Located, LookupError>>,
            Instant,
        ),
    >,
    queries: HashMap<QueryId, oneshot::Sender<Option<Neighbors>>>,
    /// Waiting for every virtual node to join (or one to fail).
    join_waiter: Option<oneshot::Sender<Result<(), ()>>>,
    events: broadcast::Sender<Event>,
    /// Frames produced by the current `pump`, per destination: written with
    /// one call per peer and lane at its end, the buffers then emptied and
    /// kept.
    batch: HashMap<SocketAddr, Batch>,
    /// The application's inbox and whether anyone reads it.
    app: Arc<AppShared>,
    inbox: mpsc::Sender<Incoming>,
    /// Answers to requests, from `Responder`s.
    answers_tx: mpsc::Sender<Answer>,
    answers_rx: mpsc::Receiver<Answer>,
    /// The application's subscription streams.
    topics: LocalTopics,
    metrics: NodeMetrics,
    /// Set once a graceful leave started: who waits for it to end.
    leave_replies: Option<Vec<oneshot::Sender<LeaveReport>>>,
}

/// Frames for one peer from one `pump`, by lane (see [`Outbox`]).
#[derive(Default)]
struct Batch {
    /// Authority control (`Message::is_urgent`): written ahead of bulk.
    urgent: BytesMut,
    bulk: BytesMut,
}

/// Destinations whose frame buffers a driver keeps between passes;
/// beyond, it starts afresh.
const KEEP_BATCHES: usize = 1024;

/// Capacity a kept frame buffer may keep (a bulk transfer's megabytes are
/// let go).
const KEEP_BATCH_BYTES: usize = 64 * 1024;

impl Batch {
    fn has_frames(&self) -> bool {
        !self.urgent.is_empty() || !self.bulk.is_empty()
    }

    /// Empties both lanes, keeping a small buffer's capacity for the next
    /// pass.
    fn clear(&mut self) {
        for buf in [&mut self.urgent, &mut self.bulk] {
            if buf.capacity() > KEEP_BATCH_BYTES {
                *buf = BytesMut::new();
            } else {
                buf.clear();
            }
        }
    }

    /// Queues both lanes in `outbox`; false if either was refused.
    fn push_to(&self, outbox: &Outbox) -> bool {
        let urgent = self.urgent.is_empty() || outbox.push_urgent(&self.urgent);
        let bulk = self.bulk.is_empty() || outbox.push(&self.bulk);
        urgent && bulk
    }
}

impl Driver {
    pub fn new(
        core: Core,
        store: Arc<dyn Store>,
        settings: DriverSettings,
        ctx: ConnContext,
        events: broadcast::Sender<Event>,
        join_waiter: oneshot::Sender<Result<(), ()>>,
        app: AppChannels,
    ) -> Driver {
        let AppChannels { shared: app, inbox } = app;
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        // As many answers as the inbox holds requests.
        let (answers_tx, answers_rx) = mpsc::channel(inbox.max_capacity());
        Driver {
            core,
            store,
            applied_tx,
            applied_rx,
            kv_ops: HashMap::new(),
            start: Instant::now(),
            epoch: unix_micros(),
            settings,
            ctx,
            pool: Pool::default(),
            conns: HashMap::new(),
            readers: SelectAll::new(),
            peers: HashMap::new(),
            departed: Default::default(),
            bindings: Bindings::default(),
            lookups: HashMap::new(),
            queries: HashMap::new(),
            join_waiter: Some(join_waiter),
            events,
            batch: HashMap::new(),
            app,
            inbox,
            answers_tx,
            answers_rx,
            topics: LocalTopics::default(),
            metrics: NodeMetrics::new(),
            leave_replies: None,
        }
    }

    /// Wall-clock microseconds since the Unix epoch, advanced by the
    /// monotonic clock: versions' hybrid logical clocks read it.
    fn now(&self) -> Time {
        Time::from_micros(self.epoch + self.start.elapsed().as_micros() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        self.start + Duration::from_micros(t.as_micros().saturating_sub(self.epoch))
    }

    /// Runs the node: `seeds` empty creates a ring, else joins through them.
    pub async fn run(
        mut self,
        listener: TcpListener,
        seeds: Vec<SocketAddr>,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) {
        conn::spawn_listener(listener, self.ctx.clone());
        let now = self.now();
        if seeds.is_empty() {
            self.core.create(now);
        } else {
            self.core.join(now, seeds);
        }
        self.pump();
        // Also where connections of peers whose certificate expired are
        // closed: at most a second late.
        let mut idle_check =
            tokio::time::interval((self.settings.idle_timeout / 4).min(Duration::from_secs(1)));
        // The store's record count, for ring walks: refreshed now and then
        // rather than on every write.
        let mut load_tick = tokio::time::interval(Duration::from_secs(1));
        let mut progress_tick = tokio::time::interval(Duration::from_secs(1));
        let mut commands_closed = false;
        loop {
            let wake = self.core.poll_timeout().map(|t| self.instant(t));
            let sleep = tokio::time::sleep_until(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                item = self.readers.next(), if !self.readers.is_empty() => {
                    if let Some(item) = item {
                        self.read(item);
                        // Take what else has arrived before answering, so
                        // that the frames this wake-up produces for one
                        // peer leave in one write.
                        for _ in 1..DRAIN_PER_WAKE {
                            match self.readers.next().now_or_never() {
                                Some(Some(item)) => self.read(item),
                                _ => break,
                            }
                        }
                    }
                }
                cmd = commands.recv(), if !commands_closed => match cmd {
                    Some(cmd) => {
                        if self.command(cmd) == Flow::Stop {
                            return;
                        }
                        // Likewise for the commands already queued.
                        for _ in 1..DRAIN_PER_WAKE {
                            let Ok(cmd) = commands.try_recv() else { break };
                            if self.command(cmd) == Flow::Stop {
                                return;
                            }
                        }
                    }
                    None => {
                        // Every handle dropped: leave like a SIGTERM would.
                        commands_closed = true;
                        self.begin_leave(None);
                    }
                },
                msg = inbound.recv() => {
                    if let Some(msg) = msg {
                        self.inbound(msg);
                    }
                }
                _ = sleep => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
                _ = idle_check.tick() => self.close_idle(),
                _ = progress_tick.tick(), if self.leave_replies.is_some() => {
                    if let Some((records, bytes, running)) = self.core.leave_progress() {
                        info!(records, bytes, transfers = running, "leaving: handing ranges over");
                    }
                }
                _ = load_tick.tick() => {
                    self.core.set_keys_stored(self.store.count().unwrap_or(0));
                    // Topics whose streams were all dropped: stop renewing.
                    let now = self.now();
                    for topic in self.topics.prune() {
                        self.core.unsubscribe(now, topic);
                    }
                }
                Some((op, result)) = self.applied_rx.recv() => {
                    let now = self.now();
                    self.core.handle_store(now, op, result);
                    for _ in 1..DRAIN_PER_WAKE {
                        let Ok((op, result)) = self.applied_rx.try_recv() else { break };
                        self.core.handle_store(now, op, result);
                    }
                }
                Some((msg, answer)) = self.answers_rx.recv() => {
                    let now = self.now();
                    match answer {
                        Some(payload) => self.core.app_reply(now, msg, payload),
                        None => self.core.app_refuse(now, msg),
                    }
                }
            }
            self.pump();
            if let Some(report) = self.core.left() {
                self.finish_leave(report).await;
                return;
            }
        }
    }

    /// Starts a graceful leave; the run loop goes on until the core has
    /// handed every range over and said goodbye.
    fn begin_leave(&mut self, reply: Option<oneshot::Sender<LeaveReport>>) {
        let replies = self.leave_replies.get_or_insert_with(Vec::new);
        replies.extend(reply);
        if !self.core.is_leaving() && self.core.left().is_none() {
            info!("leaving: handing ranges over to the successors");
            let now = self.now();
            self.core.leave(now);
        }
    }

    /// Carries out a command of the handle; `Stop` after an abort.
    fn command(&mut self, cmd: Command) -> Flow {
        let now = self.now();
        match cmd {
            Command::Lookup { key, mode, reply } => {
                let id = self.core.start_lookup(now, key, mode);
                self.lookups.insert(id, (reply, Instant::now()));
            }
            Command::QueryNeighbors { node, reply } => {
                let id = self.core.query_neighbors(now, node);
                self.queries.insert(id, reply);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.render_metrics());
            }
            Command::LocalGet { key, reply } => {
                let id = chordal_core::Id::of_key(&key);
                let _ = reply.send(self.store.get(&id, &key).ok().flatten());
            }
            Command::Members { reply } => {
                let _ = reply.send(self.core.members().collect());
            }
            Command::DebugAuthority { reply } => {
                let _ = reply.send(self.core.debug_authority());
            }
            Command::PeerInfo { addrs, reply } => {
                let infos = addrs.into_iter().map(|a| self.peer_info(a)).collect();
                let _ = reply.send(infos);
            }
            Command::KvMany { ops } => {
                for (op, reply) in ops {
                    let name = op.name();
                    let id = self.core.store(now, op.at(now));
                    self.kv_ops.insert(id, (reply, Instant::now(), name));
                }
            }
            Command::Kv { op, reply } => {
                let (id, name) = match op {
                    KeyOp::Store(op) => {
                        let name = op.name();
                        (self.core.store(now, op.at(now)), name)
                    }
                    KeyOp::Send { key, payload } => (self.core.send(now, key, payload), "send"),
                    KeyOp::Request { key, payload } => {
                        (self.core.request(now, key, payload), "request")
                    }
                };
                self.kv_ops.insert(id, (reply, Instant::now(), name));
            }
            Command::Direct {
                to,
                payload,
                want_reply,
                reply,
            } => {
                let (id, name) = if want_reply {
                    (self.core.request_to(now, to, payload), "request_to")
                } else {
                    (self.core.send_to(now, to, payload), "send_to")
                };
                self.kv_ops.insert(id, (reply, Instant::now(), name));
            }
            Command::Subscribe { topic, sub, reply } => {
                self.topics.add(topic.clone(), sub);
                let id = self.core.subscribe(now, topic);
                self.kv_ops.insert(id, (reply, Instant::now(), "subscribe"));
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                let id = self.core.publish(now, topic, payload);
                self.kv_ops.insert(id, (reply, Instant::now(), "publish"));
            }
            Command::Leave { reply } => self.begin_leave(Some(reply)),
            Command::Abort { reply } => {
                self.ctx.shutdown.cancel();
                let _ = reply.send(());
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// The metrics text: the recorder's, topped up with the core's
    /// counters and the current state.
    fn render_metrics(&self) -> String {
        let stats = &self.ctx.stats;
        let joined = self.core.vnodes().iter().filter(|v| v.is_joined()).count();
        let now = Snapshot {
            connections: self.conns.len(),
            keys_stored: self.store.count().unwrap_or(0),
            ring_size_estimate: self.core.ring_size_estimate(),
            membership: self.core.membership(),
            stored_bytes: self.store.bytes().unwrap_or(0),
            storage_failing: self.store.health().is_some(),
            vnodes_joined: joined,
            vnodes_joining: self.core.vnodes().len() - joined,
            bad_handshakes: stats.bad_handshakes.load(Ordering::Relaxed),
            bad_frames: stats.bad_frames.load(Ordering::Relaxed),
            tls_refused: stats.tls_refused.load(Ordering::Relaxed),
            wrong_ids: stats.wrong_ids.load(Ordering::Relaxed),
            client_role: stats.client_role.load(Ordering::Relaxed),
            dropped_out: stats.dropped_out.load(Ordering::Relaxed),
            app_refused: stats.app_refused.load(Ordering::Relaxed),
            resp_malformed: stats.resp_malformed.load(Ordering::Relaxed),
            dht_api_malformed: stats.dht_api_malformed.load(Ordering::Relaxed),
            addr_impostors: stats.addr_impostors.load(Ordering::Relaxed),
            not_there: stats.not_there.load(Ordering::Relaxed),
            client_timeouts: stats.client_timeouts.load(Ordering::Relaxed),
            listeners: stats
                .listeners
                .lock()
                .expect("listeners lock")
                .iter()
                .map(|(name, gate)| (*name, gate.open(), gate.refused()))
                .collect(),
        };
        self.metrics.render(&self.core.counters(), &now)
    }

    /// A frame (or the end) of one connection.
    fn read(&mut self, (addr, conn_id, frame): ReadItem) {
        let now = self.now();
        let stats = self.ctx.stats.clone();
        match frame {
            Some(Ok(bytes)) => {
                let size = bytes.len();
                // Frozen, the ids the envelope carries are slices of the
                // frame, not copies.
                match chordal_wire::decode_envelope(bytes.freeze(), self.core.addr()) {
                    Ok(env) if env.from.addr == addr => {
                        let Some(c) = self.conns.get_mut(&conn_id) else {
                            return;
                        };
                        if !c.standing.may_send(&env) {
                            // A client speaking for the ring, or a member
                            // speaking for a vnode its certificate does not
                            // give: refused, and the connection dropped.
                            let counter = match c.standing {
                                Standing::Client => &stats.client_role,
                                Standing::Member { .. } => &stats.wrong_ids,
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            debug!(peer = %addr, kind = env.msg.kind(), "message refused for the sender's standing");
                            self.close(conn_id, false);
                            return;
                        }
                        c.last_active = Instant::now();
                        stats.frames_in.fetch_add(1, Ordering::Relaxed);
                        self.metrics.received(env.msg.kind(), size);
                        self.core.handle_message(now, env);
                    }
                    _ => {
                        // A frame that does not decode or lies about its sender:
                        // this peer is broken; drop the connection.
                        stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                        self.close(conn_id, true);
                    }
                }
            }
            Some(Err(e)) => {
                // Oversized frame or an I/O error.
                if e.kind() != std::io::ErrorKind::ConnectionReset {
                    stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                }
                debug!(peer = %addr, error = %e, "connection failed");
                self.close(conn_id, true);
            }
            None => self.close(conn_id, true),
        }
    }

    /// Closes connection `conn_id`; `lost` tells the core the peer may be gone.
    fn close(&mut self, conn_id: u64, lost: bool) {
        let Some(c) = self.conns.remove(&conn_id) else {
            return;
        };
        c.close.cancel();
        self.pool.remove(c.addr, conn_id);
        let now = self.now();
        if lost {
            self.core.handle_disconnect(now, c.addr);
        } else {
            self.core.handle_closed(c.addr);
        }
    }

    /// Closes connections with no traffic for `idle_timeout`, and those
    /// whose peer's certificate has expired (TLS checks validity only at
    /// the handshake; a member whose certificate was not renewed drops out
    /// here, and cannot come back).
    fn close_idle(&mut self) {
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        let mut expired = Vec::new();
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                if c.expires.is_some_and(|t| t <= wall) {
                    expired.push(**id);
                    return false;
                }
                let used = self.pool.last_used(c.addr, **id).unwrap_or(c.last_active);
                now.duration_since(c.last_active.max(used)) >= self.settings.idle_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id, false);
        }
        for id in expired {
            if let Some(c) = self.conns.get(&id) {
                info!(peer = %c.addr, "closing a connection: the peer's certificate expired");
            }
            self.close(id, true);
        }
    }

    fn inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Established(est) => self.established(est),
            Inbound::ConnectFailed { addr, conn_id } => {
                // What waited for this dial to prove its address cannot be
                // proven.
                for held in self.bindings.dial_failed(&addr) {
                    held.close.cancel();
                }
                self.pool.remove(addr, conn_id);
                self.pool.connect_failed(addr, Instant::now());
                let now = self.now();
                self.core.handle_unreachable(now, addr);
            }
        }
    }

    /// A connection passed its handshake. Under TLS a member's is used
    /// only once its address is proven (see `bindings.rs`): a dial of ours
    /// proves it, and settles the inbound connections that waited for it.
    fn established(&mut self, est: Established) {
        let Some(ids) = bindings::certified(&est.standing).map(<[Id]>::to_vec) else {
            self.admit(est);
            return;
        };
        let addr = est.addr;
        // How many places a member holds is the ring's setting (`--vnodes`,
        // the same on every node), not the member's choice: a certificate
        // allows up to 64 derived ids, which would buy most of a small
        // ring's key space.
        if ids.len() > self.core.vnodes().len() {
            self.ctx.stats.wrong_ids.fetch_add(1, Ordering::Relaxed);
            warn!(%addr, claimed = ids.len(), ring = self.core.vnodes().len(), "a member claimed more virtual nodes than the ring's setting; refused");
            est.close.cancel();
            if est.outbound {
                self.pool.remove(addr, est.conn_id);
            }
            return;
        }
        if est.outbound {
            let conns = &self.conns;
            let open = |a: &SocketAddr| conns.values().any(|c| c.addr == *a);
            let max = 4 * self.ctx.max_connections;
            let (proven, impostors) = self.bindings.proven(addr, ids.clone(), max, open);
            // Connections already read that claimed this address with
            // other ids lied (or the address changed hands): closed.
            let stale: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    c.addr == addr
                        && !c.outbound
                        && bindings::certified(&c.standing) != Some(&ids[..])
                })
                .map(|(id, _)| *id)
                .collect();
            for conn_id in stale {
                self.impostor(addr);
                self.close(conn_id, false);
            }
            for e in impostors {
                self.impostor(addr);
                e.close.cancel();
            }
            self.admit(est);
            for e in proven {
                self.admit(e);
            }
            return;
        }
        // A connection in use at that address under the ids our dial met
        // there shows the holder is there now.
        let bound = self.bindings.ids_at(&addr);
        let holder_open = self.conns.values().any(|c| {
            c.addr == addr && bound.is_some() && bindings::certified(&c.standing) == bound
        });
        match self.bindings.verdict(&addr, &ids, holder_open) {
            Verdict::Proven => self.admit(est),
            Verdict::Impostor => {
                self.impostor(addr);
                est.close.cancel();
            }
            Verdict::Unproven => {
                if self.bindings.held() >= self.ctx.max_connections {
                    est.close.cancel();
                    return;
                }
                if let Some(extra) = self.bindings.hold(est) {
                    extra.close.cancel();
                }
                self.prove(addr);
            }
        }
    }

    /// Dials `addr` (unless a dial is open or under way) so that the
    /// connections held for it are settled; if `addr` refused us lately,
    /// they cannot be.
    fn prove(&mut self, addr: SocketAddr) {
        match self.pool.route(addr, Instant::now()) {
            Route::Send(_) => {}
            Route::BackingOff => {
                for held in self.bindings.dial_failed(&addr) {
                    held.close.cancel();
                }
            }
            Route::Connect => self.connect(addr, &Batch::default()),
        }
    }

    /// A member claimed `addr` that our dial found held by other ids.
    fn impostor(&self, addr: SocketAddr) {
        self.ctx
            .stats
            .addr_impostors
            .fetch_add(1, Ordering::Relaxed);
        warn!(%addr, "a member claimed a peer address whose certificate holds other ids; refused");
    }

    /// Takes a connection into use: its Hello's API recorded, its frames
    /// read, and (inbound) writes to its address sent over it.
    fn admit(&mut self, est: Established) {
        if self.conns.len() >= self.ctx.max_connections {
            debug!(peer = %est.addr, "too many connections; closing the new one");
            est.close.cancel();
            if est.outbound {
                self.pool.remove(est.addr, est.conn_id);
            }
            return;
        }
        // Peers declare their API and service in their Hello; bounded by
        // the connection limit's churn (one entry per peer address).
        if self.peers.len() < 4 * self.ctx.max_connections || self.peers.contains_key(&est.addr) {
            self.peers.insert(
                est.addr,
                crate::PeerInfo {
                    api: est.api,
                    service: est.service.clone(),
                    resp: est.resp,
                },
            );
        }
        if est.outbound {
            self.pool.connected(est.addr);
        } else {
            let peer = Peer {
                conn_id: est.conn_id,
                outbox: est.outbox,
                last_used: Instant::now(),
            };
            if let Some(evicted) = self.pool.insert(est.addr, peer, self.ctx.max_connections) {
                self.close(evicted, false);
            }
        }
        self.conns.insert(
            est.conn_id,
            Conn {
                addr: est.addr,
                close: est.close,
                last_active: Instant::now(),
                standing: est.standing,
                expires: est.expires,
                outbound: est.outbound,
            },
        );
        self.readers.push(est.reader);
    }

    /// Carries out everything the core asked for, then writes the frames.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(env) = self.core.poll_transmit() {
                progressed = true;
                if let Some(id) = env.to.id
                    && let Some(there) = self.bindings.ids_at(&env.to.addr)
                    && !there.contains(&id)
                {
                    // The certificate at that address does not hold the
                    // vnode meant: whoever said it lives there was wrong.
                    self.ctx.stats.not_there.fetch_add(1, Ordering::Relaxed);
                    let now = self.now();
                    self.core
                        .handle_not_there(now, NodeRef::new(id, env.to.addr));
                    continue;
                }
                let batch = self.batch.entry(env.to.addr).or_default();
                let buf = match env.msg.is_urgent() {
                    true => &mut batch.urgent,
                    false => &mut batch.bulk,
                };
                let before = buf.len();
                chordal_wire::encode_frame(&env, buf);
                self.metrics.sent(env.msg.kind(), buf.len() - before);
                self.ctx.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            let hops = self.core.take_hop_samples();
            if !hops.is_empty() {
                self.metrics.hops(&hops);
            }
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                self.event(event);
            }
            while let Some(req) = self.core.poll_store() {
                progressed = true;
                self.store_request(req);
            }
            // A store that applied at once (the memory store) has answered
            // already: the core hears it now, so that what the answer
            // causes (an acknowledgement, a reply) leaves in this wake-up's
            // writes instead of after another turn of the run loop.
            while let Ok((op, result)) = self.applied_rx.try_recv() {
                progressed = true;
                let now = self.now();
                self.core.handle_store(now, op, result);
            }
            if !progressed && !self.batch.values().any(Batch::has_frames) {
                break;
            }
            // Writing may report unreachable peers to the core, which then
            // has more to say: loop until it is quiet. (Writing never adds
            // frames: only `poll_transmit` above does.)
            let mut batch = std::mem::take(&mut self.batch);
            for (addr, frames) in batch.iter_mut().filter(|(_, f)| f.has_frames()) {
                self.write(*addr, frames);
                frames.clear();
            }
            // The buffers are kept for the next pass (no allocation per
            // destination per wake-up), for a bounded number of them.
            if batch.len() <= KEEP_BATCHES {
                self.batch = batch;
            }
        }
    }

    /// Performs a storage operation for the core: reads at once (a redb read
    /// transaction is microseconds), writes through the store's group
    /// commit, answered when durable.
    fn store_request(&mut self, req: StoreRequest) {
        let now = self.now();
        match req.kind {
            StoreKind::Apply { records } => {
                let tx = self.applied_tx.clone();
                let op = req.op;
                self.store.apply_with(
                    records,
                    Box::new(move |r| {
                        let result = match r {
                            Ok(applied) => StoreResult::Applied(applied),
                            Err(e) => {
                                warn!(error = %e, "store write failed");
                                StoreResult::Failed
                            }
                        };
                        let _ = tx.send((op, result));
                    }),
                );
            }
            // The promise table: through the store's writer, in order (a
            // later table must not be overwritten by an earlier one), and
            // answered when durable — the grants wait for it.
            StoreKind::SavePromises { bytes } => {
                let tx = self.applied_tx.clone();
                let op = req.op;
                self.store.set_meta_with(
                    chordal_store::PROMISES,
                    bytes,
                    Box::new(move |r| {
                        let result = match r {
                            Ok(()) => StoreResult::Saved,
                            Err(e) => {
                                warn!(error = %e, "saving the promise table failed");
                                StoreResult::Failed
                            }
                        };
                        let _ = tx.send((op, result));
                    }),
                );
            }
            // A point read: at once (a redb read transaction is
            // microseconds).
            kind @ StoreKind::Get { .. } => {
                let result = chordal_store::perform(self.store.as_ref(), kind);
                self.core.handle_store(now, req.op, result);
            }
            // Summaries, page scans and sweeps are O(records) and may wait
            // for the disk: off the driver task, so that lookups, pings and
            // stabilization never wait behind them (the core bounds how
            // many run at once). Results come back like durable writes.
            kind => {
                let (store, tx, op) = (self.store.clone(), self.applied_tx.clone(), req.op);
                tokio::task::spawn_blocking(move || {
                    let result = chordal_store::perform(store.as_ref(), kind);
                    let _ = tx.send((op, result));
                });
            }
        }
    }

    /// Writes whole frames for `addr`, connecting first if needed.
    fn write(&mut self, addr: SocketAddr, frames: &Batch) {
        match self.pool.route(addr, Instant::now()) {
            Route::Send(peer) => {
                if !frames.push_to(&peer.outbox) {
                    // Full or broken: drop; the core's timeouts and retries
                    // cover it, and a broken connection reports its close.
                    self.ctx.stats.dropped_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            Route::BackingOff => {
                let now = self.now();
                self.core.handle_unreachable(now, addr);
            }
            Route::Connect => self.connect(addr, frames),
        }
    }

    /// Dials `addr` with `bytes` waiting in the new connection's outbox
    /// (written once it is established).
    fn connect(&mut self, addr: SocketAddr, frames: &Batch) {
        let outbox = Arc::new(Outbox::new(self.ctx.peer_buffer));
        frames.push_to(&outbox);
        let conn_id = self.pool.next_conn_id();
        let peer = Peer {
            conn_id,
            outbox: outbox.clone(),
            last_used: Instant::now(),
        };
        if let Some(evicted) = self.pool.insert(addr, peer, self.ctx.max_connections) {
            self.close(evicted, false);
        }
        conn::spawn_connect(addr, conn_id, outbox, self.ctx.clone());
    }

    /// Remembers that the process of `peer` failed (or `left`), for
    /// `Status::departed`: once per process (the newest word wins), at
    /// most `MAX_DEPARTED`, for `DEPARTED_FOR`.
    fn remember_departed(&mut self, peer: NodeRef, left: bool) {
        if peer.addr == self.core.addr() {
            return;
        }
        let api = self.peer_info(peer.addr).api;
        let now = Instant::now();
        // A process that said goodbye stays "left" when its stale entries
        // elsewhere in our tables time out after it (a minute's grace).
        let said_goodbye = self.departed.iter().any(|(n, _, was_left, at)| {
            n.addr == peer.addr && *was_left && now - *at < Duration::from_secs(60)
        });
        self.departed
            .retain(|(n, _, _, at)| n.addr != peer.addr && now - *at < crate::DEPARTED_FOR);
        self.departed
            .push_back((peer, api, left || said_goodbye, now));
        while self.departed.len() > crate::MAX_DEPARTED {
            self.departed.pop_front();
        }
    }

    /// What the process at peer address `addr` declared (this process's
    /// own settings for its own address).
    fn peer_info(&self, addr: SocketAddr) -> crate::PeerInfo {
        if addr == self.core.addr() {
            crate::PeerInfo {
                api: self.settings.api,
                service: self.settings.service.clone(),
                resp: self.settings.resp,
            }
        } else {
            self.peers.get(&addr).cloned().unwrap_or_default()
        }
    }

    /// A lookup's result with the declarations of the owner, its
    /// successors and the path.
    fn located(&self, result: LookupResult) -> crate::Located {
        let named = std::iter::once(&result.owner)
            .chain(&result.successors)
            .chain(&result.path);
        let infos = named.map(|n| (n.addr, self.peer_info(n.addr))).collect();
        crate::Located { result, infos }
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::LookupDone { lookup, result } => {
                if let Some((reply, started)) = self.lookups.remove(lookup) {
                    self.metrics.lookup(started.elapsed());
                    let _ = reply.send(result.clone().map(|r| self.located(r)));
                }
            }
            Event::OpDone { op, result } => {
                if let Some((reply, started, name)) = self.kv_ops.remove(op) {
                    self.metrics.request(name, started.elapsed());
                    let _ = reply.send(result.clone());
                }
            }
            Event::NeighborsQueried { query, result } => {
                if let Some(reply) = self.queries.remove(query) {
                    let _ = reply.send(result.clone());
                }
            }
            Event::Joined { vnode, successor } => {
                info!(vnode = %vnode.short(), successor = %successor.id.short(), "joined the ring");
                if self.core.is_joined()
                    && let Some(w) = self.join_waiter.take()
                {
                    let _ = w.send(Ok(()));
                }
            }
            Event::JoinFailed { vnode } => {
                warn!(vnode = %vnode.short(), "join failed: no seed answered");
                if let Some(w) = self.join_waiter.take() {
                    let _ = w.send(Err(()));
                }
            }
            Event::PeerFailed { vnode, peer, left } => {
                debug!(vnode = %vnode.short(), peer = %peer.addr, "peer dropped");
                self.remember_departed(*peer, *left);
            }
            Event::AppMessage {
                msg,
                from,
                key,
                payload,
                want_reply,
            } => {
                let incoming = Incoming {
                    from: *from,
                    key: key.clone(),
                    payload: payload.clone(),
                    responder: want_reply.then(|| Responder::new(*msg, self.answers_tx.clone())),
                };
                self.deliver_app(*msg, *want_reply, incoming);
                // The message itself goes to the application, not to every
                // event subscriber.
                return;
            }
            Event::Publication {
                topic,
                publisher,
                payload,
            } => {
                let p = Publication {
                    topic: topic.clone(),
                    publisher: *publisher,
                    payload: payload.clone(),
                };
                if self.topics.deliver(p) {
                    let now = self.now();
                    self.core.unsubscribe(now, topic.clone());
                }
                return;
            }
            Event::PublicationsMissed { topic, count } => {
                self.topics.missed(topic, *count);
                return;
            }
            _ => {}
        }
        // Nobody listening is fine; a slow listener loses old events.
        let _ = self.events.send(event);
    }

    /// Hands an application message to the inbox, or refuses it if nobody
    /// listens or the inbox is full (back-pressure on the sender).
    fn deliver_app(&mut self, msg: chordal_core::AppMsgId, want_reply: bool, incoming: Incoming) {
        let now = self.now();
        let listening = self.app.listening.load(Ordering::Acquire);
        if !listening {
            self.core.app_refuse(now, msg);
            return;
        }
        match self.inbox.try_send(incoming) {
            Ok(()) if !want_reply => self.core.app_accept(now, msg),
            // A request waits for its `Responder`.
            Ok(()) => {}
            Err(e) => {
                // Refused here: the returned responder must not say it again.
                if let Some(r) = e.into_inner().responder {
                    r.disarm();
                }
                self.ctx.stats.app_refused.fetch_add(1, Ordering::Relaxed);
                self.core.app_refuse(now, msg);
            }
        }
    }

    /// Graceful leave: farewells out, connections flushed and closed.
    /// The farewells are queued: flush them, close everything, answer.
    async fn finish_leave(&mut self, report: LeaveReport) {
        self.pump();
        self.ctx.shutdown.cancel();
        self.pool.clear();
        self.conns.clear();
        for held in self.bindings.drain() {
            held.close.cancel();
        }
        self.ctx.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ctx.tasks.wait()).await;
        if report.ranges_not_handed_over > 0 {
            warn!(
                records = report.records,
                bytes = report.bytes,
                ranges_not_handed_over = report.ranges_not_handed_over,
                "left the ring before every range was handed over (drain timeout)"
            );
        } else {
            info!(
                records = report.records,
                bytes = report.bytes,
                "left the ring"
            );
        }
        for reply in self.leave_replies.take().unwrap_or_default() {
            let _ = reply.send(report);
        }
    }

    fn status(&self) -> Status {
        let vnodes = self
            .core
            .vnodes()
            .iter()
            .map(|v| {
                let t = v.table();
                let mut fingers: Vec<Finger> = Vec::new();
                for (i, f) in t.fingers().iter().enumerate() {
                    let node = f.unwrap_or(v.me());
                    if fingers.last().is_some_and(|l| l.node == node) {
                        continue;
                    }
                    fingers.push(Finger {
                        index: i,
                        start: t.finger_start(i),
                        node,
                    });
                }
                VNodeStatus {
                    me: v.me(),
                    joined: v.is_joined(),
                    predecessor: t.predecessor(),
                    successors: t.successors_or_me(),
                    fingers,
                }
            })
            .collect();
        let stats = &self.ctx.stats;
        Status {
            addr: self.core.addr(),
            api: self.settings.api,
            service: self.settings.service.clone(),
            cluster: self.settings.cluster.clone(),
            vnodes,
            connections: self.conns.len(),
            keys_stored: self.store.count().unwrap_or(0),
            ring_size_estimate: self.core.ring_size_estimate(),
            routing: match self.core.config().routing {
                chordal_core::Routing::OneHop => "onehop",
                chordal_core::Routing::Chord => "chord",
            },
            membership: self.core.membership(),
            frames_in: stats.frames_in.load(Ordering::Relaxed),
            frames_out: stats.frames_out.load(Ordering::Relaxed),
            bad_handshakes: stats.bad_handshakes.load(Ordering::Relaxed),
            bad_frames: stats.bad_frames.load(Ordering::Relaxed),
            dropped_out: stats.dropped_out.load(Ordering::Relaxed),
            storage_problem: self.store.health().map(|e| e.to_string()),
            departed: self.departed_lately(),
        }
    }

    /// `Status::departed`: the processes our vnodes dropped (and how),
    /// then those only the membership table saw go.
    fn departed_lately(&self) -> Vec<crate::Departed> {
        let mut out: Vec<crate::Departed> = self
            .departed
            .iter()
            .filter(|(.., at)| at.elapsed() < crate::DEPARTED_FOR)
            .map(|(node, api, left, at)| crate::Departed {
                node: *node,
                api: *api,
                left: Some(*left),
                ago: at.elapsed(),
            })
            .collect();
        let now = wall_clock();
        for (node, at) in self.core.departed() {
            let ago = now.saturating_since(at);
            let known = out.iter().any(|d| d.node.addr == node.addr);
            if known || ago >= crate::DEPARTED_FOR || node.addr == self.core.addr() {
                continue;
            }
            if out.len() >= crate::MAX_DEPARTED {
                break;
            }
            out.push(crate::Departed {
                node,
                api: self.peer_info(node.addr).api,
                left: None,
                ago,
            });
        }
        out
    }
}

/// Microseconds since the Unix epoch by the system clock.
fn unix_micros() -> u64 {
    wall_clock().as_micros()
}

/// The system clock as the core's [`Time`] (microseconds since the Unix
/// epoch): what front ends and the native `Client` use to make an expiry
/// absolute or to judge one, on the same scale as a node's versions.
pub fn wall_clock() -> Time {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    Time::from_micros(micros)
}
