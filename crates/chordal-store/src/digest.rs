//! Range digests kept up to date on every write, so that a sync summary
//! costs a pass over a few thousand small entries instead of a scan of
//! every record in the range.
//!
//! The ring is cut into [`FINE`] equal *fine buckets* by the top 16 bits
//! of the key id. Each keeps the XOR of its records' digests
//! ([`chordal_core::record_digest`]), how many records and how many
//! *mortal* records it holds (tombstones and values with an expiry). A
//! summary of `(start, end]` in B sync buckets takes a fine bucket's digest
//! whole when the fine bucket lies inside the interval and inside one sync
//! bucket and holds no mortal record (records dead past the grace period
//! are left out of summaries, so those buckets are read exactly); the few fine buckets cut by a boundary are read exactly, from
//! keys and versions only (values are never loaded).

use chordal_core::{Id, Time, Version, record_digest};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Fine buckets on the ring.
pub const FINE: usize = 1 << 16;

/// One fine bucket's running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FineDigest {
    /// XOR of the digests of its records.
    pub xor: Id,
    /// Records in the bucket.
    pub records: u32,
    /// Mortal records among them: tombstones and values with an expiry.
    pub mortal: u32,
}

/// The fine bucket of a key id.
pub fn fine_of(key_id: &Id) -> usize {
    ((key_id.0[0] as usize) << 8) | key_id.0[1] as usize
}

/// The lowest and highest key ids of fine bucket `f`.
pub fn fine_bounds(f: usize) -> (Id, Id) {
    let mut lo = [0u8; 20];
    let mut hi = [0xffu8; 20];
    lo[0] = (f >> 8) as u8;
    lo[1] = f as u8;
    hi[0] = lo[0];
    hi[1] = lo[1];
    (Id(lo), Id(hi))
}

/// Digests of the fine buckets that hold records, updated as records come
/// and go (sparse: a store with few records, as in the simulator's
/// thousands of nodes, pays for few buckets).
#[derive(Debug, Default)]
pub struct Digests {
    fine: Mutex<BTreeMap<u16, FineDigest>>,
}

/// A record as the digests see it: no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersion {
    /// The key's id.
    pub key_id: Id,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The stored version.
    pub version: Version,
    /// Is the stored record a tombstone?
    pub tombstone: bool,
    /// When its value expires, if it does.
    pub expires: Option<Time>,
}

impl KeyVersion {
    /// The parts of `r` that digests see.
    pub fn of(r: &chordal_core::Record) -> KeyVersion {
        KeyVersion {
            key_id: r.key_id,
            key: r.key.clone(),
            version: r.version,
            tombstone: r.is_tombstone(),
            expires: r.expires,
        }
    }

    /// Has the record been dead (a tombstone, an expired value) since
    /// before `horizon` (an hlc-comparable time)? Such records are left out
    /// of summaries and collected.
    pub fn dead_before(&self, horizon: u64) -> bool {
        chordal_core::dead_since(self.tombstone, self.version.hlc, self.expires)
            .is_some_and(|d| d < horizon)
    }

    /// May the record die (a tombstone, a value with an expiry)?
    pub fn mortal(&self) -> bool {
        self.tombstone || self.expires.is_some()
    }

    /// The record's digest (its contribution to a bucket hash).
    pub fn digest(&self) -> Id {
        record_digest(&self.key_id, &self.key, &self.version, self.tombstone)
    }
}

/// What one record adds to its fine bucket: computed from borrowed parts,
/// so keeping the digests up to date allocates nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Contribution {
    fine: u16,
    digest: Id,
    mortal: bool,
}

impl Contribution {
    fn of_key_version(kv: &KeyVersion) -> Contribution {
        Contribution {
            fine: fine_of(&kv.key_id) as u16,
            digest: kv.digest(),
            mortal: kv.mortal(),
        }
    }

    /// A whole record's contribution.
    pub(crate) fn of(r: &chordal_core::Record) -> Contribution {
        let tombstone = r.is_tombstone();
        Contribution {
            fine: fine_of(&r.key_id) as u16,
            digest: record_digest(&r.key_id, &r.key, &r.version, tombstone),
            mortal: tombstone || r.expires.is_some(),
        }
    }
}

impl Digests {
    /// A record went into the store (`old`: the one it replaced).
    pub fn replace(&self, old: Option<&KeyVersion>, new: &KeyVersion) {
        self.swap(
            old.map(Contribution::of_key_version),
            Contribution::of_key_version(new),
        );
    }

    /// [`Digests::replace`] for stores that hold whole records (the
    /// memory store): the same totals, without copying the key; `new` is
    /// taken before the record moves into the store.
    pub(crate) fn replace_record(&self, old: Option<&chordal_core::Record>, new: Contribution) {
        self.swap(old.map(Contribution::of), new);
    }

    fn swap(&self, old: Option<Contribution>, new: Contribution) {
        let mut fine = self.fine.lock().expect("digest lock");
        if let Some(old) = old {
            remove(&mut fine, old);
        }
        let d = fine.entry(new.fine).or_default();
        d.xor = d.xor.xor(&new.digest);
        d.records += 1;
        d.mortal += u32::from(new.mortal);
    }

    /// A record left the store.
    pub fn remove(&self, old: &KeyVersion) {
        remove(
            &mut self.fine.lock().expect("digest lock"),
            Contribution::of_key_version(old),
        );
    }

    /// [`Digests::remove`] for stores that hold whole records.
    pub fn remove_record(&self, old: &chordal_core::Record) {
        remove(
            &mut self.fine.lock().expect("digest lock"),
            Contribution::of(old),
        );
    }

    /// Forgets everything (before a rebuild).
    pub fn clear(&self) {
        self.fine.lock().expect("digest lock").clear();
    }

    /// The fine buckets that hold records among `first`, `first + 1`, …
    /// (wrapping), `count` of them, in that order.
    pub fn range(&self, first: usize, count: usize) -> Vec<(usize, FineDigest)> {
        let fine = self.fine.lock().expect("digest lock");
        let first = first % FINE;
        let count = count.min(FINE);
        let end = first + count;
        let mut out: Vec<(usize, FineDigest)> = fine
            .range(first as u16..=(end.min(FINE) - 1) as u16)
            .map(|(f, d)| (*f as usize, *d))
            .collect();
        if end > FINE {
            out.extend(
                fine.range(..=(end - FINE - 1) as u16)
                    .map(|(f, d)| (*f as usize, *d)),
            );
        }
        out
    }
}

fn remove(fine: &mut BTreeMap<u16, FineDigest>, old: Contribution) {
    let Some(d) = fine.get_mut(&old.fine) else {
        return;
    };
    d.xor = d.xor.xor(&old.digest);
    d.records = d.records.saturating_sub(1);
    d.mortal = d.mortal.saturating_sub(u32::from(old.mortal));
    if d.records == 0 {
        fine.remove(&old.fine);
    }
}
