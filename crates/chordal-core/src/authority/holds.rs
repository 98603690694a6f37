//! The holder side of authority: one [`Hold`] per interval one of our
//! vnodes owns by Chord — prepared (phase 1, joint with the previous
//! configs), renewed every quarter lease, given up on a handover, and
//! prepared again after a refusal, a new config or a deposition.

use super::ringmap::RingMap;
use super::{ACx, Known, Lease, Promises, Refusal, Settled, majority};
use crate::fasthash::FastMap;
use crate::message::{Message, NodeRef};
use crate::{Id, KeyRange, Time};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// The holds of one process's vnodes.
#[derive(Debug, Default)]
pub(super) struct Holds {
    holds: BTreeMap<u64, Hold>,
    next: u64,
    /// Prepare and renewal requests in flight → the hold they are for.
    reqs: FastMap<u64, u64>,
    tick_at: Option<Time>,
    /// The leave's farewell gave everything up: hold nothing again.
    released: bool,
    /// Processes draining for a leave: every renewal goes to them too, so
    /// that they learn our terms left them out (see `Promises::observe`).
    leaving: Vec<NodeRef>,
    /// When our own graceful leave began (`None`: not leaving).
    leave_began: Option<Time>,
    /// Terms leavers handed us (newest last, bounded).
    handovers: VecDeque<Handover>,
    /// Terms our vnodes held in this incarnation with nothing to catch
    /// up: our own store holds every write they acknowledged, so a next
    /// term of ours need not read the copies (oldest first, bounded:
    /// forgetting one only costs a catch-up).
    clean: VecDeque<(Id, u64)>,
    /// Holds, or parts of them, that Chord gave another vnode (a joiner
    /// took them): we decide nothing new there, but release them only
    /// once the writes we decided there ended (see [`Holds::drained`]),
    /// so that those writes stay under our lease.
    releasing: Vec<Releasing>,
}

/// A part of a hold given up to a joiner, waiting for our writes there
/// to end before we release it.
#[derive(Debug)]
struct Releasing {
    vnode: NodeRef,
    range: KeyRange,
    /// The terms to release there (the hold's, and the one before it).
    terms: Vec<u64>,
    /// Who granted them, or may have: everyone their prepares asked.
    to: Vec<NodeRef>,
    /// Our lease there ends then (it is not renewed any more).
    valid_until: Time,
    /// The run of our terms a write there may be of (see [`Held::since`]).
    since: u64,
}

/// Most handovers kept, and for how long.
const MAX_HANDOVERS: usize = 64;
const HANDOVER_TTL: Duration = Duration::from_secs(60);

/// A term a graceful leaver handed us (`Message::Handover`).
#[derive(Debug)]
struct Handover {
    /// The leaver's vnode, the term's holder.
    from: NodeRef,
    range: KeyRange,
    term: u64,
    /// Its promises over `range`: its grant of our next term there.
    known: Vec<Known>,
    until: Time,
}

/// Most terms `Holds::clean` remembers.
const MAX_CLEAN: usize = 4096;

/// One interval one of our vnodes holds, or is trying to.
#[derive(Debug)]
struct Hold {
    vnode: NodeRef,
    range: KeyRange,
    /// The term held or asked for.
    term: u64,
    /// The processes holding the copies (ours first), and the others.
    config: Vec<NodeRef>,
    replicas: Vec<NodeRef>,
    /// The highest term anyone told us of here: the next goes above.
    above: u64,
    /// The last prepare heard of no term at some point of the interval:
    /// the next asks every process we know (see [`wide_ask`]).
    wide: bool,
    state: State,
    /// The term we held when the config changed: it keeps deciding while
    /// `state` prepares the next one (make-before-break), until the next
    /// is settled, its lease ends, or someone deposes it.
    previous: Option<Previous>,
}

/// A term still deciding while its successor term is prepared.
#[derive(Debug)]
struct Previous {
    term: u64,
    /// Its config's copies other than ours.
    replicas: Vec<NodeRef>,
    /// It decides until then (our clock); it is not renewed any more.
    valid_until: Time,
    /// The first term of the unbroken run of ours it belongs to (see
    /// [`Held::since`]).
    since: u64,
}

/// Most processes a wide prepare asks (the nearest to the interval).
const MAX_WIDE_ASK: usize = 128;

#[derive(Debug)]
enum State {
    /// Waiting to prepare (again) at this time.
    Waiting(Time),
    Preparing(Attempt),
    Held(Held),
}

/// One prepare of a term.
#[derive(Debug)]
struct Attempt {
    req: u64,
    deadline: Time,
    /// Everyone asked (one vnode per process).
    asked: Vec<NodeRef>,
    granted: Vec<SocketAddr>,
    /// The vnodes that granted (one per process of `granted`).
    grantors: Vec<NodeRef>,
    refused: usize,
    /// Per point, the newest term anyone who answered knew settled (the
    /// predecessor whose config's majority must grant), with the fewest
    /// pending configs anyone knew for it.
    learned: RingMap<Settled>,
    /// The shortest live lease that refused us.
    wait: Option<Duration>,
}

/// A term we hold.
#[derive(Debug)]
struct Held {
    /// We decide until then (our clock).
    valid_until: Time,
    /// Previous configs whose majorities may hold writes our store lacks:
    /// read a read quorum of each before deciding, until the store has
    /// pulled from them (then empty).
    catch_up: Vec<Vec<NodeRef>>,
    /// Previous configs whose majorities may hold acknowledged writes not
    /// yet on a majority of ours: told with every renewal, so that the
    /// next holder reads them too, until the store has pushed what it
    /// pulled to a majority of our config (then empty).
    pending: Vec<Vec<NodeRef>>,
    /// Until the term is settled — its first renewal acknowledged by a
    /// majority of its config and of each predecessor config — nothing is
    /// decided: these predecessors (emptied once settled).
    settling: Vec<Vec<NodeRef>>,
    renewal: Option<Renewal>,
    renew_at: Time,
    /// The last renewal a majority acknowledged, still counting the
    /// acknowledgements that come later (see [`Holds::all_finished`]).
    last: Option<Renewal>,
    /// The pending configs' members the last renewal went to: the next
    /// goes to them too, so that once nothing is pending they hear it.
    pending_told: Vec<NodeRef>,
    /// When our store came to hold every write acknowledged before the
    /// term (`None`: not yet).
    caught_up_at: Option<Time>,
    /// The first term of the unbroken run of our terms this one ends: the
    /// term itself, or — when it was prepared while the term before still
    /// decided (a config change) — that term's run. A write decided in any
    /// term of the run may still be acknowledged (see
    /// [`Holds::decides_in`]).
    since: u64,
    /// Who granted the term (we release to them when we give it up). A
    /// member of the config that did not — another holder's lease kept it
    /// from granting — refuses our renewals without deposing us: it is
    /// asked to grant again (`reask`, that request).
    grantors: Vec<NodeRef>,
    /// Everyone the term's prepare asked. A grant may still be on its way
    /// when we give the term (or part of it) up, and a promise not
    /// released keeps refusing the next holder until its lease runs out:
    /// so releases go to all of them, not only to the grantors heard.
    asked: Vec<NodeRef>,
    reask: Option<u64>,
}

#[derive(Debug)]
struct Renewal {
    req: u64,
    sent_at: Time,
    acked: Vec<SocketAddr>,
    /// It told the grantors that nothing is pending.
    finished: bool,
}

impl Hold {
    /// Is `req` a request of this hold still awaiting answers?
    fn awaits(&self, req: u64) -> bool {
        match &self.state {
            State::Waiting(_) => false,
            State::Preparing(a) => a.req == req,
            State::Held(held) => {
                held.reask == Some(req)
                    || [&held.renewal, &held.last]
                        .iter()
                        .any(|r| r.as_ref().is_some_and(|r| r.req == req))
            }
        }
    }

    /// The term, if settled and its catch-up not finished.
    fn unfinished(&self) -> Option<&Held> {
        match &self.state {
            State::Held(held)
                if held.settling.is_empty()
                    && (!held.catch_up.is_empty() || !held.pending.is_empty()) =>
            {
                Some(held)
            }
            _ => None,
        }
    }
}

/// A term whose catch-up is not finished (see [`Holds::unfinished`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unfinished {
    /// Our vnode holding it.
    pub vnode: NodeRef,
    /// The interval.
    pub range: KeyRange,
    /// The term.
    pub term: u64,
    /// Its config (ours first).
    pub config: Vec<NodeRef>,
    /// Configs to pull from first (a read quorum of each); empty once
    /// caught up: then push to a majority of `config`.
    pub catch_up: Vec<Vec<NodeRef>>,
}

/// The part of a lease the holder may count on: `lease × (1 − 2 ×
/// drift)`, since the grantors' clocks may run faster than ours.
fn usable(cx: &ACx<'_>) -> Duration {
    let drift = f64::from(cx.config.clock_drift_ppm.min(200_000)) / 1e6;
    cx.config.lease.mul_f64(1.0 - 2.0 * drift)
}

/// Is the ring interval `inner` inside `outer`?
fn within(inner: &KeyRange, outer: &KeyRange) -> bool {
    if outer.start == outer.end {
        return true;
    }
    if inner.start == inner.end {
        return false;
    }
    let span = outer.start.distance(&outer.end);
    let s = outer.start.distance(&inner.start);
    let e = outer.start.distance(&inner.end);
    s < e && e <= span
}

/// The distinct processes of `nodes`, in order.
fn processes(nodes: &[NodeRef]) -> Vec<SocketAddr> {
    distinct(nodes).iter().map(|n| n.addr).collect()
}

/// Have a majority of `config`'s processes said yes?
fn majority_of(config: &[NodeRef], yes: &[SocketAddr]) -> bool {
    let procs = processes(config);
    procs.iter().filter(|p| yes.contains(p)).count() >= majority(procs.len())
}

impl Holds {
    /// The lease our vnode `vnode` holds over `key`, if valid at `now`.
    /// While a new config's term is prepared, the term before it (see
    /// [`Hold::previous`]).
    pub fn lease(&self, vnode: &NodeRef, key: &Id, now: Time) -> Option<Lease<'_>> {
        let h = self
            .holds
            .values()
            .find(|h| h.vnode == *vnode && h.range.contains(key))?;
        if let State::Held(held) = &h.state
            && held.settling.is_empty()
            && held.valid_until > now
        {
            return Some(Lease {
                term: h.term,
                range: h.range,
                replicas: &h.replicas,
                catch_up: &held.catch_up,
            });
        }
        let p = h.previous.as_ref().filter(|p| p.valid_until > now)?;
        Some(Lease {
            term: p.term,
            range: h.range,
            replicas: &p.replicas,
            catch_up: &[],
        })
    }

    /// May a write our vnode decided at `key` in `term` still be
    /// acknowledged? Yes while `term` belongs to the run of our terms that
    /// decides there now: the term itself, or one before it that was
    /// followed without a break (make-before-break over a config change).
    /// Such a write is in our store, and the current term keeps the older
    /// config among its pending ones until our store — holding it — was
    /// pushed to a majority of the new one (after the write ended: see
    /// `Store::old_writes_in_flight`).
    pub fn decides_in(&self, vnode: &NodeRef, key: &Id, term: u64, now: Time) -> bool {
        let given_up = self.releasing.iter().any(|r| {
            r.vnode == *vnode
                && r.range.contains(key)
                && r.valid_until > now
                && r.terms.iter().any(|t| (r.since..=*t).contains(&term))
        });
        if given_up {
            return true;
        }
        let Some(h) = self
            .holds
            .values()
            .find(|h| h.vnode == *vnode && h.range.contains(key))
        else {
            return false;
        };
        if let State::Held(held) = &h.state
            && held.settling.is_empty()
            && held.valid_until > now
            && (held.since..=h.term).contains(&term)
        {
            return true;
        }
        h.previous
            .as_ref()
            .is_some_and(|p| p.valid_until > now && (p.since..=p.term).contains(&term))
    }

    /// A copy refused our write at `key` for a higher `term`.
    pub fn deposed(&mut self, vnode: &NodeRef, key: &Id, term: u64, now: Time) {
        for h in self.holds.values_mut() {
            if h.vnode == *vnode && h.range.contains(key) {
                h.above = h.above.max(term);
                h.previous = None;
                if matches!(h.state, State::Held(_)) {
                    h.state = State::Waiting(now);
                    self.tick_at = Some(now);
                }
            }
        }
    }

    /// Is every hold a settled term whose catch-up is finished, and did
    /// *every* process of its config acknowledge a renewal saying so?
    /// (What a graceful leave waits for: then the next holder needs a
    /// majority of our config, which the others, all alive just now,
    /// make without us. A config with a dead member waits for Chord to
    /// drop it, and a new term.)
    pub fn all_finished(&self) -> bool {
        self.holds.values().all(|h| match &h.state {
            State::Held(held) => {
                held.settling.is_empty()
                    && held.catch_up.is_empty()
                    && held.pending.is_empty()
                    && held.last.as_ref().is_some_and(|r| {
                        r.finished && processes(&h.config).iter().all(|p| r.acked.contains(p))
                    })
            }
            _ => false,
        })
    }

    /// Do we hold `term` over all of `range` with our vnode `holder`?
    /// Possibly as several holds: a promise table merges neighbouring
    /// pieces promised alike, and one term may have been prepared over
    /// two adjacent intervals.
    pub fn holds_term(&self, holder: &NodeRef, term: u64, range: KeyRange) -> bool {
        let mut covered: RingMap<()> = RingMap::default();
        for h in self.holds.values() {
            if h.vnode == *holder && h.term == term && matches!(h.state, State::Held(_)) {
                covered.set(h.range, Some(()));
            }
        }
        covered.pieces(range).iter().all(|(_, c)| c.is_some())
    }

    /// The parts of our holds given up to joiners, not yet released.
    pub fn releasing(&self) -> Vec<(NodeRef, KeyRange)> {
        self.releasing.iter().map(|r| (r.vnode, r.range)).collect()
    }

    /// Our writes in `vnode`'s given-up part `range` ended (or our lease
    /// there did): release it, so that the joiner may take it at once.
    pub fn drained(&mut self, cx: &mut ACx<'_>, vnode: &NodeRef, range: KeyRange) {
        self.releasing.retain(|r| {
            if r.vnode != *vnode || r.range != range {
                return true;
            }
            send_release(cx, r);
            false
        });
    }

    /// Our graceful leave begins: a term caught up before now may be
    /// handed over at the farewell.
    pub fn begin_leave(&mut self, now: Time) {
        self.leave_began.get_or_insert(now);
    }

    /// Has our farewell given everything up?
    pub fn released(&self) -> bool {
        self.released
    }

    /// A leaver handed us its term over `range` (`Message::Handover`).
    pub fn handed(
        &mut self,
        now: Time,
        from: NodeRef,
        range: KeyRange,
        term: u64,
        known: Vec<Known>,
    ) {
        self.handovers.retain(|ho| ho.until > now);
        if self.handovers.len() >= MAX_HANDOVERS {
            self.handovers.pop_front();
        }
        let until = now + HANDOVER_TTL;
        self.handovers.push_back(Handover {
            from,
            range,
            term,
            known,
            until,
        });
    }

    /// Gives every hold up (a graceful leave's farewell) and holds
    /// nothing again. A term caught up before the leave began, over a
    /// range whose every record `handed` says a successor acknowledged,
    /// is handed to that successor with our promises there: our grant of
    /// its next term (we grant nothing after this).
    pub fn release_all(
        &mut self,
        cx: &mut ACx<'_>,
        promises: &Promises,
        handed: &[(KeyRange, NodeRef)],
    ) {
        for h in self.holds.values() {
            let State::Held(held) = &h.state else {
                continue;
            };
            let before_leave = match (held.caught_up_at, self.leave_began) {
                (Some(at), Some(began)) => at <= began,
                _ => false,
            };
            if !before_leave || !held.settling.is_empty() {
                continue;
            }
            if let Some((_, to)) = handed.iter().find(|(r, _)| within(&h.range, r)) {
                let msg = Message::Handover {
                    range: h.range,
                    term: h.term,
                    known: promises.known(h.range),
                };
                cx.io.send(h.vnode, *to, msg);
            }
        }
        self.released = true;
        for r in std::mem::take(&mut self.releasing) {
            send_release(cx, &r);
        }
        for (_, h) in std::mem::take(&mut self.holds) {
            release(cx, &h);
        }
        self.reqs.clear();
    }

    /// When `reconcile` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.tick_at
    }

    /// (Holds held, holds being prepared or waiting.)
    pub fn counts(&self) -> (u64, u64) {
        let valid = self
            .holds
            .values()
            .filter(|h| matches!(&h.state, State::Held(_)) || h.previous.is_some())
            .count() as u64;
        (valid, self.holds.len() as u64 - valid)
    }

    /// Is [`Holds::unfinished`] not empty?
    pub fn has_unfinished(&self) -> bool {
        self.holds.values().any(|h| h.unfinished().is_some())
    }

    /// The terms we hold (settled, lease valid or not) whose catch-up is
    /// not finished: what the store must still pull and push.
    pub fn unfinished(&self) -> Vec<Unfinished> {
        self.holds
            .values()
            .filter_map(|h| {
                let held = h.unfinished()?;
                Some(Unfinished {
                    vnode: h.vnode,
                    range: h.range,
                    term: h.term,
                    config: h.config.clone(),
                    catch_up: held.catch_up.clone(),
                })
            })
            .collect()
    }

    /// Our store pulled `vnode`'s `range` from a read quorum of each of the
    /// term's catch-up configs: it holds every write acknowledged before
    /// the term, so the term decides from it alone from now on.
    pub fn caught_up(&mut self, vnode: &NodeRef, range: KeyRange, term: u64, now: Time) {
        if let Some(held) = self.held_mut(vnode, range, term) {
            held.catch_up.clear();
            held.caught_up_at.get_or_insert(now);
            remember_clean(&mut self.clean, vnode.id, term);
        }
    }

    /// Our store, caught up, then pushed `vnode`'s `range` to a majority
    /// of the term's config: every write acknowledged so far is on that
    /// majority, so the next holder need read nothing older (told with
    /// the next renewal).
    pub fn finished(&mut self, vnode: &NodeRef, range: KeyRange, term: u64, now: Time) {
        if let Some(held) = self.held_mut(vnode, range, term)
            && held.catch_up.is_empty()
        {
            held.pending.clear();
            // Tell the grantors now rather than at the next renewal: until
            // they know, a next holder would read the old configs, and a
            // graceful leave waits for them to know.
            held.renew_at = held.renew_at.min(now);
            self.tick_at = Some(self.tick_at.map_or(now, |t| t.min(now)));
        }
    }

    fn held_mut(&mut self, vnode: &NodeRef, range: KeyRange, term: u64) -> Option<&mut Held> {
        self.holds.values_mut().find_map(|h| match &mut h.state {
            State::Held(held) if h.vnode == *vnode && h.range == range && h.term == term => {
                Some(held)
            }
            _ => None,
        })
    }

    /// Brings the holds in line with the ranges Chord gives our vnodes,
    /// then moves each along: prepares, renewals, retries.
    /// Processes in `leaving` are left out of new configs.
    pub fn reconcile(
        &mut self,
        cx: &mut ACx<'_>,
        now: Time,
        promises: &Promises,
        leaving: &BTreeMap<SocketAddr, (NodeRef, Time)>,
    ) {
        self.leaving = leaving.values().map(|(n, _)| *n).collect();
        let wanted = if self.released {
            Vec::new()
        } else {
            wanted(cx, leaving)
        };
        // A joiner took the start of a hold's interval: give that part
        // up and keep deciding for the rest in the same term (it is ours
        // as much as before), rather than stop and prepare it again.
        for h in self.holds.values_mut() {
            let kept = wanted
                .iter()
                .find(|(v, r, _)| *v == h.vnode && r.end == h.range.end && within(r, &h.range));
            if let Some((_, r, _)) = kept
                && *r != h.range
                && r.start != r.end
            {
                let lost = KeyRange {
                    start: h.range.start,
                    end: r.start,
                };
                self.releasing.push(releasing(h, lost));
                h.range = *r;
            }
        }
        // Holds no vnode of ours owns any more (or only in part, not as
        // above): give them up, once our writes there ended (as above). A
        // part still ours is prepared again below — at once, since the
        // last holder was us.
        let gone: Vec<u64> = self
            .holds
            .iter()
            .filter(|(_, h)| {
                !wanted
                    .iter()
                    .any(|(v, r, _)| *v == h.vnode && within(&h.range, r))
            })
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            if let Some(h) = self.holds.remove(&s) {
                cx.io.counting.counters.terms_released += 1;
                self.releasing.push(releasing(&h, h.range));
            }
        }
        let holds = &self.holds;
        self.reqs
            .retain(|req, s| holds.get(s).is_some_and(|h| h.awaits(*req)));
        // A new config (a successor came or went): a new term with it.
        // Make before break: a settled, caught-up term keeps deciding (with
        // its old config) while the next is prepared; the acceptors that
        // grant the next still take its writes (see
        // `Promises::fencing_term`).
        for (v, _, config) in &wanted {
            for h in self.holds.values_mut() {
                if h.vnode == *v && processes(&h.config) != processes(config) {
                    if let State::Held(held) = &h.state
                        && held.settling.is_empty()
                        && held.catch_up.is_empty()
                        && held.valid_until > now
                    {
                        h.previous = Some(Previous {
                            term: h.term,
                            replicas: std::mem::take(&mut h.replicas),
                            valid_until: held.valid_until,
                            since: held.since,
                        });
                    }
                    h.config = config.clone();
                    h.replicas = config[1..].to_vec();
                    if !matches!(h.state, State::Waiting(_)) {
                        h.state = State::Waiting(now);
                    }
                }
            }
        }
        // Parts of our ranges no hold covers yet — while we drain too: a
        // range a leaving neighbour left us must get a term without it
        // before we go, or its config would lose two members at once.
        for (v, range, config) in &wanted {
            let mut covered: RingMap<()> = RingMap::default();
            for h in self.holds.values().filter(|h| h.vnode == *v) {
                covered.set(h.range, Some(()));
            }
            for (piece, c) in covered.pieces(*range) {
                if c.is_none() {
                    self.next += 1;
                    let hold = Hold {
                        vnode: *v,
                        range: piece,
                        term: 0,
                        config: config.clone(),
                        replicas: config[1..].to_vec(),
                        above: 0,
                        wide: false,
                        state: State::Waiting(now),
                        previous: None,
                    };
                    self.holds.insert(self.next, hold);
                }
            }
        }
        self.step(cx, now, promises);
    }

    /// Moves every hold along at `now`, and sets the next tick.
    fn step(&mut self, cx: &mut ACx<'_>, now: Time, promises: &Promises) {
        // A given-up part whose lease ran out: nothing of ours counts
        // there any more; release it now.
        self.releasing.retain(|r| {
            if r.valid_until > now {
                return true;
            }
            send_release(cx, r);
            false
        });
        let mut next: Option<Time> = None;
        let mut soonest = |t: Time| next = Some(next.map_or(t, |n: Time| n.min(t)));
        for r in &self.releasing {
            soonest(r.valid_until);
        }
        let quarter = cx.config.lease / 4;
        let serials: Vec<u64> = self.holds.keys().copied().collect();
        for s in serials {
            let Some(h) = self.holds.get_mut(&s) else {
                continue;
            };
            if h.previous.as_ref().is_some_and(|p| p.valid_until <= now) {
                h.previous = None;
            }
            match &mut h.state {
                State::Waiting(at) if *at <= now => {
                    // A leaver's handover covering the interval names the
                    // terms it knew there: prepare above them. (Its grant
                    // it gives when asked: it stays for that, see
                    // `Authority::may_go`.)
                    let floor = handed_for(&self.handovers, h.range, now)
                        .iter()
                        .flat_map(|(_, known)| known.iter().map(|k| k.term))
                        .max()
                        .unwrap_or(0);
                    let req = prepare(cx, now, h, promises, floor);
                    self.reqs.insert(req, s);
                }
                State::Waiting(at) => soonest(*at),
                State::Preparing(a) if a.deadline <= now => {
                    // Not enough answers in time: try again a little later.
                    cx.io.counting.counters.prepares_failed += 1;
                    self.reqs.remove(&a.req);
                    let retry = now + a.wait.unwrap_or(quarter).min(quarter);
                    h.state = State::Waiting(retry);
                    soonest(retry);
                }
                State::Preparing(a) => soonest(a.deadline),
                State::Held(held) => {
                    if let Some(r) = &held.renewal
                        && r.sent_at + cx.config.lease / 2 <= now
                    {
                        // Unanswered: count it lost, renew again.
                        self.reqs.remove(&r.req);
                        held.renewal = None;
                    }
                    if held.renewal.is_none() && held.renew_at <= now {
                        let req = cx.io.next();
                        let mut to = h.config.clone();
                        for c in &held.settling {
                            to.extend(c.iter().copied());
                        }
                        // The pending configs' members hear it too (their
                        // answers count for nothing): a member of one
                        // waits with a graceful leave while we may still
                        // need its copies — and once more when we do not.
                        let pending_members: Vec<NodeRef> =
                            held.pending.iter().flatten().copied().collect();
                        to.extend(std::mem::replace(
                            &mut held.pending_told,
                            distinct(&pending_members),
                        ));
                        to.extend(pending_members);
                        to.extend(self.leaving.iter().copied());
                        for n in distinct(&to) {
                            let msg = Message::Renew {
                                req,
                                range: h.range,
                                term: h.term,
                                pending: held.pending.clone(),
                                config: h.config.clone(),
                            };
                            cx.io.send(h.vnode, n, msg);
                        }
                        held.renewal = Some(Renewal {
                            req,
                            sent_at: now,
                            acked: Vec::new(),
                            finished: held.pending.is_empty() && held.catch_up.is_empty(),
                        });
                        held.renew_at = now + quarter;
                        self.reqs.insert(req, s);
                    }
                    // One renewal at a time: the next is due when this one
                    // is answered (then `renew_at`) or counted lost.
                    match &held.renewal {
                        Some(r) => soonest(r.sent_at + cx.config.lease / 2),
                        None => soonest(held.renew_at),
                    }
                }
            }
            if let State::Preparing(a) = &self.holds[&s].state {
                soonest(a.deadline);
            }
        }
        debug_assert!(
            next.is_none_or(|t| t > now),
            "authority would tick again at once"
        );
        self.tick_at = next;
    }

    /// An answer to our prepare `req` from `from`.
    pub fn promised(
        &mut self,
        cx: &mut ACx<'_>,
        now: Time,
        from: NodeRef,
        req: u64,
        answer: Result<Vec<Known>, Refusal>,
        promises: &Promises,
    ) {
        let Some(&s) = self.reqs.get(&req) else {
            return;
        };
        let Some(h) = self.holds.get_mut(&s) else {
            return;
        };
        if let State::Held(held) = &mut h.state {
            // A member that did not grant us before, asked again.
            if held.reask == Some(req) && answer.is_ok() {
                held.reask = None;
                if !held.grantors.iter().any(|g| g.addr == from.addr) {
                    held.grantors.push(from);
                }
            }
            return;
        }
        let State::Preparing(a) = &mut h.state else {
            return;
        };
        if a.req != req {
            return;
        }
        let refused = answer.is_err();
        let (known, wait) = match answer {
            Ok(known) => {
                if !a.granted.contains(&from.addr) {
                    a.granted.push(from.addr);
                    a.grantors.push(from);
                }
                (known, None)
            }
            Err(Refusal::Outdated { promise }) => (vec![*promise], None),
            Err(Refusal::Held { promise, wait }) => (vec![*promise], Some(wait)),
        };
        if refused {
            // Someone holds or held a term here we did not know of.
            a.refused += 1;
            h.above = h.above.max(known[0].term);
            if let Some(wait) = wait {
                a.wait = Some(a.wait.map_or(wait, |w| w.min(wait)));
            }
        }
        for k in known {
            // What they promised before is a config whose majority must
            // grant too (a refusal's included: its majority will refuse
            // until that lease is over): ask whoever we have not.
            learn(&mut a.learned, &k);
            for n in asked_for(&k) {
                if !a.asked.iter().any(|m| m.addr == n.addr) {
                    a.asked.push(n);
                    send_prepare(cx, (h.vnode, h.range, h.term, &h.config), req, n);
                }
            }
        }
        if let Some(Completed {
            catch_up,
            pending,
            settling,
        }) = complete(
            &h.vnode,
            (h.range, &h.config),
            a,
            (&self.clean, &self.handovers),
            cx.config.force_new_ring_above,
        ) {
            let caught_up_at = catch_up.is_empty();
            if caught_up_at {
                remember_clean(&mut self.clean, h.vnode.id, h.term);
            }
            cx.io.counting.counters.terms_held += 1;
            self.reqs.remove(&req);
            h.wide = false;
            // A term prepared while the one before still decided continues
            // its run (nobody else can have decided in between: the
            // acceptors that granted us kept everyone else out).
            let since = h
                .previous
                .as_ref()
                .filter(|p| p.valid_until > now)
                .map_or(h.term, |p| p.since);
            // Settle first (the renewal goes out at once): decide nothing
            // until a majority of the config and of the predecessors know
            // the term completed.
            h.state = State::Held(Held {
                valid_until: Time::ZERO,
                catch_up,
                pending,
                settling,
                renewal: None,
                renew_at: now,
                last: None,
                pending_told: Vec::new(),
                caught_up_at: caught_up_at.then_some(now),
                since,
                grantors: std::mem::take(&mut a.grantors),
                asked: std::mem::take(&mut a.asked),
                reask: None,
            });
            self.step(cx, now, promises);
        } else if a.granted.len() + a.refused >= a.asked.len() {
            // Everyone answered and it is not enough: wait out the
            // shortest lease that refused us (a handover's release
            // usually comes sooner), then prepare above what we heard —
            // asking everyone we know if nobody knew a term somewhere.
            cx.io.counting.counters.prepares_failed += 1;
            h.wide |= a.learned.pieces(h.range).iter().any(|(_, v)| v.is_none());
            let quarter = cx.config.lease / 4;
            let pause = a.wait.map_or(quarter / 8, |w| w.min(quarter / 2));
            self.reqs.remove(&req);
            h.state = State::Waiting(now + pause);
            self.step(cx, now, promises);
        }
    }

    /// An answer to renewal `req` from `from`.
    pub fn renewed(&mut self, cx: &mut ACx<'_>, now: Time, from: NodeRef, req: u64, ok: bool) {
        let Some(&s) = self.reqs.get(&req) else {
            return;
        };
        let Some(h) = self.holds.get_mut(&s) else {
            return;
        };
        let State::Held(held) = &mut h.state else {
            return;
        };
        let mut grantors = h.config.iter().chain(held.settling.iter().flatten());
        if !grantors.any(|n| n.addr == from.addr) {
            // A pending config's member only heard that we may need it.
            return;
        }
        let late = held.last.as_mut().filter(|r| r.req == req);
        if let Some(r) = late
            && ok
        {
            // After the majority: only counted for `all_finished`.
            if !r.acked.contains(&from.addr) {
                r.acked.push(from.addr);
            }
            return;
        }
        let current = held.renewal.as_ref().is_some_and(|r| r.req == req);
        if !ok && !held.grantors.iter().any(|g| g.addr == from.addr) {
            // It never promised us: no sign of a later term (most likely
            // another holder's lease, released to others but not to it,
            // still runs there). Ask it to grant ours again.
            let asked = cx.io.next();
            held.reask = Some(asked);
            self.reqs.insert(asked, s);
            send_prepare(cx, (h.vnode, h.range, h.term, &h.config), asked, from);
            return;
        }
        if !ok {
            // Someone granted a later term here: we were deposed.
            cx.io.counting.counters.terms_lost += 1;
            self.reqs.remove(&req);
            h.previous = None;
            h.state = State::Waiting(now);
            self.tick_at = Some(now);
            return;
        }
        let Some(r) = held.renewal.as_mut().filter(|_| current) else {
            return;
        };
        if !r.acked.contains(&from.addr) {
            r.acked.push(from.addr);
        }
        let settled = held.settling.iter().all(|c| majority_of(c, &r.acked));
        if majority_of(&h.config, &r.acked) && settled {
            held.valid_until = held.valid_until.max(r.sent_at + usable(cx));
            held.settling.clear();
            // The new term decides from now on.
            h.previous = None;
            // Later acknowledgements still count (for `all_finished`):
            // the request stays known until the next one replaces it.
            if let Some(old) = std::mem::replace(&mut held.last, held.renewal.take()) {
                self.reqs.remove(&old.req);
            }
        }
    }
}

/// Remembers that our vnode's `term` left everything acknowledged up to
/// it in our store (bounded: forgetting one only costs a catch-up).
fn remember_clean(clean: &mut VecDeque<(Id, u64)>, vnode: Id, term: u64) {
    if !clean.contains(&(vnode, term)) {
        clean.push_back((vnode, term));
        if clean.len() > MAX_CLEAN {
            clean.pop_front();
        }
    }
}

/// What our vnodes own by Chord now: each joined vnode that knows its
/// range, with the config it would hold it with — its replica targets,
/// skipping processes draining for a leave (`leaving`).
fn wanted(
    cx: &ACx<'_>,
    leaving: &BTreeMap<SocketAddr, (NodeRef, Time)>,
) -> Vec<(NodeRef, KeyRange, Vec<NodeRef>)> {
    let r = cx.config.replicas;
    cx.ring
        .owned_ranges()
        .into_iter()
        .map(|(v, range)| {
            let mut config = vec![v];
            let staying = |n: &NodeRef| !leaving.contains_key(&n.addr);
            config.extend(cx.ring.replica_targets_where(&v, r, staying));
            (v, range, config)
        })
        .collect()
}

/// One vnode per process of `nodes`.
fn distinct(nodes: &[NodeRef]) -> Vec<NodeRef> {
    let mut out: Vec<NodeRef> = Vec::with_capacity(nodes.len());
    for n in nodes {
        if !out.iter().any(|o| o.addr == n.addr) {
            out.push(*n);
        }
    }
    out
}

/// Starts a prepare of `h` in a term above everything we know there;
/// returns its request number.
/// `floor`: a term handed to us there (see [`Holds::handed`]); ours
/// goes above it.
fn prepare(cx: &mut ACx<'_>, now: Time, h: &mut Hold, promises: &Promises, floor: u64) -> u64 {
    let known = promises.known(h.range);
    let highest = known.iter().map(|k| k.term).max().unwrap_or(0);
    h.term = h
        .term
        .max(h.above)
        .max(highest)
        .max(floor)
        .max(cx.config.force_new_ring_above)
        + 1;
    let req = cx.io.next();
    // The new config, and every config we know of there (the previous
    // holders', and the settled terms'): their majorities must grant too.
    // And our successor, who owned the interval before we joined: with
    // R = 1 nobody else would tell us its lineage.
    let mut ask = h.config.clone();
    ask.extend(cx.ring.replica_targets(&h.vnode, 2));
    if h.wide {
        ask.extend(wide_ask(cx, h.range));
    }
    let mut ask = distinct(&ask);
    for k in &known {
        for n in asked_for(k) {
            if !ask.iter().any(|a| a.addr == n.addr) {
                ask.push(n);
            }
        }
    }
    for n in &ask {
        send_prepare(cx, (h.vnode, h.range, h.term, &h.config), req, *n);
    }
    cx.io.counting.counters.prepares_started += 1;
    h.state = State::Preparing(Attempt {
        req,
        deadline: now + cx.config.lease / 2,
        asked: ask,
        granted: Vec::new(),
        grantors: Vec::new(),
        refused: 0,
        learned: RingMap::default(),
        wait: None,
    });
    req
}

/// Whom a prepare asks when a narrower one found no lineage at some
/// point of `range`: the processes of our membership table, successor
/// lists, predecessors and fingers nearest to the interval (at most
/// [`MAX_WIDE_ASK`]).
///
/// Who last held a term over a point is not always among the interval's
/// config and successor: with one copy (R = 1) a config is its holder
/// alone, and when several processes join a young ring at once, a piece
/// the creator gave up may never have been held by anyone since — only
/// the creator, anywhere on the ring, knows its term. Without asking it
/// the piece would wait forever (a point nobody knows a term for is not
/// taken: see [`complete`]).
fn wide_ask(cx: &ACx<'_>, range: KeyRange) -> Vec<NodeRef> {
    let mut all = known_nodes(cx);
    let near = |n: &NodeRef| {
        let ahead = range.end.distance(&n.id);
        let behind = n.id.distance(&range.end);
        ahead.min(behind)
    };
    all.sort_by_key(near);
    all.truncate(MAX_WIDE_ASK);
    all
}

/// Every node our routing knows of: the membership table, and each
/// vnode's successor list, predecessor and fingers.
pub(super) fn known_nodes(cx: &ACx<'_>) -> Vec<NodeRef> {
    let mut all: Vec<NodeRef> = cx.ring.members().collect();
    for v in cx.ring.vnodes() {
        let table = v.table();
        all.extend(table.successors().iter().copied());
        all.extend(table.predecessor());
        all.extend(table.fingers().iter().flatten().copied());
    }
    distinct(&all)
}

/// Our best guess at the owners of `range`'s points, among the nodes we
/// know of (`known`, from [`known_nodes`]): those inside it, and the one
/// that follows its end most closely.
pub(super) fn known_owners(known: &[NodeRef], range: KeyRange) -> Vec<NodeRef> {
    let after_end = known.iter().min_by_key(|n| range.end.distance(&n.id));
    let owners: Vec<NodeRef> = known
        .iter()
        .filter(|n| range.contains(&n.id))
        .chain(after_end)
        .copied()
        .collect();
    distinct(&owners)
}

/// Asks process `to` to grant the term of the hold `(vnode, range,
/// term, config)` (prepare `req`).
fn send_prepare(
    cx: &mut ACx<'_>,
    (vnode, range, term, config): (NodeRef, KeyRange, u64, &[NodeRef]),
    req: u64,
    to: NodeRef,
) {
    let config = config.to_vec();
    let msg = Message::Prepare {
        req,
        range,
        term,
        config,
    };
    cx.io.send(vnode, to, msg);
}

/// Whom a prepare must ask because of promise `k`: its config's
/// processes and its settled term's (whose majority must grant; the
/// promise's own term may never have settled).
fn asked_for(k: &Known) -> Vec<NodeRef> {
    let mut all = k.config.clone();
    if let Some(st) = &k.settled {
        all.extend(st.config.iter().copied());
    }
    distinct(&all)
}

/// The leavers whose handovers together cover all of `range`, each with
/// its promises there (its grant of our term over `range`).
fn handed_for(
    handovers: &VecDeque<Handover>,
    range: KeyRange,
    now: Time,
) -> Vec<(NodeRef, Vec<Known>)> {
    let mut out: Vec<(NodeRef, Vec<Known>)> = Vec::new();
    let live = || handovers.iter().filter(|ho| ho.until > now);
    for first in live() {
        if out.iter().any(|(n, _)| n.addr == first.from.addr) {
            continue;
        }
        let mut covered: RingMap<()> = RingMap::default();
        let mut known = Vec::new();
        for ho in live().filter(|ho| ho.from.addr == first.from.addr) {
            covered.set(ho.range, Some(()));
            known.extend(clip(&ho.known, range));
        }
        if covered.pieces(range).iter().all(|(_, c)| c.is_some()) {
            out.push((first.from, known));
        }
    }
    out
}

/// `known`'s promises clipped to `range` (the pieces inside it).
fn clip(known: &[Known], range: KeyRange) -> Vec<Known> {
    let mut map: RingMap<Known> = RingMap::default();
    for k in known {
        map.set(k.range, Some(k.clone()));
    }
    map.pieces(range)
        .into_iter()
        .filter_map(|(piece, k)| {
            k.map(|k| Known {
                range: piece,
                ..k.clone()
            })
        })
        .collect()
}

/// Keeps, per point of `k.range`, the newest settled term heard of —
/// of two reports of one term, the later (fewer pending configs: its
/// holder only ever drops some).
fn learn(learned: &mut RingMap<Settled>, k: &Known) {
    let Some(st) = &k.settled else { return };
    let older: Vec<KeyRange> = learned
        .pieces(k.range)
        .into_iter()
        .filter(|(_, v)| {
            v.is_none_or(|v| {
                v.term < st.term || (v.term == st.term && v.pending.len() > st.pending.len())
            })
        })
        .map(|(r, _)| r)
        .collect();
    for piece in older {
        learned.set(piece, Some(st.clone()));
    }
}

/// What a granted prepare leaves the new term to do.
struct Completed {
    /// Configs to read a majority of before deciding (see `Held`).
    catch_up: Vec<Vec<NodeRef>>,
    /// Configs the next holder must read unless we finish (see `Held`).
    pending: Vec<Vec<NodeRef>>,
    /// Predecessor configs that must hear of the term's settling.
    settling: Vec<Vec<NodeRef>>,
}

/// Adds `config` to `set` unless a config of the same processes is there.
fn add_config(set: &mut Vec<Vec<NodeRef>>, config: &[NodeRef]) {
    let procs = processes(config);
    if !set.iter().any(|c| processes(c) == procs) {
        set.push(config.to_vec());
    }
}

/// Is attempt `a` of `h` granted — a majority of the new config, and of
/// the newest settled config at every point, every point with a lineage?
/// Then what the new term must catch up from, and tell.
fn complete(
    vnode: &NodeRef,
    (range, config): (KeyRange, &[NodeRef]),
    a: &Attempt,
    (clean, handovers): (&VecDeque<(Id, u64)>, &VecDeque<Handover>),
    force_above: u64,
) -> Option<Completed> {
    if !majority_of(config, &a.granted) {
        return None;
    }
    let mut done = Completed {
        catch_up: Vec::new(),
        pending: Vec::new(),
        settling: Vec::new(),
    };
    let ours = processes(config);
    for (_, v) in a.learned.pieces(range) {
        // A point nobody knows a term for is not taken: only the process
        // that created the ring starts a lineage — or one told to re-form
        // a ring from what survived, which also gives up the terms
        // settled before it was told (their copies are gone).
        let forced = |term: u64| term < force_above;
        let Some(st) = v.filter(|st| !forced(st.term)) else {
            if force_above > 0 {
                continue;
            }
            return None;
        };
        if !majority_of(&st.config, &a.granted) {
            return None;
        }
        // Every write acknowledged so far is on a majority of the
        // predecessor's config or of one of its pending configs. A
        // predecessor term of ours that caught up in this incarnation
        // left all of them in our store; any other (another holder's, or
        // ours before a restart or still catching up) is read from those
        // copies first. Either way, until we have put them on a majority
        // of our own config, the next holder must read them too.
        // Or a leaver handed it to us: our store took every record of it
        // after it stopped deciding, and it was caught up by then.
        let handed = handovers
            .iter()
            .any(|ho| ho.from == st.holder && ho.term == st.term);
        let ours_and_clean =
            (st.holder.id == vnode.id && clean.contains(&(st.holder.id, st.term))) || handed;
        for old in std::iter::once(&st.config).chain(&st.pending) {
            if !ours_and_clean {
                add_config(&mut done.catch_up, old);
            }
            if processes(old) != ours {
                add_config(&mut done.pending, old);
            }
        }
        add_config(&mut done.settling, &st.config);
    }
    Some(done)
}

/// Tells `h`'s grantors at once that we give its term (and the term
/// before it, still deciding: see [`Hold::previous`]) up (our farewell).
fn release(cx: &mut ACx<'_>, h: &Hold) {
    send_release(cx, &releasing(h, h.range));
}

/// What giving `range` of `h` up releases, and until when our writes
/// there stay under our lease.
fn releasing(h: &Hold, range: KeyRange) -> Releasing {
    let mut to = h.config.clone();
    to.extend(h.previous.iter().flat_map(|p| p.replicas.iter().copied()));
    // Everyone the term's prepare asked, granted or not yet heard: a
    // grant still on its way (or one the prepare never counted, as it
    // completed first) would otherwise keep refusing the next holder
    // until its lease ran out.
    match &h.state {
        State::Held(held) => {
            to.extend(held.grantors.iter().copied());
            to.extend(held.asked.iter().copied());
        }
        State::Preparing(a) => to.extend(a.asked.iter().copied()),
        State::Waiting(_) => {}
    }
    let mut terms = vec![h.term];
    terms.extend(h.previous.as_ref().map(|p| p.term));
    terms.retain(|t| *t != 0);
    let (valid_until, since) = match (&h.state, &h.previous) {
        (State::Held(held), _) if held.settling.is_empty() => (held.valid_until, held.since),
        (_, Some(p)) => (p.valid_until, p.since),
        _ => (Time::ZERO, h.term),
    };
    Releasing {
        vnode: h.vnode,
        range,
        terms,
        to: distinct(&to),
        valid_until,
        since,
    }
}

/// Sends `r`'s releases.
fn send_release(cx: &mut ACx<'_>, r: &Releasing) {
    for &term in &r.terms {
        for &n in &r.to {
            let msg = Message::Release {
                range: r.range,
                term,
            };
            cx.io.send(r.vnode, n, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> KeyRange {
        KeyRange {
            start: Id::from_u64(a),
            end: Id::from_u64(b),
        }
    }

    /// A config of two: its holder left gracefully and handed its term
    /// to us. Its grant is counted, and we read nobody first (our store
    /// took its records) — only from the holder that handed over, and only
    /// for that term; anyone else still reads a read quorum of the config.
    #[test]
    fn a_handed_over_term_needs_no_catch_up_from_its_config() {
        let node = |port: u16, at: u64| {
            NodeRef::new(Id::from_u64(at), SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let (me, leaver) = (node(1, 10), node(2, 20));
        let range = r(10, 20);
        let settled = Settled {
            term: 5,
            holder: leaver,
            config: vec![leaver, me],
            pending: Vec::new(),
        };
        let mut learned = RingMap::default();
        learned.set(range, Some(settled));
        // Our grant and the leaver's, given ahead in its handover.
        let a = Attempt {
            req: 1,
            deadline: Time::from_millis(0),
            asked: vec![me, leaver],
            granted: vec![me.addr, leaver.addr],
            grantors: vec![me, leaver],
            refused: 0,
            learned,
            wait: None,
        };
        let config = [me];
        let handover = |term: u64| Handover {
            from: leaver,
            range,
            term,
            known: Vec::new(),
            until: Time::from_millis(60_000),
        };
        let clean = VecDeque::new();
        let handed = VecDeque::from([handover(5)]);
        let done = complete(&me, (range, &config), &a, (&clean, &handed), 0).expect("granted");
        assert!(
            done.catch_up.is_empty(),
            "read the config of a handed-over term"
        );
        assert_eq!(done.pending.len(), 1, "the next holder must still read it");
        let older = VecDeque::from([handover(4)]);
        let done = complete(&me, (range, &config), &a, (&clean, &older), 0).expect("granted");
        assert_eq!(
            done.catch_up.len(),
            1,
            "another term's handover is not this one's"
        );
    }

    /// A lone survivor: the last term there was settled by a config whose
    /// other two processes are gone. It takes nothing — unless told to
    /// re-form the ring above that term, and then it reads nobody first.
    #[test]
    fn only_a_forced_term_skips_a_predecessor_whose_majority_is_gone() {
        let node = |port: u16, at: u64| {
            NodeRef::new(Id::from_u64(at), SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let (me, dead1, dead2) = (node(1, 10), node(2, 20), node(3, 30));
        let range = r(30, 10);
        let mut learned = RingMap::default();
        let old = Settled {
            term: 7,
            holder: dead1,
            config: vec![dead1, dead2, me],
            pending: Vec::new(),
        };
        learned.set(range, Some(old));
        let a = Attempt {
            req: 1,
            deadline: Time::from_millis(0),
            asked: vec![me, dead1, dead2],
            granted: vec![me.addr],
            grantors: vec![me],
            refused: 0,
            learned,
            wait: None,
        };
        let clean = (&VecDeque::new(), &VecDeque::new());
        let config = [me];
        assert!(complete(&me, (range, &config), &a, clean, 0).is_none());
        assert!(
            complete(&me, (range, &config), &a, clean, 7).is_none(),
            "a term settled at the force point is not given up"
        );
        let done = complete(&me, (range, &config), &a, clean, 8).expect("forced");
        assert!(done.catch_up.is_empty() && done.pending.is_empty());
        // A point nobody knows a term for: taken only when forced.
        let mut a = a;
        a.learned = RingMap::default();
        assert!(complete(&me, (range, &config), &a, clean, 0).is_none());
        assert!(complete(&me, (range, &config), &a, clean, 8).is_some());
    }

    #[test]
    fn within_follows_the_ring() {
        assert!(within(&r(10, 20), &r(10, 20)));
        assert!(within(&r(12, 20), &r(10, 20)));
        assert!(within(&r(10, 15), &r(10, 20)));
        assert!(!within(&r(5, 15), &r(10, 20)));
        assert!(!within(&r(15, 25), &r(10, 20)));
        assert!(within(&r(90, 5), &r(80, 10)));
        assert!(!within(&r(20, 10), &r(10, 20)));
        assert!(within(&r(20, 10), &r(7, 7)));
        assert!(!within(&r(7, 7), &r(10, 20)));
    }

    /// A term held over two adjacent intervals (a vnode's range grew
    /// while it held the first) covers a promise over their union: the
    /// promise table merges the pieces. Seen as a leave that counted on
    /// itself and waited its full 30 s.
    #[test]
    fn a_term_held_over_two_adjacent_intervals_covers_their_union() {
        let me = NodeRef::new(Id::from_u64(30), SocketAddr::from(([127, 0, 0, 1], 1)));
        let held = |range: KeyRange| Hold {
            vnode: me,
            range,
            term: 5,
            config: vec![me],
            replicas: Vec::new(),
            above: 0,
            wide: false,
            state: State::Held(Held {
                valid_until: Time::ZERO,
                catch_up: Vec::new(),
                pending: Vec::new(),
                settling: Vec::new(),
                renewal: None,
                renew_at: Time::ZERO,
                last: None,
                pending_told: Vec::new(),
                caught_up_at: None,
                since: 5,
                grantors: vec![me],
                asked: vec![me],
                reask: None,
            }),
            previous: None,
        };
        let mut holds = Holds::default();
        holds.holds.insert(1, held(r(10, 20)));
        holds.holds.insert(2, held(r(20, 30)));
        assert!(holds.holds_term(&me, 5, r(10, 30)));
        assert!(holds.holds_term(&me, 5, r(15, 25)));
        assert!(!holds.holds_term(&me, 5, r(5, 30)), "(5, 10] is not held");
        assert!(!holds.holds_term(&me, 4, r(10, 20)), "another term");
    }

    /// A part given up while its term is still being prepared (a joiner
    /// came) is released to everyone the prepare asked, not only to the
    /// config: a process asked because it knew an older term there may
    /// have granted, and its promise would otherwise keep refusing the
    /// joiner until its lease ran out.
    #[test]
    fn a_release_goes_to_everyone_the_prepare_asked() {
        let node =
            |i: u64| NodeRef::new(Id::from_u64(i), SocketAddr::from(([127, 0, 0, i as u8], 1)));
        let (me, replica, old_holder) = (node(30), node(40), node(10));
        let attempt = Attempt {
            req: 9,
            deadline: Time::from_millis(2_000),
            asked: vec![me, replica, old_holder],
            granted: vec![me.addr, replica.addr],
            grantors: vec![me, replica],
            refused: 0,
            learned: RingMap::default(),
            wait: None,
        };
        let h = Hold {
            vnode: me,
            range: r(10, 30),
            term: 4,
            config: vec![me, replica],
            replicas: vec![replica],
            above: 0,
            wide: false,
            state: State::Preparing(attempt),
            previous: None,
        };
        let given_up = releasing(&h, r(10, 20));
        assert_eq!(given_up.terms, vec![4]);
        for n in [me, replica, old_holder] {
            assert!(given_up.to.contains(&n), "{n:?} is not told");
        }
    }

    /// Make-before-break: while the next term of a new config is
    /// prepared, the term before decides (its lease, its old replicas);
    /// once the next is held, writes of both may still be acknowledged —
    /// unless the run broke (the next began after the old had lapsed).
    #[test]
    fn the_term_before_a_new_config_decides_until_the_next_is_held() {
        let at = Time::from_millis;
        let me = NodeRef::new(Id::from_u64(30), SocketAddr::from(([127, 0, 0, 1], 1)));
        let old_replica = NodeRef::new(Id::from_u64(40), SocketAddr::from(([127, 0, 0, 2], 1)));
        let key = Id::from_u64(25);
        let mut holds = Holds::default();
        let attempt = Attempt {
            req: 9,
            deadline: at(2_000),
            asked: Vec::new(),
            granted: Vec::new(),
            grantors: Vec::new(),
            refused: 0,
            learned: RingMap::default(),
            wait: None,
        };
        holds.holds.insert(
            1,
            Hold {
                vnode: me,
                range: r(10, 30),
                term: 6,
                config: vec![me],
                replicas: Vec::new(),
                above: 0,
                wide: false,
                state: State::Preparing(attempt),
                previous: Some(Previous {
                    term: 5,
                    replicas: vec![old_replica],
                    valid_until: at(1_000),
                    since: 3,
                }),
            },
        );
        let lease = holds
            .lease(&me, &key, at(500))
            .expect("the old term decides");
        assert_eq!((lease.term, lease.replicas), (5, &[old_replica][..]));
        assert!(holds.decides_in(&me, &key, 5, at(500)));
        assert!(
            holds.decides_in(&me, &key, 3, at(500)),
            "the run began at 3"
        );
        assert!(!holds.decides_in(&me, &key, 2, at(500)), "before the run");
        assert!(
            holds.lease(&me, &key, at(1_000)).is_none(),
            "its lease ended"
        );
        assert!(!holds.decides_in(&me, &key, 5, at(1_000)));

        // The next term is held, continuing the run (or not).
        for (since, old_counts) in [(3, true), (6, false)] {
            let h = holds.holds.get_mut(&1).unwrap();
            h.previous = None;
            h.state = State::Held(Held {
                valid_until: at(3_000),
                catch_up: Vec::new(),
                pending: Vec::new(),
                settling: Vec::new(),
                renewal: None,
                renew_at: at(2_000),
                last: None,
                pending_told: Vec::new(),
                caught_up_at: Some(at(900)),
                since,
                grantors: vec![me],
                asked: vec![me],
                reask: None,
            });
            assert_eq!(holds.lease(&me, &key, at(1_500)).map(|l| l.term), Some(6));
            assert!(holds.decides_in(&me, &key, 6, at(1_500)));
            assert_eq!(holds.decides_in(&me, &key, 5, at(1_500)), old_counts);
            assert!(!holds.decides_in(&me, &key, 5, at(3_000)), "lapsed");
        }
    }
}
