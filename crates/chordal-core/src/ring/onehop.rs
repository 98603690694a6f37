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
    /// Pings to entries the successor's table lacks: request → node, and
    /// when it counts as gone.
    probes: crate::fasthash::FastMap<u64, (NodeRef, Time)>,
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
    pub fn new(
        enabled: bool,
        me: SocketAddr,
        max: usize,
        (interval, refresh, ack_timeout): (Duration, Duration, Duration),
    ) -> OneHop {
        OneHop {
            enabled,
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
    pub fn learn(&mut self, now: Time, node: NodeRef, direct: bool) {
        if !self.enabled || (!direct && self.departed_lately(now, &node)) {
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
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let unacked = self.unacked.values().map(|u| u.deadline).min();
        let probes = self.probes.values().map(|(_, t)| *t).min();
        [
            self.tick_at,
            self.refresh_at,
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
            .filter(|(_, (_, t))| *t <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in silent {
            if let Some((n, _)) = self.probes.remove(&req) {
                self.gone(now, n);
            }
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
                        self.receive(now, until, ev, &live_local);
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
            } => self.on_page(now, req, nodes, more, same, slices),
            _ => {}
        }
    }

    /// Is `req` one of our probes? (Their answers, `Pong` or `NotHere`,
    /// come to the ring, which hands them here.)
    pub fn is_probe(&self, req: u64) -> bool {
        req & PROBE_REQ != 0
    }

    /// The answer to probe `req`: `alive` (a `Pong`) keeps the node,
    /// `NotHere` removes it.
    pub fn probe_answered(&mut self, now: Time, req: u64, alive: bool) {
        if let Some((n, _)) = self.probes.remove(&req) {
            if alive {
                self.alive(n);
            } else {
                self.gone(now, n);
            }
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
        until: Id,
        ev: MemberEvent,
        live_local: &impl Fn(&NodeRef) -> bool,
    ) {
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

    /// A page of the successor's table, covering the slices `slices`.
    fn on_page(
        &mut self,
        now: Time,
        req: u64,
        nodes: Vec<NodeRef>,
        more: bool,
        same: bool,
        slices: u64,
    ) {
        let Some(mut pull) = self.pull.take().filter(|p| p.req == req) else {
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
            if !self.departed_lately(now, &n) {
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
        let req = PROBE_REQ | self.next_req;
        self.next_req += 1;
        let deadline = now + self.ack_timeout * 2;
        self.probes.insert(req, (node, deadline));
        self.out.push_back((node.into(), Message::Ping { req }));
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

    /// Did we see `node` depart within the last two refresh periods?
    fn departed_lately(&self, now: Time, node: &NodeRef) -> bool {
        self.departed
            .get(node)
            .is_some_and(|t| now.saturating_since(*t) <= self.refresh * 2)
    }
}
