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

pub use chordal_core::{FINE, fine_bounds, fine_of};
use chordal_core::{Id, Time, Version, record_digest};
use std::collections::BTreeMap;
use std::sync::Mutex;

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

/// Digests of the fine buckets that hold records, updated as records come
/// and go.
#[derive(Debug, Default)]
pub struct Digests {
    fine: Mutex<FineTable>,
}

/// Occupied fine buckets beyond which a table turns dense.
const DENSE_AT: usize = 4096;

/// The fine buckets' totals: sparse (a map of the occupied ones) while
/// few are occupied — a store with few records, as in the simulator's
/// thousands of nodes, pays for few buckets — then dense, one slot per
/// fine bucket (1.8 MB), so that a write finds its bucket in one step
/// rather than a search of a map of tens of thousands (which measured 3 %
/// of a node's CPU under a stream of writes).
#[derive(Debug)]
enum FineTable {
    Sparse(BTreeMap<u16, FineDigest>),
    /// Indexed by fine bucket; a bucket without records is all zeros.
    Dense(Box<[FineDigest]>),
}

impl Default for FineTable {
    fn default() -> FineTable {
        FineTable::Sparse(BTreeMap::new())
    }
}

impl FineTable {
    /// Fine bucket `f`'s totals, to change (a fresh bucket starts at zero).
    fn entry(&mut self, f: u16) -> &mut FineDigest {
        if let FineTable::Sparse(map) = self
            && map.len() >= DENSE_AT
            && !map.contains_key(&f)
        {
            let mut dense = vec![FineDigest::default(); FINE].into_boxed_slice();
            for (k, d) in map.iter() {
                dense[*k as usize] = *d;
            }
            *self = FineTable::Dense(dense);
        }
        match self {
            FineTable::Sparse(map) => map.entry(f).or_default(),
            FineTable::Dense(dense) => &mut dense[f as usize],
        }
    }

    /// Takes `old` out of its bucket.
    fn remove(&mut self, old: Contribution) {
        let d = match self {
            FineTable::Sparse(map) => match map.get_mut(&old.fine) {
                Some(d) => d,
                None => return,
            },
            FineTable::Dense(dense) => &mut dense[old.fine as usize],
        };
        d.xor = d.xor.xor(&old.digest);
        d.records = d.records.saturating_sub(1);
        d.mortal = d.mortal.saturating_sub(u32::from(old.mortal));
        if d.records == 0 {
            // An empty bucket holds nothing, digest included.
            *d = FineDigest::default();
            if let FineTable::Sparse(map) = self {
                map.remove(&old.fine);
            }
        }
    }

    /// The occupied buckets among `lo..=hi`, in order.
    fn occupied(&self, lo: u16, hi: u16, out: &mut Vec<(usize, FineDigest)>) {
        match self {
            FineTable::Sparse(map) => {
                out.extend(map.range(lo..=hi).map(|(f, d)| (*f as usize, *d)));
            }
            FineTable::Dense(dense) => out.extend(
                (lo as usize..=hi as usize)
                    .filter(|f| dense[*f].records > 0)
                    .map(|f| (f, dense[f])),
            ),
        }
    }
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
            fine.remove(old);
        }
        let d = fine.entry(new.fine);
        d.xor = d.xor.xor(&new.digest);
        d.records += 1;
        d.mortal += u32::from(new.mortal);
    }

    /// A record left the store.
    pub fn remove(&self, old: &KeyVersion) {
        self.fine
            .lock()
            .expect("digest lock")
            .remove(Contribution::of_key_version(old));
    }

    /// [`Digests::remove`] for stores that hold whole records.
    pub fn remove_record(&self, old: &chordal_core::Record) {
        self.fine
            .lock()
            .expect("digest lock")
            .remove(Contribution::of(old));
    }

    /// Forgets everything (before a rebuild).
    pub fn clear(&self) {
        *self.fine.lock().expect("digest lock") = FineTable::default();
    }

    /// The fine buckets that hold records among `first`, `first + 1`, …
    /// (wrapping), `count` of them, in that order.
    pub fn range(&self, first: usize, count: usize) -> Vec<(usize, FineDigest)> {
        let fine = self.fine.lock().expect("digest lock");
        let first = first % FINE;
        let count = count.min(FINE);
        let end = first + count;
        let mut out = Vec::new();
        fine.occupied(first as u16, (end.min(FINE) - 1) as u16, &mut out);
        if end > FINE {
            fine.occupied(0, (end - FINE - 1) as u16, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(i: u64, hlc: u64, tombstone: bool) -> KeyVersion {
        let key = format!("k{i}").into_bytes();
        KeyVersion {
            key_id: Id::of_key(&key),
            key,
            version: Version {
                term: 1,
                hlc,
                node: Id::from_u64(7),
            },
            tombstone,
            expires: None,
        }
    }

    /// What `range` must say, computed from the records present.
    fn expected(present: &BTreeMap<u64, KeyVersion>) -> Vec<(usize, FineDigest)> {
        let mut by: BTreeMap<usize, FineDigest> = BTreeMap::new();
        for r in present.values() {
            let d = by.entry(fine_of(&r.key_id)).or_default();
            d.xor = d.xor.xor(&r.digest());
            d.records += 1;
            d.mortal += u32::from(r.mortal());
        }
        by.into_iter().collect()
    }

    /// Past `DENSE_AT` occupied buckets the table turns dense: its totals,
    /// through replacements and removals, stay those of the records, and
    /// an emptied bucket is not reported.
    #[test]
    fn a_table_turned_dense_keeps_the_totals_of_its_records() {
        let digests = Digests::default();
        let mut present: BTreeMap<u64, KeyVersion> = BTreeMap::new();
        for i in 0..(DENSE_AT as u64 * 3) {
            let new = kv(i, 10, false);
            digests.replace(None, &new);
            present.insert(i, new);
            if i == DENSE_AT as u64 / 2 {
                assert_eq!(digests.range(0, FINE), expected(&present), "sparse");
            }
        }
        assert!(matches!(*digests.fine.lock().unwrap(), FineTable::Dense(_)));
        for i in (0..DENSE_AT as u64 * 3).step_by(3) {
            let old = present.remove(&i).unwrap();
            if i % 2 == 0 {
                digests.remove(&old);
            } else {
                let new = kv(i, 11, true);
                digests.replace(Some(&old), &new);
                present.insert(i, new);
            }
        }
        assert_eq!(digests.range(0, FINE), expected(&present), "dense");
        // A wrapping window: its end, then its start.
        let window = digests.range(FINE - 100, 300);
        let all = expected(&present);
        let want: Vec<_> = all
            .iter()
            .filter(|(f, _)| *f >= FINE - 100)
            .chain(all.iter().filter(|(f, _)| *f < 200))
            .copied()
            .collect();
        assert_eq!(window, want);
    }
}
