//! The driver: one task that owns the sans-IO core and turns its actions
//! into I/O. Connections and API calls reach it through bounded channels.

use crate::conn::{self, ConnContext};
use crate::pool::{Peer, Pool, Route};
use crate::status::{Finger, Status, VNodeStatus};
use bytes::Bytes;
use chordal_core::{
    Envelope, Event, LookupError, LookupId, LookupMode, LookupResult, Neighbors, Node as Core,
    QueryId, Time,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// What connections tell the driver.
#[derive(Debug)]
pub enum Inbound {
    /// A decoded envelope from a peer.
    Message(Envelope),
    /// An inbound connection passed its handshake; `tx` writes to it.
    Accepted {
        addr: SocketAddr,
        api: Option<SocketAddr>,
        conn_id: u64,
        tx: mpsc::Sender<Bytes>,
    },
    /// An outbound connection passed its handshake.
    Connected {
        addr: SocketAddr,
        api: Option<SocketAddr>,
    },
    /// A connection ended. `established`: it had passed the handshake.
    Closed {
        addr: SocketAddr,
        conn_id: u64,
        established: bool,
    },
}

/// What the [`crate::Node`] handle asks of the driver.
pub enum Command {
    Lookup {
        key: chordal_core::Id,
        mode: LookupMode,
        reply: oneshot::Sender<Result<LookupResult, LookupError>>,
    },
    QueryNeighbors {
        node: chordal_core::NodeRef,
        reply: oneshot::Sender<Option<Neighbors>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    ApiOf {
        addr: SocketAddr,
        reply: oneshot::Sender<Option<SocketAddr>>,
    },
    /// Leave gracefully and stop; answered once farewells are flushed.
    Leave {
        reply: oneshot::Sender<()>,
    },
    /// Stop at once without telling anyone, like a crash.
    Abort {
        reply: oneshot::Sender<()>,
    },
}

/// Settings the driver needs beyond the core's.
pub struct DriverSettings {
    pub cluster: String,
    pub api: Option<SocketAddr>,
    pub max_connections: usize,
    pub peer_queue: usize,
    pub connect_timeout: Duration,
}

pub struct Driver {
    core: Core,
    start: Instant,
    settings: DriverSettings,
    ctx: ConnContext,
    pool: Pool,
    /// Every connection and the listener, so that leave can wait for them.
    tasks: TaskTracker,
    /// API addresses of peers, from their Hellos.
    apis: HashMap<SocketAddr, SocketAddr>,
    lookups: HashMap<LookupId, oneshot::Sender<Result<LookupResult, LookupError>>>,
    queries: HashMap<QueryId, oneshot::Sender<Option<Neighbors>>>,
    /// Waiting for every virtual node to join (or one to fail).
    join_waiter: Option<oneshot::Sender<Result<(), ()>>>,
    events: broadcast::Sender<Event>,
}

impl Driver {
    pub fn new(
        core: Core,
        settings: DriverSettings,
        ctx: ConnContext,
        events: broadcast::Sender<Event>,
        join_waiter: oneshot::Sender<Result<(), ()>>,
    ) -> Driver {
        Driver {
            core,
            start: Instant::now(),
            settings,
            ctx,
            pool: Pool::default(),
            tasks: TaskTracker::new(),
            apis: HashMap::new(),
            lookups: HashMap::new(),
            queries: HashMap::new(),
            join_waiter: Some(join_waiter),
            events,
        }
    }

    fn now(&self) -> Time {
        Time::from_micros(self.start.elapsed().as_micros() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        self.start + Duration::from_micros(t.as_micros())
    }

    /// Runs the node: `seeds` empty creates a ring, else joins through them.
    pub async fn run(
        mut self,
        listener: TcpListener,
        seeds: Vec<SocketAddr>,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) {
        self.spawn_listener(listener);
        let now = self.now();
        if seeds.is_empty() {
            self.core.create(now);
        } else {
            self.core.join(now, seeds);
        }
        self.pump();
        loop {
            let wake = self.core.poll_timeout().map(|t| self.instant(t));
            let sleep = tokio::time::sleep_until(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Leave { reply }) => {
                        self.leave().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(Command::Abort { reply }) => {
                        self.ctx.shutdown.cancel();
                        self.pool.clear();
                        let _ = reply.send(());
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Every handle dropped: leave like a SIGTERM would.
                        self.leave().await;
                        return;
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
            }
            self.pump();
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Lookup { key, mode, reply } => {
                let id = self.core.start_lookup(now, key, mode);
                self.lookups.insert(id, reply);
            }
            Command::QueryNeighbors { node, reply } => {
                let id = self.core.query_neighbors(now, node);
                self.queries.insert(id, reply);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::ApiOf { addr, reply } => {
                let api = if addr == self.core.addr() {
                    self.settings.api
                } else {
                    self.apis.get(&addr).copied()
                };
                let _ = reply.send(api);
            }
            Command::Leave { .. } | Command::Abort { .. } => unreachable!("handled in run"),
        }
    }

    fn inbound(&mut self, msg: Inbound) {
        let now = self.now();
        match msg {
            Inbound::Message(env) => self.core.handle_message(now, env),
            Inbound::Accepted {
                addr,
                api,
                conn_id,
                tx,
            } => {
                if let Some(api) = api {
                    self.apis.insert(addr, api);
                }
                let peer = Peer {
                    conn_id,
                    tx,
                    last_used: Instant::now(),
                };
                self.pool.insert(addr, peer, self.settings.max_connections);
            }
            Inbound::Connected { addr, api } => {
                if let Some(api) = api {
                    self.apis.insert(addr, api);
                }
                self.pool.connected(addr);
            }
            Inbound::Closed {
                addr,
                conn_id,
                established,
            } => {
                self.pool.remove(addr, conn_id);
                if established {
                    self.core.handle_disconnect(now, addr);
                } else {
                    self.pool.connect_failed(addr, Instant::now());
                    self.core.handle_unreachable(now, addr);
                }
            }
        }
    }

    /// Carries out everything the core asked for.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(env) = self.core.poll_transmit() {
                progressed = true;
                self.transmit(env);
            }
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                self.event(event);
            }
            if !progressed {
                break;
            }
        }
    }

    fn transmit(&mut self, env: Envelope) {
        let addr = env.to.addr;
        let frame = Bytes::from(chordal_wire::encode_envelope(&env));
        match self.pool.route(addr, Instant::now()) {
            Route::Send(peer) => {
                if peer.tx.try_send(frame).is_err() {
                    // Full queue: drop; the core's timeouts and retries cover it.
                    self.ctx.stats.dropped_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            Route::BackingOff => {
                let now = self.now();
                self.core.handle_unreachable(now, addr);
            }
            Route::Connect => {
                let (tx, rx) = mpsc::channel(self.settings.peer_queue);
                let _ = tx.try_send(frame);
                let conn_id = self.pool.next_conn_id();
                let peer = Peer {
                    conn_id,
                    tx,
                    last_used: Instant::now(),
                };
                self.pool.insert(addr, peer, self.settings.max_connections);
                let ctx = self.ctx.clone();
                let timeout = self.settings.connect_timeout;
                self.tasks.spawn(connect(addr, conn_id, rx, ctx, timeout));
            }
        }
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::LookupDone { lookup, result } => {
                if let Some(reply) = self.lookups.remove(lookup) {
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
            Event::PeerFailed { vnode, peer } => {
                debug!(vnode = %vnode.short(), peer = %peer.addr, "peer dropped");
            }
            _ => {}
        }
        // Nobody listening is fine; a slow listener loses old events.
        let _ = self.events.send(event);
    }

    /// Graceful leave: farewells out, connections flushed and closed.
    async fn leave(&mut self) {
        let now = self.now();
        self.core.leave(now);
        self.pump();
        self.ctx.shutdown.cancel();
        self.pool.clear();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        info!("left the ring");
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
            cluster: self.settings.cluster.clone(),
            vnodes,
            connections: self.pool.len(),
            frames_in: stats.frames_in.load(Ordering::Relaxed),
            frames_out: stats.frames_out.load(Ordering::Relaxed),
            bad_handshakes: stats.bad_handshakes.load(Ordering::Relaxed),
            bad_frames: stats.bad_frames.load(Ordering::Relaxed),
            dropped_out: stats.dropped_out.load(Ordering::Relaxed),
        }
    }

    fn spawn_listener(&mut self, listener: TcpListener) {
        let ctx = self.ctx.clone();
        let limit = Arc::new(Semaphore::new(self.settings.max_connections));
        let peer_queue = self.settings.peer_queue;
        let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1 << 32));
        let tracker = self.tasks.clone();
        self.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    a = listener.accept() => a,
                };
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off a little, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    debug!(%remote, "too many connections; refusing");
                    continue;
                };
                let ctx = ctx.clone();
                let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
                tracker.spawn(async move {
                    let _permit = permit;
                    accept(stream, remote, conn_id, peer_queue, ctx).await;
                });
            }
        });
    }
}

/// Serves one inbound connection: handshake, register with the driver, run.
async fn accept(
    mut stream: TcpStream,
    remote: SocketAddr,
    conn_id: u64,
    queue: usize,
    ctx: ConnContext,
) {
    let hello = match conn::handshake(&mut stream, &ctx).await {
        Ok(h) => h,
        Err(e) => {
            ctx.stats.bad_handshakes.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, error = %e, "handshake refused");
            return;
        }
    };
    let Some(addr) = hello.addr else {
        // Only ring members speak the peer protocol for now.
        ctx.stats.bad_handshakes.fetch_add(1, Ordering::Relaxed);
        return;
    };
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(queue);
    let registered = ctx
        .inbound
        .send(Inbound::Accepted {
            addr,
            api: hello.api,
            conn_id,
            tx,
        })
        .await;
    if registered.is_err() {
        return;
    }
    if let Err(e) = conn::run(stream, addr, rx, ctx.clone()).await {
        debug!(peer = %addr, error = %e, "connection closed");
    }
    let _ = ctx
        .inbound
        .send(Inbound::Closed {
            addr,
            conn_id,
            established: true,
        })
        .await;
}

/// Opens an outbound connection to `addr` and runs it.
async fn connect(
    addr: SocketAddr,
    conn_id: u64,
    rx: mpsc::Receiver<Bytes>,
    ctx: ConnContext,
    timeout: Duration,
) {
    let established = async {
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let hello = conn::handshake(&mut stream, &ctx)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if hello.addr != Some(addr) {
            return Err(std::io::Error::other("peer advertises another address"));
        }
        Ok::<_, std::io::Error>((stream, hello))
    };
    let (stream, hello) = match established.await {
        Ok(x) => x,
        Err(e) => {
            debug!(peer = %addr, error = %e, "connect failed");
            let _ = ctx
                .inbound
                .send(Inbound::Closed {
                    addr,
                    conn_id,
                    established: false,
                })
                .await;
            return;
        }
    };
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _ = ctx
        .inbound
        .send(Inbound::Connected {
            addr,
            api: hello.api,
        })
        .await;
    if let Err(e) = conn::run(stream, addr, rx, ctx.clone()).await {
        debug!(peer = %addr, error = %e, "connection closed");
    }
    let _ = ctx
        .inbound
        .send(Inbound::Closed {
            addr,
            conn_id,
            established: true,
        })
        .await;
}
