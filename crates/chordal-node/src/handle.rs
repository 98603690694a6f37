//! [`Node`]: the handle to a running node — the key-value store, lookups,
//! messages, pub/sub, status and leaving — and what its answers name
//! ([`RingMember`], [`PeerInfo`], [`Located`]).

// The handle speaks every type the crate exports.
use crate::driver::{Command, KeyOp};
use crate::walk::{RingWalk, Stride};
use crate::*;
use chordal_core::{Event, Outcome};
use chordal_store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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
    /// Its Redis protocol address.
    pub resp: Option<SocketAddr>,
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
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) addr: SocketAddr,
    pub(crate) ids: Vec<Id>,
    pub(crate) stats: Arc<WireStats>,
    pub(crate) app: Arc<app::AppShared>,
    pub(crate) max_message: usize,
    pub(crate) subscription_buffer: usize,
    /// Length `r` of its successor lists.
    pub(crate) successor_list: usize,
    /// Replication factor `R`.
    pub(crate) replicas: usize,
    /// Cancelled when the node stops.
    pub(crate) stopped: CancellationToken,
    /// The local store, for reads that bypass the driver (backups).
    pub(crate) store: Arc<dyn Store>,
    /// Keyspace notifications to publish (`notify::parse`'s flags; 0:
    /// none).
    pub(crate) keyspace_events: Arc<std::sync::atomic::AtomicU32>,
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
