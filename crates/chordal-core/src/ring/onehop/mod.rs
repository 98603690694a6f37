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
//!
//! Here: the table's state and the calls the ring makes. `spread.rs`
//! disseminates events, `verify.rs` checks hearsay, `copy.rs` copies a
//! successor's table.

use super::members::{Members, process_position, slice_of};
use crate::message::{MemberEvent, Message, NodeRef, Target};
use crate::{Id, Time};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

mod copy;
mod spread;
#[cfg(test)]
mod tests;
mod verify;

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
