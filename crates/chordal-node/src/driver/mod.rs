//! The driver: one task that owns the sans-IO core and does all of a
//! node's common-path I/O. It reads every peer connection itself and writes
//! straight into their outboxes, so a message costs one task wake-up.
//! Handshakes, the listener and API calls reach it through bounded channels.
//!
//! This file holds the driver's state and its run loop; the rest is by
//! job: `commands.rs` (what the `Node` handle asks), `peers.rs` (frames
//! read, handshakes admitted, connections closed), `pump.rs` (the core's
//! messages framed and written per peer), `storage.rs` (the core's
//! storage operations performed), `events.rs` (the core's events fanned
//! out) and `report.rs` (status and metrics).

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

mod commands;
mod events;
mod peers;
mod pump;
mod report;
mod storage;

pub use commands::{Command, KeyOp};
use peers::Conn;
use pump::Batch;

/// Where the answer to a key-value (or message, pub/sub) operation goes.
type Reply = oneshot::Sender<Result<Outcome, OpError>>;

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
