//! A physical node: the process-level state machine that hosts one or more
//! virtual nodes and is what a driver (tokio or the simulator) runs.
//!
//! Call order: feed inputs (`handle_message`, `handle_timeout`,
//! `handle_unreachable`, `handle_disconnect`, commands), then drain
//! `poll_transmit` and `poll_event`, then sleep until `poll_timeout`.
//! Messages between virtual nodes of the same process never leave it.

use crate::config::{Config, LookupMode};
use crate::event::{Event, LookupId, QueryId};
use crate::kv::KvState;
use crate::message::{Envelope, Message, NodeRef};
use crate::pubsub::PubSubState;
use crate::vnode::VNode;
use crate::{Id, Time};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Upper bound on local deliveries in one call, so that a protocol bug that
/// ping-pongs between our own virtual nodes cannot hang the driver.
const MAX_LOCAL_DELIVERIES: usize = 100_000;

/// One process on the ring: its peer address and its virtual nodes.
#[derive(Debug)]
pub struct Node {
    pub(crate) config: Config,
    pub(crate) addr: SocketAddr,
    pub(crate) vnodes: Vec<VNode>,
    out: VecDeque<Envelope>,
    pub(crate) events: VecDeque<Event>,
    /// The key-value layer's state (see `kv`).
    pub(crate) kv: KvState,
    /// Messages the key-value layer wants sent.
    pub(crate) kv_out: VecDeque<Envelope>,
    /// Publish/subscribe state (see `pubsub`).
    pub(crate) pubsub: PubSubState,
    /// Running totals for metrics (see `counters`).
    pub(crate) counting: crate::counters::Counting,
    next_lookup: u64,
    next_query: u64,
    /// Messages dropped because they were malformed for this node.
    dropped: u64,
}

impl Node {
    /// A node at peer address `addr` hosting one virtual node per id in
    /// `ids` (at least one). `seed` makes its timer jitter repeatable.
    pub fn new(config: Config, addr: SocketAddr, ids: &[Id], seed: u64) -> Node {
        assert!(!ids.is_empty(), "a node hosts at least one virtual node");
        let vnodes = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                VNode::new(
                    config.clone(),
                    NodeRef::new(*id, addr),
                    seed.wrapping_add(i as u64),
                )
            })
            .collect();
        Node {
            config,
            addr,
            vnodes,
            out: VecDeque::new(),
            events: VecDeque::new(),
            // Operation ids go to other nodes, which remember answers by
            // them: unique per process incarnation.
            kv: KvState::new(crate::Rng::new(seed.rotate_left(17) ^ 0x6f70_6964).next_u64()),
            kv_out: VecDeque::new(),
            pubsub: PubSubState::new(crate::Rng::new(!seed).next_u64()),
            counting: Default::default(),
            next_lookup: 1,
            next_query: 1,
            dropped: 0,
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

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The virtual nodes, first one first.
    pub fn vnodes(&self) -> &[VNode] {
        &self.vnodes
    }

    /// The first virtual node: the one seeds and `start_lookup` use.
    pub fn primary(&self) -> &VNode {
        &self.vnodes[0]
    }

    /// Have all virtual nodes joined?
    pub fn is_joined(&self) -> bool {
        self.vnodes.iter().all(|v| v.is_joined())
    }

    /// Messages dropped because no virtual node here could take them.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped
    }

    /// Tells the node how many records its store holds (reported to ring
    /// walks in `Neighbors` answers).
    pub fn set_keys_stored(&mut self, n: u64) {
        for v in &mut self.vnodes {
            v.set_keys_stored(n);
        }
    }

    /// Tells the hybrid logical clock the largest version hlc in this
    /// node's store. Call once before `create`/`join` (a restarted node's
    /// wall clock may be behind the one that versioned what it holds); the
    /// node's writes are then versioned above it.
    pub fn seed_clock(&mut self, max_stored_hlc: u64) {
        self.kv.hlc.observe(max_stored_hlc);
    }

    /// Starts a new ring: the first virtual node creates it, the others join
    /// through it.
    pub fn create(&mut self, now: Time) {
        self.vnodes[0].create(now);
        for v in &mut self.vnodes[1..] {
            v.join(now, vec![self.addr]);
        }
        self.flush(now);
    }

    /// Starts every virtual node as a member of an already converged ring
    /// (see [`VNode::start_converged`]); `state(vnode)` gives each one's
    /// predecessor, successor list and fingers (160 entries).
    pub fn start_converged(
        &mut self,
        now: Time,
        state: impl Fn(NodeRef) -> (NodeRef, Vec<NodeRef>, Vec<NodeRef>),
    ) {
        for v in &mut self.vnodes {
            let (pred, succs, fingers) = state(v.me());
            v.start_converged(now, pred, &succs, |i| fingers[i]);
        }
        // No `Joined` event comes to start the key-value layer's range
        // syncs: schedule the first periodic round here (the ring is
        // converged, nothing needs syncing sooner).
        self.kv.sync_at = Some(now + self.config.sync_interval);
        self.flush(now);
    }

    /// Joins an existing ring through `seeds` (tried in turn).
    pub fn join(&mut self, now: Time, seeds: Vec<SocketAddr>) {
        for v in &mut self.vnodes {
            v.join(now, seeds.clone());
        }
        self.flush(now);
    }

    /// Starts a graceful leave. Each virtual node first hands every record
    /// of its range to its successor, the range's next owner, with
    /// acknowledged transfers; once all are acknowledged (or after
    /// `Config::leave_drain`) the vnodes tell their neighbours goodbye and
    /// [`Node::left`] reports what was handed over. Keep driving the node
    /// (messages, storage, timeouts) until then, send what `poll_transmit`
    /// returns, then stop.
    pub fn leave(&mut self, now: Time) {
        self.start_leave(now, self.config.leave_drain);
        self.flush(now);
    }

    /// Starts `find_successor(key)`; the answer arrives as
    /// `Event::LookupDone` with the returned id.
    pub fn start_lookup(&mut self, now: Time, key: Id, mode: LookupMode) -> LookupId {
        let id = self.start_lookup_quiet(now, key, mode);
        self.flush(now);
        id
    }

    /// `start_lookup` without flushing (for callers inside the node).
    pub(crate) fn start_lookup_quiet(&mut self, now: Time, key: Id, mode: LookupMode) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        // Start at the virtual node closest before the key: fewest hops.
        let best = (0..self.vnodes.len())
            .filter(|i| self.vnodes[*i].is_joined())
            .min_by_key(|i| self.vnodes[*i].me().id.distance(&key))
            .unwrap_or(0);
        self.vnodes[best].start_lookup(now, id, key, mode);
        id
    }

    /// Asks `node` for its predecessor and successor list; the answer
    /// arrives as `Event::NeighborsQueried` with the returned id.
    pub fn query_neighbors(&mut self, now: Time, node: NodeRef) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        if let Some(v) = self.vnodes.iter_mut().find(|v| v.me() == node) {
            v.query_neighbors(now, id, node);
        } else {
            self.vnodes[0].query_neighbors(now, id, node);
        }
        self.flush(now);
        id
    }

    /// Handles a message that arrived from another process.
    pub fn handle_message(&mut self, now: Time, env: Envelope) {
        self.deliver(now, env);
        self.flush(now);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        for v in &mut self.vnodes {
            if v.poll_timeout().is_some_and(|t| t <= now) {
                v.handle_timeout(now);
            }
        }
        self.kv_timeout(now);
        self.pubsub_timeout(now);
        self.flush(now);
    }

    /// The driver could not connect to `addr`: everything there is dead.
    pub fn handle_unreachable(&mut self, now: Time, addr: SocketAddr) {
        for v in &mut self.vnodes {
            v.handle_unreachable(now, addr);
        }
        self.kv_peers_failed(now, |n| n.addr == addr);
        // Refused outright: that process is gone (a timeout is not enough
        // — under loss a live successor times out now and then, and its
        // transfer must resume, not move to the next node).
        self.transfers_to_dead(now, &|n: &NodeRef| n.addr == addr);
        self.flush(now);
    }

    /// The driver lost an established connection to `addr`.
    pub fn handle_disconnect(&mut self, now: Time, addr: SocketAddr) {
        for v in &mut self.vnodes {
            v.handle_disconnect(now, addr);
        }
        self.flush(now);
    }

    /// The next message for another process.
    pub fn poll_transmit(&mut self) -> Option<Envelope> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let vnodes = self.vnodes.iter().filter_map(|v| v.poll_timeout());
        vnodes
            .chain(self.kv.next_deadline())
            .chain(self.pubsub.tick_at)
            .min()
    }

    /// Hands `env` to the virtual node it names (or the first one, for a
    /// message to a bare address). Unknown ids get `NotHere`.
    fn deliver(&mut self, now: Time, env: Envelope) {
        if crate::kv::is_kv_message(&env.msg) {
            self.kv_message(now, env);
            return;
        }
        let index = match env.to.id {
            None => Some(0),
            Some(id) => self.vnodes.iter().position(|v| v.me().id == id),
        };
        match index {
            Some(i) => self.vnodes[i].handle_message(now, env.from, env.msg),
            None => match env.msg.request_id() {
                Some(req) => self.out.push_back(Envelope {
                    from: self.vnodes[0].me(),
                    to: env.from.into(),
                    msg: Message::NotHere { req },
                }),
                None => self.dropped += 1,
            },
        }
    }

    /// Moves output of the virtual nodes to our queues, delivering messages
    /// between our own virtual nodes directly.
    pub(crate) fn flush(&mut self, now: Time) {
        let mut rounds = 0;
        loop {
            // One pass: collect what the vnodes and the key-value layer
            // produced, deliver what is for this process, and go round
            // again only if that (or the work it triggered) left output.
            let mut local: VecDeque<Envelope> = VecDeque::new();
            let mut events: Vec<Event> = Vec::new();
            for v in &mut self.vnodes {
                while let Some(env) = v.poll_transmit() {
                    // Most messages leave the process: straight out.
                    if env.to.addr == self.addr {
                        local.push_back(env);
                    } else {
                        self.out.push_back(env);
                    }
                }
                while let Some(e) = v.poll_event() {
                    events.push(e);
                }
            }
            let mut again = !events.is_empty();
            for e in events {
                self.vnode_event(now, e);
            }
            self.check_topic_targets(now);
            self.check_sync_targets(now);
            while let Some(env) = self.kv_out.pop_front() {
                if env.to.addr == self.addr {
                    local.push_back(env);
                } else {
                    self.out.push_back(env);
                }
            }
            again |= self.pubsub_flush(now);
            // Local deliveries may change the routing tables, which the
            // target checks above must see.
            again |= !local.is_empty();
            for env in local {
                rounds += 1;
                if rounds > MAX_LOCAL_DELIVERIES {
                    self.dropped += 1;
                    continue;
                }
                self.deliver(now, env);
            }
            let pending = !self.kv_out.is_empty()
                || !self.pubsub.done.is_empty()
                || self.vnodes.iter().any(VNode::has_output);
            if !again && !pending {
                break;
            }
        }
    }

    /// Events of the virtual nodes: some are the key-value layer's business.
    fn vnode_event(&mut self, now: Time, e: Event) {
        match &e {
            Event::LookupDone { result, .. } => self.counting.lookup_done(result),
            Event::SuccessorChanged { .. } | Event::PredecessorChanged { .. } => {
                self.counting.counters.routing_changes += 1
            }
            _ => {}
        }
        match &e {
            Event::LookupDone { lookup, result } if self.kv.lookups.contains_key(lookup) => {
                let result = result.clone();
                self.kv_lookup_done(now, *lookup, result);
                return;
            }
            Event::RangeChanged {
                vnode,
                old: Some(old),
                new,
            } if new.start != old.start && new.start.in_open(&old.start, &old.end) => {
                // Our range shrank: a new predecessor took `(old.start,
                // new.start]`. Hand it what we have there at once (we may
                // hold writes it missed while it was away).
                let (vnode, lost_start, lost_end) = (*vnode, old.start, new.start);
                self.hand_over_lost_range(now, vnode, lost_start, lost_end);
                let pred = self.vnodes.iter().find(|v| v.me().id == vnode);
                if let Some(pred) = pred.and_then(|v| v.table().predecessor()) {
                    self.hand_over_topics(now, pred, lost_start, lost_end);
                }
                self.sync_soon(now);
            }
            Event::RangeChanged { .. } | Event::PredecessorChanged { new: None, .. } => {
                self.kv.range_grew_at = Some(now);
                self.sync_soon(now);
            }
            Event::SuccessorChanged { .. } | Event::PredecessorChanged { .. } => {
                self.sync_soon(now)
            }
            Event::Joined { .. } => self.sync_soon(now),
            Event::PeerFailed { peer, .. } => {
                let peer = *peer;
                self.kv_peers_failed(now, |n| *n == peer);
            }
            _ => {}
        }
        self.events.push_back(e);
    }
}
