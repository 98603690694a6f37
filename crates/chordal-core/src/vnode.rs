//! One virtual node running the Chord protocol (Stoica et al., Fig. 5–7):
//! create/join, `stabilize`, `notify`, `fix_fingers`, `check_predecessor`,
//! fault-tolerant lookups and graceful leave.
//!
//! Call order, as for every sans-IO machine here: feed inputs
//! (`handle_message`, `handle_timeout`, commands), then drain outputs
//! (`poll_transmit`, `poll_event`) and re-arm the timer from `poll_timeout`.
//! Applications normally use [`crate::Node`], which hosts several of these.

use crate::config::{Config, LookupMode};
use crate::event::{Event, KeyRange, LookupError, LookupId, LookupResult, Neighbors, QueryId};
use crate::message::{Envelope, LookupFailure, Message, NodeRef, Target};
use crate::rng::Rng;
use crate::routing::RoutingTable;
use crate::{ID_BITS, Id, Time};
use std::collections::{BTreeSet, HashMap, VecDeque};
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
        seeds: Vec<SocketAddr>,
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
}

/// One virtual node: its routing table and everything in flight.
#[derive(Debug)]
pub struct VNode {
    config: Config,
    table: RoutingTable,
    phase: Phase,
    rng: Rng,
    next_req: u64,
    next_internal_lookup: u64,
    pending: HashMap<u64, Pending>,
    lookups: HashMap<u64, Lookup>,
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
    range: Option<KeyRange>,
    recently_failed: VecDeque<(NodeRef, Time)>,
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
            pending: HashMap::new(),
            lookups: HashMap::new(),
            deadlines: BTreeSet::new(),
            timers: [None; 3],
            next_finger: 0,
            finger_backoff: 1,
            fingers_changed: false,
            heard_from_pred: None,
            range: None,
            recently_failed: VecDeque::new(),
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
        self.range = Some(KeyRange {
            start: self.me().id,
            end: self.me().id,
        });
        self.events.push_back(Event::Joined {
            vnode: self.me().id,
            successor: self.me(),
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
    pub fn start_lookup(&mut self, now: Time, id: LookupId, key: Id, mode: LookupMode) {
        debug_assert!(id.0 & INTERNAL_LOOKUP == 0);
        self.begin_lookup(now, id.0, key, mode, Purpose::User);
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
        }
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

    /// Handles one message addressed to this virtual node.
    pub fn handle_message(&mut self, now: Time, from: NodeRef, msg: Message) {
        let joined = self.phase == Phase::Joined;
        if self.table.predecessor() == Some(from) {
            self.heard_from_pred = Some(now);
        }
        match msg {
            Message::Ping { req } if joined => self.send(from, Message::Pong { req }),
            Message::GetNeighbors { req } if joined => {
                let n = self.neighbors();
                self.send(
                    from,
                    Message::Neighbors {
                        req,
                        predecessor: n.predecessor,
                        successors: n.successors,
                    },
                );
            }
            Message::Notify if joined => self.on_notify(now, from),
            Message::SuccessorHint { candidate } if joined => {
                self.on_successor_hint(now, candidate)
            }
            Message::FindSuccessor {
                req,
                origin,
                lookup,
                key,
                hops,
            } if joined => {
                self.route_recursive(now, origin, lookup, key, hops);
                self.queue_ack(now, from, req);
            }
            Message::ClosestPreceding { req, key } if joined => {
                let (done, nodes) = if self.table.successor_owns(&key) {
                    (true, self.table.successors_or_me())
                } else {
                    (
                        false,
                        self.table.closest_preceding_nodes(&key, ITERATIVE_WIDTH),
                    )
                };
                self.send(from, Message::ClosestPrecedingReply { req, done, nodes });
            }
            Message::Leave {
                predecessor,
                successors,
            } if joined => self.on_leave(now, from, predecessor, successors),
            // Answers are taken in any phase: a joining node needs them.
            Message::Pong { req } => {
                self.take_pending(req);
            }
            Message::LookupAck { reqs } => {
                for req in reqs.into_iter().take(MAX_ACKS) {
                    self.take_pending(req);
                }
            }
            Message::Neighbors {
                req,
                predecessor,
                successors,
            } => {
                let successors = self.sanitize(successors);
                match self.take_pending(req).map(|p| p.kind) {
                    Some(PendingKind::Stabilize) => {
                        self.on_stabilize_reply(now, from, predecessor, successors)
                    }
                    Some(PendingKind::Query { query }) => {
                        let result = Some(Neighbors {
                            node: from,
                            predecessor,
                            successors,
                        });
                        self.events
                            .push_back(Event::NeighborsQueried { query, result });
                    }
                    _ => {}
                }
            }
            Message::FoundSuccessor {
                lookup,
                key,
                successors,
                hops,
            } => {
                let successors = self.sanitize(successors);
                if self.lookups.get(&lookup).is_some_and(|l| l.key == key) {
                    self.answer_lookup(now, lookup, successors, hops);
                }
            }
            Message::LookupFailed { lookup, reason } => {
                let err = match reason {
                    LookupFailure::HopLimit => LookupError::HopLimit,
                    LookupFailure::NoRoute => LookupError::NoRoute,
                };
                if self
                    .lookups
                    .get(&lookup)
                    .is_some_and(|l| l.purpose == Purpose::Join)
                {
                    self.next_seed(now);
                } else {
                    self.finish_lookup(lookup, Err(err));
                }
            }
            Message::ClosestPrecedingReply { req, done, nodes } => {
                let nodes = self.sanitize(nodes);
                if let Some(Pending {
                    kind: PendingKind::Step { lookup },
                    ..
                }) = self.take_pending(req)
                {
                    self.on_step_reply(now, lookup, from, done, nodes);
                }
            }
            Message::NotHere { req } => {
                if let Some(p) = self.pending.get(&req) {
                    let to = p.to;
                    self.fail_target(now, to);
                    self.fail_request(now, req);
                }
            }
            // A request while not joined: say so, so the sender routes around us.
            other => {
                if let Some(req) = other.request_id() {
                    self.send(from, Message::NotHere { req });
                }
            }
        }
    }

    // ----- join -----------------------------------------------------------

    fn try_join(&mut self, now: Time) {
        let Phase::Joining { seeds, attempt } = &self.phase else {
            return;
        };
        if *attempt >= seeds.len() * self.config.join_rounds.max(1) {
            self.phase = Phase::Idle;
            self.events.push_back(Event::JoinFailed {
                vnode: self.me().id,
            });
            return;
        }
        let seed = seeds[attempt % seeds.len()];
        let me = self.me();
        let id = self.internal_lookup_id();
        self.lookups.insert(
            id,
            Lookup {
                key: me.id,
                deadline: now + self.config.lookup_timeout,
                purpose: Purpose::Join,
                iterative: None,
            },
        );
        self.deadlines
            .insert((now + self.config.lookup_timeout, Deadline::Lookup(id)));
        let target = Target {
            addr: seed,
            id: None,
        };
        let kind = PendingKind::Forward {
            origin: me,
            lookup: id,
            key: me.id,
            hops: 0,
        };
        self.request(now, target, kind, |req| Message::FindSuccessor {
            req,
            origin: me,
            lookup: id,
            key: me.id,
            hops: 0,
        });
    }

    /// The current join attempt failed: drop it and try the next seed.
    fn next_seed(&mut self, now: Time) {
        let joins: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.purpose == Purpose::Join)
            .map(|(id, _)| *id)
            .collect();
        for id in joins {
            self.remove_lookup(id);
        }
        if let Phase::Joining { attempt, .. } = &mut self.phase {
            *attempt += 1;
            self.try_join(now);
        }
    }

    fn finish_join(&mut self, now: Time, successors: Vec<NodeRef>) {
        let me = self.me();
        let mut rest = successors.into_iter().filter(|n| n.id != me.id);
        let Some(first) = rest.next() else {
            self.next_seed(now);
            return;
        };
        let rest: Vec<NodeRef> = rest.collect();
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        self.table.set_successors(first, &rest);
        self.phase = Phase::Joined;
        self.events.push_back(Event::Joined {
            vnode: me.id,
            successor: first,
        });
        self.after_change(now, old_succ, old_pred);
        self.arm_all_timers(now);
        // Notify the successor and learn its list right away.
        self.timers[Timer::Stabilize as usize] = Some(now);
    }

    // ----- stabilization ---------------------------------------------------

    fn fire(&mut self, now: Time, t: Timer) {
        if self.phase != Phase::Joined || self.busy(t) {
            return;
        }
        match t {
            Timer::Stabilize => self.stabilize(now),
            Timer::FixFingers => self.fix_fingers(now),
            Timer::CheckPredecessor => self.check_predecessor(now, false),
        }
    }

    /// Paper Fig. 6 `stabilize`: ask the successor for its predecessor.
    fn stabilize(&mut self, now: Time) {
        let me = self.me();
        if self.table.successor() == me {
            // Alone, but someone notified us: they are our successor too.
            match self.table.predecessor() {
                Some(p) => {
                    let (old_succ, old_pred) = (me, self.table.predecessor());
                    self.table.set_successors(p, &[]);
                    self.after_change(now, old_succ, old_pred);
                }
                None => return,
            }
        }
        let succ = self.table.successor();
        self.request(now, succ.into(), PendingKind::Stabilize, |req| {
            Message::GetNeighbors { req }
        });
    }

    fn on_stabilize_reply(
        &mut self,
        now: Time,
        from: NodeRef,
        predecessor: Option<NodeRef>,
        successors: Vec<NodeRef>,
    ) {
        let me = self.me();
        if from != self.table.successor() {
            return; // the successor changed meanwhile; the next round asks the new one
        }
        let (old_succ, old_pred) = (from, self.table.predecessor());
        let x =
            predecessor.filter(|x| x.id.in_open(&me.id, &from.id) && !self.failed_recently(x, now));
        match x {
            Some(x) => {
                let mut rest = vec![from];
                rest.extend(successors);
                self.table.set_successors(x, &rest);
            }
            None => {
                self.table.set_successors(from, &successors);
            }
        }
        let succ = self.table.successor();
        if succ != me {
            self.send(succ, Message::Notify);
        }
        self.after_change(now, old_succ, old_pred);
    }

    /// Paper Fig. 6 `notify`: `from` thinks it might be our predecessor.
    fn on_notify(&mut self, now: Time, from: NodeRef) {
        let me = self.me();
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        let accept = match old_pred {
            None => true,
            Some(p) => p == from || from.id.in_open(&p.id, &me.id),
        };
        if !accept {
            // Someone outside (pred, me) notifies us: our predecessor may be
            // dead. Check it now rather than at the next round.
            if !self.busy(Timer::CheckPredecessor) {
                self.check_predecessor(now, true);
            }
            return;
        }
        self.table.set_predecessor(Some(from));
        if old_succ == me {
            self.table.set_successors(from, &[]);
        }
        if let Some(p) = old_pred.filter(|p| *p != from && *p != me) {
            self.send(p, Message::SuccessorHint { candidate: from });
        }
        self.after_change(now, old_succ, old_pred);
    }

    fn on_successor_hint(&mut self, now: Time, candidate: NodeRef) {
        let me = self.me();
        let succ = self.table.successor();
        if candidate.id.in_open(&me.id, &succ.id) && !self.failed_recently(&candidate, now) {
            let old_pred = self.table.predecessor();
            self.table.push_successor(candidate);
            self.after_change(now, succ, old_pred);
        }
    }

    /// Paper Fig. 6 `check_predecessor`: ping it; no answer clears it.
    /// Unless `force`d, a predecessor heard from within the last interval
    /// (it notifies us every stabilize round) is not pinged.
    fn check_predecessor(&mut self, now: Time, force: bool) {
        let recently = self
            .heard_from_pred
            .is_some_and(|t| now.saturating_since(t) < self.config.check_predecessor_interval);
        if recently && !force {
            return;
        }
        if let Some(p) = self.table.predecessor() {
            self.request(now, p.into(), PendingKind::CheckPredecessor, |req| {
                Message::Ping { req }
            });
        }
    }

    /// Paper Fig. 6 `fix_fingers`: refresh the next finger that our
    /// successor does not cover; fingers within `(me, successor]` are set
    /// without a lookup.
    fn fix_fingers(&mut self, now: Time) {
        let succ = self.table.successor();
        for _ in 0..ID_BITS {
            let i = self.next_finger;
            let start = self.table.finger_start(i);
            self.advance_finger(i, i + 1);
            if self.table.successor_owns(&start) {
                self.fingers_changed |= self.table.set_finger(i, succ);
                continue;
            }
            let id = self.internal_lookup_id();
            self.begin_lookup(now, id, start, LookupMode::Recursive, Purpose::FixFinger(i));
            return;
        }
    }

    fn on_finger_found(&mut self, i: usize, owner: NodeRef) {
        let me = self.me().id;
        self.fingers_changed |= self.table.set_finger(i, owner);
        // Later fingers whose start also falls before `owner` share it.
        let mut j = i + 1;
        while j < ID_BITS && self.table.finger_start(j).in_open_closed(&me, &owner.id) {
            self.fingers_changed |= self.table.set_finger(j, owner);
            j += 1;
        }
        self.advance_finger(i, j);
    }

    /// Moves `fix_fingers` on from finger `from` to finger `to` (mod 160).
    /// At the end of a cycle, slows down if nothing changed in it.
    fn advance_finger(&mut self, from: usize, to: usize) {
        self.next_finger = to % ID_BITS;
        if self.next_finger <= from {
            self.finger_backoff = if self.fingers_changed {
                1
            } else {
                (self.finger_backoff * 2).min(self.config.max_finger_backoff.max(1))
            };
            self.fingers_changed = false;
        }
    }

    fn on_leave(
        &mut self,
        now: Time,
        from: NodeRef,
        predecessor: Option<NodeRef>,
        successors: Vec<NodeRef>,
    ) {
        let me = self.me();
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        self.table.remove(|n| *n == from);
        self.remember_failure(from, now);
        if old_pred == Some(from) {
            self.table.set_predecessor(
                self.sanitize(predecessor.into_iter().collect())
                    .first()
                    .copied(),
            );
        }
        if old_succ == from {
            let list: Vec<NodeRef> = self
                .sanitize(successors)
                .into_iter()
                .filter(|n| *n != from && n.id != me.id)
                .collect();
            if let Some((first, rest)) = list.split_first() {
                self.table.set_successors(*first, rest);
            }
        }
        self.events.push_back(Event::PeerFailed {
            vnode: me.id,
            peer: from,
        });
        self.after_change(now, old_succ, old_pred);
    }

    // ----- lookups ----------------------------------------------------------

    fn begin_lookup(&mut self, now: Time, id: u64, key: Id, mode: LookupMode, purpose: Purpose) {
        if self.phase != Phase::Joined {
            self.events.push_back(Event::LookupDone {
                lookup: LookupId(id),
                result: Err(LookupError::NotJoined),
            });
            return;
        }
        if self.lookups.len() >= self.config.max_lookups {
            if purpose == Purpose::User {
                self.events.push_back(Event::LookupDone {
                    lookup: LookupId(id),
                    result: Err(LookupError::Overloaded),
                });
            }
            return;
        }
        let deadline = now + self.config.lookup_timeout;
        let iterative = (mode == LookupMode::Iterative).then(Iterative::default);
        self.lookups.insert(
            id,
            Lookup {
                key,
                deadline,
                purpose,
                iterative,
            },
        );
        self.deadlines.insert((deadline, Deadline::Lookup(id)));
        match mode {
            LookupMode::Iterative => {
                if self.table.successor_owns(&key) {
                    let list = self.table.successors_or_me();
                    self.answer_lookup(now, id, list, 0);
                } else {
                    let cands = self.table.closest_preceding_nodes(&key, ITERATIVE_KEEP);
                    if let Some(it) = self.lookups.get_mut(&id).and_then(|l| l.iterative.as_mut()) {
                        it.candidates = cands;
                    }
                    self.iterative_next(now, id);
                }
            }
            _ => self.route_recursive(now, self.me(), id, key, 0),
        }
    }

    /// Paper Fig. 5 `find_successor`, recursive: answer the origin if our
    /// successor owns `key`, else forward to the closest preceding node.
    fn route_recursive(&mut self, now: Time, origin: NodeRef, lookup: u64, key: Id, hops: u32) {
        let me = self.me();
        if hops > self.config.max_hops {
            self.fail_recursive(origin, lookup, LookupFailure::HopLimit);
            return;
        }
        if self.table.successor_owns(&key) {
            let successors = self.table.successors_or_me();
            if origin == me {
                self.answer_lookup(now, lookup, successors, hops);
            } else {
                self.send(
                    origin,
                    Message::FoundSuccessor {
                        lookup,
                        key,
                        successors,
                        hops,
                    },
                );
            }
            return;
        }
        let Some(next) = self.table.closest_preceding_node(&key) else {
            self.fail_recursive(origin, lookup, LookupFailure::NoRoute);
            return;
        };
        let kind = PendingKind::Forward {
            origin,
            lookup,
            key,
            hops,
        };
        let sent = self.request(now, next.into(), kind, |req| Message::FindSuccessor {
            req,
            origin,
            lookup,
            key,
            hops: hops + 1,
        });
        if sent.is_none() {
            self.fail_recursive(origin, lookup, LookupFailure::NoRoute);
        }
    }

    fn fail_recursive(&mut self, origin: NodeRef, lookup: u64, reason: LookupFailure) {
        if origin == self.me() {
            let err = match reason {
                LookupFailure::HopLimit => LookupError::HopLimit,
                LookupFailure::NoRoute => LookupError::NoRoute,
            };
            self.finish_lookup(lookup, Err(err));
        } else {
            self.send(origin, Message::LookupFailed { lookup, reason });
        }
    }

    /// Asks the best remaining candidate of iterative lookup `id`.
    fn iterative_next(&mut self, now: Time, id: u64) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let key = l.key;
        let Some(it) = l.iterative.as_mut() else {
            return;
        };
        let next = loop {
            if it.candidates.is_empty() {
                break None;
            }
            let c = it.candidates.remove(0);
            if !it.asked.contains(&c.id) {
                break Some(c);
            }
        };
        let Some(next) = next else {
            self.finish_lookup(id, Err(LookupError::NoRoute));
            return;
        };
        it.asked.push(next.id);
        let sent = self.request(now, next.into(), PendingKind::Step { lookup: id }, |req| {
            Message::ClosestPreceding { req, key }
        });
        if sent.is_none() {
            self.finish_lookup(id, Err(LookupError::Overloaded));
        }
    }

    fn on_step_reply(
        &mut self,
        now: Time,
        id: u64,
        from: NodeRef,
        done: bool,
        nodes: Vec<NodeRef>,
    ) {
        let me = self.me().id;
        let recently_failed: Vec<NodeRef> = self
            .recently_failed
            .iter()
            .filter(|(n, _)| self.failed_recently(n, now))
            .map(|(n, _)| *n)
            .collect();
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let key = l.key;
        let Some(it) = l.iterative.as_mut() else {
            return;
        };
        it.hops += 1;
        if done {
            let hops = it.hops;
            self.answer_lookup(now, id, nodes, hops);
            return;
        }
        for n in nodes {
            // Only nodes strictly closer to the key than the one that answered.
            let closer = n.id.in_open(&from.id, &key) && n.id.in_open(&me, &key);
            if closer
                && !it.asked.contains(&n.id)
                && !recently_failed.contains(&n)
                && !it.candidates.iter().any(|c| c.id == n.id)
            {
                it.candidates.push(n);
            }
        }
        it.candidates
            .sort_by_key(|c| std::cmp::Reverse(me.distance(&c.id)));
        it.candidates.truncate(ITERATIVE_KEEP);
        self.iterative_next(now, id);
    }

    /// A lookup we started has its answer: `successors[0]` owns the key.
    fn answer_lookup(&mut self, now: Time, id: u64, successors: Vec<NodeRef>, hops: u32) {
        let Some(l) = self.lookups.get(&id) else {
            return;
        };
        let (key, purpose) = (l.key, l.purpose);
        match purpose {
            Purpose::Join => {
                self.remove_lookup(id);
                self.finish_join(now, successors);
            }
            _ => {
                let result = match successors.first() {
                    Some(owner) => Ok(LookupResult {
                        key,
                        owner: *owner,
                        successors: successors[1..].to_vec(),
                        hops,
                    }),
                    None => Err(LookupError::NoRoute),
                };
                self.finish_lookup(id, result);
            }
        }
    }

    /// Ends lookup `id` with `result`: an event for users, a finger update
    /// for `fix_fingers`.
    fn finish_lookup(&mut self, id: u64, result: Result<LookupResult, LookupError>) {
        let Some(l) = self.remove_lookup(id) else {
            return;
        };
        match l.purpose {
            Purpose::User => self.events.push_back(Event::LookupDone {
                lookup: LookupId(id),
                result,
            }),
            Purpose::FixFinger(i) => {
                if let Ok(r) = result {
                    self.on_finger_found(i, r.owner);
                }
            }
            // Join lookups end in `finish_join` or `next_seed`, never here.
            Purpose::Join => {}
        }
    }

    fn lookup_expired(&mut self, now: Time, id: u64) {
        match self.lookups.get(&id).map(|l| l.purpose) {
            Some(Purpose::Join) => self.next_seed(now),
            Some(_) => self.finish_lookup(id, Err(LookupError::Timeout)),
            None => {}
        }
    }

    fn remove_lookup(&mut self, id: u64) -> Option<Lookup> {
        let l = self.lookups.remove(&id)?;
        self.deadlines.remove(&(l.deadline, Deadline::Lookup(id)));
        Some(l)
    }

    fn internal_lookup_id(&mut self) -> u64 {
        let id = INTERNAL_LOOKUP | self.next_internal_lookup;
        self.next_internal_lookup += 1;
        id
    }

    // ----- failures -----------------------------------------------------------

    /// No answer to `req` in time: retransmit it, or give up on its target.
    fn request_expired(&mut self, now: Time, req: u64) {
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        if p.retries_left > 0 {
            p.retries_left -= 1;
            p.deadline = now + self.config.request_timeout;
            let (to, msg, deadline) = (p.to, p.msg.clone(), p.deadline);
            self.deadlines.insert((deadline, Deadline::Request(req)));
            self.send(to, msg);
            return;
        }
        let to = p.to;
        self.fail_target(now, to);
        self.fail_request(now, req);
    }

    /// The request `req` will not be answered: do what its kind needs.
    fn fail_request(&mut self, now: Time, req: u64) {
        let Some(p) = self.take_pending(req) else {
            return;
        };
        match p.kind {
            PendingKind::Stabilize => self.timers[Timer::Stabilize as usize] = Some(now),
            PendingKind::CheckPredecessor | PendingKind::Probe => {}
            PendingKind::Forward {
                origin,
                lookup,
                key,
                hops,
            } => {
                let joining = origin == self.me()
                    && self
                        .lookups
                        .get(&lookup)
                        .is_some_and(|l| l.purpose == Purpose::Join);
                if joining {
                    self.next_seed(now);
                } else {
                    // Route around the dead hop (lecture: lookup with fault tolerance).
                    self.route_recursive(now, origin, lookup, key, hops);
                }
            }
            PendingKind::Step { lookup } => self.iterative_next(now, lookup),
            PendingKind::Query { query } => self.events.push_back(Event::NeighborsQueried {
                query,
                result: None,
            }),
        }
    }

    /// A request to `to` went unanswered: drop the peer(s) it names.
    fn fail_target(&mut self, now: Time, to: Target) {
        // A seed (no id) that does not answer: nothing in our table to drop.
        if let Some(id) = to.id {
            self.fail_peers(now, |n| n.id == id && n.addr == to.addr);
        }
    }

    /// Drops every peer `dead` matches from the routing table at once and
    /// fails the requests still waiting on them.
    fn fail_peers(&mut self, now: Time, dead: impl Fn(&NodeRef) -> bool) {
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        let removed = self.table.remove(&dead);
        for peer in &removed {
            self.remember_failure(*peer, now);
            self.events.push_back(Event::PeerFailed {
                vnode: self.me().id,
                peer: *peer,
            });
        }
        self.after_change(now, old_succ, old_pred);
        let stuck: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to.id.is_some_and(|id| dead(&NodeRef::new(id, p.to.addr))))
            .map(|(r, _)| *r)
            .collect();
        for req in stuck {
            self.fail_request(now, req);
        }
    }

    fn remember_failure(&mut self, peer: NodeRef, now: Time) {
        if self.recently_failed.len() == RECENT_FAILURES {
            self.recently_failed.pop_front();
        }
        self.recently_failed.push_back((peer, now));
        // Forget failures older than a few timeouts: the node may be back.
        let horizon = self.config.request_timeout * 4;
        while let Some((_, at)) = self.recently_failed.front() {
            if now.saturating_since(*at) > horizon {
                self.recently_failed.pop_front();
            } else {
                break;
            }
        }
    }

    /// Did `n` fail within the last few request timeouts? Such a node is
    /// not re-adopted on hearsay (another node's stale pointer).
    fn failed_recently(&self, n: &NodeRef, now: Time) -> bool {
        let horizon = self.config.request_timeout * 4;
        self.recently_failed
            .iter()
            .any(|(f, at)| f == n && now.saturating_since(*at) <= horizon)
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
            if let Some(p) = pred {
                let new = KeyRange {
                    start: p.id,
                    end: me.id,
                };
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
