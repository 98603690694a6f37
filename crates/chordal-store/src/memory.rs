//! [`MemoryStore`]: records in a hash table of their keys, walked in ring
//! order through a `BTreeMap` of the keys and their hashes, behind a mutex. The model the redb store is tested
//! against, and the store of nodes without a data directory.

use crate::digest::Contribution;
use crate::{Digests, FineDigest, KeyVersion, Store, StoreError, scan_parts};
use chordal_core::{Applied, Id, Record, Version};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::collections::{BTreeMap, HashMap};
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
/// A point read or write finds its record with one hash probe, the record
/// itself in the table (two cache misses: control bytes, then the record;
/// with the records in a separate slot vector it was three, the slot
/// index between, on every copy of every write). Only a write of a new key
/// or a removal touches the ordered map of keys, which scans walk; it
/// keeps each key's hash, so that a walk finds each record with one probe
/// and hashes nothing (hashing every key made a walk 0.71 µs per record
/// against 0.26). (A `BTreeMap` of the records searched ~40 keys per write
/// at 100,000 keys, most of them cache misses: 8 % of a node's CPU under
/// SETs.)
#[derive(Debug, Default)]
struct Records {
    /// Every record, hashed by (key id, key) with a per-process key (the
    /// keys come from clients).
    by_key: HashTable<Record>,
    /// Every key, in ring order, with its hash in `by_key`.
    order: BTreeMap<(Id, Vec<u8>), u64>,
    hasher: RandomState,
}

impl Records {
    fn hash(&self, key_id: &Id, key: &[u8]) -> u64 {
        self.hasher.hash_one((key_id, key))
    }

    fn get(&self, key_id: &Id, key: &[u8]) -> Option<&Record> {
        let hash = self.hash(key_id, key);
        self.by_key
            .find(hash, |r| r.key_id == *key_id && r.key == key)
    }

    /// The record of a key of the ordered map, by its kept `hash`
    /// (always there).
    fn at(&self, key_id: &Id, key: &[u8], hash: u64) -> &Record {
        self.by_key
            .find(hash, |r| r.key_id == *key_id && r.key == key)
            .expect("an ordered key has its record")
    }

    fn remove(&mut self, key_id: &Id, key: &[u8]) -> Option<Record> {
        let hash = self.hash(key_id, key);
        let entry = self
            .by_key
            .find_entry(hash, |r| r.key_id == *key_id && r.key == key)
            .ok()?;
        let (old, _) = entry.remove();
        self.order.remove(&(*key_id, key.to_vec()));
        Some(old)
    }

    /// Stores `r` (a new key, or in place of what it holds): the record
    /// now held and what it replaced; `Err` says why the held record stays
    /// (`r` is not newer, or is exactly what is held).
    fn put(&mut self, r: Record) -> Result<(&Record, Option<Record>), Applied> {
        let hash = self.hash(&r.key_id, &r.key);
        let hasher = &self.hasher;
        let entry = self.by_key.entry(
            hash,
            |held| held.key_id == r.key_id && held.key == r.key,
            |held| hasher.hash_one((&held.key_id, held.key.as_slice())),
        );
        match entry {
            Entry::Occupied(e) => {
                let held = e.into_mut();
                if *held == r {
                    return Err(Applied::Stored);
                }
                if !r.supersedes(held) {
                    return Err(Applied::Kept(held.version));
                }
                let old = std::mem::replace(held, r);
                Ok((held, Some(old)))
            }
            Entry::Vacant(e) => {
                self.order.insert((r.key_id, r.key.clone()), hash);
                Ok((e.insert(r).into_mut(), None))
            }
        }
    }

    fn len(&self) -> usize {
        self.by_key.len()
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
            for ((id, key), hash) in map.order.range((lower, Bound::Unbounded)) {
                if *id > hi || out.len() >= limit {
                    break;
                }
                out.push(f(map.at(id, key, *hash)));
            }
        }
        out
    }
}

impl MemoryStore {
    /// [`Store::apply`] of records the store may keep as they are.
    fn apply_owned(&self, batch: Vec<Record>) -> Vec<Applied> {
        let mut map = self.records.lock().expect("store lock");
        batch
            .into_iter()
            .map(|r| {
                let (r, old) = match map.put(r) {
                    Ok(put) => put,
                    Err(applied) => return applied,
                };
                let new = Contribution::of(r);
                self.bytes.fetch_add(size(r), Relaxed);
                self.max_hlc.fetch_max(r.version.hlc, Relaxed);
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
