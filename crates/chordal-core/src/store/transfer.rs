//! Acknowledged bulk transfer (docs/design.md §6): how records move between nodes
//! in bulk — a join's handoff, the pushes of a range sync, re-replication
//! and a graceful leave.
//!
//! A transfer sends the records of a ring interval `(start, end]` (some of
//! its sync buckets, or all of it) to one node as ordered *pages*: each
//! page is one `Replicate` of at most [`PAGE_RECORDS`] records and
//! [`PAGE_BYTES`] bytes, read from the store just before it is sent. At
//! most [`WINDOW`] pages are in flight; the receiver acknowledges a page
//! (`ReplicateAck`) once it stored it durably, and only then is the next
//! one read. A page not acknowledged in time, refused, or answered `busy`
//! rewinds the transfer to just after the last page acknowledged in order
//! and resumes from there after a pause that doubles each time, up to
//! [`MAX_FAILURES`] failures in a row. Nothing on this path is dropped to
//! relieve a queue: a slow receiver slows the sender.
//!
//! At most [`MAX_TRANSFERS`] run at once per process; more wait in order.

use super::{Deadline, Store, StoreKind, StoreResult, StoreWait};
use crate::io::Cx;
use crate::{Id, Message, NodeRef, Record, Time};
use std::collections::VecDeque;
use std::time::Duration;

/// Most records in one page.
pub const PAGE_RECORDS: usize = 1024;
/// Most bytes of keys and values in one page (a page holds at least one
/// record, so a page is at most this plus one largest value).
pub const PAGE_BYTES: usize = 1024 * 1024;
/// Pages in flight per transfer.
pub const WINDOW: usize = 4;
/// Transfers running at once per process.
pub const MAX_TRANSFERS: usize = 8;
/// Transfers running at once to one process: with [`WINDOW`] pages each,
/// at most 8 pages (8–16 MiB) wait in one connection's send buffer.
pub const MAX_TRANSFERS_PER_PEER: usize = 2;
/// Failures in a row (timeouts, refusals) before a transfer gives up.
pub const MAX_FAILURES: u32 = 6;
/// Most transfers waiting to start (a sync round that finds more to push
/// skips the push: the next round finds it again).
const MAX_QUEUED: usize = 1024;

/// Why records move: decides what happens when a transfer ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    /// A range sync found differing buckets.
    Sync,
    /// Our range shrank: the new owner gets what we held of the lost part.
    Handoff,
    /// We are leaving: the successor gets our whole range.
    Leave,
}

/// Who hears how a transfer ended, besides the purpose's own handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum OnEnd {
    /// A push answering an owner's sync `req`: tell that owner
    /// (`SyncPushed`), from our vnode `me`.
    TellOwner {
        owner: NodeRef,
        me: NodeRef,
        req: u64,
    },
    /// A finishing job's push to one member (`finish.rs`).
    Finish {
        job: u64,
        member: std::net::SocketAddr,
    },
}

/// Which records to send where: those of `(start, end]` in the buckets
/// `which` of `buckets`, from our vnode `me` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Push {
    pub(super) to: NodeRef,
    pub(super) me: NodeRef,
    pub(super) start: Id,
    pub(super) end: Id,
    pub(super) buckets: u32,
    pub(super) which: Vec<u32>,
}

impl Push {
    /// Everything of `(start, end]`.
    pub fn whole(to: NodeRef, me: NodeRef, start: Id, end: Id) -> Push {
        Push {
            to,
            me,
            start,
            end,
            buckets: 1,
            which: vec![0],
        }
    }
}

/// A position in key order: the last record of a page.
type Cursor = Option<(Id, Vec<u8>)>;

/// One page sent and not yet acknowledged.
#[derive(Debug)]
struct Page {
    req: u64,
    /// Where the page ends: the next page starts after it.
    end: (Id, Vec<u8>),
    records: u64,
    bytes: u64,
    acked: bool,
}

/// A transfer in progress.
#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) push: Push,
    pub(super) purpose: Purpose,
    on_end: Option<OnEnd>,
    /// Everything up to here is acknowledged by the receiver.
    acked: Cursor,
    /// The next page is read after this.
    read: Cursor,
    /// A store scan for the next page is outstanding.
    reading: bool,
    /// The store has nothing after `read`.
    read_all: bool,
    pages: VecDeque<Page>,
    failures: u32,
    /// Waiting until this time before resuming after a failure.
    paused_until: Option<Time>,
    pub(super) records_acked: u64,
    pub(super) bytes_acked: u64,
}

/// How a transfer ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ended {
    Done,
    Failed,
}

/// All transfers of a process.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    pub(super) running: crate::fasthash::FastMap<u64, Transfer>,
    /// Waiting for a free slot, in order.
    queued: VecDeque<(u64, Push, Purpose, Option<OnEnd>)>,
    /// Page request number → transfer.
    pub(super) pages: crate::fasthash::FastMap<u64, u64>,
    /// Totals since start, for metrics.
    pub(super) records_sent: u64,
    pub(super) bytes_sent: u64,
    pub(super) failures: u64,
}

impl Transfers {
    /// Is a transfer with the same destination and records running or
    /// waiting?
    fn has(&self, push: &Push) -> bool {
        self.running.values().any(|t| t.push == *push) || self.queued.iter().any(|q| q.1 == *push)
    }

    /// Transfers running or waiting.
    pub fn len(&self) -> usize {
        self.running.len() + self.queued.len()
    }
}

fn page_timeout(cx: &Cx<'_>) -> Duration {
    // A page is at most ~1 MiB plus one value and one fsync away; the
    // request timeout of the key-value layer is generous for it.
    cx.config.kv_timeout
}

impl Store {
    /// Starts (or queues) sending the records `push` names. Returns the
    /// transfer's number, or `None` when the same transfer is already on
    /// its way (or too many wait).
    pub(super) fn start_transfer(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        push: Push,
        purpose: Purpose,
    ) -> Option<u64> {
        self.start_transfer_then(cx, now, push, purpose, None)
    }

    /// [`Store::start_transfer`], telling `on_end` how it ended. A
    /// transfer that does not start is not told of: the caller handles
    /// `None`.
    pub(super) fn start_transfer_then(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        push: Push,
        purpose: Purpose,
        on_end: Option<OnEnd>,
    ) -> Option<u64> {
        if purpose != Purpose::Leave && self.transfers.has(&push) {
            return None;
        }
        if self.transfers.queued.len() >= MAX_QUEUED && purpose != Purpose::Leave {
            return None;
        }
        let id = cx.io.next();
        self.transfers.queued.push_back((id, push, purpose, on_end));
        self.start_queued_transfers(cx, now);
        Some(id)
    }

    /// Moves waiting transfers into free slots, in order, skipping those
    /// whose destination already receives [`MAX_TRANSFERS_PER_PEER`].
    fn start_queued_transfers(&mut self, cx: &mut Cx<'_>, now: Time) {
        while self.transfers.running.len() < MAX_TRANSFERS {
            let t = &self.transfers;
            let busy = |addr| {
                t.running
                    .values()
                    .filter(|r| r.push.to.addr == addr)
                    .count()
                    >= MAX_TRANSFERS_PER_PEER
            };
            let Some(next) = t.queued.iter().position(|q| !busy(q.1.to.addr)) else {
                return;
            };
            let Some((id, push, purpose, on_end)) = self.transfers.queued.remove(next) else {
                return;
            };
            let t = Transfer {
                push,
                purpose,
                on_end,
                acked: None,
                read: None,
                reading: false,
                read_all: false,
                pages: VecDeque::new(),
                failures: 0,
                paused_until: None,
                records_acked: 0,
                bytes_acked: 0,
            };
            self.transfers.running.insert(id, t);
            self.transfer_pump(cx, now, id);
        }
    }

    /// Reads the next page if the window has room; ends the transfer when
    /// everything is acknowledged.
    fn transfer_pump(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(t) = self.transfers.running.get_mut(&id) else {
            return;
        };
        if t.paused_until.is_some_and(|at| at > now) || t.reading {
            return;
        }
        t.paused_until = None;
        if t.read_all && t.pages.is_empty() {
            self.end_transfer(cx, now, id, Ended::Done);
            return;
        }
        if t.read_all || t.pages.len() >= WINDOW {
            return;
        }
        t.reading = true;
        let kind = StoreKind::ScanBuckets {
            start: t.push.start,
            end: t.push.end,
            buckets: t.push.buckets,
            which: t.push.which.clone(),
            resume: t.read.clone(),
            limit: PAGE_RECORDS,
            max_bytes: PAGE_BYTES,
        };
        self.store_op(cx, kind, StoreWait::TransferRead(id));
    }

    /// The store read the next page of transfer `id`: send it.
    pub(super) fn transfer_page_read(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        result: StoreResult,
    ) {
        let req = cx.io.next();
        let Some(t) = self.transfers.running.get_mut(&id) else {
            return;
        };
        t.reading = false;
        let StoreResult::Scanned(records) = result else {
            // The store failed: try again later, as for a lost page.
            self.transfer_failed(cx, now, id);
            return;
        };
        let bytes: usize = records.iter().map(record_bytes).sum();
        let Some(last) = records.last() else {
            t.read_all = true;
            self.transfer_pump(cx, now, id);
            return;
        };
        // A short page is the last one.
        t.read_all = records.len() < PAGE_RECORDS && bytes < PAGE_BYTES;
        let end = (last.key_id, last.key.clone());
        t.read = Some(end.clone());
        t.pages.push_back(Page {
            req,
            end,
            records: records.len() as u64,
            bytes: bytes as u64,
            acked: false,
        });
        let (me, to) = (t.push.me, t.push.to);
        self.transfers.pages.insert(req, id);
        self.transfers.records_sent += records.len() as u64;
        self.transfers.bytes_sent += bytes as u64;
        let deadline = now + page_timeout(cx);
        self.deadlines
            .insert((deadline, Deadline::TransferPage(req)));
        cx.io.send(
            me,
            to,
            Message::Replicate {
                req,
                records,
                fence: 0,
            },
        );
        self.transfer_pump(cx, now, id);
    }

    /// A receiver answered page `req`. Returns false if `req` is not a
    /// transfer's page.
    pub(super) fn transfer_ack(&mut self, cx: &mut Cx<'_>, now: Time, req: u64, ok: bool) -> bool {
        let Some(id) = self.transfers.pages.remove(&req) else {
            return false;
        };
        if !ok {
            self.transfer_failed(cx, now, id);
            return true;
        }
        let Some(t) = self.transfers.running.get_mut(&id) else {
            return true;
        };
        if let Some(p) = t.pages.iter_mut().find(|p| p.req == req) {
            p.acked = true;
        }
        // Everything up to the first page not yet acknowledged is safe.
        while t.pages.front().is_some_and(|p| p.acked) {
            let p = t.pages.pop_front().expect("front exists");
            t.acked = Some(p.end);
            t.records_acked += p.records;
            t.bytes_acked += p.bytes;
        }
        t.failures = 0;
        self.transfer_pump(cx, now, id);
        true
    }

    /// Page `req` was not answered in time.
    pub(super) fn transfer_page_expired(&mut self, cx: &mut Cx<'_>, now: Time, req: u64) {
        if let Some(id) = self.transfers.pages.remove(&req) {
            self.transfer_failed(cx, now, id);
        }
    }

    /// A page was lost or refused: forget the pages in flight, resume
    /// after the last acknowledged one after a pause (or give up).
    fn transfer_failed(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(t) = self.transfers.running.get_mut(&id) else {
            return;
        };
        self.transfers.failures += 1;
        t.failures += 1;
        for p in t.pages.drain(..) {
            self.transfers.pages.remove(&p.req);
        }
        t.read = t.acked.clone();
        t.read_all = false;
        if t.failures >= MAX_FAILURES {
            self.end_transfer(cx, now, id, Ended::Failed);
            return;
        }
        // 100 ms, 200 ms, … : a busy receiver gets time to catch up.
        let pause = Duration::from_millis(100) * (1 << t.failures.min(6));
        let at = now + pause;
        t.paused_until = Some(at);
        self.deadlines.insert((at, Deadline::TransferResume(id)));
    }

    /// Transfers to peers whose port refused us end now, failed (a leave's
    /// is started again to the current successor), rather than wait out
    /// page timeouts.
    pub fn transfers_to_dead(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        dead: &impl Fn(&NodeRef) -> bool,
    ) {
        self.end_transfers_to(cx, now, &|to: &NodeRef, _: &NodeRef| dead(to), false);
    }

    /// Our leave's transfers to a peer the ring declared failed end now,
    /// failed, where the ring names another successor: each starts again
    /// there, rather than wait out page timeouts to a silent peer
    /// (seconds per page). Where it names none (we are cut off), they keep
    /// trying until the drain timeout. Other transfers keep their own
    /// retries: a peer declared failed under loss may be alive.
    pub fn leave_transfers_to_failed(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        failed: &impl Fn(&NodeRef) -> bool,
    ) {
        if self.leaving.is_none() {
            return;
        }
        let elsewhere: Vec<NodeRef> = self
            .leave_pushes(cx)
            .iter()
            .filter(|p| !failed(&p.to))
            .map(|p| p.me)
            .collect();
        let moved = |to: &NodeRef, me: &NodeRef| failed(to) && elsewhere.contains(me);
        self.end_transfers_to(cx, now, &moved, true);
    }

    /// Ends the transfers `dead(to, from)` says are to peers gone (only
    /// our leave's if `leave_only`), running or queued, as failed.
    fn end_transfers_to(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        dead: &impl Fn(&NodeRef, &NodeRef) -> bool,
        leave_only: bool,
    ) {
        let ours = |purpose: Purpose| !leave_only || purpose == Purpose::Leave;
        let doomed: Vec<u64> = self
            .transfers
            .running
            .iter()
            .filter(|(_, t)| dead(&t.push.to, &t.push.me) && ours(t.purpose))
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            self.transfers.failures += 1;
            self.end_transfer(cx, now, id, Ended::Failed);
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfers.queued)
            .into_iter()
            .partition(|q| dead(&q.1.to, &q.1.me) && ours(q.2));
        self.transfers.queued = kept.into();
        for (_, _, _, on_end) in gone {
            self.transfer_told(cx, now, on_end, Ended::Failed);
        }
    }

    /// The pause after a failure is over.
    pub(super) fn transfer_resume(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        self.transfer_pump(cx, now, id);
    }

    fn end_transfer(&mut self, cx: &mut Cx<'_>, now: Time, id: u64, how: Ended) {
        let Some(t) = self.transfers.running.remove(&id) else {
            return;
        };
        for p in &t.pages {
            self.transfers.pages.remove(&p.req);
        }
        if t.purpose == Purpose::Leave {
            self.leave_transfer_ended(cx, now, id, &t, how);
        }
        self.transfer_told(cx, now, t.on_end, how);
        self.start_queued_transfers(cx, now);
    }

    /// Tells whoever waits on a transfer how it ended.
    fn transfer_told(&mut self, cx: &mut Cx<'_>, now: Time, on_end: Option<OnEnd>, how: Ended) {
        match on_end {
            None => {}
            Some(OnEnd::TellOwner { owner, me, req }) => {
                let ok = how == Ended::Done;
                cx.io.send(me, owner, Message::SyncPushed { req, ok });
            }
            Some(OnEnd::Finish { job, member }) => {
                self.finish_pushed(cx, now, job, member, how == Ended::Done)
            }
        }
    }

    /// Records and bytes acknowledged so far by the receivers of the
    /// running transfers `ids`.
    pub(super) fn transfer_progress(&self, ids: &[u64]) -> (u64, u64) {
        ids.iter()
            .filter_map(|id| self.transfers.running.get(id))
            .fold((0, 0), |(r, b), t| (r + t.records_acked, b + t.bytes_acked))
    }
}

/// What a record counts for in a page's byte budget (as the store's
/// `ScanBuckets` counts it).
pub(super) fn record_bytes(r: &Record) -> usize {
    r.key.len() + r.value.as_ref().map_or(0, Vec::len)
}
