//! A physical node: the process-level state machine a driver (tokio or the
//! simulator) runs. It owns the sub-machines and only routes: inputs to
//! the machine they are for, and what each machine hands back (see
//! [`crate::io`]) to the next one, until nothing is left.
//!
//! ```text
//!                    ┌──────────── Node ─────────────┐
//!  handle_message ──▶│ ring      (vnodes, lookups)   │──▶ poll_transmit
//!  handle_timeout ──▶│ requests  (coordinator)       │──▶ poll_event
//!  handle_store   ──▶│ store     (owner, replica, …) │──▶ poll_store
//!  commands       ──▶│ messaging, pubsub             │──▶ poll_timeout
//!                    └───────────────────────────────┘
//! ```
//!
//! Call order: feed inputs (`handle_message`, `handle_timeout`,
//! `handle_store`, `handle_unreachable`, `handle_disconnect`, commands),
//! then drain `poll_transmit`, `poll_store` and `poll_event`, then sleep
//! until `poll_timeout`. Messages between virtual nodes of the same
//! process never leave it.

use crate::authority::{ACx, Authority};
use crate::config::{Config, LookupMode};
use crate::event::{Event, LookupId, QueryId};
use crate::io::{Cx, Io, Serve};
use crate::message::{Envelope, Message, NodeRef, OpResult, Operation};
use crate::messaging::{AppMsgId, Messaging};
use crate::pubsub::PubSub;
use crate::request::{OpId, Requests};
use crate::ring::{Ownership, Ring, VNode};
use crate::store::{LeaveReport, Store, StoreOpId, StoreRequest, StoreResult};
use crate::write::Intent;
use crate::{Consistency, Counters, Id, Time, WriteOptions};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Upper bound on local deliveries in one call, so that a protocol bug that
/// ping-pongs between our own virtual nodes cannot hang the driver.
const MAX_LOCAL_DELIVERIES: usize = 100_000;

/// One process on the ring: its peer address, its virtual nodes and what
/// it stores, coordinates and publishes.
#[derive(Debug)]
pub struct Node {
    config: Config,
    ring: Ring,
    requests: Requests,
    store: Store,
    messaging: Messaging,
    pubsub: PubSub,
    /// Who may decide for which keys (authority: terms, leases, fences).
    authority: Authority,
    /// The ring changed since authority last looked.
    authority_check: bool,
    io: Io,
    /// Messages for other processes, in order.
    out: VecDeque<Envelope>,
}

/// The context a sub-machine method gets: `cx!(self)`. A macro rather than
/// a method so that the borrow is of the three fields only, and the
/// machine called stays borrowable.
macro_rules! cx {
    ($s:ident) => {
        &mut Cx {
            config: &$s.config,
            ring: &mut $s.ring,
            io: &mut $s.io,
            authority: &mut $s.authority,
        }
    };
}

/// The authority machine's context: `acx!(self)`.
macro_rules! acx {
    ($s:ident) => {
        &mut ACx {
            config: &$s.config,
            ring: &$s.ring,
            io: &mut $s.io,
        }
    };
}

mod route;

impl Node {
    /// A node at peer address `addr` hosting one virtual node per id in
    /// `ids` (at least one). `seed` makes its timer jitter and the numbers
    /// it sends repeatable.
    pub fn new(config: Config, addr: SocketAddr, ids: &[Id], seed: u64) -> Node {
        let ring = Ring::new(&config, addr, ids, seed);
        Node {
            config,
            ring,
            // Operation ids go to other nodes, which remember answers by
            // them: unique per process incarnation.
            requests: Requests::new(crate::Rng::new(seed.rotate_left(17) ^ 0x6f70_6964).next_u64()),
            store: Store::default(),
            messaging: Messaging::default(),
            pubsub: PubSub::new(crate::Rng::new(!seed).next_u64()),
            authority: Authority::default(),
            authority_check: false,
            io: Io::default(),
            out: VecDeque::new(),
        }
    }

    /// The ids of `v` virtual nodes of a process whose base name is `base`
    /// (its advertised address, usually): `SHA-1(base)` for the first and
    /// `SHA-1(base || "#" || i)` for the others.
    pub fn vnode_ids(base: &str, v: usize) -> Vec<Id> {
        (0..v.max(1))
            .map(|i| {
                if i == 0 {
                    Id::hash(base.as_bytes())
                } else {
                    Id::hash(format!("{base}#{i}").as_bytes())
                }
            })
            .collect()
    }

    /// The ids of `v` virtual nodes of a process whose first id is fixed
    /// (by its certificate, under TLS): `first` itself, then
    /// `SHA-1(hex(first) || "#" || i)`. Both ends compute it, so a peer
    /// cannot claim ids its certificate does not give.
    pub fn vnode_ids_from(first: Id, v: usize) -> Vec<Id> {
        let base = first.to_hex();
        (0..v.max(1))
            .map(|i| {
                if i == 0 {
                    first
                } else {
                    Id::hash(format!("{base}#{i}").as_bytes())
                }
            })
            .collect()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.ring.addr()
    }

    /// The virtual nodes, first one first.
    pub fn vnodes(&self) -> &[VNode] {
        self.ring.vnodes()
    }

    /// The first virtual node: the one seeds and `start_lookup` use.
    pub fn primary(&self) -> &VNode {
        self.ring.primary()
    }

    /// Have all virtual nodes joined?
    pub fn is_joined(&self) -> bool {
        self.ring.is_joined()
    }

    /// Tells the node how many records its store holds (reported to ring
    /// walks in `Neighbors` answers).
    pub fn set_keys_stored(&mut self, n: u64) {
        self.ring.set_keys_stored(n);
    }

    /// Tells the hybrid logical clock the largest version hlc in this
    /// node's store. Call once before `create`/`join` (a restarted node's
    /// wall clock may be behind the one that versioned what it holds); the
    /// node's writes are then versioned above it.
    pub fn seed_clock(&mut self, max_stored_hlc: u64) {
        self.store.seed_clock(max_stored_hlc);
    }

    /// Gives the authority machine the promise table the store kept
    /// (`StoreKind::SavePromises`; `None`: nothing saved). Call once at
    /// start, before `create`/`join`. Every promise counts as live for one
    /// lease from `now`; our vnodes are at our address now, whatever
    /// address they had before. False if the bytes are damaged (then the
    /// node must not start: it could grant an older term again).
    pub fn restore_promises(&mut self, now: Time, saved: Option<&[u8]>) -> bool {
        let ours: Vec<Id> = self.ring.vnodes().iter().map(|v| v.me().id).collect();
        let addr = self.ring.addr();
        self.authority
            .restore(&self.config, now, saved, (&ours, addr))
    }

    /// Starts a new ring: the first virtual node creates it, the others join
    /// through it.
    pub fn create(&mut self, now: Time) {
        self.ring.create(now);
        self.authority.found(acx!(self), now);
        self.flush(now);
    }

    /// Starts every virtual node as a member of an already converged ring
    /// (see [`VNode::start_converged`]); `state(vnode)` gives each one's
    /// predecessor, successor list and fingers (160 entries), `members`
    /// every vnode of the ring (the membership table of one-hop routing;
    /// ignored under Chord routing).
    pub fn start_converged(
        &mut self,
        now: Time,
        state: impl Fn(NodeRef) -> (NodeRef, Vec<NodeRef>, Vec<NodeRef>),
        members: impl IntoIterator<Item = NodeRef>,
    ) {
        let members: Vec<NodeRef> = members.into_iter().collect();
        if self.config.authority {
            // Every range's lineage starts with a lapsed term 1 of its
            // owner, known everywhere: the owners prepare from there.
            let r = self.config.replicas;
            let ranges: Vec<_> = members
                .iter()
                .map(|m| {
                    let (pred, succs, _) = state(*m);
                    let range = crate::KeyRange {
                        start: pred.id,
                        end: m.id,
                    };
                    let mut config = vec![*m];
                    config.extend(crate::replica_set(m, &succs, r));
                    (*m, range, config)
                })
                .collect();
            self.authority.found_converged(acx!(self), now, &ranges);
        }
        self.ring.start_converged(now, state, members);
        // No `Joined` event comes to start the store's range syncs:
        // schedule the first periodic round here (the ring is converged,
        // nothing needs syncing sooner).
        self.store.first_sync_at(now + self.config.sync_interval);
        self.flush(now);
    }

    /// Joins an existing ring through `seeds` (tried in turn).
    pub fn join(&mut self, now: Time, seeds: Vec<SocketAddr>) {
        self.ring.join(now, seeds);
        self.flush(now);
    }

    /// Starts a graceful leave. Each virtual node first hands every record
    /// of its range to its successor, the range's next owner, with
    /// acknowledged transfers; once all are acknowledged (or after
    /// `Config::leave_drain`) the vnodes tell their neighbours goodbye.
    /// Under authority the process then stays on as an acceptor until the
    /// next holders of its ranges need it no more (see `store/leave.rs`).
    /// [`Node::left`] then reports what was handed over. Keep driving the
    /// node (messages, storage, timeouts) until then, send what
    /// `poll_transmit` returns, then stop.
    pub fn leave(&mut self, now: Time) {
        // What we hold we keep (deciding nothing: the store refuses writes
        // while it drains) until its catch-up is finished and told, and
        // give up at the farewell (`Authority::may_leave`).
        self.authority.begin_leave(now);
        let drain = self.config.leave_drain;
        self.store.start_leave(cx!(self), now, drain);
        self.flush(now);
    }

    /// Is this node draining its ranges before it leaves?
    pub fn is_leaving(&self) -> bool {
        self.store.is_leaving()
    }

    /// How the graceful leave went, once it is over (`None` before).
    pub fn left(&self) -> Option<LeaveReport> {
        self.store.left()
    }

    /// While draining: records and bytes handed over so far, and transfers
    /// still running.
    pub fn leave_progress(&self) -> Option<(u64, u64, usize)> {
        self.store.leave_progress()
    }

    /// The number of processes in the ring, estimated from this process's
    /// membership table when routing one hop, else from its own successor
    /// lists (exact when a list came back round to us); `None` before any
    /// vnode joined. See `ring_size`.
    pub fn ring_size_estimate(&self) -> Option<f64> {
        // Routing one hop, the membership table counts the processes.
        let members = self.ring.onehop_stats();
        if self.ring.any_joined() && members.processes > 0 {
            return Some(members.processes as f64);
        }
        let vnodes = self.ring.vnodes();
        let tables: Vec<&crate::RoutingTable> = vnodes
            .iter()
            .filter(|v| v.is_joined())
            .map(|v| v.table())
            .collect();
        crate::ring_size(&tables, vnodes.len())
    }

    /// One-hop routing's membership table (entries, processes, memory,
    /// bound) and the events and messages it took to keep it; all zero
    /// under Chord routing.
    pub fn membership(&self) -> crate::OneHopStats {
        self.ring.onehop_stats()
    }

    /// The vnodes one-hop routing's membership table saw depart lately
    /// (failed, left, or announced gone by the membership news), with
    /// when: for a status that shows who went. Empty under Chord routing.
    pub fn departed(&self) -> Vec<(NodeRef, Time)> {
        self.ring.departed()
    }

    /// Every vnode in the membership table, in id order (empty under Chord
    /// routing).
    pub fn members(&self) -> impl Iterator<Item = NodeRef> + '_ {
        self.ring.members()
    }

    /// What the membership table says owns `key` (`None` under Chord
    /// routing or while the table is empty): where a request for it goes
    /// first.
    pub fn onehop_owner(&self, key: &Id) -> Option<NodeRef> {
        self.ring.onehop_owner(key)
    }

    /// Starts `find_successor(key)`; the answer arrives as
    /// `Event::LookupDone` with the returned id.
    pub fn start_lookup(&mut self, now: Time, key: Id, mode: LookupMode) -> LookupId {
        let id = self.ring.start_lookup(now, key, mode);
        self.flush(now);
        id
    }

    /// Asks `node` for its predecessor and successor list; the answer
    /// arrives as `Event::NeighborsQueried` with the returned id.
    pub fn query_neighbors(&mut self, now: Time, node: NodeRef) -> QueryId {
        let id = self.ring.query_neighbors(now, node);
        self.flush(now);
        id
    }

    /// Stores `value` under `key`; the answer comes as `Event::OpDone`.
    pub fn put(&mut self, now: Time, key: Vec<u8>, value: Vec<u8>) -> OpId {
        let opts = WriteOptions::default();
        self.store(now, Operation::Put { key, value, opts })
    }

    /// Reads `key` from the owner's copy; the answer comes as
    /// `Event::OpDone`.
    pub fn get(&mut self, now: Time, key: Vec<u8>) -> OpId {
        let consistency = Consistency::Owner;
        self.store(now, Operation::Get { key, consistency })
    }

    /// Deletes `key` (writes a tombstone); `NotFound` if it does not exist.
    pub fn delete(&mut self, now: Time, key: Vec<u8>) -> OpId {
        let opts = WriteOptions::default();
        self.store(now, Operation::Delete { key, opts })
    }

    /// Starts any store operation — put, get, delete, update, with their
    /// options (an expiry already absolute: see `PutOptions::at`), or a
    /// scan page; the answer comes as `Event::OpDone`. Operations of
    /// other kinds have their own methods (`send`, `publish`, …).
    pub fn store(&mut self, now: Time, op: Operation) -> OpId {
        debug_assert!(
            op.is_store() || matches!(op, Operation::Scan { .. }),
            "not a store operation: {op:?}"
        );
        self.start_op(now, op, None)
    }

    /// Sends `payload` to the application of `key`'s owner; `Event::OpDone`
    /// says `Delivered` once that application accepted it.
    pub fn send(&mut self, now: Time, key: Vec<u8>, payload: Vec<u8>) -> OpId {
        let op = Operation::Deliver {
            key,
            payload,
            want_reply: false,
        };
        self.start_op(now, op, None)
    }

    /// Sends `payload` to the application of `key`'s owner and waits for
    /// its answer: `Event::OpDone` carries `Replied { payload }`.
    pub fn request(&mut self, now: Time, key: Vec<u8>, payload: Vec<u8>) -> OpId {
        let op = Operation::Deliver {
            key,
            payload,
            want_reply: true,
        };
        self.start_op(now, op, None)
    }

    /// Sends `payload` to the application of node `to` itself (not to a
    /// key's owner): `Delivered` once it took it, `Unreachable` if `to`
    /// does not answer. Tried once.
    pub fn send_to(&mut self, now: Time, to: NodeRef, payload: Vec<u8>) -> OpId {
        let op = Operation::Direct {
            payload,
            want_reply: false,
        };
        self.start_op(now, op, Some(to))
    }

    /// `send_to`, waiting for the application's answer (`Replied`).
    pub fn request_to(&mut self, now: Time, to: NodeRef, payload: Vec<u8>) -> OpId {
        let op = Operation::Direct {
            payload,
            want_reply: true,
        };
        self.start_op(now, op, Some(to))
    }

    /// The application took message `msg`. For a `send` that is its answer
    /// (`Delivered`); a `request` still waits for [`Node::app_reply`].
    pub fn app_accept(&mut self, now: Time, msg: AppMsgId) {
        self.messaging.accept(cx!(self), msg);
        self.flush(now);
    }

    /// The application's answer to message `msg` (for a `send`, the same
    /// as accepting it).
    pub fn app_reply(&mut self, now: Time, msg: AppMsgId, payload: Vec<u8>) {
        self.messaging.reply(cx!(self), msg, payload);
        self.flush(now);
    }

    /// The application will not (or cannot: its inbox is full) take
    /// message `msg`; the sender gets `OpError::Refused`.
    pub fn app_refuse(&mut self, now: Time, msg: AppMsgId) {
        self.messaging.refuse(cx!(self), msg);
        self.flush(now);
    }

    /// Subscribes this process to `topic`: from now on, what is published
    /// there arrives as `Event::Publication`. `Event::OpDone` for the
    /// returned operation says when the topic's owner has registered us
    /// (`Delivered`); the subscription is renewed every `topic_renew`
    /// until [`Node::unsubscribe`], also if that first registration fails.
    pub fn subscribe(&mut self, now: Time, topic: Vec<u8>) -> OpId {
        let id = self.pubsub.subscribe(cx!(self), now, topic);
        self.flush(now);
        id
    }

    /// Ends this process's subscription to `topic` (and tells its owner,
    /// best effort: otherwise the lease lapses within three periods).
    pub fn unsubscribe(&mut self, now: Time, topic: Vec<u8>) {
        self.pubsub.unsubscribe(cx!(self), topic);
        self.flush(now);
    }

    /// Publishes `payload` on `topic`. `Event::OpDone` says `Published`
    /// with the number of subscriber processes once the topic's owner has
    /// queued it for them. Publications of this process to one topic go
    /// out in call order, one batch at a time, so subscribers get them in
    /// that order.
    pub fn publish(&mut self, now: Time, topic: Vec<u8>, payload: Vec<u8>) -> OpId {
        let id = self.pubsub.publish(cx!(self), topic, payload);
        self.flush(now);
        id
    }

    /// Topics this process subscribes to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &[u8]> {
        self.pubsub.subscriptions()
    }

    /// The subscribers this process knows for `topic` (as its owner or as
    /// a next owner), with their lease expiry.
    pub fn topic_subscribers(&self, topic: &[u8]) -> Vec<(NodeRef, Time)> {
        self.pubsub.topic_subscribers(topic)
    }

    /// Handles a message that arrived from another process.
    pub fn handle_message(&mut self, now: Time, env: Envelope) {
        self.deliver(now, env);
        self.flush(now);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.ring.handle_timeout(now);
        self.store.handle_timeout(cx!(self), now);
        self.requests.handle_timeout(cx!(self), now);
        self.messaging.handle_timeout(cx!(self), now);
        self.pubsub.handle_timeout(cx!(self), now);
        self.authority.tick(acx!(self), now);
        self.flush(now);
    }

    /// The driver could not connect to `addr`: everything there is dead.
    pub fn handle_unreachable(&mut self, now: Time, addr: SocketAddr) {
        self.ring.handle_unreachable(now, addr);
        self.requests
            .peers_failed(cx!(self), now, true, |n| n.addr == addr);
        // Refused outright: that process is gone (a timeout is not enough
        // — under loss a live successor times out now and then, and its
        // transfer must resume, not move to the next node).
        self.store
            .transfers_to_dead(cx!(self), now, &|n: &NodeRef| n.addr == addr);
        self.flush(now);
    }

    /// The process at `node.addr` is certified for other ids (the driver
    /// dialled it and its certificate does not hold `node.id`): `node` is
    /// not there, whoever said it was. Out of the membership table, and
    /// requests waiting on it try again elsewhere.
    pub fn handle_not_there(&mut self, now: Time, node: NodeRef) {
        self.ring.forget(now, &node);
        self.requests
            .peers_failed(cx!(self), now, true, |n| *n == node);
        self.flush(now);
    }

    /// The driver lost an established connection to `addr`.
    pub fn handle_disconnect(&mut self, now: Time, addr: SocketAddr) {
        self.requests.connection_closed(addr);
        self.ring.handle_disconnect(now, addr);
        self.flush(now);
    }

    /// The driver closed a connection to `addr` on purpose (idle, or
    /// evicted from a full pool): what it carried may have arrived. Call
    /// it for every close that is not a [`Node::handle_disconnect`].
    pub fn handle_closed(&mut self, addr: SocketAddr) {
        self.requests.connection_closed(addr);
    }

    /// The next storage operation for the driver. Perform it, then report
    /// with [`Node::handle_store`].
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.store.poll_store()
    }

    /// The result of a storage operation from `poll_store`.
    pub fn handle_store(&mut self, now: Time, op: StoreOpId, result: StoreResult) {
        self.store.handle_store(cx!(self), now, op, result);
        self.flush(now);
    }

    /// The next message for another process. The writes the store
    /// decided since the last call leave here, one `Replicate` per replica
    /// (`store/outgoing.rs`): take the messages after handling all the
    /// input that arrived together, not after each.
    pub fn poll_transmit(&mut self) -> Option<Envelope> {
        if self.out.is_empty() && self.store.has_replicates() {
            self.store.flush_replicates(cx!(self));
            self.out.extend(self.io.out.drain(..));
        }
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.io.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.ring.poll_timeout(),
            self.store.poll_timeout(),
            self.requests.poll_timeout(),
            self.messaging.poll_timeout(),
            self.pubsub.poll_timeout(),
            self.authority.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The authority machine's state, pretty-printed: for a test that
    /// must say why a range is not held.
    #[doc(hidden)]
    pub fn debug_authority(&self) -> String {
        format!("{:#?}", self.authority)
    }

    /// This node's running totals (stabilization rounds summed over its
    /// virtual nodes).
    pub fn counters(&self) -> Counters {
        let mut c = self.io.counting.counters.clone();
        let vnodes = self.ring.vnodes();
        c.stabilize_rounds = vnodes.iter().map(|v| v.stabilize_rounds()).sum();
        c.finger_changes = vnodes.iter().map(|v| v.table().finger_changes()).sum();
        let r = self.config.replicas;
        c.ranges_under_replicated = self
            .ring
            .owned_ranges()
            .iter()
            .filter(|(v, _)| 1 + self.ring.replica_targets(v, r).len() < r)
            .count() as u64;
        c.kv_in_flight = self.in_flight() as u64;
        (c.leases_valid, c.leases_pending) = self.authority.hold_counts();
        c.leases_unfinished = self.authority.unfinished().len() as u64;
        c.kv_in_flight_max = self.config.max_kv_ops as u64;
        self.store.fill_counters(&mut c);
        c
    }

    /// The hop counts of lookups finished since the last call (at most a
    /// few thousand are kept): for a hops histogram.
    pub fn take_hop_samples(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.io.counting.hop_samples)
    }

    /// Operations in flight in every machine (bounded by `max_kv_ops`).
    fn in_flight(&self) -> usize {
        self.requests.in_flight() + self.store.in_flight() + self.messaging.in_flight()
    }

    /// Starts `op` for the owner of its key, or for `target` itself.
    fn start_op(&mut self, now: Time, op: Operation, target: Option<NodeRef>) -> OpId {
        let id = self.io.start_op(op, target);
        self.flush(now);
        OpId(id)
    }
}
