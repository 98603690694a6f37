//! The key-value store on the ring (DESIGN §5), as decisions of the
//! sans-IO core: who owns a key, where its replicas go, when a write is
//! acknowledged, when a read must ask the replicas. The driver performs the
//! storage operations the core asks for (`poll_store`) and reports their
//! results (`handle_store`); it never decides anything itself.
//!
//! Roles, all possibly the same process:
//! - the **coordinator** takes a client's `put`/`get`/`delete`, looks up the
//!   key's owner and sends it a `KvRequest` (`coordinator.rs`);
//! - the **owner** versions writes with its hybrid logical clock, stores
//!   them and replicates them to the next `R - 1` distinct physical
//!   successors, answering after `W` durable copies; it serves reads,
//!   asking the replicas when it lacks a key during a handoff (`owner.rs`);
//! - a **replica** stores what the owner sends, if newer (`replica.rs`).

mod app;
mod coordinator;
mod leave;
mod owner;
mod replica;
mod sweep;
mod sync;
mod transfer;

pub use leave::LeaveReport;
pub use sync::{bucket_hash, bucket_of, record_digest};

use crate::fasthash::FastMap;
use crate::{Hlc, Id, KvOp, LookupError, LookupId, NodeRef, Record, Time, Version};
use std::collections::{BTreeMap, BTreeSet};

/// Most owner ranges a coordinator caches.
const OWNER_CACHE_MAX: usize = 4096;

/// Number of a client operation started with `Node::put`/`get`/`delete`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct KvOpId(pub u64);

/// Number of an application message handed to this node's application
/// (`Event::AppMessage`); answer it with `Node::app_accept`, `app_reply` or
/// `app_refuse`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct AppMsgId(pub u64);

/// Number of a storage operation the core asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct StoreOpId(pub u64);

/// A storage operation for the driver to perform.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoreRequest {
    pub op: StoreOpId,
    pub kind: StoreKind,
}

/// What to do with the store.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StoreKind {
    /// Read one key's record.
    Get { key_id: Id, key: Vec<u8> },
    /// Store each record that is newer than the stored one, durably and
    /// atomically; answer per record whether it was stored.
    Apply { records: Vec<Record> },
    /// Summarize the ring interval `(start, end]` in `buckets` buckets:
    /// per bucket, a hash of its records' (key id, version) pairs (see
    /// [`bucket_of`] and [`bucket_hash`]).
    ///
    /// Tombstones older than `hide_tombstones_before` (hlc) are left out:
    /// once that old, they may already be collected on some copies, and a
    /// sync must not bring them back.
    Summary {
        start: Id,
        end: Id,
        buckets: u32,
        hide_tombstones_before: u64,
    },
    /// Records of `(start, end]` in the given buckets, in key-id order,
    /// after `resume`, at most `limit` and no more than `max_bytes` of keys
    /// and values (but at least one record).
    ScanBuckets {
        start: Id,
        end: Id,
        buckets: u32,
        which: Vec<u32>,
        resume: Option<(Id, Vec<u8>)>,
        limit: usize,
        max_bytes: usize,
    },
    /// Remove, in one pass over the store: every record whose key id is in
    /// none of the `keep` intervals `(start, end]` (ignored if `keep` is
    /// empty) and whose version is older than `keep_newer_than` (hlc); and
    /// every tombstone in one of the `tombstones` intervals older than
    /// `tombstones_before`.
    Sweep {
        keep: Vec<(Id, Id)>,
        tombstones: Vec<(Id, Id)>,
        tombstones_before: u64,
        keep_newer_than: u64,
    },
}

/// The outcome of a [`StoreRequest`].
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StoreResult {
    Got(Option<Record>),
    /// Per record of an `Apply`, what the store did with it.
    Applied(Vec<Applied>),
    /// Bucket hashes for `Summary`.
    Summary(Vec<Id>),
    /// Records for `ScanBuckets`.
    Scanned(Vec<Record>),
    /// Records removed by `Sweep`.
    Swept(u64),
    /// The storage failed (the error is the driver's to log).
    Failed,
}

/// What a store did with one record of [`StoreKind::Apply`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Applied {
    /// The record is what the store now holds (it was newer, or the store
    /// already had exactly this version).
    Stored,
    /// The store kept the record it had, whose version is this newer one.
    Kept(Version),
}

impl Applied {
    /// The newer version the store kept, if it did not store the record.
    pub fn kept(&self) -> Option<Version> {
        match self {
            Applied::Stored => None,
            Applied::Kept(v) => Some(*v),
        }
    }
}

/// The newest version a store kept instead of the records of an apply.
pub(crate) fn newest_kept(applied: &[Applied]) -> Option<Version> {
    applied.iter().filter_map(Applied::kept).max()
}

/// A finished client operation.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum KvOutcome {
    /// Put or delete stored with `version` on `acked` nodes.
    Stored { version: Version, acked: u32 },
    /// Get found a value.
    Found { value: Vec<u8>, version: Version },
    /// Get or delete of a missing key.
    NotFound,
    /// `send`: the owner's application took the message.
    Delivered,
    /// `request`: the owner's application's answer.
    Replied { payload: Vec<u8> },
    /// `publish`: the topic's owner queued it for this many subscriber
    /// processes.
    Published { subscribers: u32 },
}

/// Why a client operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    #[error("operation timed out")]
    Timeout,
    #[error("node is not joined to a ring")]
    NotJoined,
    #[error("too many operations in flight; try again later")]
    Overloaded,
    #[error("{size} bytes is over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot find the key's owner: {0}")]
    Lookup(LookupError),
    #[error("ownership kept moving; gave up after several tries")]
    Redirects,
    #[error("only {acked} of the {needed} copies needed were stored in time")]
    QuorumFailed { acked: u32, needed: u32 },
    #[error("only {available} of the {needed} processes a write needs can hold a copy now")]
    QuorumUnavailable { available: u32, needed: u32 },
    #[error("the owner's storage failed")]
    StoreFailed,
    #[error("the owner's application refused the message or did not answer in time")]
    Refused,
    #[error("the node did not answer")]
    Unreachable,
}

/// Where an owner's answer goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReplyTo {
    /// A client operation of this process.
    Local(u64),
    /// A coordinator elsewhere: answer `req` to `to`, from our vnode `me`.
    /// `op` is the coordinator's operation id and the key's id (`None`:
    /// not named), under which the answer is remembered; `budget` how
    /// long the coordinator waits.
    Remote {
        to: NodeRef,
        me: NodeRef,
        req: u64,
        op: Option<(u64, Id)>,
        budget: std::time::Duration,
    },
}

/// Who asked, which operation, which key.
pub(crate) type RecentKey = (std::net::SocketAddr, u64, Id);

/// Most answers an owner remembers by operation id, and for how long (a
/// retry comes within the coordinator's deadline).
const RECENT_MAX: usize = 4096;
const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A client operation this process coordinates.
#[derive(Debug)]
pub(crate) struct ClientOp {
    op: KvOp,
    key_id: Id,
    /// Lookups/redirects done so far.
    attempts: u32,
    deadline: Time,
    /// Why the last attempt failed, reported if no attempt is left.
    last_error: Option<KvError>,
    /// A direct message's destination: tried once, never looked up.
    target: Option<NodeRef>,
}

/// What an owner is doing for one request.
#[derive(Debug)]
pub(crate) enum OwnerOp {
    /// Waiting for `need` durable copies of `record`.
    Write {
        reply: Option<ReplyTo>,
        /// The owner vnode that versioned the write.
        vnode: NodeRef,
        record: Record,
        need: u32,
        /// Copies that now hold exactly `record`.
        acked: u32,
        /// Copies (local and replicas) not yet answered.
        outstanding: u32,
        /// Versions of this write tried so far (a copy that holds a newer
        /// version makes the owner version the write again, above it).
        attempt: u32,
        deadline: Time,
    },
    /// An application message handed to the application
    /// (`Event::AppMessage`), waiting for it to accept, answer or refuse.
    App {
        reply: ReplyTo,
        want_reply: bool,
        deadline: Time,
    },
    /// Reading a key locally, maybe from the replicas too; then answering a
    /// get, or turning into a tombstone write for a delete.
    Read {
        reply: ReplyTo,
        vnode: NodeRef,
        key: Vec<u8>,
        delete: bool,
        /// The key may not be ours (no predecessor known): a miss answers
        /// `WrongOwner`, not `NotFound`.
        unsure: bool,
        best: Option<Record>,
        outstanding: u32,
        asked_replicas: bool,
        /// When the read gives up; `answer_by`: when the whole operation
        /// (a delete's tombstone write included) must be answered.
        deadline: Time,
        answer_by: Time,
    },
}

/// Why the core waits for a storage operation.
#[derive(Debug)]
pub(crate) enum StoreWait {
    /// The owner's own copy of a write.
    OwnerWrite(u64),
    /// The owner's local read.
    OwnerRead(u64),
    /// A replica storing what an owner sent; ack `req` to `to`.
    ReplicaApply { to: NodeRef, me: NodeRef, req: u64 },
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
}

/// A deadline of the key-value layer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum KvDeadline {
    Client(u64),
    Owner(u64),
    Sync(u64),
    /// A `KvRequest` to an owner awaiting its reply.
    Request(u64),
    /// A client operation waiting to try its owner again.
    Retry(u64),
    /// A transfer's page awaiting its acknowledgement.
    TransferPage(u64),
    /// A transfer pausing after a failure.
    TransferResume(u64),
    /// A graceful leave's drain timeout.
    LeaveDrain,
}

/// All key-value state of one process. Maps keyed by numbers this
/// process chose use a fixed hasher, maps keyed by what peers send a
/// `BTreeMap`: iteration order never depends on a random seed, so one
/// simulator seed gives one run.
#[derive(Debug, Default)]
pub(crate) struct KvState {
    pub hlc: Hlc,
    next_id: u64,
    pub clients: FastMap<u64, ClientOp>,
    /// Lookups started for client operations.
    pub lookups: FastMap<LookupId, u64>,
    /// `KvRequest`s sent, by request number → client operation and owner.
    pub requests: FastMap<u64, (u64, NodeRef, Time)>,
    pub owners: FastMap<u64, OwnerOp>,
    /// `Replicate` / `ReplicaRead` requests sent → owner operation.
    pub replica_reqs: FastMap<u64, u64>,
    pub store_waits: FastMap<u64, StoreWait>,
    pub deadlines: BTreeSet<(Time, KvDeadline)>,
    pub store_out: std::collections::VecDeque<StoreRequest>,
    /// When some virtual node's key range last grew: reads that miss ask
    /// the replicas for `handoff_window` after it.
    pub range_grew_at: Option<Time>,
    /// When the next round of range syncs is due.
    pub sync_at: Option<Time>,
    /// Syncs this process runs as owner, by request number.
    pub syncs: FastMap<u64, sync::SyncJob>,
    /// Owners' ranges learned from their replies, by range end (the owner
    /// id): `(start, owner, expiry)`. Lets a coordinator skip the lookup.
    pub owner_cache: std::collections::BTreeMap<Id, (Id, NodeRef, Time)>,
    /// Answers given to remote coordinators, by (coordinator, operation
    /// id), oldest first: a retry of an operation gets the same answer (a
    /// retried delete that already happened says `Stored`, not
    /// `NotFound`).
    pub recent: BTreeMap<RecentKey, (crate::KvResult, Time)>,
    pub recent_order: std::collections::VecDeque<RecentKey>,
    /// Added to our operation numbers to make the ids we send other
    /// nodes: random per incarnation, so that a restarted process never
    /// reuses an id a peer still remembers.
    pub op_base: u64,
    /// Ranges we hold replicas of, from owners' syncs: `(start, end, until)`.
    pub leases: Vec<(Id, Id, Time)>,
    /// When each (owner vnode, replica) pair last synced without a
    /// difference.
    pub in_sync: BTreeMap<(Id, Id), Time>,
    /// Each vnode's replica targets, and the successor-list change count
    /// they were computed at: a new target gets a sync at once.
    pub targets: crate::fasthash::FastMap<Id, (u64, Vec<NodeRef>)>,
    /// The vnode count plus their successor-list change counts when
    /// `targets` was last checked.
    pub targets_total: Option<u64>,
    /// Sync rounds run, and when the first one ran.
    pub rounds: u32,
    pub first_round: Option<Time>,
    /// Bulk transfers to other nodes.
    pub transfers: transfer::Transfers,
    /// `Replicate`s being stored for others (bounded: more are refused
    /// `busy`).
    pub replica_applies: usize,
    /// A graceful leave in progress, and how it went once done.
    pub leaving: Option<leave::Leaving>,
    pub left: Option<LeaveReport>,
}

impl KvState {
    /// Fresh state whose operation ids start at `op_base`.
    pub fn new(op_base: u64) -> KvState {
        KvState {
            op_base,
            ..KvState::default()
        }
    }

    /// A fresh number for operations, requests and storage operations.
    pub fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The number `next` will return.
    pub fn peek_next(&self) -> u64 {
        self.next_id + 1
    }

    /// Asks the driver for a storage operation; `wait` says what to do with
    /// its result.
    pub fn store(&mut self, kind: StoreKind, wait: StoreWait) {
        let op = self.next();
        self.store_waits.insert(op, wait);
        self.store_out.push_back(StoreRequest {
            op: StoreOpId(op),
            kind,
        });
    }

    /// The answer already given to operation `op` (id, key id) of
    /// `from`, if recent.
    pub fn recalled(
        &self,
        now: Time,
        from: std::net::SocketAddr,
        op: Option<(u64, Id)>,
    ) -> Option<crate::KvResult> {
        let (op, key) = op?;
        let (result, at) = self.recent.get(&(from, op, key))?;
        (now.saturating_since(*at) < RECENT_FOR).then(|| result.clone())
    }

    /// Remembers the answer to operation `op` of `from` (bounded: the
    /// oldest goes first).
    pub fn remember(
        &mut self,
        now: Time,
        from: std::net::SocketAddr,
        op: Option<(u64, Id)>,
        result: &crate::KvResult,
    ) {
        use crate::KvResult::*;
        let Some((op, key)) = op else {
            return;
        };
        // Transient answers are not the operation's outcome.
        if matches!(result, WrongOwner | Overloaded) {
            return;
        }
        if self
            .recent
            .insert((from, op, key), (result.clone(), now))
            .is_none()
        {
            self.recent_order.push_back((from, op, key));
        }
        while self.recent_order.len() > RECENT_MAX {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// Remembers that `owner` owns `range` until `now + ttl`.
    pub fn cache_owner(
        &mut self,
        now: Time,
        range: crate::KeyRange,
        owner: NodeRef,
        ttl: std::time::Duration,
    ) {
        if range.end != owner.id || ttl.is_zero() {
            return;
        }
        if self.owner_cache.len() >= OWNER_CACHE_MAX && !self.owner_cache.contains_key(&range.end) {
            // Full: drop an entry (the first by id; any will do).
            self.owner_cache.pop_first();
        }
        self.owner_cache
            .insert(range.end, (range.start, owner, now + ttl));
    }

    /// The owner of `key` according to the cache, if fresh.
    pub fn cached_owner(&self, now: Time, key: &Id) -> Option<NodeRef> {
        // The first range ending at or after the key, wrapping around.
        let (_, (start, owner, expiry)) = self
            .owner_cache
            .range(*key..)
            .next()
            .or_else(|| self.owner_cache.iter().next())?;
        let range = crate::KeyRange {
            start: *start,
            end: owner.id,
        };
        (*expiry > now && range.contains(key)).then_some(*owner)
    }

    /// Forgets what the cache says about `owner`.
    pub fn forget_owner(&mut self, owner: &NodeRef) {
        self.owner_cache.remove(&owner.id);
    }

    /// Number of operations in flight (bounded by `max_kv_ops`).
    pub fn in_flight(&self) -> usize {
        self.clients.len() + self.owners.len() + self.store_waits.len()
    }

    /// When the key-value layer must run next (a deadline or a sync round).
    pub fn next_deadline(&self) -> Option<Time> {
        let deadline = self.deadlines.first().map(|(t, _)| *t);
        deadline.into_iter().chain(self.sync_at).min()
    }
}

/// The newer of two optional records.
pub(crate) fn newest(a: Option<Record>, b: Option<Record>) -> Option<Record> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.version > a.version { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Is `msg` the key-value layer's (handled by the process, not a vnode)?
pub(crate) fn is_kv_message(msg: &crate::Message) -> bool {
    use crate::Message::*;
    matches!(
        msg,
        KvRequest { .. }
            | KvReply { .. }
            | Replicate { .. }
            | ReplicateAck { .. }
            | ReplicaRead { .. }
            | ReplicaReadReply { .. }
            | SyncSummary { .. }
            | SyncDiff { .. }
            | Collect { .. }
    )
}

impl crate::Node {
    /// The next storage operation for the driver. Perform it, then report
    /// with [`Node::handle_store`](crate::Node::handle_store).
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.kv.store_out.pop_front()
    }

    /// The result of a storage operation from `poll_store`.
    pub fn handle_store(&mut self, now: Time, op: StoreOpId, result: StoreResult) {
        let Some(wait) = self.kv.store_waits.remove(&op.0) else {
            return;
        };
        match wait {
            StoreWait::OwnerWrite(id) => match result {
                StoreResult::Applied(applied) => {
                    let kept = newest_kept(&applied);
                    if let Some(v) = kept {
                        self.kv.hlc.observe(v.hlc);
                    }
                    self.write_answer(now, id, true, kept);
                }
                _ => self.owner_store_failed(now, id),
            },
            StoreWait::OwnerRead(id) => {
                let record = match result {
                    StoreResult::Got(r) => r,
                    _ => None,
                };
                if let Some(r) = &record {
                    self.kv.hlc.observe(r.version.hlc);
                }
                self.read_answer(now, id, record);
            }
            StoreWait::ReplicaApply { to, me, req } => {
                self.kv.replica_applies = self.kv.replica_applies.saturating_sub(1);
                let (ok, newer) = match &result {
                    StoreResult::Applied(applied) => (true, newest_kept(applied)),
                    _ => (false, None),
                };
                let ack = crate::Message::ReplicateAck {
                    req,
                    ok,
                    newer,
                    busy: false,
                };
                self.kv_send(me, to, ack);
            }
            StoreWait::ReplicaRead { to, me, req } => {
                let record = match result {
                    StoreResult::Got(r) => r,
                    _ => None,
                };
                self.kv_send(me, to, crate::Message::ReplicaReadReply { req, record });
            }
            StoreWait::Repair => {}
            StoreWait::SyncOwnSummary(req) => self.sync_summary_ready(now, req, result),
            StoreWait::SyncCompare(c) => self.sync_compare(now, c, result),
            StoreWait::TransferRead(id) => self.transfer_page_read(now, id, result),
        }
        self.flush(now);
    }

    /// A key-value message from a peer (or one of our own vnodes).
    pub(crate) fn kv_message(&mut self, now: Time, env: crate::Envelope) {
        use crate::Message;
        match env.msg.clone() {
            Message::KvRequest {
                req,
                op,
                op_id,
                timeout_ms,
            } => {
                let me = self.kv_me(&env);
                let budget = match timeout_ms {
                    0 => self.config.kv_timeout * 3 / 5,
                    ms => std::time::Duration::from_millis(ms as u64).min(self.config.kv_timeout),
                };
                // Only store operations are remembered: their retries must
                // not act twice.
                let store_op = matches!(
                    op,
                    KvOp::Put { .. } | KvOp::Get { .. } | KvOp::Delete { .. }
                );
                let named = (store_op && op_id != 0).then(|| (op_id, Id::hash(op.key())));
                let reply = ReplyTo::Remote {
                    to: env.from,
                    me,
                    req,
                    op: named,
                    budget,
                };
                if let Some(result) = self.kv.recalled(now, env.from.addr, named) {
                    // A retry of an operation we already answered.
                    self.owner_reply(now, reply, result);
                    return;
                }
                if self.kv.in_flight() >= self.config.max_kv_ops {
                    // Overloaded: say so (the coordinator backs off) rather
                    // than queue without bound or drop silently.
                    self.counting.error("kv_overloaded");
                    self.owner_reply(now, reply, crate::KvResult::Overloaded);
                    return;
                }
                match env.to.id {
                    Some(id) if self.vnodes.iter().any(|v| v.me().id == id) => {
                        self.owner_start(now, NodeRef::new(id, self.addr), op, reply)
                    }
                    _ => self.owner_reply(now, reply, crate::KvResult::WrongOwner),
                }
            }
            Message::KvReply { req, result, range } => {
                if let Some(range) = range {
                    self.kv
                        .cache_owner(now, range, env.from, self.config.owner_cache_ttl);
                }
                self.kv_reply(now, req, result)
            }
            Message::Replicate { req, records } => self.replica_apply(env, req, records),
            Message::ReplicateAck {
                req,
                ok,
                newer,
                busy,
            } => {
                if let Some(v) = newer {
                    self.kv.hlc.observe(v.hlc);
                }
                if let Some(id) = self.kv.replica_reqs.remove(&req) {
                    self.write_answer(now, id, ok && !busy, newer);
                } else {
                    self.transfer_ack(now, req, ok && !busy);
                }
            }
            Message::ReplicaRead { req, key } => self.replica_read(env, req, key),
            Message::SyncSummary {
                req,
                start,
                end,
                buckets,
                probe,
            } => {
                let me = self.kv_me(&env);
                self.sync_lease(now, start, end);
                let c = sync::Compare {
                    to: env.from,
                    me,
                    req,
                    start,
                    end,
                    theirs: buckets,
                    probe,
                };
                self.sync_summary_received(now, c);
            }
            Message::SyncDiff {
                req,
                differing,
                refine,
            } => self.sync_diff_received(now, req, differing, refine),
            Message::Collect { start, end, before } => {
                self.collect_received(env.from, start, end, before)
            }
            Message::ReplicaReadReply { req, record } => {
                if let Some(id) = self.kv.replica_reqs.remove(&req) {
                    let record = record.filter(|r| r.is_consistent());
                    if let Some(r) = &record {
                        self.kv.hlc.observe(r.version.hlc);
                    }
                    self.read_answer(now, id, record);
                }
            }
            _ => {}
        }
    }

    /// Runs the key-value deadlines due at `now`.
    pub(crate) fn kv_timeout(&mut self, now: Time) {
        if self.kv.sync_at.is_some_and(|at| at <= now) {
            self.sync_round(now);
        }
        while let Some(&(at, what)) = self.kv.deadlines.first() {
            if at > now {
                break;
            }
            self.kv.deadlines.pop_first();
            match what {
                KvDeadline::Client(id) => {
                    self.kv.lookups.retain(|_, c| *c != id);
                    self.kv.requests.retain(|_, (c, _, _)| *c != id);
                    self.finish_client(id, Err(KvError::Timeout));
                }
                KvDeadline::Owner(id) => self.owner_expired(now, id),
                KvDeadline::Request(req) => self.request_expired(now, req),
                KvDeadline::Retry(id) => self.route_client(now, id),
                KvDeadline::Sync(req) => {
                    self.kv.syncs.remove(&req);
                }
                KvDeadline::TransferPage(req) => self.transfer_page_expired(now, req),
                KvDeadline::TransferResume(id) => self.transfer_resume(now, id),
                KvDeadline::LeaveDrain => self.leave_drain_expired(),
            }
        }
    }

    /// Queues a key-value message from our vnode `from` to `to`.
    pub(crate) fn kv_send(&mut self, from: NodeRef, to: NodeRef, msg: crate::Message) {
        self.kv_out.push_back(crate::Envelope {
            from,
            to: to.into(),
            msg,
        });
    }

    /// The vnode of ours a message was addressed to (the first if unknown):
    /// the sender of our answer.
    pub(crate) fn kv_me(&self, env: &crate::Envelope) -> NodeRef {
        env.to
            .id
            .and_then(|id| self.vnodes.iter().find(|v| v.me().id == id))
            .unwrap_or(&self.vnodes[0])
            .me()
    }
}
