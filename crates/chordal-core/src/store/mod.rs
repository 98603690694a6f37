//! The store sub-machine: the key-value store on the ring (DESIGN §5),
//! as decisions of the sans-IO core — when a write is acknowledged, when a
//! read must ask the replicas, what to sync, hand over and forget. The
//! driver performs the storage operations asked for ([`StoreRequest`],
//! `Node::poll_store`) and reports their results (`Node::handle_store`);
//! it never decides anything itself.
//!
//! Roles, all possibly the same process (the coordinator that brings an
//! operation here is the request machine's):
//! - the **owner** versions writes with its hybrid logical clock, stores
//!   them and replicates them to the next `R - 1` distinct processes,
//!   answering after `W` durable copies; it serves reads, asking the
//!   replicas when it lacks a key during a handoff (`owner/`);
//! - a **replica** stores what the owner sends, if newer (`replica.rs`);
//! - **sync** compares each owned range with each replica and pushes the
//!   differences (`sync.rs`), **sweep** forgets what no longer belongs here
//!   (`sweep.rs`), **transfer** moves records in acknowledged pages
//!   (`transfer.rs`), and a graceful **leave** drains every range first
//!   (`leave.rs`).

mod batch;
mod finish;
mod hot;
mod leave;
mod outgoing;
mod owner;
mod replica;
mod scan;
mod storage;
mod sweep;
mod sync;
#[cfg(test)]
mod tests;
mod transfer;
mod watch;
#[cfg(test)]
mod write_tests;

pub use leave::LeaveReport;
pub use storage::{Applied, StoreKind, StoreOpId, StoreRequest, StoreResult};
pub use sync::{
    FINE, bucket_count, bucket_hash, bucket_of, bucket_span, fine_bounds, fine_of, fine_span,
    record_digest,
};

use crate::fasthash::FastMap;
use crate::io::Cx;
use crate::request::ReplyTo;
use crate::{Envelope, Hlc, Id, Message, NodeRef, Record, Time, Version};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The newest version a store kept instead of the records of an apply.
/// For each record applied that was not taken (a newer one was held):
/// its index and the version kept.
fn kept_instead(applied: &[Applied]) -> Vec<(u32, Version)> {
    applied
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.kept().map(|v| (i as u32, v)))
        .collect()
}

/// Whom an owner answers for a request, and by when (the coordinator's
/// deadline less a margin: see `ReplyTo::answer_by`).
#[derive(Debug)]
struct Asker {
    reply: ReplyTo,
    answer_by: Time,
}

/// Which attempt of a write this is (a copy that kept a newer version
/// makes the owner version the write again), and when the write fails if
/// its quorum is not met.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    number: u32,
    deadline: Time,
}

impl Attempt {
    /// The first attempt of a write that must be answered by `deadline`.
    fn first(deadline: Time) -> Attempt {
        Attempt {
            number: 1,
            deadline,
        }
    }
}

/// What an owner reads a key for.
#[derive(Debug)]
enum ReadFor {
    /// A get, from as many copies as the consistency says.
    Get(crate::Consistency),
    /// A get of a key that may not be ours (see `Ownership::Maybe`): a
    /// miss answers `WrongOwner`, not `NotFound`.
    MaybeGet,
    /// A write that needs the current record (it holds the key).
    Write(Box<(crate::write::Intent, Option<crate::request::OpName>)>),
    /// One key of batch `.0` (which holds it).
    Batch(u64),
}

/// What an owner is doing for one request.
#[derive(Debug)]
enum OwnerOp {
    /// Waiting for `need` durable copies of `record`.
    Write {
        reply: Option<ReplyTo>,
        /// What to answer once the quorum holds it.
        then: crate::write::Then,
        /// The owner vnode that versioned the write.
        vnode: NodeRef,
        record: Record,
        /// Records of a batch written with `record` (same key id and
        /// version), in the same atomic apply.
        others: Vec<Record>,
        need: u32,
        /// Copies that now hold exactly `record`.
        acked: u32,
        /// Copies (local and replicas) not yet answered.
        outstanding: u32,
        /// Versions of this write tried so far (a copy that holds a newer
        /// version makes the owner version the write again, above it).
        attempt: u32,
        /// Counted in `Store::unacked` (until acknowledged or failed).
        unacked: bool,
        deadline: Time,
        /// The term the write was decided in (0 without authority). Not
        /// always `record.version.term`: a restored record keeps the
        /// version it was backed up with.
        fence: u64,
    },
    /// Reading a key from our copy, maybe from the replicas too; then
    /// answering a get, or deciding the write that reads.
    Read {
        reply: ReplyTo,
        vnode: NodeRef,
        key: Vec<u8>,
        why: ReadFor,
        /// The newest record seen so far (starting with a write of ours
        /// not yet in our store).
        best: Option<Record>,
        /// The version of our own copy, once read.
        local: Option<Version>,
        /// Replicas that answered, with the version of their copy.
        copies: Vec<(NodeRef, Option<Version>)>,
        /// Copies that must answer before the read does; copies that did.
        need: u32,
        answered: u32,
        /// Copies asked and not yet answered.
        outstanding: u32,
        asked_replicas: bool,
        /// A new term catching up: the previous configs (processes) of
        /// which a majority must answer before the read may (DESIGN §5,
        /// "Who decides"); the processes that answered, ours included.
        quorums: Vec<Vec<std::net::SocketAddr>>,
        heard: Vec<std::net::SocketAddr>,
        /// Our own store could not read the key.
        failed: bool,
        /// When the read gives up; `answer_by`: when the whole operation
        /// (a write that follows included) must be answered.
        deadline: Time,
        answer_by: Time,
    },
}

/// Why the core waits for a storage operation.
#[derive(Debug)]
enum StoreWait {
    /// The owner's own copy of write `.0`, of keys `.1`.
    OwnerWrite(u64, Vec<Vec<u8>>),
    /// The owner's local read.
    OwnerRead(u64),
    /// The owner's read of a scan page.
    OwnerScan(Box<scan::Scanning>),
    /// The owner's read of a run of elements for batch `.0`: of its
    /// collection, or of the collection `.1.1` one of its steps names.
    BatchElements(u64, Box<(crate::collection::Range, Option<Vec<u8>>)>),
    /// A replica storing what an owner sent; ack `req` to `to`. `fence`:
    /// the owner's term and the keys, to check again once durable.
    ReplicaApply {
        to: NodeRef,
        me: NodeRef,
        req: u64,
        fence: Option<(u64, Vec<Id>)>,
    },
    /// A replica reading for an owner; answer `req` to `to`.
    ReplicaRead { to: NodeRef, me: NodeRef, req: u64 },
    /// An owner repairing its copy from a replica's; nothing waits.
    Repair,
    /// A sync this vnode runs as owner: its summary is ready.
    SyncOwnSummary(u64),
    /// A sync run by an owner elsewhere: compare with `theirs`, answer the
    /// differing buckets to `to`.
    SyncCompare(sync::Compare),
    /// The next page of transfer `.0` to send.
    TransferRead(u64),
    /// The promise table is being kept: then send these grants.
    Promises(Vec<Envelope>),
    /// Watch `.0`'s read of what its store holds newer.
    Watch(u64),
}

/// A deadline of the store machine.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Deadline {
    /// An owner operation's.
    Owner(u64),
    Sync(u64),
    /// A transfer's page awaiting its acknowledgement.
    TransferPage(u64),
    /// A transfer pausing after a failure.
    TransferResume(u64),
    /// A graceful leave's drain timeout.
    LeaveDrain,
    /// A graceful leave waiting for the authority looks again.
    LeaveCheck,
    /// A watch's time is up.
    Watch(u64),
}

/// The store state of one process. Maps keyed by numbers this process
/// chose use a fixed hasher, maps keyed by what peers send a `BTreeMap`:
/// iteration order never depends on a random seed, so one simulator seed
/// gives one run.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// Versions this process's writes (and observes every version seen).
    hlc: Hlc,
    owners: FastMap<u64, OwnerOp>,
    /// `Replicate` / `ReplicaRead` requests sent → the replica asked and
    /// the owner operations waiting for it (`outgoing.rs`).
    replica_reqs: FastMap<u64, outgoing::ReplicaReq>,
    /// `Replicate`s being filled this pass (`outgoing.rs`).
    outgoing: Vec<outgoing::Outgoing>,
    /// Keys with owner writes in flight or waiting (`hot.rs`).
    hot: hot::HotKeys,
    /// Keys with owner writes not yet at their quorum (authority: a read
    /// of one must not answer from our copy alone), and how many.
    unacked: FastMap<Vec<u8>, u32>,
    store_waits: FastMap<u64, StoreWait>,
    deadlines: BTreeSet<(Time, Deadline)>,
    store_out: VecDeque<StoreRequest>,
    /// When some virtual node's key range last grew: reads that miss ask
    /// the replicas for `handoff_window` after it.
    range_grew_at: Option<Time>,
    /// When the next round of range syncs is due.
    sync_at: Option<Time>,
    /// Syncs this process runs as owner, by request number.
    syncs: FastMap<u64, sync::SyncJob>,
    /// Ranges we hold replicas of, from owners' syncs: `(start, end, until)`.
    leases: Vec<(Id, Id, Time)>,
    /// When each (owner vnode, replica) pair last synced without a
    /// difference.
    in_sync: BTreeMap<(Id, Id), Time>,
    /// Each vnode's replica targets, and the successor-list change count
    /// they were computed at: a new target gets a sync at once.
    targets: FastMap<Id, (u64, Vec<NodeRef>)>,
    /// `Ring::successor_changes` when `targets` was last checked.
    targets_total: Option<u64>,
    /// Sync rounds run, and when the first one ran.
    rounds: u32,
    first_round: Option<Time>,
    /// Bulk transfers to other nodes.
    transfers: transfer::Transfers,
    /// Scan pages waiting for their store reads.
    scans: usize,
    /// Watches waiting at their owner (`watch.rs`).
    watches: watch::Watches,
    /// Batches at their owner, from arrival to decision (`batch.rs`).
    batches: FastMap<u64, batch::BatchOp>,
    /// `Replicate`s being stored for others (bounded: more are refused
    /// `busy`).
    replica_applies: usize,
    /// Terms of ours finishing their catch-up (`finish.rs`).
    finishing: finish::Finishing,
    /// A graceful leave in progress, and how it went once done.
    leaving: Option<leave::Leaving>,
    /// Since our farewell, while we stay on as an acceptor (see
    /// `Store::check_gone`): when it was, and how the leave went.
    lingering: Option<(Time, LeaveReport)>,
    left: Option<LeaveReport>,
    /// What the leave handed over whole (see `Store::handed_over`).
    handed: Vec<(crate::KeyRange, NodeRef)>,
}

impl Store {
    /// Tells the hybrid logical clock the largest hlc already stored
    /// (before the node starts: writes are then versioned above it).
    pub fn seed_clock(&mut self, max_stored_hlc: u64) {
        self.hlc.observe(max_stored_hlc);
    }

    /// Schedules the first periodic sync round at `at` (for a node started
    /// in an already converged ring, which sees no `Joined` event).
    pub fn first_sync_at(&mut self, at: Time) {
        self.sync_at = Some(at);
    }

    /// Asks the driver for a storage operation; `wait` says what to do with
    /// its result.
    fn store_op(&mut self, cx: &mut Cx<'_>, kind: StoreKind, wait: StoreWait) {
        let op = cx.io.next();
        self.store_waits.insert(op, wait);
        self.store_out.push_back(StoreRequest {
            op: StoreOpId(op),
            kind,
        });
    }

    /// Keeps the promise table `bytes` durably, then sends `then` (the
    /// grants that must not go out before it is kept).
    pub fn save_promises(&mut self, cx: &mut Cx<'_>, bytes: Vec<u8>, then: Vec<Envelope>) {
        self.store_op(
            cx,
            StoreKind::SavePromises { bytes },
            StoreWait::Promises(then),
        );
    }

    /// Owner operations and storage operations in flight (counted against
    /// `max_kv_ops`).
    pub fn in_flight(&self) -> usize {
        self.owners.len() + self.store_waits.len() + self.hot.waiting
    }

    /// When `handle_timeout` must run next (a deadline or a sync round).
    pub fn poll_timeout(&self) -> Option<Time> {
        let deadline = self.deadlines.first().map(|(t, _)| *t);
        deadline
            .into_iter()
            .chain(self.sync_at)
            .chain(self.finishing.at())
            .min()
    }

    /// Fills in the store's counters: replica applies running, transfers.
    pub fn fill_counters(&self, c: &mut crate::Counters) {
        c.replica_applies = self.replica_applies as u64;
        let t = &self.transfers;
        c.transfers_active = t.len() as u64;
        c.transfer_records = t.records_sent;
        c.transfer_bytes = t.bytes_sent;
        c.transfer_failures = t.failures;
    }

    /// Some vnode's range grew (or its predecessor is gone): for
    /// `handoff_window`, reads that miss ask the replicas too.
    pub fn range_grew(&mut self, now: Time) {
        self.range_grew_at = Some(now);
    }
}

/// The newer of two optional records.
fn newest(a: Option<Record>, b: Option<Record>) -> Option<Record> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.supersedes(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl Store {
    /// The next storage operation for the driver.
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.store_out.pop_front()
    }

    /// The result of a storage operation from `poll_store`.
    pub fn handle_store(&mut self, cx: &mut Cx<'_>, now: Time, op: StoreOpId, result: StoreResult) {
        let Some(wait) = self.store_waits.remove(&op.0) else {
            return;
        };
        match wait {
            StoreWait::OwnerWrite(id, keys) => match result {
                StoreResult::Applied(applied) => {
                    keys.iter().for_each(|k| self.hot.applied(k));
                    let kept = applied.iter().filter_map(storage::Applied::kept).max();
                    if let Some(v) = kept {
                        self.hlc.observe(v.hlc);
                    }
                    self.write_answer(cx, now, id, true, kept);
                }
                _ => {
                    keys.iter().for_each(|k| self.hot.applied(k));
                    self.owner_store_failed(cx, id)
                }
            },
            StoreWait::OwnerRead(id) => {
                let (record, failed) = match result {
                    StoreResult::Got(r) => (r, false),
                    _ => (None, true),
                };
                if let Some(r) = &record {
                    self.hlc.observe(r.version.hlc);
                }
                self.read_answer(cx, now, id, (None, record), failed);
            }
            StoreWait::OwnerScan(s) => self.scanned(cx, result, *s),
            StoreWait::BatchElements(id, range) => {
                self.batch_elements(cx, now, (id, *range), result)
            }
            StoreWait::ReplicaApply { to, me, req, fence } => {
                self.replica_applies = self.replica_applies.saturating_sub(1);
                let (ok, newer) = match &result {
                    StoreResult::Applied(applied) => (true, kept_instead(applied)),
                    _ => (false, Vec::new()),
                };
                let fenced =
                    fence.map_or(0, |(term, keys)| cx.authority.fence_keys(term, &keys, &to));
                let ack = crate::Message::ReplicateAck {
                    req,
                    ok: ok && fenced == 0,
                    newer,
                    busy: false,
                    fenced,
                };
                cx.io.send(me, to, ack);
            }
            StoreWait::ReplicaRead { to, me, req } => {
                let record = match result {
                    StoreResult::Got(r) => r,
                    _ => None,
                };
                cx.io
                    .send(me, to, crate::Message::ReplicaReadReply { req, record });
            }
            StoreWait::Repair => {}
            StoreWait::Watch(id) => self.watch_read(cx, id, result),
            StoreWait::SyncOwnSummary(req) => self.sync_summary_ready(cx, now, req, result),
            StoreWait::SyncCompare(c) => self.sync_compare(cx, now, c, result),
            StoreWait::TransferRead(id) => self.transfer_page_read(cx, now, id, result),
            StoreWait::Promises(then) => {
                cx.authority.saved(result == StoreResult::Saved);
                if result == StoreResult::Saved {
                    cx.io.out.extend(then);
                } else {
                    // Not durable: grant nothing (the holder asks again).
                    cx.io.counting.error("promises_not_saved");
                }
            }
        }
    }

    /// A message of the store's family ([`crate::Family::Store`]) from a
    /// peer (or one of our own vnodes).
    pub fn handle_message(&mut self, cx: &mut Cx<'_>, now: Time, env: Envelope) {
        // Taken apart, not cloned: a `Replicate` carries up to a page
        // (1 MiB) of records.
        let Envelope { from, to, msg } = env;
        match msg {
            Message::Replicate {
                req,
                records,
                fence,
            } => self.replica_apply(cx, (from, to), req, records, fence),
            Message::ReplicateAck {
                req,
                ok,
                newer,
                busy,
                fenced,
            } => {
                for (_, v) in &newer {
                    self.hlc.observe(v.hlc);
                }
                if !self.replicate_acked(cx, now, req, (ok && !busy, fenced), &newer) {
                    self.transfer_ack(cx, now, req, ok && !busy);
                }
            }
            Message::ReplicaRead { req, key } => self.replica_read(cx, (from, to), req, key),
            Message::SyncSummary {
                req,
                start,
                end,
                buckets,
                probe,
            } => {
                let me = cx.ring.addressee(to.id);
                self.sync_lease(cx, now, start, end);
                let c = sync::Compare {
                    to: from,
                    me,
                    req,
                    start,
                    end,
                    theirs: buckets,
                    probe,
                };
                self.sync_summary_received(cx, now, c);
            }
            Message::SyncDiff {
                req,
                differing,
                refine,
            } => self.sync_diff_received(cx, now, req, differing, refine),
            Message::SyncPushed { req, ok } => self.finish_pulled(cx, now, req, ok),
            Message::Collect { start, end, before } => {
                self.collect_received(cx, from, start, end, before)
            }
            Message::ReplicaReadReply { req, record } => {
                if let Some(outgoing::ReplicaReq {
                    target: replica,
                    ops,
                }) = self.replica_reqs.remove(&req)
                    && let Some(&(id, _, _)) = ops.first()
                {
                    let record = record.filter(|r| r.is_consistent());
                    if let Some(r) = &record {
                        self.hlc.observe(r.version.hlc);
                    }
                    self.read_answer(cx, now, id, (Some(replica), record), false);
                }
            }
            _ => {}
        }
    }

    /// Runs the store's deadlines due at `now`.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Time) {
        if self.sync_at.is_some_and(|at| at <= now) {
            self.sync_round(cx, now);
        }
        if self.finishing.at().is_some_and(|at| at <= now) {
            self.finish_round(cx, now);
        }
        while let Some(&(at, what)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match what {
                Deadline::Owner(id) => self.owner_expired(cx, now, id),
                Deadline::Sync(req) => self.sync_expired(cx, now, req),
                Deadline::TransferPage(req) => self.transfer_page_expired(cx, now, req),
                Deadline::TransferResume(id) => self.transfer_resume(cx, now, id),
                Deadline::LeaveDrain => self.leave_drain_expired(cx, now),
                Deadline::Watch(id) => self.watch_expired(cx, id),
                Deadline::LeaveCheck => {
                    // Gone first: a farewell said now gives our terms up
                    // only when the node flushes.
                    self.check_gone(cx, now);
                    self.check_leave_done(cx, now);
                }
            }
        }
    }
}
