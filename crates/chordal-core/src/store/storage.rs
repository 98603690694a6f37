//! The storage interface between the store machine and its driver: what
//! the core asks a store to do (`Node::poll_store`) and what the driver
//! reports back (`Node::handle_store`). The core never performs I/O.

use crate::{Id, Record, Version};

/// Number of a storage operation the core asked for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct StoreOpId(pub u64);

/// A storage operation for the driver to perform.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoreRequest {
    /// The number to report the result under.
    pub op: StoreOpId,
    /// What to do.
    pub kind: StoreKind,
}

/// What to do with the store.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreKind {
    /// Read one key's record.
    Get {
        /// The key's id (SHA-1 of its bytes).
        key_id: Id,
        /// The key (its bytes).
        key: Vec<u8>,
    },
    /// Store each record that is newer than the stored one, durably and
    /// atomically; answer per record whether it was stored.
    Apply {
        /// The records, each with its key, version and value (or tombstone).
        records: Vec<Record>,
    },
    /// Summarize the ring interval `(start, end]` in `buckets` buckets:
    /// per bucket, a hash of its records' (key id, version) pairs (see
    /// [`bucket_of`](crate::bucket_of) and [`bucket_hash`](crate::bucket_hash)).
    ///
    /// Tombstones older than `hide_tombstones_before` (hlc) are left out:
    /// once that old, they may already be collected on some copies, and a
    /// sync must not bring them back.
    Summary {
        /// The exclusive start of the ring interval `(start, end]`.
        start: Id,
        /// The inclusive end of the ring interval `(start, end]`.
        end: Id,
        /// How many equal parts the interval is cut into.
        buckets: u32,
        /// Tombstones older than this hlc are left out.
        hide_tombstones_before: u64,
    },
    /// Records of `(start, end]` in the given buckets, in key-id order,
    /// after `resume`, at most `limit` and no more than `max_bytes` of keys
    /// and values (but at least one record).
    ScanBuckets {
        /// The exclusive start of the ring interval `(start, end]`.
        start: Id,
        /// The inclusive end of the ring interval `(start, end]`.
        end: Id,
        /// How many equal parts the interval is cut into.
        buckets: u32,
        /// The buckets to scan.
        which: Vec<u32>,
        /// Continue after this record (key id, key); `None`: from the start.
        resume: Option<(Id, Vec<u8>)>,
        /// At most this many records.
        limit: usize,
        /// At most this many bytes of keys and values (but one record at least).
        max_bytes: usize,
    },
    /// The keys of the live records (not tombstones, not expired at
    /// `now`) with ids in `[start, end]` (`start <= end`, no wrap), in
    /// key-id order, values unread. Stop after `limit` keys, or after
    /// `budget` records looked at (tombstones and expired ones count),
    /// but never between two records whose key ids share their top 64
    /// bits: answer with the last id covered (see
    /// [`Operation::Scan`](crate::Operation::Scan)).
    Keys {
        /// The first key id (inclusive).
        start: Id,
        /// The last key id (inclusive).
        end: Id,
        /// About how many keys.
        limit: usize,
        /// About how many records to look at.
        budget: usize,
        /// Values expired at this time count as dead.
        now: crate::Time,
    },
    /// The live records of key id `key_id` whose keys start with
    /// `prefix` — a collection's elements — with versions not older than
    /// `born` (tombstones too with `tombstones`, and expired values
    /// alike; older records are skipped), in key order,
    /// after `after` and up to `to`, at most `limit` of them and no more
    /// than about `max_bytes` of keys and values. Answered
    /// [`StoreResult::Scanned`].
    Elements {
        /// The collection's header's `born`.
        born: Version,
        /// The collection's key id.
        key_id: Id,
        /// The element keys' common prefix.
        prefix: Vec<u8>,
        /// Read keys after this one.
        after: Vec<u8>,
        /// The last key to read (`None`: the prefix's last).
        to: Option<Vec<u8>>,
        /// At most this many records.
        limit: usize,
        /// Stop once this many bytes of keys and values are read.
        max_bytes: usize,
        /// Answer tombstones too (a watch's changes), not only values.
        tombstones: bool,
    },
    /// Remove, in one pass over the store: every record whose key id is in
    /// none of the `keep` intervals `(start, end]` (ignored if `keep` is
    /// empty) and whose version is older than `keep_newer_than` (hlc); and
    /// every tombstone in one of the `tombstones` intervals older than
    /// `tombstones_before`.
    Sweep {
        /// Intervals whose records stay (none given: keep all).
        keep: Vec<(Id, Id)>,
        /// Intervals whose old tombstones go.
        tombstones: Vec<(Id, Id)>,
        /// Tombstones older than this hlc go.
        tombstones_before: u64,
        /// Records newer than this hlc stay wherever they are.
        keep_newer_than: u64,
    },
    /// Keep `bytes` durably as the process's promise table (DESIGN §5,
    /// "Who decides"), replacing the one kept before; give it back to
    /// `Node::restore_promises` at the next start.
    SavePromises {
        /// The table, as the core encoded it.
        bytes: Vec<u8>,
    },
}

/// The outcome of a [`StoreRequest`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreResult {
    /// The record `Get` found, if any.
    Got(Option<Record>),
    /// Per record of an `Apply`, what the store did with it.
    Applied(Vec<Applied>),
    /// Bucket hashes for `Summary`.
    Summary(Vec<Id>),
    /// Records for `ScanBuckets` and `Elements`.
    Scanned(Vec<Record>),
    /// Live keys (id, bytes) for `Keys`, and the last key id covered.
    Keys(Vec<(Id, Vec<u8>)>, Id),
    /// Records removed by `Sweep`.
    Swept(u64),
    /// `SavePromises` is durable.
    Saved,
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
