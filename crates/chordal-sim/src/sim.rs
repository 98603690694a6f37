//! The discrete-event network: a priority queue of deliveries and wake-ups
//! over virtual time.

use crate::traffic::{Purpose, Traffic};
use crate::{Clock, Latency};
use chordal_core::fasthash::FastMap;
use chordal_core::{
    Config, Envelope, Event, Id, LookupError, LookupId, LookupMode, LookupResult, Message, Node,
    OpError, OpId, Oracle, Outcome, Rng, Time,
};
use chordal_store::{MemoryStore, Store};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// The application of every simulated node: (node, key, payload) → the
/// answer, or `None` to refuse.
type AppHandler = Box<dyn FnMut(usize, &[u8], &[u8]) -> Option<Vec<u8>>>;

/// Knobs of the simulated network.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// One-way latency between two nodes.
    pub latency: Latency,
    /// Probability that a message is lost.
    pub loss: f64,
    /// If true, sending to a dead node fails at once (a closed TCP port on a
    /// live host); if false, the message vanishes and only timeouts tell.
    pub refuse_dead: bool,
    /// Seed for latency, loss and node ids.
    pub seed: u64,
    /// Size every message as its wire frame in [`Sim::traffic`] (costs
    /// about a quarter of the simulator's speed; off, only messages are
    /// counted).
    pub measure_bytes: bool,
    /// Protocol configuration of every node. By default Chord's with
    /// authority off: the paper experiments measure routing and DHash's
    /// replication, and a test of authority turns it on (`authority:
    /// true`), as the authority and linearizability tests do.
    pub node: Config,
}

impl SimConfig {
    /// Authority on (one decider per key) and dead processes refusing
    /// connections: what the tests of keys' owners run under.
    pub fn with_authority(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            refuse_dead: true,
            node: Config {
                authority: true,
                ..Config::default()
            },
            ..SimConfig::default()
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Latency::Uniform(Duration::from_millis(1), Duration::from_millis(5)),
            loss: 0.0,
            refuse_dead: false,
            seed: 1,
            measure_bytes: false,
            node: Config {
                authority: false,
                ..Config::default()
            },
        }
    }
}

/// What a queue entry does. Messages wait in [`Sim`]'s parcel slab, so
/// that the heap moves small entries only. (Unboxed: nearly every entry is
/// a message, and boxing each would add an allocation per message.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Item {
    /// A message for node `.0`.
    Deliver(usize, Envelope),
    Wake(usize),
    Unreachable {
        at: usize,
        addr: SocketAddr,
    },
}

/// A queue entry, ordered by (time, sequence): ties keep their order.
/// `parcel` indexes the slab of items, except for wake-ups (`WAKE`), which
/// carry their node in `node`.
#[derive(Debug)]
struct Queued {
    at: Time,
    seq: u64,
    node: u32,
    parcel: u32,
}

/// `Queued::parcel` of a wake-up.
const WAKE: u32 = u32::MAX;

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct SimNode {
    node: Node,
    /// The node's storage; it survives `kill` (like a disk).
    store: MemoryStore,
    alive: bool,
    /// The wake-up currently queued for this node, if any.
    wake: Option<Time>,
    /// Its side of a network partition: messages between nodes of
    /// different groups vanish.
    group: u32,
    /// Its wall clock, which it reads as `now`.
    clock: Clock,
    /// A step back of its clock, shown at its next start.
    next_clock: Option<Clock>,
}

/// Many nodes, one virtual clock.
pub struct Sim {
    config: SimConfig,
    now: Time,
    nodes: Vec<SimNode>,
    /// Everything due, earliest (then first queued) on top.
    queue: BinaryHeap<Reverse<Queued>>,
    /// Items waiting in the queue (messages, refusals), by slot.
    parcels: Vec<Option<Item>>,
    /// Free slots of `parcels`.
    free_parcels: Vec<u32>,
    seq: u64,
    rng: Rng,
    results: FastMap<(usize, LookupId), Result<LookupResult, LookupError>>,
    kv_results: FastMap<(usize, OpId), Result<Outcome, OpError>>,
    /// Every event, with the index of the node it came from (if recording).
    pub events: Vec<(usize, Event)>,
    record_events: bool,
    /// Messages handed to the network so far, counted and sized by purpose.
    pub traffic: Traffic,
    /// Events (deliveries, wake-ups) processed so far.
    pub events_processed: u64,
    /// Application messages that reached a node's application: (node, key;
    /// empty for a message sent to the node itself).
    pub app_received: Vec<(usize, Vec<u8>)>,
    /// Publications that reached a subscriber, in arrival order: (node,
    /// topic, publisher, payload).
    pub publications: Vec<(usize, Vec<u8>, Id, Vec<u8>)>,
    /// The nodes' application: given (node, key, payload), the answer
    /// (`Some`: accept / reply with it; `None`: refuse). Without one,
    /// messages are never answered (a stalled application).
    app_handler: Option<AppHandler>,
    /// Hops of lookups started with [`Sim::start_lookup`] that were sent to
    /// a dead or cut-off node: each costs the lookup a request timeout
    /// (retransmissions of the same hop are not counted again).
    pub lookup_timeouts: u64,
    /// Lookups started with `start_lookup` and not yet done: (origin, id).
    user_lookups: FastMap<(SocketAddr, u64), ()>,
    /// Hops already counted in `lookup_timeouts`: (sender, request).
    timed_out_hops: FastMap<(Id, u64), ()>,
    /// Messages sent to addresses outside the simulation, if kept
    /// ([`Sim::keep_outside`]).
    pub outside: Vec<Envelope>,
    keep_outside: bool,
}

impl Sim {
    /// An empty network.
    pub fn new(config: SimConfig) -> Sim {
        let rng = Rng::new(config.seed);
        Sim {
            config,
            now: Time::ZERO,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            parcels: Vec::new(),
            free_parcels: Vec::new(),
            seq: 0,
            rng,
            results: FastMap::default(),
            kv_results: FastMap::default(),
            events: Vec::new(),
            record_events: false,
            traffic: Traffic::default(),
            events_processed: 0,
            app_received: Vec::new(),
            publications: Vec::new(),
            app_handler: None,
            lookup_timeouts: 0,
            user_lookups: FastMap::default(),
            timed_out_hops: FastMap::default(),
            outside: Vec::new(),
            keep_outside: false,
        }
    }

    /// Keep messages sent to addresses outside the simulation in
    /// [`Sim::outside`] (a test playing a peer itself reads them).
    pub fn keep_outside(&mut self, on: bool) {
        self.keep_outside = on;
    }

    /// Hands `env` to node `i` as if it came over the network.
    pub fn inject(&mut self, i: usize, env: Envelope) {
        let now = self.clock_now(i);
        self.nodes[i].node.handle_message(now, env);
        self.after_input(i);
    }

    /// Keep every event in [`Sim::events`] (tests that look at events).
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Virtual time now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// From now on, each message is lost with probability `loss`.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// What node `i`'s clock shows now (what its core is given as `now`).
    pub fn clock_now(&self, i: usize) -> Time {
        self.nodes[i].clock.read(self.now)
    }

    /// Sets node `i`'s wall clock: a step back or forward, as NTP or a VM
    /// resume makes. A running node sees time only go forward (the tokio
    /// driver reads the wall clock once at start, then a monotonic clock):
    /// a step forward shows at once, a step back at its next start.
    pub fn set_clock(&mut self, i: usize, clock: Clock) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if !n.alive || clock.read(now) >= n.clock.read(now) {
            n.clock = clock;
            n.next_clock = None;
            // Its next wake-up moves with the clock.
            n.wake = None;
            if n.alive {
                self.after_input(i);
            }
        } else {
            n.next_clock = Some(clock);
        }
    }

    /// Number of nodes ever added (dead ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Has no node been added?
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a node with `vnodes` virtual nodes and random ids; it does
    /// nothing until `create` or `join`. Returns its index.
    pub fn add_node(&mut self, vnodes: usize) -> usize {
        let ids: Vec<Id> = (0..vnodes.max(1)).map(|_| self.random_id()).collect();
        self.add_node_with_ids(&ids)
    }

    /// Adds a node hosting exactly `ids`.
    pub fn add_node_with_ids(&mut self, ids: &[Id]) -> usize {
        let index = self.nodes.len();
        let addr = address_of(index);
        let seed = self.rng.next_u64();
        let node = Node::new(self.config.node.clone(), addr, ids, seed);
        self.nodes.push(SimNode {
            node,
            store: MemoryStore::new(),
            alive: true,
            wake: None,
            group: 0,
            clock: Clock::default(),
            next_clock: None,
        });
        index
    }

    /// The node at a made-up address, if any node ever had it.
    fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        index_at(addr).filter(|&i| i < self.nodes.len())
    }

    /// Adds `n` nodes of `vnodes` virtual nodes each (random ids) that start
    /// as an already converged ring: exact successor lists, predecessors
    /// and fingers. Returns their indices. Builds rings of 10^5 nodes in
    /// seconds, where running every join would take far longer.
    pub fn build_converged(&mut self, n: usize, vnodes: usize) -> Vec<usize> {
        let indices: Vec<usize> = (0..n).map(|_| self.add_node(vnodes)).collect();
        let refs: HashMap<Id, chordal_core::NodeRef> = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .flat_map(|n| n.node.vnodes().iter().map(|v| (v.me().id, v.me())))
            .collect();
        let oracle = self.oracle();
        let r = self.config.node.successors;
        for &i in &indices {
            let state = |me: chordal_core::NodeRef| {
                let pred = refs[&oracle.prev(&me.id)];
                let succs = oracle
                    .successors(&me.id, r)
                    .iter()
                    .map(|id| refs[id])
                    .collect();
                let fingers = (0..chordal_core::ID_BITS)
                    .map(|k| refs[&oracle.successor(&me.id.add_pow2(k))])
                    .collect();
                (pred, succs, fingers)
            };
            let now = self.clock_now(i);
            let members = refs.values().copied();
            self.nodes[i].node.start_converged(now, state, members);
            self.after_input(i);
        }
        indices
    }

    /// A new simulation of a ring of `n` single-vnode nodes grown the way
    /// a real one is: node 0 creates it, the others join through it `gap`
    /// apart (zero: all at once). Returned as soon as every successor and
    /// predecessor is right — under authority, the terms of its first
    /// configs may still be catching up. Panics if the ring does not
    /// converge within a minute.
    pub fn grown(config: SimConfig, n: usize, gap: Duration) -> Sim {
        let seed = config.seed;
        let mut s = Sim::new(config);
        let first = s.add_node(1);
        s.create(first);
        s.run_for(Duration::from_millis(500));
        for _ in 1..n {
            let i = s.add_node(1);
            s.join(i, first);
            s.run_for(gap);
        }
        s.run_until_true(Duration::from_millis(100), Duration::from_secs(60), |s| {
            s.ring_errors(true) == 0
        })
        .unwrap_or_else(|| panic!("seed {seed}: ring did not converge"));
        s
    }

    /// The live node whose (first) vnode owns `key` now, by the oracle.
    /// Panics if none does.
    pub fn owner_of(&self, key: &[u8]) -> usize {
        let id = self.oracle().successor(&Id::of_key(key));
        (0..self.nodes.len())
            .find(|i| self.nodes[*i].alive && self.nodes[*i].node.vnodes()[0].me().id == id)
            .expect("the owner is a live node")
    }

    /// A random id from the simulation's seed.
    pub fn random_id(&mut self) -> Id {
        random_id(&mut self.rng)
    }

    /// Node `i`'s state machine.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    /// Is node `i` running?
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    /// Indices of the running nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .collect()
    }

    /// Indices of the running nodes that have joined the ring.
    pub fn joined(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].node.is_joined())
            .collect()
    }

    /// Node `i` starts a new ring.
    pub fn create(&mut self, i: usize) {
        let now = self.clock_now(i);
        self.nodes[i].node.create(now);
        self.after_input(i);
    }

    /// Node `i` joins through node `seed`.
    pub fn join(&mut self, i: usize, seed: usize) {
        let now = self.clock_now(i);
        let seed_addr = self.nodes[seed].node.addr();
        self.nodes[i].node.join(now, vec![seed_addr]);
        self.after_input(i);
    }

    /// Node `i` joins through several seeds, tried in turn.
    pub fn join_via(&mut self, i: usize, seeds: &[usize]) {
        let now = self.clock_now(i);
        let addrs = seeds.iter().map(|s| self.nodes[*s].node.addr()).collect();
        self.nodes[i].node.join(now, addrs);
        self.after_input(i);
    }

    /// Node `i` starts a graceful leave: it hands its ranges over, says
    /// goodbye once they are acknowledged, then stops (see
    /// [`Sim::is_alive`]).
    pub fn leave(&mut self, i: usize) {
        let now = self.clock_now(i);
        self.nodes[i].node.leave(now);
        self.after_input(i);
    }

    /// Node `i` (killed) starts again with its ids, address and store (its
    /// disk), and joins through node `seed`.
    pub fn restart(&mut self, i: usize, seed: usize) {
        self.reboot(i);
        self.join(i, seed);
    }

    /// Node `i` (killed) starts again with its ids, address and store, as
    /// a ring of its own.
    pub fn restart_alone(&mut self, i: usize) {
        self.reboot(i);
        self.create(i);
    }

    /// A fresh core for node `i`, as a process start gives it.
    fn reboot(&mut self, i: usize) {
        let addr = self.nodes[i].node.addr();
        let ids: Vec<Id> = self.nodes[i]
            .node
            .vnodes()
            .iter()
            .map(|v| v.me().id)
            .collect();
        let rng_seed = self.rng.next_u64();
        self.nodes[i].node = Node::new(self.config.node.clone(), addr, &ids, rng_seed);
        // The new incarnation numbers its operations from the start again:
        // results of the old one nobody took must not pass for its own.
        self.kv_results.retain(|(n, _), _| *n != i);
        // As the driver does: versions go above what the disk holds.
        let stored = self.nodes[i].store.max_hlc().unwrap_or(0);
        self.nodes[i].node.seed_clock(stored);
        if let Some(clock) = self.nodes[i].next_clock.take() {
            self.nodes[i].clock = clock;
        }
        // As the driver does: the promises kept (authority), every lease
        // counted live for one more lease.
        let promises = self.nodes[i]
            .store
            .meta(chordal_store::PROMISES)
            .ok()
            .flatten();
        let now = self.clock_now(i);
        let restored = self.nodes[i]
            .node
            .restore_promises(now, promises.as_deref());
        assert!(restored, "a promise table the simulator kept is damaged");
        self.nodes[i].alive = true;
        self.nodes[i].wake = None;
    }

    /// Node `i` crashes: it stops at once and says nothing.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        if self.config.refuse_dead {
            // Its connections close, as a dead process's do (the kernel
            // resets them): what they carried may have arrived, so a
            // later refusal must not pass for "never sent" — in the
            // driver, a closed connection says so before any refusal.
            let addr = self.nodes[i].node.addr();
            for j in 0..self.nodes.len() {
                if j != i && self.nodes[j].alive {
                    self.nodes[j].node.handle_closed(addr);
                }
            }
        }
    }

    /// Cuts the network: node `i` lands in group `group_of(i)`, and from now
    /// on messages between different groups vanish (both sides see only
    /// timeouts) until [`Sim::heal_partition`].
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u32) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.group = group_of(i);
        }
    }

    /// Ends a partition: every node can reach every other again.
    pub fn heal_partition(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Starts a lookup at node `i`; see [`Sim::lookup_result`].
    pub fn start_lookup(&mut self, i: usize, key: Id, mode: LookupMode) -> LookupId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.start_lookup(now, key, mode);
        // Its messages are still in the node's outbox: `after_input` sees
        // them as this lookup's.
        self.user_lookups
            .insert((self.nodes[i].node.addr(), id.0), ());
        self.after_input(i);
        id
    }

    /// The result of a lookup started at node `i`, once it finished.
    pub fn lookup_result(
        &self,
        i: usize,
        id: LookupId,
    ) -> Option<&Result<LookupResult, LookupError>> {
        self.results.get(&(i, id))
    }

    /// Runs a lookup at node `i` to completion (or `lookup_timeout`).
    pub fn lookup(
        &mut self,
        i: usize,
        key: Id,
        mode: LookupMode,
    ) -> Result<LookupResult, LookupError> {
        let id = self.start_lookup(i, key, mode);
        let deadline = self.now + self.config.node.lookup_timeout + Duration::from_secs(1);
        while !self.results.contains_key(&(i, id)) && self.now < deadline {
            if !self.step() {
                break;
            }
        }
        self.results
            .remove(&(i, id))
            .unwrap_or(Err(LookupError::Timeout))
    }

    /// Runs many lookups at once: each `(node, key)` starts now, and the
    /// simulation runs until all are done (or `lookup_timeout`). Results
    /// come in the order of `queries`. Far cheaper than one after another
    /// when the ring's maintenance runs meanwhile.
    pub fn lookup_all(
        &mut self,
        queries: &[(usize, Id)],
        mode: LookupMode,
    ) -> Vec<Result<LookupResult, LookupError>> {
        let ids: Vec<(usize, LookupId)> = queries
            .iter()
            .map(|&(i, key)| (i, self.start_lookup(i, key, mode)))
            .collect();
        let deadline = self.now + self.config.node.lookup_timeout + Duration::from_secs(1);
        let mut waiting = ids.len();
        while waiting > 0 && self.now < deadline {
            let until = (self.now + Duration::from_millis(10)).min(deadline);
            self.run_until(until);
            waiting = ids.iter().filter(|k| !self.results.contains_key(k)).count();
        }
        ids.iter()
            .map(|k| self.results.remove(k).unwrap_or(Err(LookupError::Timeout)))
            .collect()
    }

    /// Does node `i`'s store hold a record (a value or a tombstone) for `key`?
    pub fn holds(&self, i: usize, key: &[u8]) -> bool {
        let id = Id::of_key(key);
        matches!(self.nodes[i].store.get(&id, key), Ok(Some(_)))
    }

    /// The live nodes whose stores hold a record for `key`.
    pub fn holders(&self, key: &[u8]) -> Vec<usize> {
        self.alive()
            .into_iter()
            .filter(|i| self.holds(*i, key))
            .collect()
    }

    /// Sets the application every node runs (see `app_handler`).
    pub fn set_app_handler(
        &mut self,
        handler: impl FnMut(usize, &[u8], &[u8]) -> Option<Vec<u8>> + 'static,
    ) {
        self.app_handler = Some(Box::new(handler));
    }

    /// `send` at node `i`, run to completion.
    pub fn send(&mut self, i: usize, key: &[u8], payload: &[u8]) -> Result<Outcome, OpError> {
        let (k, p) = (key.to_vec(), payload.to_vec());
        self.kv(i, move |n, now| n.send(now, k, p))
    }

    /// `send_to` from node `i` to node `to`, run to completion.
    pub fn send_to(&mut self, i: usize, to: usize, payload: &[u8]) -> Result<Outcome, OpError> {
        let (target, p) = (self.nodes[to].node.primary().me(), payload.to_vec());
        self.kv(i, move |n, now| n.send_to(now, target, p))
    }

    /// `request` at node `i`, run to completion.
    pub fn request(&mut self, i: usize, key: &[u8], payload: &[u8]) -> Result<Outcome, OpError> {
        let (k, p) = (key.to_vec(), payload.to_vec());
        self.kv(i, move |n, now| n.request(now, k, p))
    }

    /// `subscribe` at node `i`, run until the topic's owner registered it.
    pub fn subscribe(&mut self, i: usize, topic: &[u8]) -> Result<Outcome, OpError> {
        let t = topic.to_vec();
        self.kv(i, move |n, now| n.subscribe(now, t))
    }

    /// `unsubscribe` at node `i`.
    pub fn unsubscribe(&mut self, i: usize, topic: &[u8]) {
        let now = self.clock_now(i);
        self.nodes[i].node.unsubscribe(now, topic.to_vec());
        self.after_input(i);
    }

    /// `publish` at node `i`, run until the topic's owner queued it.
    pub fn publish(&mut self, i: usize, topic: &[u8], payload: &[u8]) -> Result<Outcome, OpError> {
        let (t, p) = (topic.to_vec(), payload.to_vec());
        self.kv(i, move |n, now| n.publish(now, t, p))
    }

    /// Starts `publish` at node `i` without waiting: its result is in
    /// [`Sim::kv_result`] once done.
    pub fn start_publish(&mut self, i: usize, topic: &[u8], payload: &[u8]) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i]
            .node
            .publish(now, topic.to_vec(), payload.to_vec());
        self.after_input(i);
        id
    }

    /// Node `i`'s storage.
    pub fn store(&self, i: usize) -> &MemoryStore {
        &self.nodes[i].store
    }

    /// Runs a key-value operation at node `i` to completion.
    fn kv(
        &mut self,
        i: usize,
        start: impl FnOnce(&mut Node, Time) -> OpId,
    ) -> Result<Outcome, OpError> {
        let now = self.clock_now(i);
        let id = start(&mut self.nodes[i].node, now);
        self.after_input(i);
        let deadline = self.now + self.config.node.kv_timeout + Duration::from_secs(1);
        while !self.kv_results.contains_key(&(i, id)) && self.now < deadline {
            if !self.step() {
                break;
            }
        }
        self.kv_results
            .remove(&(i, id))
            .unwrap_or(Err(OpError::Timeout))
    }

    /// Starts a `put` at node `i` without waiting; see [`Sim::kv_result`].
    pub fn start_put(&mut self, i: usize, key: &[u8], value: &[u8]) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.put(now, key.to_vec(), value.to_vec());
        self.after_input(i);
        id
    }

    /// Starts a `get` at node `i` without waiting; see [`Sim::kv_result`].
    pub fn start_get(&mut self, i: usize, key: &[u8]) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.get(now, key.to_vec());
        self.after_input(i);
        id
    }

    /// Starts any store operation at node `i` without waiting; see
    /// [`Sim::kv_result`] and [`Sim::take_kv_result`].
    pub fn start_store_op(&mut self, i: usize, op: chordal_core::Operation) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.store(now, op);
        self.after_input(i);
        id
    }

    /// Takes the result of a key-value operation started at node `i`, once
    /// done (a history recorder's way: each result is read once).
    pub fn take_kv_result(&mut self, i: usize, id: OpId) -> Option<Result<Outcome, OpError>> {
        self.kv_results.remove(&(i, id))
    }

    /// The result of a key-value operation started at node `i`, once done.
    pub fn kv_result(&self, i: usize, id: OpId) -> Option<&Result<Outcome, OpError>> {
        self.kv_results.get(&(i, id))
    }

    /// `put` at node `i`, run to completion.
    pub fn put(&mut self, i: usize, key: &[u8], value: &[u8]) -> Result<Outcome, OpError> {
        let (k, v) = (key.to_vec(), value.to_vec());
        self.kv(i, move |n, now| n.put(now, k, v))
    }

    /// `get` at node `i`, run to completion.
    pub fn get(&mut self, i: usize, key: &[u8]) -> Result<Outcome, OpError> {
        let k = key.to_vec();
        self.kv(i, move |n, now| n.get(now, k))
    }

    /// `delete` at node `i`, run to completion.
    pub fn delete(&mut self, i: usize, key: &[u8]) -> Result<Outcome, OpError> {
        let k = key.to_vec();
        self.kv(i, move |n, now| n.delete(now, k))
    }

    /// Any store operation (put, get, delete, update with their options)
    /// at node `i`, run to completion.
    pub fn store_op(&mut self, i: usize, op: chordal_core::Operation) -> Result<Outcome, OpError> {
        self.kv(i, move |n, now| n.store(now, op))
    }

    /// Advances virtual time by `d`, processing everything due.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Processes everything due up to `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Time) {
        while let Some(Reverse(Queued { at, .. })) = self.queue.peek() {
            if *at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until `done(self)` holds, checking every `every`; gives up after
    /// `limit`. Returns the virtual time it took, or `None`.
    pub fn run_until_true(
        &mut self,
        every: Duration,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(every);
        }
    }

    /// The true ring of live virtual nodes.
    pub fn oracle(&self) -> Oracle {
        Oracle::new(
            self.nodes
                .iter()
                .filter(|n| n.alive)
                .flat_map(|n| n.node.vnodes().iter().map(|v| v.me().id))
                .collect(),
        )
    }

    /// The true ring of live virtual nodes that have finished joining: who
    /// should own each key right now. (A node still joining owns nothing
    /// yet; [`Sim::oracle`] already counts it.)
    pub fn joined_oracle(&self) -> Oracle {
        Oracle::new(
            self.nodes
                .iter()
                .filter(|n| n.alive)
                .flat_map(|n| n.node.vnodes().iter())
                .filter(|v| v.is_joined())
                .map(|v| v.me().id)
                .collect(),
        )
    }

    /// Does every live virtual node have the true successor (and, if
    /// `with_predecessors`, the true predecessor)? Returns the number wrong.
    pub fn ring_errors(&self, with_predecessors: bool) -> usize {
        let oracle = self.oracle();
        let mut wrong = 0;
        for n in self.nodes.iter().filter(|n| n.alive) {
            for v in n.node.vnodes() {
                let id = v.me().id;
                let ok_succ = v.is_joined() && v.table().successor().id == oracle.next(&id);
                let ok_pred = !with_predecessors
                    || v.table().predecessor().map(|p| p.id) == Some(oracle.prev(&id))
                    || (oracle.len() == 1 && v.table().predecessor().is_none());
                if !(ok_succ && ok_pred) {
                    wrong += 1;
                }
            }
        }
        wrong
    }

    /// One line per live virtual node whose neighbours are wrong: what it
    /// has and what the truth is. For failure messages.
    pub fn describe_errors(&self, limit: usize) -> String {
        let oracle = self.oracle();
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
            for v in n.node.vnodes() {
                let id = v.me().id;
                let succ = v.table().successor().id;
                let pred = v.table().predecessor().map(|p| p.id);
                if succ != oracle.next(&id) || pred != Some(oracle.prev(&id)) {
                    out.push_str(&format!(
                        "node {i} {:?} {:?}: succ {:?} (true {:?}) pred {:?} (true {:?}) list {:?}\n",
                        id,
                        v.phase(),
                        succ,
                        oracle.next(&id),
                        pred,
                        oracle.prev(&id),
                        v.table().successors().iter().map(|s| s.id).collect::<Vec<_>>()
                    ));
                    if out.lines().count() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Number of finger slots (over all live virtual nodes) that differ from
    /// the truth.
    pub fn finger_errors(&self) -> usize {
        let oracle = self.oracle();
        let mut wrong = 0;
        for n in self.nodes.iter().filter(|n| n.alive) {
            for v in n.node.vnodes() {
                for i in 0..chordal_core::ID_BITS {
                    let truth = oracle.successor(&v.table().finger_start(i));
                    let have = v.table().finger(i).map(|f| f.id).unwrap_or(v.me().id);
                    if have != truth {
                        wrong += 1;
                    }
                }
            }
        }
        wrong
    }

    /// Processes the next queued item. Returns false when nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(Queued {
            at, node, parcel, ..
        })) = self.queue.pop()
        else {
            return false;
        };
        let item = if parcel == WAKE {
            Item::Wake(node as usize)
        } else {
            self.free_parcels.push(parcel);
            self.parcels[parcel as usize]
                .take()
                .expect("a queued parcel is present")
        };
        self.now = self.now.max(at);
        self.events_processed += 1;
        match item {
            Item::Deliver(i, env) => {
                if self.nodes[i].alive {
                    let now = self.clock_now(i);
                    self.nodes[i].node.handle_message(now, env);
                    self.after_input(i);
                }
            }
            Item::Wake(i) => {
                if self.nodes[i].wake == Some(at) {
                    self.nodes[i].wake = None;
                }
                if self.nodes[i].alive {
                    let now = self.clock_now(i);
                    self.nodes[i].node.handle_timeout(now);
                    self.after_input(i);
                }
            }
            Item::Unreachable { at: i, addr } => {
                if self.nodes[i].alive {
                    let now = self.clock_now(i);
                    self.nodes[i].node.handle_unreachable(now, addr);
                    self.after_input(i);
                }
            }
        }
        true
    }

    fn push(&mut self, at: Time, item: Item) {
        self.seq += 1;
        let (node, parcel) = match item {
            Item::Wake(i) => (i as u32, WAKE),
            item => {
                let slot = match self.free_parcels.pop() {
                    Some(slot) => {
                        self.parcels[slot as usize] = Some(item);
                        slot
                    }
                    None => {
                        self.parcels.push(Some(item));
                        (self.parcels.len() - 1) as u32
                    }
                };
                (0, slot)
            }
        };
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            node,
            parcel,
        }));
    }

    /// Collects node `i`'s output: messages onto the network, events into
    /// the results, and its next wake-up.
    fn after_input(&mut self, i: usize) {
        // Storage is instantaneous here: perform each request at once.
        while let Some(req) = self.nodes[i].node.poll_store() {
            let result = chordal_store::perform(&self.nodes[i].store, req.kind);
            let now = self.clock_now(i);
            self.nodes[i].node.handle_store(now, req.op, result);
        }
        while let Some(env) = self.nodes[i].node.poll_transmit() {
            let bytes = if self.config.measure_bytes {
                chordal_wire::frame_len(&env)
            } else {
                0
            };
            self.traffic.add(Purpose::of(&env.msg), bytes);
            let dest = self.index_of(&env.to.addr);
            let cut_off = dest.is_some_and(|d| self.nodes[d].group != self.nodes[i].group);
            let dead = dest.is_none_or(|d| !self.nodes[d].alive);
            if dead || cut_off {
                self.count_lookup_timeout(&env);
            }
            if cut_off {
                continue;
            }
            let latency = match dest {
                Some(d) => self.config.latency.between(i, d, self.config.seed),
                None => Duration::from_millis(1),
            };
            if dead && self.config.refuse_dead {
                let addr = env.to.addr;
                self.push(self.now + latency, Item::Unreachable { at: i, addr });
                continue;
            }
            if self.config.loss > 0.0 {
                let draw = self.rng.next_u64() as f64 / u64::MAX as f64;
                if draw < self.config.loss {
                    continue;
                }
            }
            // Messages to an address nobody ever had vanish (tests that
            // play a peer from outside may keep them).
            match dest {
                Some(d) => self.push(self.now + latency, Item::Deliver(d, env)),
                None if self.keep_outside => self.outside.push(env),
                None => {}
            }
        }
        let mut answers = Vec::new();
        while let Some(e) = self.nodes[i].node.poll_event() {
            match &e {
                Event::AppMessage {
                    msg, key, payload, ..
                } => {
                    let key = key.clone().unwrap_or_default();
                    if let Some(handler) = self.app_handler.as_mut() {
                        answers.push((*msg, handler(i, &key, payload)));
                    }
                    self.app_received.push((i, key));
                }
                Event::LookupDone { lookup, result } => {
                    self.user_lookups
                        .remove(&(self.nodes[i].node.addr(), lookup.0));
                    self.results.insert((i, *lookup), result.clone());
                }
                Event::OpDone { op, result } => {
                    self.kv_results.insert((i, *op), result.clone());
                }
                Event::Publication {
                    topic,
                    publisher,
                    payload,
                } => {
                    let p = (i, topic.clone(), *publisher, payload.clone());
                    self.publications.push(p);
                }
                _ => {}
            }
            if self.record_events {
                self.events.push((i, e));
            }
        }
        if !answers.is_empty() {
            let now = self.clock_now(i);
            for (msg, answer) in answers {
                match answer {
                    Some(payload) => self.nodes[i].node.app_reply(now, msg, payload),
                    None => self.nodes[i].node.app_refuse(now, msg),
                }
            }
            // The answers are new output: collect it (and the wake-up).
            return self.after_input(i);
        }
        if self.nodes[i].node.left().is_some() {
            // Its farewells are on their way: it stops.
            self.nodes[i].alive = false;
            return;
        }
        if let Some(t) = self.nodes[i].node.poll_timeout() {
            let t = self.nodes[i].clock.to_virtual(t).max(self.now);
            if self.nodes[i].wake.is_none_or(|w| t < w) {
                self.nodes[i].wake = Some(t);
                self.push(t, Item::Wake(i));
            }
        }
    }

    /// If `env` is a hop of a user lookup going nowhere, counts the timeout
    /// it will cost (once per hop, not per retransmission).
    fn count_lookup_timeout(&mut self, env: &Envelope) {
        if let Message::FindSuccessor {
            req,
            origin,
            lookup,
            ..
        } = env.msg
            && self.user_lookups.contains_key(&(origin.addr, lookup))
            && self.timed_out_hops.insert((env.from.id, req), ()).is_none()
        {
            self.lookup_timeouts += 1;
        }
    }
}

/// The made-up address of node `index` (nothing listens on it):
/// 127.(index/2^16 + 1).(index/2^8 % 256).(index % 256):7000, so that the
/// index can be read back from the address of every message without a map.
fn address_of(index: usize) -> SocketAddr {
    assert!(
        index < 254 << 16,
        "the simulator numbers at most 254 * 2^16 nodes"
    );
    let ip = Ipv4Addr::new(
        127,
        (index >> 16) as u8 + 1,
        (index >> 8) as u8,
        index as u8,
    );
    SocketAddr::V4(SocketAddrV4::new(ip, SIM_PORT))
}

/// The inverse of [`address_of`]; `None` for any other address.
fn index_at(addr: &SocketAddr) -> Option<usize> {
    let SocketAddr::V4(a) = addr else {
        return None;
    };
    let [first, high, mid, low] = a.ip().octets();
    if first != 127 || high == 0 || a.port() != SIM_PORT {
        return None;
    }
    Some(((high as usize - 1) << 16) | ((mid as usize) << 8) | low as usize)
}

/// The port of every simulated node.
const SIM_PORT: u16 = 7000;

/// A random 160-bit id drawn from `rng`.
pub fn random_id(rng: &mut Rng) -> Id {
    let mut b = [0u8; 20];
    for chunk in b.chunks_mut(8) {
        let v = rng.next_u64().to_be_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    Id(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_read_back_as_their_index() {
        for index in [0, 1, 255, 256, 65_535, 65_536, 1 << 20, (254 << 16) - 1] {
            assert_eq!(index_at(&address_of(index)), Some(index), "{index}");
        }
        let foreign: [SocketAddr; 3] = [
            "127.0.0.1:7001".parse().unwrap(),
            "10.1.0.0:7000".parse().unwrap(),
            "[::1]:7000".parse().unwrap(),
        ];
        for addr in foreign {
            assert_eq!(index_at(&addr), None, "{addr}");
        }
        // 127.0.x.y is never a simulated node (the second octet starts at 1).
        assert_eq!(index_at(&"127.0.0.5:7000".parse().unwrap()), None);
    }
}
