//! Finishing a term's catch-up (docs/design.md §5, "Who decides").
//!
//! A new term may lack writes its predecessors acknowledged: they are on
//! a majority of the predecessor's config, or of an older config the
//! predecessor had not finished with. Until the owner's store has them
//! all, every decision first reads a read quorum of each of those configs
//! (`owner/read.rs`, `catch_up`; a read quorum meets every majority: see
//! [`read_quorum`]). This file ends that, per held interval, in two
//! phases of range syncs:
//!
//! 1. **Pull**: sync the interval with a read quorum of each catch-up config
//!    (pull only from a process that holds no copy of ours). A member is
//!    done when its summary equals ours, or when its push of the buckets
//!    that differed has arrived (`SyncPushed`). Then the store holds every
//!    write acknowledged before the term: [`Authority::caught_up`], and
//!    decisions read our store alone.
//! 2. **Push**: sync again with a majority of the term's own config; a
//!    member is done when our push to it has arrived. Then every write
//!    acknowledged so far is on that majority: [`Authority::finished`],
//!    and the next renewal tells the grantors that the next holder needs
//!    to read nothing older.
//!
//! Our own process counts in every majority it belongs to. A member that
//! fails or goes quiet is asked again; the job ends when the term does.
//!
//! [`Authority::caught_up`]: crate::authority::Authority::caught_up
//! [`Authority::finished`]: crate::authority::Authority::finished

use super::Store;
use crate::authority::{Unfinished, majority, read_quorum};
use crate::fasthash::FastMap;
use crate::io::Cx;
use crate::{NodeRef, Time};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How often unfinished terms are looked at.
const ROUND: Duration = Duration::from_millis(200);
/// Most finishing syncs running at once per process.
const MAX_SYNCS: usize = 8;
/// A member busy this long without an answer is asked again (a lost
/// `SyncPushed`; a transfer's own failures are reported sooner).
const STUCK: Duration = Duration::from_secs(60);

/// Which side of a sync has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    /// The member's records are in our store.
    Pulled,
    /// Our records are in the member's store.
    Pushed,
    /// The two summaries were equal: both.
    Both,
}

/// The finishing jobs of a process.
#[derive(Debug, Default)]
pub(super) struct Finishing {
    /// One per phase of a term: a job that moves on to its next phase
    /// gets a new number, so answers to the old phase's syncs are ignored.
    jobs: BTreeMap<u64, Job>,
    next: u64,
    /// Syncs whose other side is pushing to us → (job, member).
    awaiting: FastMap<u64, (u64, SocketAddr)>,
    /// The next round (`None`: nothing to finish).
    at: Option<Time>,
}

impl Finishing {
    /// When [`Store::finish_round`] must run next.
    pub(super) fn at(&self) -> Option<Time> {
        self.at
    }
}

#[derive(Debug)]
struct Job {
    term: Unfinished,
    phase: Phase,
    /// The processes this phase syncs with (ours excluded).
    members: Vec<Member>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pull,
    Push,
    /// Told the authority; the job ends when the term leaves the list.
    Done,
}

#[derive(Debug)]
struct Member {
    node: NodeRef,
    /// A process of ours in no config of this phase but the catch-up's:
    /// pull from it, push nothing.
    pull_only: bool,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Busy(Time),
    Done,
}

/// The configs `phase` of `term` needs a quorum of: a read quorum of
/// each catch-up config to pull, a majority of the term's to push.
fn configs(term: &Unfinished, phase: Phase) -> Vec<&[NodeRef]> {
    match phase {
        Phase::Pull => term.catch_up.iter().map(Vec::as_slice).collect(),
        Phase::Push | Phase::Done => vec![term.config.as_slice()],
    }
}

impl Job {
    /// Has a quorum of every config of this phase (us included) done?
    fn phase_done(&self, me: SocketAddr) -> bool {
        configs(&self.term, self.phase).into_iter().all(|config| {
            let mut procs: Vec<SocketAddr> = Vec::new();
            for n in config {
                if !procs.contains(&n.addr) {
                    procs.push(n.addr);
                }
            }
            let done = procs
                .iter()
                .filter(|p| {
                    **p == me
                        || self
                            .members
                            .iter()
                            .any(|m| m.node.addr == **p && m.state == State::Done)
                })
                .count();
            let need = match self.phase {
                Phase::Pull => read_quorum(procs.len()),
                Phase::Push | Phase::Done => majority(procs.len()),
            };
            done >= need
        })
    }
}

/// The members of `phase` of `term`: every process of its configs but
/// ours, once each.
fn members(term: &Unfinished, phase: Phase, me: SocketAddr) -> Vec<Member> {
    let mut out: Vec<Member> = Vec::new();
    for n in configs(term, phase).into_iter().flatten() {
        if n.addr != me && !out.iter().any(|m| m.node.addr == n.addr) {
            let pull_only = phase == Phase::Pull && !term.config.iter().any(|c| c.addr == n.addr);
            out.push(Member {
                node: *n,
                pull_only,
                state: State::Idle,
            });
        }
    }
    out
}

impl Store {
    /// Some term of ours may have a catch-up to finish: look soon. Cheap;
    /// call after the authority machine ran.
    pub fn check_finishing(&mut self, cx: &mut Cx<'_>, now: Time) {
        if cx.config.authority && self.finishing.at.is_none() && cx.authority.has_unfinished() {
            self.finishing.at = Some(now);
        }
    }

    /// Starts, moves on and ends the finishing jobs (every [`ROUND`] while
    /// there are any).
    pub(super) fn finish_round(&mut self, cx: &mut Cx<'_>, now: Time) {
        let me = cx.ring.addr();
        let wanted = cx.authority.unfinished();
        // Terms that ended (or finished) end their jobs.
        self.finishing.jobs.retain(|_, j| wanted.contains(&j.term));
        let live: Vec<u64> = self.finishing.jobs.keys().copied().collect();
        self.finishing.awaiting.retain(|_, (j, _)| live.contains(j));
        for term in wanted {
            if !self.finishing.jobs.values().any(|j| j.term == term) {
                let phase = match term.catch_up.is_empty() {
                    true => Phase::Push,
                    false => Phase::Pull,
                };
                self.finishing.next += 1;
                let job = Job {
                    members: members(&term, phase, me),
                    term,
                    phase,
                };
                self.finishing.jobs.insert(self.finishing.next, job);
            }
        }
        let ids: Vec<u64> = self.finishing.jobs.keys().copied().collect();
        for id in ids {
            self.finish_advance(cx, now, id);
        }
        // Ask the members that are not busy, a few at a time.
        let mut busy = self
            .finishing
            .jobs
            .values()
            .flat_map(|j| &j.members)
            .filter(|m| matches!(m.state, State::Busy(_)))
            .count();
        let mut starts = Vec::new();
        let waiting: Vec<u64> = (self.finishing.jobs.iter())
            .filter(|(_, j)| {
                j.phase == Phase::Push
                    && self.old_writes_in_flight(&j.term.vnode, j.term.range, j.term.term)
            })
            .map(|(id, _)| *id)
            .collect();
        for (id, job) in self.finishing.jobs.iter_mut() {
            if waiting.contains(id) {
                continue;
            }
            for m in &mut job.members {
                if let State::Busy(since) = m.state
                    && since + STUCK <= now
                {
                    m.state = State::Idle;
                    busy -= 1;
                }
                if m.state == State::Idle && busy < MAX_SYNCS && job.phase != Phase::Done {
                    m.state = State::Busy(now);
                    busy += 1;
                    starts.push((*id, job.term.vnode, m.node, job.term.range, m.pull_only));
                }
            }
        }
        for (id, vnode, target, range, pull_only) in starts {
            self.start_sync(cx, now, (vnode, target), range, Some((id, pull_only)));
        }
        let active = self.finishing.jobs.values().any(|j| j.phase != Phase::Done);
        self.finishing.at = active.then_some(now + ROUND);
    }

    /// Moves job `id` to its next phase if this one is done, telling the
    /// authority.
    fn finish_advance(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let me = cx.ring.addr();
        let Some(job) = self.finishing.jobs.get(&id) else {
            return;
        };
        if job.phase == Phase::Done || !job.phase_done(me) {
            return;
        }
        let mut job = self.finishing.jobs.remove(&id).expect("job exists");
        let (vnode, range, term) = (job.term.vnode, job.term.range, job.term.term);
        match job.phase {
            Phase::Pull => {
                cx.authority.caught_up(&vnode, range, term, now);
                cx.io.counting.counters.catch_ups_ended += 1;
                job.term.catch_up.clear();
                job.phase = Phase::Push;
            }
            Phase::Push => {
                cx.authority.finished(&vnode, range, term, now);
                cx.io.counting.counters.terms_finished += 1;
                job.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        job.members = members(&job.term, job.phase, me);
        self.finishing.next += 1;
        self.finishing.jobs.insert(self.finishing.next, job);
        // The next phase starts at the next round (soon).
    }

    /// A finishing sync with `member` of job `job` found `side` arrived
    /// (`ok`), or failed to (then it is asked again, if that side is the
    /// one this phase needs).
    pub(super) fn finish_member(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        job: u64,
        member: SocketAddr,
        (side, ok): (Side, bool),
    ) {
        let Some(j) = self.finishing.jobs.get_mut(&job) else {
            return;
        };
        let needed = match j.phase {
            Phase::Pull => Side::Pulled,
            Phase::Push => Side::Pushed,
            Phase::Done => return,
        };
        let Some(m) = j.members.iter_mut().find(|m| m.node.addr == member) else {
            return;
        };
        if side == needed || side == Side::Both {
            m.state = match ok {
                true => State::Done,
                false => State::Idle,
            };
        }
        // (The other side's news changes nothing: this phase waits for
        // its own.)
        self.finish_advance(cx, now, job);
        if self.finishing.at.is_none_or(|at| at > now + ROUND) {
            self.finishing.at = Some(now + ROUND);
        }
    }

    /// Sync `req` of finishing job `job` found differences: `member`
    /// pushes its side and says when it is done.
    pub(super) fn finish_awaits(&mut self, req: u64, job: u64, member: SocketAddr) {
        self.finishing.awaiting.insert(req, (job, member));
    }

    /// A replica's push for our sync `req` ended (`SyncPushed`).
    pub(super) fn finish_pulled(&mut self, cx: &mut Cx<'_>, now: Time, req: u64, ok: bool) {
        if let Some((job, member)) = self.finishing.awaiting.remove(&req) {
            self.finish_member(cx, now, job, member, (Side::Pulled, ok));
        }
    }

    /// Our push to `member` for finishing job `job` ended.
    pub(super) fn finish_pushed(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        job: u64,
        member: SocketAddr,
        ok: bool,
    ) {
        self.finish_member(cx, now, job, member, (Side::Pushed, ok));
    }
}
