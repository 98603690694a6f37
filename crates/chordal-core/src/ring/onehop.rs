//! One-hop routing's upkeep: the membership table ([`Members`]) kept
//! current by D1HT's EDRA (Monnerat & Amorim, "D1HT: a distributed one
//! hop hash table", IPDPS 2006), with a digest-checked copy from the
//! successor as the safety net. docs/design.md §3 says why this scheme.
//!
//! - **Detection** (EDRA rule 5): a vnode's successor notices its joins
//!   and departures, as Chord's `notify` and `check_predecessor` change
//!   its predecessor ([`OneHop::predecessor_changed`]).
//! - **Dissemination** (rules 1–4): every `membership_interval` (Θ), a
//!   process with news sends it to the 1st, 2nd, 4th, … process after it
//!   on the process ring; each of those covers the stretch up to the next
//!   one's ring position and splits it the same way. An event thus
//!   travels a binomial tree rooted at its detector and reaches each
//!   process once, within ⌈log2 P⌉·Θ, with no message sent when nothing
//!   happened. Stretches are bounded by positions, not EDRA's TTLs, so
//!   tables that differ leave no process out; messages are acknowledged,
//!   and one to a silent process goes to the next of its stretch.
//! - **Learning**: every live answer (a lookup's result, an owner's reply)
//!   adds its sender, every failure seen removes it, so a table that missed
//!   an event heals where it is used.
//! - **Copying**: a joining process copies its successor's table in pages;
//!   every `membership_refresh` it compares digests with its successor and
//!   copies again if they differ. A copy adds what we lack (unless we saw
//!   it depart lately) and never removes: the entries only we have are
//!   probed, and those that do not answer go. (Replacing our table by the
//!   successor's would spread a stale one round the ring.)
//! - **Refutation**: a process told that one of its live vnodes left
//!   announces it again.
//! - **Verification** (`verify`, on in a TLS ring, where every message's
//!   sender is certified): a member speaks only for itself. Hearsay — an
//!   event about another node, an entry of a copied page, a node named
//!   by a lookup — changes nothing until the node named has been asked:
//!   a "joined" (or "live") enters the table, and is passed on, only once
//!   that very node answered our ping; a "left" removes it, and is passed
//!   on, only once our ping went unanswered or its process said it holds
//!   no such vnode. A false claim stops at the first process it reaches.
//!   Claims being checked are bounded in all (`MAX_CHECKS`) and per
//!   sender (`MAX_CHECKS_PER_SENDER`); more are dropped and counted, so a
//!   member that floods invented entries and leaves does no lasting harm.
//!   A claim found false keeps using its sender's share until the next
//!   `membership_refresh`, so a liar gets that many pings per refresh
//!   period however slowly it floods, not that many per round trip.
//!
//! Every queue here is bounded: events waiting (`MAX_PENDING`), events per
//! message (`MAX_EVENTS_PER_MESSAGE`), a copy's entries (the table's own
//! bound).

use super::members::{Members, process_position, slice_of};
use crate::message::{MemberEvent, Message, NodeRef, Target};
use crate::{Id, Time};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// Events waiting for the next tick; more are dropped (and counted): the
/// tables they miss heal by learning and copying.
const MAX_PENDING: usize = 16_384;
/// Events in one `MemberEvents` message (the wire refuses more).
pub const MAX_EVENTS_PER_MESSAGE: usize = 2048;
/// Entries in one `Members` page (the wire refuses more).
pub const PAGE: usize = 2048;
/// A copy whose next page does not come within this long is abandoned.
const PULL_TIMEOUT: Duration = Duration::from_secs(5);
/// `MemberEvents` messages awaiting their ack; more are sent unwatched.
const MAX_UNACKED: usize = 1024;
/// Sends of one `MemberEvents` (to the target, then the processes after
/// it) before it is given up.
const MAX_TRIES: u32 = 3;
/// Entries a copy probes at most (the ones the successor lacks).
const MAX_PROBES: usize = 64;
/// Claims being checked at once, in all (verification mode).
const MAX_CHECKS: usize = 8192;
/// Claims being checked at once that came from one process, counting
/// those found false since the last forgiveness (every `refresh`); more
/// from it are dropped.
const MAX_CHECKS_PER_SENDER: usize = 1024;
/// How many recent departures are remembered, so that hearsay (a stale
/// successor list, a copy from a table that missed them) does not bring
/// them back.
const MAX_DEPARTED: usize = 4096;
/// Probe request numbers carry this bit, apart from the vnodes' own.
pub(crate) const PROBE_REQ: u64 = 1 << 62;
/// Departures announced at once for the entries a new predecessor skips
/// over (consecutive failures: only the last one's successor notices).
const MAX_SKIPPED: usize = 64;

/// What one-hop routing did, for metrics and the simulator's bandwidth
/// figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OneHopStats {
    /// Vnodes in the membership table.
    pub entries: u64,
    /// Processes in the membership table.
    pub processes: u64,
    /// Estimated memory of the table, in bytes.
    pub bytes: u64,
    /// The table's bound, in entries.
    pub capacity: u64,
    /// Entries refused because the table was full.
    pub refused: u64,
    /// Events this process detected (its vnodes' predecessors).
    pub events_detected: u64,
    /// Events received from other processes.
    pub events_received: u64,
    /// Events sent (one per event per message).
    pub events_sent: u64,
    /// `MemberEvents` messages sent.
    pub messages_sent: u64,
    /// Events dropped because too many were waiting.
    pub events_dropped: u64,
    /// Table copies finished (that found the tables differing).
    pub copies: u64,
    /// Table entries received in `Members` pages.
    pub entries_copied: u64,
    /// Claims about other nodes checked by asking them (verification).
    pub claims_checked: u64,
    /// Claims the node named proved false (a "joined" it did not answer,
    /// a "left" it answered).
    pub claims_false: u64,
    /// Claims dropped unchecked: too many from one sender, or in all.
    pub claims_dropped: u64,
}

/// A table copy in progress.
#[derive(Debug)]
struct Pull {
    req: u64,
    from: NodeRef,
    /// The entries received so far are all below this id (pages come in
    /// id order); `None` before the first page.
    last: Option<Id>,
    /// Our entries the copy has not had: candidates for probing.
    only_ours: Vec<NodeRef>,
    deadline: Time,
}

/// Why a node is being pinged: what its answer decides.
#[derive(Clone, Debug)]
enum Claim {
    /// An entry of ours the successor's table lacks: kept if it answers.
    Kept,
    /// Hearsay that the node is live (joined, copied, named): into the
    /// table only if it answers itself; `forward` is the event to pass on
    /// then. `copied` from our successor's table: if it does not answer,
    /// the successor's table missed its departure, and so may others' —
    /// announced as if we had detected it (each receiver checks it too),
    /// as a table that took the entry in would have once it noticed.
    Live {
        forward: Option<(Id, MemberEvent)>,
        copied: bool,
    },
    /// Hearsay that the node left: out of the table, and passed on, only
    /// if it does not answer.
    Left { until: Id, ev: MemberEvent },
}

/// A ping waiting for its answer, and the claims it settles, each with
/// who made it (our own address for our own doubts).
#[derive(Debug)]
struct Probe {
    node: NodeRef,
    deadline: Time,
    claims: Vec<(Claim, SocketAddr)>,
}

/// Claims one ping settles at most; more about the same node while it is
/// being asked are dropped.
const MAX_CLAIMS_PER_PROBE: usize = 8;

/// A `MemberEvents` sent and not yet acknowledged.
#[derive(Debug)]
struct Unacked {
    to: SocketAddr,
    until: Id,
    events: Vec<MemberEvent>,
    deadline: Time,
    tries: u32,
}

/// The membership table of one process and its dissemination.
#[derive(Debug)]
pub(crate) struct OneHop {
    enabled: bool,
    /// Check hearsay with the node it names before acting on it.
    verify: bool,
    me: SocketAddr,
    table: Members,
    interval: Duration,
    refresh: Duration,
    ack_timeout: Duration,
    unacked: crate::fasthash::FastMap<u64, Unacked>,
    /// Events to pass on at the next tick, with the end of the stretch
    /// we cover for them (our own position for our own events: the whole
    /// ring).
    pending: Vec<(Id, MemberEvent)>,
    tick_at: Option<Time>,
    refresh_at: Option<Time>,
    pull: Option<Pull>,
    /// Pings waiting for an answer: to entries the successor's table
    /// lacks, and (verifying) to nodes hearsay names.
    probes: crate::fasthash::FastMap<u64, Probe>,
    /// The nodes being pinged, so that one is asked once at a time.
    probing: crate::fasthash::FastMap<NodeRef, u64>,
    /// Claims being checked, and claims found false since `forgive_at`
    /// last passed, by sender.
    checks_by: crate::fasthash::FastMap<SocketAddr, usize>,
    /// When the false claims' charges in `checks_by` are dropped (set
    /// `refresh` after the first one).
    forgive_at: Option<Time>,
    /// Recent departures, and when each was seen.
    departed: std::collections::BTreeMap<NodeRef, Time>,
    next_req: u64,
    out: VecDeque<(Target, Message)>,
    stats: OneHopStats,
}

impl OneHop {
    /// The upkeep of process `me` (see `Config`'s `max_members`,
    /// `membership_interval`, `membership_refresh`; a message not
    /// acknowledged within `ack_timeout` goes to the next process). With
    /// `enabled` false (Chord routing) it keeps no table and sends nothing.
    /// With `verify`, hearsay is checked with the node it names first.
    pub fn new(
        enabled: bool,
        verify: bool,
        me: SocketAddr,
        max: usize,
        (interval, refresh, ack_timeout): (Duration, Duration, Duration),
    ) -> OneHop {
        OneHop {
            enabled,
            verify,
            me,
            table: Members::new(max),
            interval,
            refresh,
            ack_timeout,
            unacked: Default::default(),
            pending: Vec::new(),
            tick_at: None,
            refresh_at: None,
            pull: None,
            probes: Default::default(),
            probing: Default::default(),
            checks_by: Default::default(),
            forgive_at: None,
            departed: Default::default(),
            next_req: 1,
            out: VecDeque::new(),
            stats: OneHopStats::default(),
        }
    }

    /// Is one-hop routing on?
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Every entry of the table, in id order.
    pub fn entries(&self) -> impl Iterator<Item = NodeRef> + '_ {
        self.table.iter()
    }

    /// What the table says owns `key`, when one-hop routing is on.
    pub fn owner(&self, key: &Id) -> Option<NodeRef> {
        self.enabled.then(|| self.table.successor(key)).flatten()
    }

    /// Counters, with the table's size as of now.
    pub fn stats(&self) -> OneHopStats {
        OneHopStats {
            entries: self.table.len() as u64,
            processes: self.table.process_count() as u64,
            bytes: self.table.bytes() as u64,
            capacity: self.table.capacity() as u64,
            refused: self.table.refused(),
            ..self.stats
        }
    }

    /// `node` answered us itself (`direct`), or someone named it live:
    /// into the table, not disseminated. Hearsay about a node we saw
    /// depart lately is ignored.
    /// Verifying, hearsay is checked with `node` first.
    pub fn learn(&mut self, now: Time, node: NodeRef, direct: bool) {
        if !self.enabled || (!direct && self.departed_lately(now, &node)) {
            return;
        }
        if self.verify && !direct {
            if !self.table.contains(&node) {
                let me = self.me;
                let claim = Claim::Live {
                    forward: None,
                    copied: false,
                };
                self.check(now, node, claim, me);
            }
            return;
        }
        self.alive(node);
    }

    /// `node` failed to answer at `now`: out of the table (not
    /// disseminated; its successor detects and announces real failures).
    pub fn forget(&mut self, now: Time, node: &NodeRef) {
        if self.enabled {
            self.gone(now, *node);
        }
    }

    /// The process at `addr` refused a connection: all its vnodes go.
    pub fn forget_process(&mut self, now: Time, addr: &SocketAddr) {
        if self.enabled && *addr != self.me {
            let vnodes: Vec<NodeRef> = self.table.iter().filter(|n| n.addr == *addr).collect();
            for n in vnodes {
                self.gone(now, n);
            }
            // Pings there will not be answered.
            let silent: Vec<u64> = self
                .probes
                .iter()
                .filter(|(_, p)| p.node.addr == *addr)
                .map(|(req, _)| *req)
                .collect();
            for req in silent {
                self.resolve(now, req, false);
            }
            // What we sent there goes on to the next process at once.
            let stuck: Vec<u64> = self
                .unacked
                .iter()
                .filter(|(_, u)| u.to == *addr)
                .map(|(req, _)| *req)
                .collect();
            for req in stuck {
                self.resend(now, req);
            }
        }
    }

    /// Our vnode `vnode`'s predecessor changed from `old` to `new` (EDRA
    /// rule 5): a predecessor further along than the old one joined; an
    /// old one now behind the new one (or none at all) left or failed.
    pub fn predecessor_changed(
        &mut self,
        now: Time,
        vnode: NodeRef,
        old: Option<NodeRef>,
        new: Option<NodeRef>,
    ) {
        if !self.enabled {
            return;
        }
        let me = self.me;
        // The old predecessor left or failed if none follows it, or if the
        // new one is behind it. (The vnode may have dropped it from the
        // table already, as a failed peer: it is announced all the same.)
        let old_gone =
            old.filter(|o| o.addr != me && new.is_none_or(|n| o.id.in_open(&n.id, &vnode.id)));
        if let Some(o) = old_gone {
            self.gone(now, o);
            self.detected(now, o, false);
        }
        if let Some(n) = new {
            // Whatever else the table has between the new predecessor and
            // us is gone too: a run of failed nodes is noticed only by the
            // successor of the last one, which skips over them all.
            let skipped = self.table.between(&n.id, &vnode.id, MAX_SKIPPED);
            for s in skipped.into_iter().filter(|s| s.addr != me) {
                self.gone(now, s);
                self.detected(now, s, false);
            }
            let news = self.alive(n);
            let ahead = old.is_some_and(|o| n.id.in_open(&o.id, &vnode.id));
            if news || ahead {
                self.detected(now, n, true);
            }
        }
    }

    /// Our vnode `vnode` joined (its successor `successor`): both into the
    /// table, and a first copy of the successor's table if none was made.
    pub fn joined(&mut self, now: Time, vnode: NodeRef, successor: NodeRef) {
        if !self.enabled {
            return;
        }
        self.alive(vnode);
        self.alive(successor);
        if successor.addr != self.me && self.refresh_at.is_none() {
            self.start_pull(now, successor);
        }
    }

    /// The process started as a member of a converged ring (no `Joined`
    /// comes): `members` is the whole ring, the refresh timer starts.
    pub fn start_converged(&mut self, now: Time, members: impl IntoIterator<Item = NodeRef>) {
        if !self.enabled {
            return;
        }
        for n in members {
            self.alive(n);
        }
        self.refresh_at.get_or_insert(now + self.refresh);
    }

    /// Our vnodes left the ring: the table is of no use any more.
    pub fn left(&mut self) {
        self.table.clear();
        self.pending.clear();
        self.unacked.clear();
        self.tick_at = None;
        self.refresh_at = None;
        self.pull = None;
        self.probes.clear();
        self.probing.clear();
        self.checks_by.clear();
        self.forgive_at = None;
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let unacked = self.unacked.values().map(|u| u.deadline).min();
        let probes = self.probes.values().map(|p| p.deadline).min();
        [
            self.tick_at,
            self.refresh_at,
            self.forgive_at,
            self.pull.as_ref().map(|p| p.deadline),
            unacked,
            probes,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs what is due at `now`: the dissemination tick, a refresh (a
    /// digest comparison with `successor`, our primary vnode's successor),
    /// a copy that stalled.
    pub fn handle_timeout(&mut self, now: Time, successor: Option<NodeRef>) {
        let late: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.deadline <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in late {
            self.resend(now, req);
        }
        if self.tick_at.is_some_and(|t| t <= now) {
            self.tick_at = None;
            self.tick(now);
        }
        if self.pull.as_ref().is_some_and(|p| p.deadline <= now) {
            self.pull = None;
        }
        let silent: Vec<u64> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in silent {
            self.resolve(now, req, false);
        }
        if self.forgive_at.is_some_and(|t| t <= now) {
            self.forgive();
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = Some(now + self.refresh);
            if let Some(s) = successor.filter(|s| s.addr != self.me) {
                self.start_pull(now, s);
            }
        }
    }

    /// A message of ours arrived: `MemberEvents`, `GetMembers` or
    /// `Members` (others are ignored). `live_local(node)` says whether
    /// `node` is one of our vnodes and still joined (for refutation).
    pub fn handle_message(
        &mut self,
        now: Time,
        from: NodeRef,
        msg: Message,
        live_local: impl Fn(&NodeRef) -> bool,
    ) {
        match msg {
            Message::MemberEvents { req, until, events } => {
                self.out
                    .push_back((from.into(), Message::MemberEventsAck { req }));
                if self.enabled {
                    for ev in events.into_iter().take(MAX_EVENTS_PER_MESSAGE) {
                        self.stats.events_received += 1;
                        self.receive(now, from.addr, until, ev, &live_local);
                    }
                }
            }
            Message::MemberEventsAck { req } => {
                self.unacked.remove(&req);
            }
            Message::GetMembers {
                req,
                after,
                digest,
                slices,
            } => {
                let msg = if after.is_none() && digest == Some(self.table.digest()) {
                    Message::Members {
                        req,
                        nodes: Vec::new(),
                        more: false,
                        same: true,
                        slices: u64::MAX,
                    }
                } else {
                    // Only the slices of the id space where the tables
                    // differ: under churn a few, not the whole table.
                    let mask = self.table.differing_slices(&slices);
                    let (nodes, more) = self.table.page_in(after, PAGE, mask);
                    Message::Members {
                        req,
                        nodes,
                        more,
                        same: false,
                        slices: mask,
                    }
                };
                self.out.push_back((from.into(), msg));
            }
            Message::Members {
                req,
                nodes,
                more,
                same,
                slices,
            } => {
                let page = MembersPage {
                    nodes,
                    more,
                    same,
                    slices,
                };
                self.on_page(now, from, req, page)
            }
            _ => {}
        }
    }

    /// Is `req` one of our probes? (Their answers, `Pong` or `NotHere`,
    /// come to the ring, which hands them here.)
    pub fn is_probe(&self, req: u64) -> bool {
        req & PROBE_REQ != 0
    }

    /// The answer to probe `req`, from `from`: `alive` (a `Pong`, which
    /// only the node pinged may give) or `NotHere` (which its process
    /// gives when it holds no such vnode). An answer from anyone else is
    /// ignored: the probe waits on for the real one, or its deadline.
    pub fn probe_answered(&mut self, now: Time, req: u64, from: NodeRef, alive: bool) {
        let Some(p) = self.probes.get(&req) else {
            return;
        };
        let genuine = if alive {
            from == p.node
        } else {
            from.addr == p.node.addr
        };
        if genuine {
            self.resolve(now, req, alive);
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(Target, Message)> {
        self.out.pop_front()
    }

    /// Is a message waiting?
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    // ----- inside -------------------------------------------------------

    fn receive(
        &mut self,
        now: Time,
        sender: SocketAddr,
        until: Id,
        ev: MemberEvent,
        live_local: &impl Fn(&NodeRef) -> bool,
    ) {
        if self.verify {
            self.receive_checked(now, sender, until, ev, live_local);
            return;
        }
        if ev.node.addr == self.me {
            // About us: a departure we did not make is refuted, and not
            // passed on (our own announcement reaches everyone).
            if !ev.joined && live_local(&ev.node) {
                self.detected(now, ev.node, true);
                return;
            }
        } else if ev.joined {
            self.alive(ev.node);
        } else {
            self.gone(now, ev.node);
        }
        self.queue(now, until, ev);
    }

    /// `receive` in verification mode: a claim about us is checked
    /// against our vnodes (a false one is refuted or dropped), a claim
    /// about another node with that node.
    fn receive_checked(
        &mut self,
        now: Time,
        sender: SocketAddr,
        until: Id,
        ev: MemberEvent,
        live_local: &impl Fn(&NodeRef) -> bool,
    ) {
        if ev.node.addr == self.me {
            let live = live_local(&ev.node);
            if !ev.joined && live {
                self.detected(now, ev.node, true);
            } else if ev.joined == live {
                self.queue(now, until, ev);
            } else {
                self.stats.claims_false += 1;
            }
            return;
        }
        if ev.joined && self.table.contains(&ev.node) {
            // Checked before: pass it on.
            self.queue(now, until, ev);
            return;
        }
        let claim = if ev.joined {
            Claim::Live {
                forward: Some((until, ev)),
                copied: false,
            }
        } else {
            Claim::Left { until, ev }
        };
        self.check(now, ev.node, claim, sender);
    }

    /// Asks `node` whether `claim` (made by `sender`) holds: a ping, whose
    /// answer or silence [`OneHop::resolve`]s it (one ping settles every
    /// claim about `node` made while it is out). Dropped (and counted)
    /// past the bounds.
    fn check(&mut self, now: Time, node: NodeRef, claim: Claim, sender: SocketAddr) {
        let by_sender = self.checks_by.get(&sender).copied().unwrap_or(0);
        let out = self.probing.get(&node).and_then(|req| self.probes.get(req));
        let full = match out {
            Some(p) => p.claims.len() >= MAX_CLAIMS_PER_PROBE,
            None => self.probes.len() >= MAX_CHECKS,
        };
        if full || by_sender >= MAX_CHECKS_PER_SENDER {
            self.stats.claims_dropped += 1;
            return;
        }
        self.stats.claims_checked += 1;
        *self.checks_by.entry(sender).or_insert(0) += 1;
        match self
            .probing
            .get(&node)
            .and_then(|req| self.probes.get_mut(req))
        {
            Some(p) => p.claims.push((claim, sender)),
            None => self.ping(now, node, claim, sender),
        }
    }

    /// Sends the ping of a probe.
    fn ping(&mut self, now: Time, node: NodeRef, claim: Claim, sender: SocketAddr) {
        let req = PROBE_REQ | self.next_req;
        self.next_req += 1;
        let deadline = now + self.ack_timeout * 2;
        self.probes.insert(
            req,
            Probe {
                node,
                deadline,
                claims: vec![(claim, sender)],
            },
        );
        self.probing.insert(node, req);
        self.out.push_back((node.into(), Message::Ping { req }));
    }

    /// Probe `req` ended: its node answered itself (`alive`) or did not.
    /// Carries out what each of its claims said, if the answer bears it
    /// out.
    fn resolve(&mut self, now: Time, req: u64, alive: bool) {
        let Some(p) = self.probes.remove(&req) else {
            return;
        };
        self.probing.remove(&p.node);
        for (claim, sender) in p.claims {
            let held = match &claim {
                Claim::Kept => true,
                Claim::Live { .. } => alive,
                Claim::Left { .. } => !alive,
            };
            if held {
                self.release_check(sender);
            } else {
                // The charge stays until forgiven: a liar's share is
                // per refresh period, not per ping round trip.
                self.forgive_at.get_or_insert(now + self.refresh);
            }
            match (claim, alive) {
                (Claim::Kept, true) => {
                    self.alive(p.node);
                }
                (Claim::Kept, false) => self.gone(now, p.node),
                (Claim::Live { forward, .. }, true) => {
                    self.alive(p.node);
                    if let Some((until, ev)) = forward {
                        self.queue(now, until, ev);
                    }
                }
                (Claim::Left { until, ev }, false) => {
                    self.gone(now, p.node);
                    self.queue(now, until, ev);
                }
                (Claim::Live { copied, .. }, false) => {
                    self.stats.claims_false += 1;
                    if copied && !self.departed_lately(now, &p.node) {
                        self.gone(now, p.node);
                        self.detected(now, p.node, false);
                    }
                }
                (Claim::Left { .. }, true) => {
                    self.stats.claims_false += 1;
                    self.alive(p.node);
                }
            }
        }
    }

    /// One of `sender`'s checks ended with its claim upheld: its share
    /// is free again.
    fn release_check(&mut self, sender: SocketAddr) {
        if let Some(n) = self.checks_by.get_mut(&sender) {
            *n -= 1;
            if *n == 0 {
                self.checks_by.remove(&sender);
            }
        }
    }

    /// Drops the charges of false claims: each sender's share counts
    /// only its claims still being checked.
    fn forgive(&mut self) {
        self.forgive_at = None;
        self.checks_by.clear();
        for p in self.probes.values() {
            for (_, sender) in &p.claims {
                *self.checks_by.entry(*sender).or_insert(0) += 1;
            }
        }
    }

    fn detected(&mut self, now: Time, node: NodeRef, joined: bool) {
        self.stats.events_detected += 1;
        let ev = MemberEvent {
            node,
            joined,
            by: self.me,
        };
        let whole_ring = process_position(&self.me);
        self.queue(now, whole_ring, ev);
    }

    fn queue(&mut self, now: Time, until: Id, ev: MemberEvent) {
        if self.pending.len() >= MAX_PENDING {
            self.stats.events_dropped += 1;
            return;
        }
        self.pending.push((until, ev));
        if self.tick_at.is_none() {
            self.tick_at = Some(now + self.interval);
        }
    }

    /// EDRA rules 1–4, with stretches: the events of each stretch we
    /// cover go to the 1st, 2nd, 4th, … process of it, each covering up
    /// to the next. A process in a stable ring thus gets each event once,
    /// within ⌈log2 P⌉ ticks; and since every receiver splits its own
    /// stretch by its own table, tables that differ (the usual case while
    /// events spread) leave no process out.
    fn tick(&mut self, now: Time) {
        let pending = std::mem::take(&mut self.pending);
        let mut by_stretch: std::collections::BTreeMap<Id, Vec<MemberEvent>> = Default::default();
        for (until, ev) in pending {
            by_stretch.entry(until).or_default().push(ev);
        }
        for (until, events) in by_stretch {
            for (to, end) in self.table.dissemination_targets(&self.me, &until) {
                for chunk in events.chunks(MAX_EVENTS_PER_MESSAGE) {
                    self.send_events(now, to, end, chunk.to_vec(), 1);
                }
            }
        }
    }

    /// Sends `events` to `to` for its stretch up to `until`, watched for
    /// its ack (while fewer than `MAX_UNACKED` are).
    fn send_events(
        &mut self,
        now: Time,
        to: SocketAddr,
        until: Id,
        events: Vec<MemberEvent>,
        tries: u32,
    ) {
        let req = self.next_req;
        self.next_req += 1;
        self.stats.messages_sent += 1;
        self.stats.events_sent += events.len() as u64;
        let msg = Message::MemberEvents {
            req,
            until,
            events: events.clone(),
        };
        self.out.push_back((Target { addr: to, id: None }, msg));
        if self.unacked.len() < MAX_UNACKED {
            let deadline = now + self.ack_timeout;
            self.unacked.insert(
                req,
                Unacked {
                    to,
                    until,
                    events,
                    deadline,
                    tries,
                },
            );
        }
    }

    /// `MemberEvents` `req` went unacknowledged: the next process of
    /// its target's stretch takes the target's place (the rest of the
    /// stretch), unless it was tried `MAX_TRIES` times.
    fn resend(&mut self, now: Time, req: u64) {
        let Some(u) = self.unacked.remove(&req) else {
            return;
        };
        if u.tries >= MAX_TRIES {
            self.stats.events_dropped += u.events.len() as u64;
            return;
        }
        if let Some(next) = self.table.next_process_before(&u.to, &u.until, &self.me) {
            self.send_events(now, next, u.until, u.events, u.tries + 1);
        }
    }

    fn start_pull(&mut self, now: Time, from: NodeRef) {
        if self.refresh_at.is_none() {
            // The first copy, at a join: compare again soon, for the
            // joins made at the same time, whose announcements passed us
            // by before anyone knew us.
            let soon = (self.interval * 10).min(self.refresh);
            self.refresh_at = Some(now + soon);
        }
        if self.pull.is_some() {
            return;
        }
        let req = self.next_req;
        self.next_req += 1;
        self.pull = Some(Pull {
            req,
            from,
            last: None,
            only_ours: Vec::new(),
            deadline: now + PULL_TIMEOUT,
        });
        let digest = Some(self.table.digest());
        self.out.push_back((
            from.into(),
            Message::GetMembers {
                req,
                after: None,
                digest,
                slices: self.table.slice_digests(),
            },
        ));
    }

    /// A page of the successor's table (answer `req` from `from`).
    fn on_page(&mut self, now: Time, from: NodeRef, req: u64, page: MembersPage) {
        let MembersPage {
            nodes,
            more,
            same,
            slices,
        } = page;
        let Some(mut pull) = self
            .pull
            .take()
            .filter(|p| p.req == req && p.from.addr == from.addr)
        else {
            return;
        };
        if same {
            return;
        }
        self.stats.entries_copied += nodes.len() as u64;
        // Ours between the previous page and the end of this one (or of
        // the table, on the last page) that the page lacks.
        let end = if more {
            nodes.last().map(|n| n.id)
        } else {
            None
        };
        let theirs: std::collections::BTreeSet<Id> = nodes.iter().map(|n| n.id).collect();
        let mine = self.table.iter().filter(|n| {
            pull.last.is_none_or(|l| n.id > l)
                && end.is_none_or(|e| n.id <= e)
                && slices & (1 << slice_of(&n.id)) != 0
                && n.addr != self.me
        });
        let lacking = mine.filter(|n| !theirs.contains(&n.id));
        let room = MAX_PROBES.saturating_sub(pull.only_ours.len());
        let lacking: Vec<NodeRef> = lacking.take(room).collect();
        pull.only_ours.extend(lacking);
        for n in nodes {
            if self.departed_lately(now, &n) || self.table.contains(&n) {
                continue;
            }
            if self.verify {
                let claim = Claim::Live {
                    forward: None,
                    copied: true,
                };
                self.check(now, n, claim, from.addr);
            } else {
                self.alive(n);
            }
        }
        if more && let Some(last) = end {
            let req = self.next_req;
            self.next_req += 1;
            pull.req = req;
            pull.last = Some(last);
            pull.deadline = now + PULL_TIMEOUT;
            let msg = Message::GetMembers {
                req,
                after: Some(last),
                digest: None,
                slices: self.table.slice_digests(),
            };
            self.out.push_back((pull.from.into(), msg));
            self.pull = Some(pull);
            return;
        }
        self.stats.copies += 1;
        for n in pull.only_ours {
            self.probe(now, n);
        }
    }

    /// Pings `node`, which the successor's table lacks: gone unless it
    /// answers within two ack timeouts.
    fn probe(&mut self, now: Time, node: NodeRef) {
        if self.probes.len() >= MAX_PROBES {
            return;
        }
        let me = self.me;
        match self
            .probing
            .get(&node)
            .and_then(|req| self.probes.get_mut(req))
        {
            Some(p) => p.claims.push((Claim::Kept, me)),
            None => self.ping(now, node, Claim::Kept, me),
        }
    }

    /// `node` is alive: into the table, off the departed list. Returns
    /// whether the table changed.
    fn alive(&mut self, node: NodeRef) -> bool {
        self.departed.remove(&node);
        self.table.insert(node)
    }

    /// `node` left or failed at `now`: out of the table, and remembered.
    fn gone(&mut self, now: Time, node: NodeRef) {
        self.table.remove_node(&node);
        if node.addr == self.me {
            return;
        }
        if self.departed.len() >= MAX_DEPARTED {
            let horizon = self.refresh * 2;
            self.departed
                .retain(|_, t| now.saturating_since(*t) <= horizon);
            if self.departed.len() >= MAX_DEPARTED {
                // All recent: forget the lowest id (any will do).
                self.departed.pop_first();
            }
        }
        self.departed.insert(node, now);
    }

    /// The vnodes seen departing (failing, leaving, or announced gone by
    /// the membership news), each with when: at most `MAX_DEPARTED`.
    pub fn departed(&self) -> impl Iterator<Item = (NodeRef, Time)> + '_ {
        self.departed.iter().map(|(n, t)| (*n, *t))
    }

    /// Did we see `node` depart within the last two refresh periods?
    fn departed_lately(&self, now: Time, node: &NodeRef) -> bool {
        self.departed
            .get(node)
            .is_some_and(|t| now.saturating_since(*t) <= self.refresh * 2)
    }
}

/// A page of a peer's membership table, as `Members` carries it.
struct MembersPage {
    /// Entries in id order.
    nodes: Vec<NodeRef>,
    /// More entries follow: ask again after the last one.
    more: bool,
    /// Our digest equals the peer's: nothing to copy.
    same: bool,
    /// The slices the page covers (bit `i`: slice `i`); `u64::MAX` the
    /// whole table.
    slices: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn node(name: &str, port: u16) -> NodeRef {
        NodeRef::new(Id::hash(name.as_bytes()), ([127, 0, 0, 1], port).into())
    }

    /// The upkeep of a process at port 1 that knows `known` (verifying
    /// or not).
    fn onehop(verify: bool, known: &[NodeRef]) -> OneHop {
        let me: SocketAddr = ([127, 0, 0, 1], 1).into();
        let mut o = OneHop::new(true, verify, me, 1 << 16, (100 * MS, 10_000 * MS, 200 * MS));
        for n in known {
            o.learn(Time::ZERO, *n, true);
        }
        o
    }

    fn drain(o: &mut OneHop) -> Vec<(Target, Message)> {
        std::iter::from_fn(|| o.poll_transmit()).collect()
    }

    /// The pings among `out`: (to, request number).
    fn pings(out: &[(Target, Message)]) -> Vec<(Target, u64)> {
        out.iter()
            .filter_map(|(t, m)| match m {
                Message::Ping { req } => Some((*t, *req)),
                _ => None,
            })
            .collect()
    }

    fn events_from(sender: NodeRef, list: &[(NodeRef, bool)]) -> Message {
        let _ = sender;
        Message::MemberEvents {
            req: 9,
            until: Id::hash(b"end"),
            events: list
                .iter()
                .map(|(node, joined)| MemberEvent {
                    node: *node,
                    joined: *joined,
                    by: sender.addr,
                })
                .collect(),
        }
    }

    fn entries(o: &OneHop) -> Vec<NodeRef> {
        o.entries().collect()
    }

    /// MemberEvents passed on after the next tick.
    fn passed_on(o: &mut OneHop, now: Time) -> usize {
        o.handle_timeout(now, None);
        drain(o)
            .iter()
            .filter(|(_, m)| matches!(m, Message::MemberEvents { .. }))
            .count()
    }

    #[test]
    fn a_forged_departure_of_a_live_node_is_disproved_by_its_answer_and_goes_no_further() {
        let (b, c, liar) = (node("b", 2), node("c", 3), node("liar", 4));
        let mut o = onehop(true, &[b, c, liar]);
        drain(&mut o);
        o.handle_message(Time::ZERO, liar, events_from(liar, &[(b, false)]), |_| {
            false
        });
        let out = drain(&mut o);
        let asked = pings(&out);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].0, Target::from(b));
        // Still there while being asked; an answer from anyone but b is not
        // b's answer.
        assert!(entries(&o).contains(&b));
        o.probe_answered(Time::ZERO + MS, asked[0].1, liar, true);
        assert_eq!(o.stats().claims_false, 0);
        o.probe_answered(Time::ZERO + MS, asked[0].1, b, true);
        assert!(entries(&o).contains(&b));
        assert_eq!(o.stats().claims_false, 1);
        assert_eq!(passed_on(&mut o, Time::ZERO + 1000 * MS), 0);
    }

    #[test]
    fn a_join_enters_and_is_passed_on_only_once_the_node_itself_answered() {
        let (b, liar) = (node("b", 2), node("liar", 4));
        let invented = node("invented", 4);
        let joiner = node("joiner", 5);
        let mut o = onehop(true, &[b, liar]);
        drain(&mut o);
        let claims = [(invented, true), (joiner, true)];
        o.handle_message(Time::ZERO, liar, events_from(liar, &claims), |_| false);
        let asked = pings(&drain(&mut o));
        assert_eq!(asked.len(), 2);
        assert!(!entries(&o).contains(&invented) && !entries(&o).contains(&joiner));
        // The joiner answers itself; the invented id's process says it
        // has no such vnode (NotHere from another of its vnodes).
        for (to, req) in &asked {
            if to.id == Some(joiner.id) {
                o.probe_answered(Time::ZERO + MS, *req, joiner, true);
            } else {
                o.probe_answered(Time::ZERO + MS, *req, liar, false);
            }
        }
        assert!(entries(&o).contains(&joiner));
        assert!(!entries(&o).contains(&invented));
        assert_eq!(o.stats().claims_false, 1);
        assert!(passed_on(&mut o, Time::ZERO + 1000 * MS) >= 1);
    }

    #[test]
    fn a_departure_is_acted_on_once_the_node_does_not_answer() {
        let (b, gone, c) = (node("b", 2), node("gone", 3), node("c", 4));
        let mut o = onehop(true, &[b, gone, c]);
        drain(&mut o);
        o.handle_message(Time::ZERO, c, events_from(c, &[(gone, false)]), |_| false);
        assert_eq!(pings(&drain(&mut o)).len(), 1);
        assert!(entries(&o).contains(&gone));
        // Silent past two ack timeouts: gone, and the news goes on.
        let later = Time::ZERO + 500 * MS;
        o.handle_timeout(later, None);
        assert!(!entries(&o).contains(&gone));
        assert!(passed_on(&mut o, later + 1000 * MS) >= 1);
    }

    #[test]
    fn one_sender_gets_a_bounded_share_of_checks_and_the_rest_are_dropped() {
        let liar = node("liar", 4);
        let mut o = onehop(true, &[liar]);
        drain(&mut o);
        let flood: Vec<(NodeRef, bool)> = (0..MAX_EVENTS_PER_MESSAGE)
            .map(|i| (node(&format!("invented-{i}"), 4), true))
            .collect();
        o.handle_message(Time::ZERO, liar, events_from(liar, &flood), |_| false);
        let stats = o.stats();
        assert_eq!(stats.claims_checked, MAX_CHECKS_PER_SENDER as u64);
        assert_eq!(
            stats.claims_dropped,
            (MAX_EVENTS_PER_MESSAGE - MAX_CHECKS_PER_SENDER) as u64
        );
        // Unanswered, none enters; the false claims still use the share,
        // so a liar flooding slowly gets no more checks...
        let later = Time::ZERO + 1000 * MS;
        o.handle_timeout(later, None);
        assert_eq!(entries(&o), vec![liar]);
        o.handle_message(later, liar, events_from(liar, &flood[..1]), |_| false);
        assert_eq!(o.stats().claims_checked, MAX_CHECKS_PER_SENDER as u64);
        // ...until a refresh period (10 s here) forgives them.
        let forgiven = later + 10_000 * MS;
        o.handle_timeout(forgiven, None);
        o.handle_message(forgiven, liar, events_from(liar, &flood[..1]), |_| false);
        assert_eq!(o.stats().claims_checked, MAX_CHECKS_PER_SENDER as u64 + 1);
    }

    #[test]
    fn without_verification_hearsay_is_taken_as_said() {
        // The plain-mode behaviour the checks above replace: this is what
        // a forging member exploited.
        let (b, liar) = (node("b", 2), node("liar", 4));
        let invented = node("invented", 4);
        let mut o = onehop(false, &[b, liar]);
        o.handle_message(
            Time::ZERO,
            liar,
            events_from(liar, &[(b, false), (invented, true)]),
            |_| false,
        );
        assert!(!entries(&o).contains(&b));
        assert!(entries(&o).contains(&invented));
    }
}
