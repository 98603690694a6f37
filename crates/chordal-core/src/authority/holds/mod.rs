//! The holder side of authority: one [`Hold`] per interval one of our
//! vnodes owns by Chord — prepared (phase 1, joint with the previous
//! configs), renewed every quarter lease, given up on a handover, and
//! prepared again after a refusal, a new config or a deposition.
//!
//! Here: the holds' state and what the rest of the node asks of it
//! (leases, `decides_in`, catch-up and finish marks). `reconcile.rs`
//! keeps one hold per owned interval and moves each along on time;
//! `prepare.rs` prepares a term and completes it from the grants;
//! `renew.rs` takes renewal answers; `release.rs` gives holds up, to a
//! joiner or at a leave.

use super::ringmap::RingMap;
use super::{ACx, Known, Lease, Promises, Refusal, Settled, majority};
use crate::fasthash::FastMap;
use crate::message::{Message, NodeRef};
use crate::{Id, KeyRange, Time};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

mod prepare;
mod reconcile;
mod release;
mod renew;
#[cfg(test)]
mod tests;

use prepare::*;
use release::*;

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
