//! # chordal-store: the bytes on disk
//!
//! A [`Store`] keeps [`Record`]s ordered by key id, so that an interval of
//! the ring is a range scan. Writes are "put if newer": a record replaces
//! the stored one only if its version is larger, which makes replication,
//! handoff and sync idempotent and order-free. A delete is a tombstone
//! record. Two implementations: [`MemoryStore`] (tests, simulator, nodes
//! without a data directory) and [`RedbStore`] (durable, group commit).

#![warn(missing_docs)]

pub mod codec;
mod digest;
mod memory;
mod perform;
mod redb_store;

pub use digest::{Digests, FINE, FineDigest, KeyVersion, fine_bounds, fine_of};
pub use memory::MemoryStore;
pub use perform::{
    KeyPage, PageLimits, live_keys, perform, scan_buckets, summarize, summarize_by_scan, sweep,
    sweep_reads,
};
pub use redb_store::{Backing, RedbStore};

/// Opens the store a node uses: redb in `dir` (created if needed, owner
/// only: mode 0700, the database 0600), or memory without a directory.
pub fn open(dir: Option<&std::path::Path>) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match dir {
        Some(dir) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
            Ok(std::sync::Arc::new(RedbStore::open(
                &dir.join("chordal.redb"),
            )?))
        }
        None => Ok(std::sync::Arc::new(MemoryStore::new())),
    }
}

use chordal_core::{Applied, Id, Record};

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error (corruption, a bug, ...).
    #[error("database error: {0}")]
    Db(String),
    /// The disk is full (or over quota): writes fail until space is freed;
    /// reads still work.
    #[error("disk full: {0}")]
    Full(String),
    /// Another I/O error while writing: writes fail until the store has
    /// recovered (it retries by itself); reads still work.
    #[error("I/O error: {0}")]
    Io(String),
    /// A stored record could not be decoded.
    #[error("corrupt record for key id {0}")]
    Corrupt(Id),
    /// The store is shutting down.
    #[error("store closed")]
    Closed,
}

/// Called with the outcome of [`Store::apply_with`].
pub type ApplyDone = Box<dyn FnOnce(Result<Vec<Applied>, StoreError>) + Send>;

/// Called with the outcome of [`Store::set_meta_with`].
pub type MetaDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The meta entry of the process's promise table (authority).
pub const PROMISES: &str = "promises";

/// Ordered, versioned record storage.
pub trait Store: Send + Sync + 'static {
    /// The record of `key` (a tombstone included), if any.
    fn get(&self, key_id: &Id, key: &[u8]) -> Result<Option<Record>, StoreError>;

    /// In one atomic, durable transaction: stores each record whose
    /// version is newer than the stored one (or that is new). Returns, per
    /// record, whether it is now what the store holds ([`Applied::Stored`],
    /// also when exactly that version was there) or which newer version the
    /// store kept instead.
    fn apply(&self, batch: &[Record]) -> Result<Vec<Applied>, StoreError>;

    /// The largest hybrid-clock reading of any record this store ever
    /// stored (0 when empty). A node seeds its clock with it at start, so
    /// that its next writes are versioned above everything it holds even
    /// if the wall clock went back while it was down.
    fn max_hlc(&self) -> Result<u64, StoreError>;

    /// Records whose key id is in the ring interval `(start, end]` (the
    /// whole ring if `start == end`), in key-id order starting after
    /// `resume` (the last record of a previous page), at most `limit`.
    fn scan(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Every record of `(start, end]` after `resume`, in key-id order, as
    /// one moment saw them, handed to `each` one at a time until it answers
    /// `false`: what a backup reads, a range consistent in itself. Call it
    /// on a blocking thread; `each` may block (a bounded channel to a slow
    /// reader). The default pages with [`Store::scan`], so only each page
    /// of 256 is one moment's; the stores override it (redb: one read
    /// transaction; memory: the range copied under its lock).
    fn scan_snapshot(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let mut after: Option<(Id, Vec<u8>)> = resume.map(|(id, key)| (*id, key.to_vec()));
        loop {
            let from = after.as_ref().map(|(id, key)| (id, key.as_slice()));
            let page = self.scan(start, end, from, 256)?;
            let full = page.len() == 256;
            for r in page {
                after = Some((r.key_id, r.key.clone()));
                if !each(r) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Like [`Store::scan`], without the values: what summaries and sweeps
    /// need. Stores override it to avoid reading values at all.
    fn scan_versions(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
    ) -> Result<Vec<KeyVersion>, StoreError> {
        Ok(self
            .scan(start, end, resume, limit)?
            .iter()
            .map(KeyVersion::of)
            .collect())
    }

    /// The fine buckets holding records among `first`, `first + 1`, …
    /// (wrapping), `count` of them, in that order, with their digests — if
    /// this store keeps them up to date (see [`Digests`]); `None` makes
    /// summaries scan.
    fn fine_digests(&self, first: usize, count: usize) -> Option<Vec<(usize, FineDigest)>> {
        let _ = (first, count);
        None
    }

    /// Like [`Store::apply`], but returns at once and calls `done` with the
    /// result once the batch is durable (possibly on another thread).
    /// Drivers use this to wait for durability without blocking.
    fn apply_with(&self, batch: Vec<Record>, done: ApplyDone) {
        done(self.apply(&batch));
    }

    /// Removes records for good, if their version is still exactly the given
    /// one (a newer write in the meantime stays). Used to collect tombstones
    /// and drop copies a node should no longer hold.
    fn remove(&self, keys: &[(Id, Vec<u8>, chordal_core::Version)]) -> Result<usize, StoreError>;

    /// Why writes fail right now, if they do (a full disk, an I/O error):
    /// the store recovers by itself once writes work again.
    fn health(&self) -> Option<StoreError> {
        None
    }

    /// Number of records (tombstones included).
    fn count(&self) -> Result<u64, StoreError>;

    /// Bytes the data takes: the keys and values of the records in
    /// memory, or the database file's size on disk. Cheap (for metrics).
    fn bytes(&self) -> Result<u64, StoreError>;

    /// A small named value kept with the data (the node's identity).
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets a named value, durably.
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Like [`Store::set_meta`], but returns at once and calls `done` once
    /// the value is durable. Values set this way are written in the order
    /// of the calls (the driver keeps the newest promise table last).
    fn set_meta_with(&self, name: &str, value: Vec<u8>, done: MetaDone) {
        done(self.set_meta(name, &value));
    }
}

/// The ring interval `(start, end]` as at most two plain ranges of key ids,
/// each `(low inclusive, high inclusive)`.
pub(crate) fn ring_ranges(start: &Id, end: &Id) -> Vec<(Id, Id)> {
    let one = Id::from_u64(1);
    let after = start.wrapping_add(&one);
    if start == end {
        // Whole ring.
        return vec![(Id::ZERO, Id::MAX)];
    }
    if start < end {
        vec![(after, *end)]
    } else if *start == Id::MAX {
        vec![(Id::ZERO, *end)]
    } else {
        vec![(after, Id::MAX), (Id::ZERO, *end)]
    }
}

/// The parts of a scan of `(start, end]` still to do after `resume`: each
/// `(low, high, resume point within it)`, in scan order.
pub(crate) type ScanPart<'a> = (Id, Id, Option<(&'a Id, &'a [u8])>);

pub(crate) fn scan_parts<'a>(
    start: &Id,
    end: &Id,
    resume: Option<(&'a Id, &'a [u8])>,
) -> Vec<ScanPart<'a>> {
    let parts = ring_ranges(start, end);
    let Some((id, _)) = resume else {
        return parts.into_iter().map(|(lo, hi)| (lo, hi, None)).collect();
    };
    match parts.iter().position(|(lo, hi)| id >= lo && id <= hi) {
        Some(i) => parts
            .into_iter()
            .enumerate()
            .skip(i)
            .map(|(j, (lo, hi))| (lo, hi, if j == i { resume } else { None }))
            .collect(),
        // The resume point is outside the interval: nothing left.
        None => Vec::new(),
    }
}
