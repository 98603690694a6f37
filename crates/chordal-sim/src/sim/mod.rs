//! The discrete-event network: a priority queue of deliveries and wake-ups
//! over virtual time.
//!
//! This file holds the simulator's state and its small accessors; the rest
//! is by job: `queue.rs` (the event loop), `membership.rs` (nodes in and
//! out, rings built), `faults.rs` (crashes, partitions, loss, clock
//! steps), `ops.rs` (what clients ask) and `checks.rs` (the oracle and the
//! errors counted against it).

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

mod checks;
mod faults;
mod membership;
mod ops;
mod queue;

use queue::{Item, Queued};

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

    /// What node `i`'s clock shows now (what its core is given as `now`).
    pub fn clock_now(&self, i: usize) -> Time {
        self.nodes[i].clock.read(self.now)
    }

    /// Number of nodes ever added (dead ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Has no node been added?
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node at a made-up address, if any node ever had it.
    pub(super) fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        index_at(addr).filter(|&i| i < self.nodes.len())
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

    /// Node `i`'s storage.
    pub fn store(&self, i: usize) -> &MemoryStore {
        &self.nodes[i].store
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
