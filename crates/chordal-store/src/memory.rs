//! [`MemoryStore`]: a hash table of records with a `BTreeSet` of their
//! keys in ring order, behind a mutex. The model the redb store is tested
//! against, and the store of nodes without a data directory.

use crate::digest::Contribution;
use crate::{Digests, FineDigest, KeyVersion, Store, StoreError, scan_parts};
use chordal_core::{Applied, Id, Record, Version};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;

/// Records in memory, ordered by (key id, key).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
    meta: Mutex<HashMap<String, Vec<u8>>>,
    /// Key and value bytes of `records`, kept as they change.
    bytes: std::sync::atomic::AtomicU64,
    /// The largest hlc ever stored.
    max_hlc: std::sync::atomic::AtomicU64,
    /// Fine-bucket digests of `records`.
    digests: Digests,
}

/// The records, by (key id, key).
///
/// A point read or write finds its record in one hash probe; only a write
/// of a new key or a removal touches the ordered set, which scans walk.
/// (A `BTreeMap` of the records searched ~40 keys per write at 100,000
/// keys, most of them cache misses: 8 % of a node's CPU under SETs.)
#[derive(Debug, Default)]
struct Records {
    /// Every record, hashed by (key id, key) with a per-process key (the
    /// keys come from clients).
    table: HashTable<Record>,
    /// The (key id, key) of every record in `table`, in ring order.
    order: BTreeSet<(Id, Vec<u8>)>,
    hasher: RandomState,
}

impl Records {
    fn hash(&self, key_id: &Id, key: &[u8]) -> u64 {
        self.hasher.hash_one((key_id, key))
    }

    fn get(&self, key_id: &Id, key: &[u8]) -> Option<&Record> {
        let hash = self.hash(key_id, key);
        self.table
            .find(hash, |r| r.key_id == *key_id && r.key == key)
    }

    fn remove(&mut self, key_id: &Id, key: &[u8]) -> Option<Record> {
        let hash = self.hash(key_id, key);
        let entry = self
            .table
            .find_entry(hash, |r| r.key_id == *key_id && r.key == key)
            .ok()?;
        let (old, _) = entry.remove();
        self.order.remove(&(*key_id, key.to_vec()));
        Some(old)
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

/// What a record counts for in [`Store::bytes`].
fn size(r: &Record) -> u64 {
    (r.key.len() + r.value.as_ref().map_or(0, Vec::len)) as u64
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Records of `(start, end]` after `resume`, at most `limit`, as `f`
    /// makes them.
    fn scan_map<T>(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
        f: impl Fn(&Record) -> T,
    ) -> Vec<T> {
        let map = self.records.lock().expect("store lock");
        let mut out = Vec::new();
        for (lo, hi, resume) in scan_parts(start, end, resume) {
            let lower = match resume {
                Some((id, key)) => Bound::Excluded((*id, key.to_vec())),
                None => Bound::Included((lo, Vec::new())),
            };
            for (id, key) in map.order.range((lower, Bound::Unbounded)) {
                if *id > hi || out.len() >= limit {
                    break;
                }
                if let Some(r) = map.get(id, key) {
                    out.push(f(r));
                }
            }
        }
        out
    }
}

impl MemoryStore {
    /// [`Store::apply`] of records the store may keep as they are.
    fn apply_owned(&self, batch: Vec<Record>) -> Vec<Applied> {
        let mut guard = self.records.lock().expect("store lock");
        let map = &mut *guard;
        batch
            .into_iter()
            .map(|r| {
                // One probe of the table.
                let hash = map.hash(&r.key_id, &r.key);
                let hasher = &map.hasher;
                let entry = map.table.entry(
                    hash,
                    |old| old.key_id == r.key_id && old.key == r.key,
                    |old| hasher.hash_one((&old.key_id, old.key.as_slice())),
                );
                if let Entry::Occupied(old) = &entry {
                    let old = old.get();
                    if *old == r {
                        return Applied::Stored;
                    }
                    if !r.supersedes(old) {
                        return Applied::Kept(old.version);
                    }
                }
                self.bytes.fetch_add(size(&r), Relaxed);
                self.max_hlc.fetch_max(r.version.hlc, Relaxed);
                let new = Contribution::of(&r);
                let old = match entry {
                    Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), r)),
                    Entry::Vacant(e) => {
                        map.order.insert((r.key_id, r.key.clone()));
                        e.insert(r);
                        None
                    }
                };
                if let Some(old) = &old {
                    self.bytes.fetch_sub(size(old), Relaxed);
                }
                self.digests.replace_record(old.as_ref(), new);
                Applied::Stored
            })
            .collect()
    }
}

impl Store for MemoryStore {
    fn get(&self, key_id: &Id, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let map = self.records.lock().expect("store lock");
        Ok(map.get(key_id, key).cloned())
    }

    fn apply(&self, batch: &[Record]) -> Result<Vec<Applied>, StoreError> {
        Ok(self.apply_owned(batch.to_vec()))
    }

    /// The records are moved into the map, not copied.
    fn apply_with(&self, batch: Vec<Record>, done: crate::ApplyDone) {
        done(Ok(self.apply_owned(batch)));
    }

    fn max_hlc(&self) -> Result<u64, StoreError> {
        Ok(self.max_hlc.load(Relaxed))
    }

    fn scan(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        Ok(self.scan_map(start, end, resume, limit, Record::clone))
    }

    fn scan_versions(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
    ) -> Result<Vec<KeyVersion>, StoreError> {
        Ok(self.scan_map(start, end, resume, limit, KeyVersion::of))
    }

    /// The range is copied under the lock (one moment's, at the cost of
    /// its size in memory while the reader takes it), then handed out.
    fn scan_snapshot(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        for r in self.scan_map(start, end, resume, usize::MAX, Record::clone) {
            if !each(r) {
                break;
            }
        }
        Ok(())
    }

    fn fine_digests(&self, first: usize, count: usize) -> Option<Vec<(usize, FineDigest)>> {
        Some(self.digests.range(first, count))
    }

    fn remove(&self, keys: &[(Id, Vec<u8>, Version)]) -> Result<usize, StoreError> {
        let mut map = self.records.lock().expect("store lock");
        let mut n = 0;
        for (id, key, version) in keys {
            if map.get(id, key).is_some_and(|r| r.version == *version) {
                if let Some(old) = map.remove(id, key) {
                    self.bytes.fetch_sub(size(&old), Relaxed);
                    self.digests.remove_record(&old);
                }
                n += 1;
            }
        }
        Ok(n)
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.records.lock().expect("store lock").len() as u64)
    }

    fn bytes(&self) -> Result<u64, StoreError> {
        Ok(self.bytes.load(Relaxed))
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.lock().expect("store lock").get(name).cloned())
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta
            .lock()
            .expect("store lock")
            .insert(name.to_string(), value.to_vec());
        Ok(())
    }
}
