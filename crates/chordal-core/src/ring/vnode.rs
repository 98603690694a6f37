//! One virtual node running the Chord protocol (Stoica et al., Fig. 5–7):
//! create/join, `stabilize`, `notify`, `fix_fingers`, `check_predecessor`,
//! fault-tolerant lookups and graceful leave.
//!
//! Call order, as for every sans-IO machine here: feed inputs
//! (`handle_message`, `handle_timeout`, commands), then drain outputs
//! (`poll_transmit`, `poll_event`) and re-arm the timer from `poll_timeout`.
//! Applications normally use [`crate::Node`], which hosts several of these.

use super::routing::RoutingTable;
use crate::config::{Config, LookupMode};
use crate::event::{Event, KeyRange, LookupError, LookupId, LookupResult, Neighbors, QueryId};
use crate::fasthash::FastMap;
use crate::message::{Envelope, LookupFailure, Message, NodeRef, OwnerClaim, Target};
use crate::rng::Rng;
use crate::{ID_BITS, Id, Time};
use std::collections::{BTreeSet, VecDeque};

mod failure;
mod lookup;
mod merge;
mod receive;
mod stabilize;
use std::net::SocketAddr;

/// Lookups the core starts for itself (joins, fingers) use ids with this bit
/// set, so they never collide with the [`LookupId`]s given to applications.
const INTERNAL_LOOKUP: u64 = 1 << 63;
/// How many candidates an iterative lookup keeps, and how many closest
/// preceding nodes a step answers with.
const ITERATIVE_WIDTH: usize = 3;
const ITERATIVE_KEEP: usize = 16;
/// Acks queued before they are sent without waiting for `ack_delay`.
const MAX_ACKS: usize = 256;
/// How many recently failed peers are remembered (and not re-adopted).
const RECENT_FAILURES: usize = 64;

/// Where a virtual node is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created with `new`, neither `create`d nor `join`ed yet.
    Idle,
    /// Looking for its successor through `seeds`; `attempt` counts tries.
    Joining {
        /// The seeds tried in turn.
        seeds: Vec<SocketAddr>,
        /// Tries so far.
        attempt: usize,
    },
    /// Part of a ring.
    Joined,
    /// Left the ring gracefully; answers nothing any more.
    Left,
}

/// The periodic tasks, each with its own interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Stabilize = 0,
    FixFingers = 1,
    CheckPredecessor = 2,
}
const TIMERS: [Timer; 3] = [Timer::Stabilize, Timer::FixFingers, Timer::CheckPredecessor];

/// Something with a deadline: a request awaiting its answer, or a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    Request(u64),
    Lookup(u64),
    /// The next round of join attempts is due (after every seed failed).
    JoinRound,
}

/// A request we sent and still wait for.
#[derive(Clone, Debug)]
struct Pending {
    to: Target,
    deadline: Time,
    kind: PendingKind,
    /// The request itself, kept for retransmission.
    msg: Message,
    /// Retransmissions left before the target counts as failed.
    retries_left: u32,
}

#[derive(Clone, Debug)]
enum PendingKind {
    Stabilize,
    CheckPredecessor,
    /// A liveness probe after the driver lost the connection to a peer.
    Probe,
    /// A recursive lookup we forwarded and that the next hop must ack.
    Forward {
        origin: NodeRef,
        lookup: u64,
        key: Id,
        hops: u32,
    },
    /// One step of an iterative lookup we run.
    Step {
        lookup: u64,
    },
    /// The last step of an iterative lookup: is `successors[0]`, the owner
    /// the key's predecessor named, alive?
    Confirm {
        lookup: u64,
        successors: Vec<NodeRef>,
        hops: u32,
        path: Vec<NodeRef>,
    },
    /// A neighbour query for the driver (ring walks).
    Query {
        query: QueryId,
    },
}

/// Why we run a lookup, i.e. what to do with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    User,
    FixFinger(usize),
    Join,
    /// A probe through a peer dropped as failed (see `merge.rs`).
    Merge,
}

/// A lookup this virtual node started (it is the origin).
#[derive(Clone, Debug)]
struct Lookup {
    key: Id,
    deadline: Time,
    purpose: Purpose,
    /// State of an iterative lookup; `None` for recursive ones.
    iterative: Option<Iterative>,
}

#[derive(Clone, Debug, Default)]
struct Iterative {
    /// Nodes to ask next, nearest to the key first.
    candidates: Vec<NodeRef>,
    /// Nodes already asked.
    asked: Vec<Id>,
    hops: u32,
    /// Nodes that answered, in order.
    path: Vec<NodeRef>,
}

/// One virtual node: its routing table and everything in flight.
#[derive(Debug)]
pub struct VNode {
    config: Config,
    /// `stabilize` rounds run (for metrics).
    stabilize_rounds: u64,
    table: RoutingTable,
    phase: Phase,
    rng: Rng,
    next_req: u64,
    next_internal_lookup: u64,
    pending: FastMap<u64, Pending>,
    lookups: FastMap<u64, Lookup>,
    deadlines: BTreeSet<(Time, Deadline)>,
    timers: [Option<Time>; 3],
    next_finger: usize,
    /// `fix_fingers` runs every `fix_fingers_interval * finger_backoff`: the
    /// factor doubles after a whole cycle without a change (up to
    /// `max_finger_backoff`) and drops to 1 when our neighbourhood changes.
    finger_backoff: u32,
    fingers_changed: bool,
    /// When the predecessor last said anything; `check_predecessor` does
    /// not ping a predecessor that has just notified us.
    heard_from_pred: Option<Time>,
    /// Records the process stores, as its driver last said.
    keys_stored: u64,
    range: Option<KeyRange>,
    recently_failed: VecDeque<(NodeRef, Time)>,
    /// Peers dropped as failed, and since when: probed now and then in
    /// case a partition healed (see `merge.rs`).
    lost_peers: VecDeque<(NodeRef, Time)>,
    merge_probe_at: Option<Time>,
    /// `FindSuccessor`s taken over but not yet acknowledged, and when to.
    /// Acks wait a little so that they stay off a lookup's critical path
    /// and travel together.
    acks: Vec<(NodeRef, u64)>,
    ack_at: Option<Time>,
    out: VecDeque<Envelope>,
    events: VecDeque<Event>,
}

impl VNode {
    /// A virtual node `me` that has not started yet. `seed` fixes its jitter.
    pub fn new(config: Config, me: NodeRef, seed: u64) -> VNode {
        VNode {
            table: RoutingTable::new(me, config.successors),
            config,
            phase: Phase::Idle,
            rng: Rng::new(seed ^ me.id.high_u64()),
            next_req: 1,
            next_internal_lookup: 1,
            pending: FastMap::default(),
            lookups: FastMap::default(),
            deadlines: BTreeSet::new(),
            timers: [None; 3],
            next_finger: 0,
            finger_backoff: 1,
            fingers_changed: false,
            heard_from_pred: None,
            keys_stored: 0,
            stabilize_rounds: 0,
            range: None,
            recently_failed: VecDeque::new(),
            lost_peers: VecDeque::new(),
            merge_probe_at: None,
            acks: Vec::new(),
            ack_at: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This virtual node.
    pub fn me(&self) -> NodeRef {
        self.table.me()
    }

    /// Its routing table, for introspection.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Where it is in its life.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The keys it owns, once it has a predecessor (or is alone).
    pub fn range(&self) -> Option<KeyRange> {
        self.range
    }

    /// Is it part of a ring?
    pub fn is_joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    // ----- commands -------------------------------------------------------

    /// Starts a new ring with this node alone on it (the paper's `create`).
    pub fn create(&mut self, now: Time) {
        self.phase = Phase::Joined;
        let whole = KeyRange {
            start: self.me().id,
            end: self.me().id,
        };
        self.range = Some(whole);
        self.events.push_back(Event::Joined {
            vnode: self.me().id,
            successor: self.me(),
        });
        // Alone on the ring: every key is ours (applications count ranges
        // from these events).
        self.events.push_back(Event::RangeChanged {
            vnode: self.me().id,
            old: None,
            new: whole,
        });
        self.arm_all_timers(now);
    }

    /// Starts as a member of an already converged ring, with the routing
    /// state the ring would have reached: `successors` nearest first, and
    /// `finger(i)` = successor(me + 2^i). For simulators and tests that
    /// build large rings without running every join; from here on the
    /// protocol runs as usual.
    pub fn start_converged(
        &mut self,
        now: Time,
        predecessor: NodeRef,
        successors: &[NodeRef],
        finger: impl Fn(usize) -> NodeRef,
    ) {
        let me = self.me();
        if let Some((first, rest)) = successors.split_first() {
            self.table.set_successors(*first, rest);
        }
        self.table.set_predecessor(Some(predecessor));
        for i in 0..ID_BITS {
            self.table.set_finger(i, finger(i));
        }
        self.phase = Phase::Joined;
        self.range = Some(KeyRange {
            start: if predecessor == me {
                me.id
            } else {
                predecessor.id
            },
            end: me.id,
        });
        self.arm_all_timers(now);
    }

    /// Joins the ring that `seeds` belong to, trying them in turn
    /// (`join_rounds` times over). Emits `Joined` or `JoinFailed`.
    pub fn join(&mut self, now: Time, seeds: Vec<SocketAddr>) {
        if seeds.is_empty() {
            self.events.push_back(Event::JoinFailed {
                vnode: self.me().id,
            });
            return;
        }
        // A round still pending from an earlier join must not start a
        // second attempt beside this one.
        self.deadlines.retain(|(_, d)| *d != Deadline::JoinRound);
        self.phase = Phase::Joining { seeds, attempt: 0 };
        self.try_join(now);
    }

    /// Leaves gracefully: tells successor and predecessor whom to use
    /// instead, and stops answering. Lookups in flight fail with `NotJoined`.
    pub fn leave(&mut self) {
        if self.phase == Phase::Joined {
            let me = self.me();
            let msg = Message::Leave {
                predecessor: self.table.predecessor(),
                successors: self.table.successors().to_vec(),
            };
            let succ = self.table.successor();
            if succ != me {
                self.send(succ, msg.clone());
            }
            if let Some(p) = self.table.predecessor().filter(|p| *p != succ) {
                self.send(p, msg);
            }
        }
        self.phase = Phase::Left;
        let user: Vec<u64> = self.lookups.keys().copied().collect();
        for id in user {
            self.finish_lookup(id, Err(LookupError::NotJoined));
        }
        self.pending.clear();
        self.deadlines.clear();
        self.timers = [None; 3];
    }

    /// Starts `find_successor(key)` as origin; the answer comes as
    /// `Event::LookupDone { lookup: id, .. }`. `id` must be below 2^63.
    /// With `via` (one-hop routing: the key's owner as the membership
    /// table has it), a recursive lookup goes there first instead of to
    /// the closest preceding finger; if `via` is dead it routes on by
    /// fingers.
    pub fn start_lookup(
        &mut self,
        now: Time,
        id: LookupId,
        key: Id,
        mode: LookupMode,
        via: Option<NodeRef>,
    ) {
        debug_assert!(id.0 & INTERNAL_LOOKUP == 0);
        self.begin_lookup_via(now, id.0, key, mode, Purpose::User, via);
    }

    /// Asks `node` for its predecessor and successor list; the answer comes
    /// as `Event::NeighborsQueried { query, .. }`.
    pub fn query_neighbors(&mut self, now: Time, query: QueryId, node: NodeRef) {
        if node == self.me() {
            let result = Some(self.neighbors());
            self.events
                .push_back(Event::NeighborsQueried { query, result });
            return;
        }
        let sent = self.request(now, node.into(), PendingKind::Query { query }, |req| {
            Message::GetNeighbors { req }
        });
        if sent.is_none() {
            self.events.push_back(Event::NeighborsQueried {
                query,
                result: None,
            });
        }
    }

    /// Our own predecessor and successor list.
    pub fn neighbors(&self) -> Neighbors {
        Neighbors {
            node: self.me(),
            predecessor: self.table.predecessor(),
            successors: self.table.successors_or_me(),
            keys_stored: self.keys_stored,
        }
    }

    /// `stabilize` rounds this virtual node has run.
    pub fn stabilize_rounds(&self) -> u64 {
        self.stabilize_rounds
    }

    /// Records the process stores, reported in `Neighbors` answers.
    pub fn set_keys_stored(&mut self, n: u64) {
        self.keys_stored = n;
    }

    /// The driver could not reach `addr` at all (connection refused or
    /// reset): every virtual node there is dropped at once.
    pub fn handle_unreachable(&mut self, now: Time, addr: SocketAddr) {
        self.fail_peers(now, |n| n.addr == addr);
        let stuck: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to.addr == addr)
            .map(|(r, _)| *r)
            .collect();
        for req in stuck {
            self.fail_request(now, req);
        }
    }

    /// The driver lost an established connection to `addr`: probe the peers
    /// we route through there, so that a dead one is noticed quickly.
    pub fn handle_disconnect(&mut self, now: Time, addr: SocketAddr) {
        if self.phase != Phase::Joined {
            return;
        }
        let probes: Vec<NodeRef> = [Some(self.table.successor()), self.table.predecessor()]
            .into_iter()
            .flatten()
            .filter(|n| n.addr == addr && *n != self.me())
            .collect();
        for n in probes {
            self.request(now, n.into(), PendingKind::Probe, |req| Message::Ping {
                req,
            });
        }
    }

    // ----- outputs ----------------------------------------------------------

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Envelope> {
        self.out.pop_front()
    }

    /// Are messages or events waiting to be polled?
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.events.is_empty()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let timers = self.timers.iter().flatten().copied();
        let deadline = self.deadlines.first().map(|(t, _)| *t);
        timers.chain(deadline).chain(self.ack_at).min()
    }

    // ----- inputs -------------------------------------------------------------

    /// Runs every timer and deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.ack_at.is_some_and(|at| at <= now) {
            self.flush_acks();
        }
        while let Some(&(at, what)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match what {
                Deadline::Request(req) => self.request_expired(now, req),
                Deadline::Lookup(id) => self.lookup_expired(now, id),
                Deadline::JoinRound => self.try_join(now),
            }
        }
        for t in TIMERS {
            if self.timers[t as usize].is_some_and(|at| at <= now) {
                self.timers[t as usize] = None;
                self.fire(now, t);
                self.arm(now, t);
            }
        }
    }

    // ----- plumbing -------------------------------------------------------------

    /// Emits events for what changed since `old_succ`/`old_pred` and, if the
    /// successor changed, stabilizes with the new one right away.
    fn after_change(&mut self, now: Time, old_succ: NodeRef, old_pred: Option<NodeRef>) {
        let me = self.me();
        let succ = self.table.successor();
        if succ != old_succ || self.table.predecessor() != old_pred {
            // Our neighbourhood moved: fingers may be stale, refresh at full speed.
            self.finger_backoff = 1;
        }
        if succ != old_succ {
            self.events.push_back(Event::SuccessorChanged {
                vnode: me.id,
                old: old_succ,
                new: succ,
            });
            if self.phase == Phase::Joined && !self.busy(Timer::Stabilize) {
                self.timers[Timer::Stabilize as usize] = Some(now);
            }
        }
        let pred = self.table.predecessor();
        if pred != old_pred {
            self.events.push_back(Event::PredecessorChanged {
                vnode: me.id,
                old: old_pred,
                new: pred,
            });
        }
        if pred == old_pred && succ == old_succ {
            return;
        }
        // No predecessor and no successor: we are alone, so every key is
        // ours (keeping the old range would refuse the keys of the nodes
        // that died, and the sweep would drop their copies). The
        // predecessor is often cleared before the last successor is
        // dropped, so this is checked when either changes.
        let start = match pred {
            Some(p) => Some(p.id),
            None if succ == me => Some(me.id),
            None => None,
        };
        if let Some(start) = start {
            let new = KeyRange { start, end: me.id };
            let old = self.range.replace(new);
            if old != Some(new) {
                self.events.push_back(Event::RangeChanged {
                    vnode: me.id,
                    old,
                    new,
                });
            }
        }
    }

    /// Drops a list's nonsense before it enters our state: bounded length,
    /// no duplicates.
    fn sanitize(&self, mut nodes: Vec<NodeRef>) -> Vec<NodeRef> {
        nodes.truncate(self.config.successors.max(ITERATIVE_WIDTH) * 2);
        let mut seen: Vec<Id> = Vec::with_capacity(nodes.len());
        nodes.retain(|n| {
            let fresh = !seen.contains(&n.id);
            seen.push(n.id);
            fresh
        });
        nodes
    }

    /// Acknowledges `FindSuccessor` `req` from `from` within `ack_delay`.
    fn queue_ack(&mut self, now: Time, from: NodeRef, req: u64) {
        self.acks.push((from, req));
        if self.acks.len() >= MAX_ACKS || self.config.ack_delay.is_zero() {
            self.flush_acks();
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + self.config.ack_delay);
        }
    }

    /// Sends every queued ack, one message per peer.
    fn flush_acks(&mut self) {
        self.ack_at = None;
        let mut acks = std::mem::take(&mut self.acks);
        acks.sort_by_key(|(n, _)| (n.addr, n.id));
        for chunk in acks.chunk_by(|a, b| a.0 == b.0) {
            let reqs = chunk.iter().map(|(_, r)| *r).collect();
            self.send(chunk[0].0, Message::LookupAck { reqs });
        }
    }

    fn send(&mut self, to: impl Into<Target>, msg: Message) {
        self.out.push_back(Envelope {
            from: self.me(),
            to: to.into(),
            msg,
        });
    }

    /// Sends a request and remembers it until answered or timed out.
    /// `None` (nothing sent) when too many requests are in flight.
    fn request(
        &mut self,
        now: Time,
        to: Target,
        kind: PendingKind,
        make: impl FnOnce(u64) -> Message,
    ) -> Option<u64> {
        if self.pending.len() >= self.config.max_pending {
            return None;
        }
        let req = self.next_req;
        self.next_req += 1;
        let deadline = now + self.config.request_timeout;
        let msg = make(req);
        let retries_left = self.config.request_retries;
        self.pending.insert(
            req,
            Pending {
                to,
                deadline,
                kind,
                msg: msg.clone(),
                retries_left,
            },
        );
        self.deadlines.insert((deadline, Deadline::Request(req)));
        self.send(to, msg);
        Some(req)
    }

    fn take_pending(&mut self, req: u64) -> Option<Pending> {
        let p = self.pending.remove(&req)?;
        self.deadlines.remove(&(p.deadline, Deadline::Request(req)));
        Some(p)
    }

    /// Is the periodic task `t` still waiting for its last round? Then it
    /// skips this round rather than pile up requests.
    fn busy(&self, t: Timer) -> bool {
        match t {
            Timer::Stabilize => self
                .pending
                .values()
                .any(|p| matches!(p.kind, PendingKind::Stabilize)),
            Timer::CheckPredecessor => self
                .pending
                .values()
                .any(|p| matches!(p.kind, PendingKind::CheckPredecessor)),
            Timer::FixFingers => self
                .lookups
                .values()
                .any(|l| matches!(l.purpose, Purpose::FixFinger(_))),
        }
    }

    fn arm_all_timers(&mut self, now: Time) {
        for t in TIMERS {
            self.arm(now, t);
        }
    }

    fn arm(&mut self, now: Time, t: Timer) {
        if self.phase != Phase::Joined || self.timers[t as usize].is_some() {
            return;
        }
        let base = match t {
            Timer::Stabilize => self.config.stabilize_interval,
            Timer::FixFingers => self.config.fix_fingers_interval * self.finger_backoff,
            Timer::CheckPredecessor => self.config.check_predecessor_interval,
        };
        let every = self.rng.jitter(base, self.config.jitter);
        self.timers[t as usize] = Some(now + every);
    }
}

#[cfg(test)]
mod tests;
