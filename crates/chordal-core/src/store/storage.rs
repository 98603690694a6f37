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
    pub op: StoreOpId,
    pub kind: StoreKind,
}

/// What to do with the store.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreKind {
    /// Read one key's record.
    Get { key_id: Id, key: Vec<u8> },
    /// Store each record that is newer than the stored one, durably and
    /// atomically; answer per record whether it was stored.
    Apply { records: Vec<Record> },
    /// Summarize the ring interval `(start, end]` in `buckets` buckets:
    /// per bucket, a hash of its records' (key id, version) pairs (see
    /// [`bucket_of`](crate::bucket_of) and [`bucket_hash`](crate::bucket_hash)).
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
