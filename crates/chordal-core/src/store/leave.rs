//! Graceful leave (docs/design.md §6): a leaving node hands every range it owns
//! to its successor with acknowledged transfers, and says goodbye to its
//! neighbours only once the successor has stored everything — or once the
//! drain timeout passed, saying how much was not handed over.
//!
//! While it drains, the node still routes and serves reads, but refuses
//! writes to its ranges (`WrongOwner`: the coordinator retries, and after
//! the farewell the successor takes them), so that nothing written behind
//! the transfer's read position is missed.
//!
//! Under authority the farewell also waits (at most [`MAX_AUTHORITY_WAIT`]
//! past the transfers, and never past the drain timeout) until no term
//! needs this node's copies: its own terms finished and told, and no live
//! term naming one of its configs pending (`Authority::may_leave`). A
//! node that left while a config it belongs to was still pending would
//! take one of that config's copies with it, and a second leave could
//! strand the config below a majority: its writes unreadable for good.
//!
//! After the farewell the process stays on a little (at most
//! [`MAX_AUTHORITY_WAIT`] again), out of the ring and deciding nothing,
//! as an acceptor and a copy of the configs it was in: until the next
//! holder of each range it held settled and finished a term without it.
//! If the successor it handed a range to dies before that, whoever
//! follows it still finds a majority of the leaver's config (the leaver
//! and itself) to grant and read from. Only then is the leave over
//! ([`Store::left`]).

use super::transfer::{Ended, Purpose, Push, Transfer};
use super::{Deadline, Store};
use crate::authority::ACx;
use crate::io::Cx;
use crate::{KeyRange, NodeRef, Time};
use std::time::Duration;

/// What a graceful leave handed over.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LeaveReport {
    /// Records (and their key and value bytes) the successors acknowledged.
    pub records: u64,
    /// Bytes of keys and values handed over.
    pub bytes: u64,
    /// Ranges whose transfer did not finish before the drain timeout (or
    /// gave up): their records may exist only on this node's disk (and on
    /// the replicas, with R > 1).
    pub ranges_not_handed_over: u32,
}

/// Longest a leave waits for the authority once its transfers are done.
pub const MAX_AUTHORITY_WAIT: Duration = Duration::from_secs(30);
/// How often a leave waiting for the authority looks again.
const AUTHORITY_RECHECK: Duration = Duration::from_millis(50);

/// A leave in progress.
#[derive(Debug)]
pub(super) struct Leaving {
    deadline: Time,
    /// When the transfers were all done (then the authority wait began).
    transfers_done: Option<Time>,
    /// Ranges whose every record the recipient acknowledged, and to whom.
    handed: Vec<(KeyRange, NodeRef)>,
    /// Leave transfers still running.
    transfers: Vec<u64>,
    report: LeaveReport,
    /// Only the operations we took on as owner keep the farewell back:
    /// we take no new one (see [`Store::closing`]).
    closing: bool,
}

impl Store {
    /// Is our farewell waiting only for the operations we took on as owner
    /// to end? Then we take on no new one (reads included), so that it
    /// comes soon.
    pub(super) fn closing(&self) -> bool {
        self.gone_from_ring() || self.leaving.as_ref().is_some_and(|l| l.closing)
    }

    /// Have we said goodbye (lingering on as an acceptor, or gone)?
    pub(super) fn gone_from_ring(&self) -> bool {
        self.lingering.is_some() || self.left.is_some()
    }

    /// Starts a graceful leave: every owned range goes to its successor;
    /// the farewells follow when all is acknowledged or at `now + drain`.
    pub fn start_leave(&mut self, cx: &mut Cx<'_>, now: Time, drain: Duration) {
        if self.leaving.is_some() || self.gone_from_ring() {
            return;
        }
        let deadline = now + drain;
        let mut leaving = Leaving {
            deadline,
            transfers_done: None,
            handed: Vec::new(),
            transfers: Vec::new(),
            report: LeaveReport::default(),
            closing: false,
        };
        for push in self.leave_pushes(cx) {
            if let Some(id) = self.start_transfer(cx, now, push, Purpose::Leave) {
                leaving.transfers.push(id);
            }
        }
        self.leaving = Some(leaving);
        self.deadlines.insert((deadline, Deadline::LeaveDrain));
        self.check_leave_done(cx, now);
    }

    /// Each owned range, whole, to the successor of the vnode owning it
    /// (on another process).
    pub(super) fn leave_pushes(&self, cx: &Cx<'_>) -> Vec<Push> {
        cx.ring
            .vnodes()
            .iter()
            .filter(|v| v.is_joined())
            .filter_map(|v| {
                let range = v.range()?;
                // The first successor on another process: our own vnodes
                // go with us.
                let succ = v
                    .table()
                    .successors()
                    .iter()
                    .find(|s| s.addr != cx.ring.addr())?;
                Some(Push::whole(*succ, v.me(), range.start, range.end))
            })
            .collect()
    }

    /// The ranges a graceful leave handed over whole, and to whom (empty
    /// until the farewell): the authority hands each recipient the term
    /// it held there.
    pub fn handed_over(&self) -> &[(KeyRange, NodeRef)] {
        &self.handed
    }

    /// Is this node draining its ranges before it leaves, or lingering
    /// after its farewell?
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some() || self.lingering.is_some()
    }

    /// How the graceful leave went, once it is over: the farewells sent
    /// and no term needing us any more (the driver may then stop).
    pub fn left(&self) -> Option<LeaveReport> {
        self.left
    }

    /// Progress of a leave in progress: records and bytes acknowledged so
    /// far, and transfers still running.
    pub fn leave_progress(&self) -> Option<(u64, u64, usize)> {
        let l = self.leaving.as_ref()?;
        let (r, b) = self.transfer_progress(&l.transfers);
        Some((l.report.records + r, l.report.bytes + b, l.transfers.len()))
    }

    /// A leave transfer ended: count it; one that failed is tried again
    /// to the current successor while time is left.
    pub(super) fn leave_transfer_ended(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        t: &Transfer,
        how: Ended,
    ) {
        let Some(l) = self.leaving.as_mut() else {
            return;
        };
        l.transfers.retain(|x| *x != id);
        if how == Ended::Done && t.push.buckets == 1 {
            let range = KeyRange {
                start: t.push.start,
                end: t.push.end,
            };
            l.handed.push((range, t.push.to));
        }
        l.report.records += t.records_acked;
        l.report.bytes += t.bytes_acked;
        if how == Ended::Failed {
            let deadline = l.deadline;
            let again = (now < deadline)
                .then(|| {
                    self.leave_pushes(cx)
                        .into_iter()
                        .find(|p| p.me == t.push.me)
                })
                .flatten();
            match again.and_then(|p| self.start_transfer(cx, now, p, Purpose::Leave)) {
                Some(next) => {
                    if let Some(l) = self.leaving.as_mut() {
                        l.transfers.push(next);
                    }
                }
                None => {
                    if let Some(l) = self.leaving.as_mut() {
                        l.report.ranges_not_handed_over += 1;
                    }
                }
            }
        }
        self.check_leave_done(cx, now);
    }

    /// The drain timeout passed: leave with what was handed over.
    pub(super) fn leave_drain_expired(&mut self, cx: &mut Cx<'_>, now: Time) {
        let Some(running) = self.leaving.as_ref().map(|l| l.transfers.clone()) else {
            return;
        };
        let (r, b) = self.transfer_progress(&running);
        if let Some(l) = self.leaving.as_mut() {
            l.report.ranges_not_handed_over += running.len() as u32;
            l.report.records += r;
            l.report.bytes += b;
            l.transfers.clear();
        }
        self.check_leave_done(cx, now);
    }

    /// Everything handed over (or out of time), and no term needs our
    /// copies (or out of time): say goodbye. Called on every transfer's
    /// end, at the drain timeout, and every [`AUTHORITY_RECHECK`] while
    /// the authority holds the farewell back.
    pub(super) fn check_leave_done(&mut self, cx: &mut Cx<'_>, now: Time) {
        // Every operation we took on as owner is answered before the
        // farewell: a coordinator whose request is still unanswered then
        // may send it to the next owner (it never reached us). They end by
        // their deadlines.
        let answering = !self.owners.is_empty();
        let Some(l) = self.leaving.as_mut() else {
            return;
        };
        if !l.transfers.is_empty() {
            return;
        }
        let done_at = *l.transfers_done.get_or_insert(now);
        let out_of_time = now >= l.deadline || now >= done_at + MAX_AUTHORITY_WAIT;
        let may = may_leave(cx, now);
        l.closing = may || out_of_time;
        if !out_of_time && (!may || answering) {
            self.deadlines
                .insert((now + AUTHORITY_RECHECK, Deadline::LeaveCheck));
            return;
        }
        if !may {
            // Out of time: leave anyway, and say so in the errors.
            cx.io.counting.error("leave_before_terms_finished");
        }
        let l = self.leaving.take().expect("leaving");
        self.handed = l.handed.clone();
        self.deadlines.remove(&(l.deadline, Deadline::LeaveDrain));
        cx.io.farewell = true;
        if cx.config.authority {
            // Stay on as an acceptor until the next holders need us no
            // more (asked after the farewell gave our terms up).
            self.lingering = Some((now, l.report));
            self.deadlines
                .insert((now + AUTHORITY_RECHECK, Deadline::LeaveCheck));
        } else {
            self.left = Some(l.report);
        }
    }

    /// After the farewell: is any range we held still waiting for a next
    /// holder's term without us (`Authority::may_leave`)? Then look again
    /// soon; once not, or [`MAX_AUTHORITY_WAIT`] after the farewell, the
    /// leave is over. Called on the leave's check timer.
    pub(super) fn check_gone(&mut self, cx: &mut Cx<'_>, now: Time) {
        let Some((since, report)) = self.lingering else {
            return;
        };
        let may = may_leave(cx, now);
        if !may && now < since + MAX_AUTHORITY_WAIT {
            self.deadlines
                .insert((now + AUTHORITY_RECHECK, Deadline::LeaveCheck));
            return;
        }
        if !may {
            cx.io.counting.error("left_while_needed");
        }
        self.lingering = None;
        self.left = Some(report);
    }
}

/// May we go without stranding a write (`Authority::may_leave`)? If not,
/// the holders that count on us hear again that we are leaving.
fn may_leave(cx: &mut Cx<'_>, now: Time) -> bool {
    let mut acx = ACx {
        config: cx.config,
        ring: cx.ring,
        io: cx.io,
    };
    let may = cx.authority.may_leave(&acx, now);
    if !may {
        cx.authority.announce_leaving(&mut acx, now);
    }
    may
}
