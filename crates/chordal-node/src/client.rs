//! [`Client`]: a process that is not a ring member but uses the store.
//!
//! It speaks the peer protocol (its Hello carries no address, so nodes know
//! it by its socket address and never route through it), caches the ring
//! (walked with `GetNeighbors`), and sends each operation straight to the
//! key's owner. When the owner says `WrongOwner`, or its connection fails,
//! the client walks the ring again and retries.

use crate::Error;
use crate::conn::{open, wire_up};
use crate::kv::{KeyValue, StoreOp};
use crate::outbox::Outbox;
use crate::tls::PeerTls;
use crate::walk::{RingWalk, Stride};
use bytes::BytesMut;
use chordal_core::{
    Answer, Envelope, Id, Message, Neighbors, NodeRef, OpError, Operation, Outcome, Target,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, oneshot};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Tries of one operation (each after refreshing the ring).
const ATTEMPTS: usize = 4;
/// How long an address that refused us stays out of the ring.
const DEAD_FOR: Duration = Duration::from_secs(5);
/// Most ring members the client caches.
const MAX_RING: usize = 100_000;

/// How a client reaches the ring: [`ClientConfig::new`] with the seeds,
/// then change the fields that differ from the defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Peer addresses (`host:port`) of any ring members.
    pub seeds: Vec<String>,
    /// The ring's cluster name.
    pub cluster: String,
    /// Deadline of one request to a node.
    pub timeout: Duration,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Largest key and value of a put (the nodes' limits).
    pub max_key: usize,
    /// Largest value `put` sends, in bytes (the owner checks its own limit too).
    pub max_value: usize,
    /// Mutual TLS to the ring from `ca.crt`, `node.crt` and `node.key`
    /// here (`chordal ca issue --role client`); `None` speaks plain TCP.
    pub tls_dir: Option<std::path::PathBuf>,
}

impl ClientConfig {
    /// The defaults, reaching the ring through `seeds` (`host:port` of any
    /// members; names may resolve to several addresses).
    pub fn new(seeds: Vec<String>) -> ClientConfig {
        ClientConfig {
            seeds,
            ..ClientConfig::default()
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            seeds: Vec::new(),
            cluster: "chordal".into(),
            timeout: Duration::from_secs(5),
            max_frame: chordal_wire::DEFAULT_MAX_FRAME,
            max_key: chordal_core::Config::default().max_key,
            max_value: chordal_core::Config::default().max_value,
            tls_dir: None,
        }
    }
}

/// One connection to a node.
struct Conn {
    /// Our end's address: the `from` of our envelopes on this connection.
    local: SocketAddr,
    outbox: Arc<Outbox>,
    close: CancellationToken,
}

struct Inner {
    config: ClientConfig,
    /// Loaded from `config.tls_dir`.
    tls: Option<PeerTls>,
    /// Our id in envelopes (random per client).
    id: Id,
    next_req: AtomicU64,
    conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    /// Replies waiting to be picked up, by request number.
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<(NodeRef, Message)>>>,
    /// Ring members sorted by id.
    ring: std::sync::RwLock<Vec<NodeRef>>,
    /// Addresses that refused us recently: left out of the ring for a
    /// while (other members' successor lists may still name them).
    dead: std::sync::Mutex<HashMap<SocketAddr, tokio::time::Instant>>,
    /// What each node we connected to said of itself (its Hello).
    peers: std::sync::Mutex<HashMap<SocketAddr, chordal_wire::Hello>>,
}

/// A handle to the store for processes outside the ring. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for c in self.conns.get_mut().values() {
            c.close.cancel();
        }
    }
}

impl KeyValue for Client {
    /// Checks the limits here (a too large key or value never travels),
    /// makes the expiry absolute by this host's clock, and sends the
    /// operation to the owner by the cached ring.
    async fn run(&self, op: StoreOp) -> Result<Outcome, Error> {
        let op = op.at(crate::wall_clock());
        let config = &self.inner.config;
        if let Some((size, limit)) = op.over_limits(config.max_key, config.max_value) {
            return Err(Error::Op(OpError::TooLarge { size, limit }));
        }
        self.kv(op).await
    }
}

impl Client {
    /// Connects to the ring through the seeds and caches its members.
    /// Fails with [`Error::Tls`] if `config.tls_dir` holds no usable TLS
    /// material.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        let tls = match &config.tls_dir {
            Some(dir) => Some(PeerTls::load(dir).map_err(|e| Error::Tls(e.to_string()))?),
            None => None,
        };
        let id = Id::hash(
            format!(
                "client-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            )
            .as_bytes(),
        );
        let client = Client {
            inner: Arc::new(Inner {
                config,
                tls,
                id,
                next_req: AtomicU64::new(1),
                conns: Mutex::new(HashMap::new()),
                pending: std::sync::Mutex::new(HashMap::new()),
                ring: std::sync::RwLock::new(Vec::new()),
                dead: std::sync::Mutex::new(HashMap::new()),
                peers: std::sync::Mutex::new(HashMap::new()),
            }),
        };
        client.refresh().await?;
        Ok(client)
    }

    /// The ring as last walked, in id order.
    pub fn ring(&self) -> Vec<NodeRef> {
        self.inner.ring.read().expect("ring lock").clone()
    }

    /// Walks the ring again from any reachable member (a seed if none).
    pub async fn refresh(&self) -> Result<(), Error> {
        let mut starts: Vec<SocketAddr> = self.ring().iter().map(|n| n.addr).collect();
        for seed in &self.inner.config.seeds {
            if let Ok(addrs) = tokio::net::lookup_host(seed.as_str()).await {
                starts.extend(addrs);
            }
        }
        let mut last_error = String::from("no seeds given");
        for start in starts {
            if self.is_dead(start) {
                continue;
            }
            match self.walk(start).await {
                Ok(mut members) if !members.is_empty() => {
                    members.retain(|m| !self.is_dead(m.addr));
                    *self.inner.ring.write().expect("ring lock") = members;
                    return Ok(());
                }
                Ok(_) => last_error = format!("{start} knows no ring"),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(Error::NoSeed(last_error))
    }

    /// The URL of the service beside the node at `addr`, as that node's
    /// Hello declared it (`None`: it declared none). Connects to the node
    /// the first time.
    pub async fn service_of(&self, addr: SocketAddr) -> Result<Option<String>, Error> {
        let known = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .get(&addr)
            .cloned();
        let hello = match known {
            Some(h) => h,
            None => {
                self.connection(addr).await?;
                let peers = self.inner.peers.lock().expect("peers lock");
                peers
                    .get(&addr)
                    .cloned()
                    .ok_or_else(|| Error::Connect(addr, "no hello".into()))?
            }
        };
        Ok(hello.service)
    }

    /// Did `addr` refuse us within the last few seconds?
    fn is_dead(&self, addr: SocketAddr) -> bool {
        let mut dead = self.inner.dead.lock().expect("dead lock");
        dead.retain(|_, at| at.elapsed() < DEAD_FOR);
        dead.contains_key(&addr)
    }

    fn mark_dead(&self, addr: SocketAddr) {
        let mut dead = self.inner.dead.lock().expect("dead lock");
        dead.insert(addr, tokio::time::Instant::now());
    }

    /// Every member, by following successor lists from the process at
    /// `start` (the farthest entry of each list next: `N / r` requests).
    /// After crashes, lists still name dead nodes for a while; the walk
    /// steps back over them (marking them dead) instead of giving up.
    async fn walk(&self, start: SocketAddr) -> Result<Vec<NodeRef>, Error> {
        let start = Target {
            addr: start,
            id: None,
        };
        let mut walk = RingWalk::new(start, Stride::Far, MAX_RING);
        let mut last_error = None;
        while let Some(t) = walk.next() {
            let named = t.id.is_some();
            if named && self.is_dead(t.addr) {
                walk.answered(None);
                continue;
            }
            match self.neighbors(t).await {
                Ok(n) => walk.answered(Some(n)),
                Err(e) => {
                    if named {
                        self.mark_dead(t.addr);
                    }
                    last_error = Some(e);
                    walk.answered(None);
                }
            }
        }
        let found = walk.finish();
        if found.answers.is_empty() {
            return Err(last_error.unwrap_or_else(|| {
                Error::NoSeed("every node of a successor list is down".into())
            }));
        }
        Ok(found.members)
    }

    /// A node's neighbours, as it answers `GetNeighbors`.
    async fn neighbors(&self, to: Target) -> Result<Neighbors, Error> {
        match self
            .request(to, |req| Message::GetNeighbors { req })
            .await?
        {
            (
                node,
                Message::Neighbors {
                    predecessor,
                    successors,
                    keys_stored,
                    ..
                },
            ) => Ok(Neighbors {
                node,
                predecessor,
                successors,
                keys_stored,
            }),
            (_, _) => Err(Error::Connect(to.addr, "unexpected answer".into())),
        }
    }

    /// The owner of `key_id` by the cached ring.
    fn owner(&self, key_id: &Id) -> Option<NodeRef> {
        let ring = self.inner.ring.read().expect("ring lock");
        if ring.is_empty() {
            return None;
        }
        Some(ring[chordal_core::successor_index(&ring, key_id, |n| n.id)])
    }

    async fn kv(&self, op: Operation) -> Result<Outcome, Error> {
        let key_id = op.key_id();
        // One id for every try: an owner that answered a try answers a
        // retry the same way, and a later owner finds it in the record's
        // log of writes. Unique across clients (records keep the ids of
        // every writer): the counter above a base from our random id.
        let base = u64::from_be_bytes(self.inner.id.0[..8].try_into().expect("8 bytes"));
        let op_id = base.wrapping_add(self.inner.next_req.fetch_add(1, Ordering::Relaxed));
        let write = op.is_store_write();
        // An attempt whose answer was lost may have been applied: the
        // next ones are retries (answered from the record's log).
        let mut retry = false;
        let timeout_ms = self
            .inner
            .config
            .timeout
            .as_millis()
            .clamp(1, u32::MAX as u128) as u32;
        let mut last = Error::Op(OpError::Redirects);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Give the ring a moment to heal, then look again.
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
                self.refresh().await?;
            }
            let Some(owner) = self.owner(&key_id) else {
                self.refresh().await?;
                continue;
            };
            let op = op.clone();
            match self
                .request(owner.into(), move |req| Message::Request {
                    req,
                    op,
                    op_id,
                    timeout_ms,
                    retry,
                })
                .await
            {
                Ok((_, Message::Reply { result, .. })) => match result.answer() {
                    Answer::Done(outcome) => return Ok(outcome?),
                    Answer::Overloaded => {
                        // Back off before the next try.
                        last = Error::Op(OpError::Overloaded);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Answer::NotReady => {
                        // A handover or takeover: the owner decides soon.
                        last = Error::Op(OpError::NotReady);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Answer::WrongOwner => last = Error::Op(OpError::Redirects),
                },
                Ok(_) => last = Error::Op(OpError::UnexpectedAnswer),
                Err(e) => {
                    match &e {
                        // Never sent.
                        Error::Connect(addr, _) => self.mark_dead(*addr),
                        _ => retry |= write,
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Sends one request to `to` and waits for the answer with the same
    /// request number (on the same connection); returns who answered.
    async fn request(
        &self,
        to: Target,
        make: impl FnOnce(u64) -> Message,
    ) -> Result<(NodeRef, Message), Error> {
        let conn = self.connection(to.addr).await?;
        let req = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .expect("pending lock")
            .insert(req, tx);
        let env = Envelope {
            from: NodeRef::new(self.inner.id, conn.local),
            to,
            msg: make(req),
        };
        let mut buf = BytesMut::new();
        chordal_wire::encode_frame(&env, &mut buf);
        if !conn.outbox.push(&buf) {
            self.forget(to.addr, &conn).await;
            self.inner
                .pending
                .lock()
                .expect("pending lock")
                .remove(&req);
            return Err(Error::Connect(to.addr, "connection broken".into()));
        }
        let answer = tokio::time::timeout(self.inner.config.timeout, rx).await;
        self.inner
            .pending
            .lock()
            .expect("pending lock")
            .remove(&req);
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(Error::Connect(to.addr, "connection closed".into())),
            Err(_) => Err(Error::NodeTimeout(to.addr)),
        }
    }

    /// The connection to `addr`, opened (and handshaken) if needed.
    async fn connection(&self, addr: SocketAddr) -> Result<Arc<Conn>, Error> {
        let mut conns = self.inner.conns.lock().await;
        if let Some(c) = conns.get(&addr)
            && !c.close.is_cancelled()
        {
            return Ok(c.clone());
        }
        let config = &self.inner.config;
        let unreachable = |e: String| Error::Connect(addr, e);
        let hello = chordal_wire::encode_hello(&chordal_wire::Hello {
            cluster: config.cluster.clone(),
            addr: None,
            api: None,
            ids: Vec::new(),
            service: None,
            resp: None,
        });
        let opened = open(
            addr,
            false,
            self.inner.tls.as_ref(),
            &hello,
            &config.cluster,
            config.timeout,
            config.timeout,
        )
        .await
        .map_err(|e| match e {
            crate::conn::HandshakeError::Timeout => Error::NodeTimeout(addr),
            e => unreachable(e.to_string()),
        })?;
        {
            let mut peers = self.inner.peers.lock().expect("peers lock");
            if peers.len() >= MAX_RING {
                peers.clear();
            }
            peers.insert(addr, opened.hello);
        }
        let local = opened
            .stream
            .local_addr()
            .map_err(|e| unreachable(e.to_string()))?;
        let outbox = Arc::new(Outbox::new(8 * 1024 * 1024));
        let close = CancellationToken::new();
        let (r, writer) = wire_up(opened.stream, &outbox, close.clone());
        tokio::spawn(writer);
        let conn = Arc::new(Conn {
            local,
            outbox: outbox.clone(),
            close: close.clone(),
        });
        // The reader hands every answer to whoever waits for its request.
        let inner = Arc::downgrade(&self.inner);
        let mut frames = FramedRead::new(r, chordal_wire::frame_codec(config.max_frame));
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = close.cancelled() => break,
                    f = frames.next() => f,
                };
                let Some(Ok(frame)) = frame else { break };
                let Ok(env) = chordal_wire::decode_envelope(frame.freeze(), local) else {
                    break;
                };
                let Some(inner) = inner.upgrade() else { break };
                let Some(req) = reply_id(&env.msg) else {
                    continue;
                };
                let waiter = inner.pending.lock().expect("pending lock").remove(&req);
                if let Some(w) = waiter {
                    let _ = w.send((env.from, env.msg));
                }
            }
            close.cancel();
        });
        conns.insert(addr, conn.clone());
        Ok(conn)
    }

    async fn forget(&self, addr: SocketAddr, conn: &Arc<Conn>) {
        conn.close.cancel();
        let mut conns = self.inner.conns.lock().await;
        if conns.get(&addr).is_some_and(|c| Arc::ptr_eq(c, conn)) {
            conns.remove(&addr);
        }
    }
}

/// The request number an answer echoes.
fn reply_id(msg: &Message) -> Option<u64> {
    match msg {
        Message::Neighbors { req, .. } | Message::Reply { req, .. } | Message::NotHere { req } => {
            Some(*req)
        }
        _ => None,
    }
}
