//! [`MemoryStore`]: a `BTreeMap` behind a mutex. The model the redb store is
//! tested against, and the store of nodes without a data directory.

use crate::{Digests, FineDigest, KeyVersion, Store, StoreError, scan_parts};
use chordal_core::{Applied, Id, Record, Version};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;

/// Records in memory, ordered by (key id, key).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<(Id, Vec<u8>), Record>>,
    meta: Mutex<HashMap<String, Vec<u8>>>,
    /// Key and value bytes of `records`, kept as they change.
    bytes: std::sync::atomic::AtomicU64,
    /// The largest hlc ever stored.
    max_hlc: std::sync::atomic::AtomicU64,
    /// Fine-bucket digests of `records`.
    digests: Digests,
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
            for (_, r) in map.range((lower, Bound::Unbounded)) {
                if r.key_id > hi || out.len() >= limit {
                    break;
                }
                out.push(f(r));
            }
        }
        out
    }
}

impl Store for MemoryStore {
    fn get(&self, key_id: &Id, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let map = self.records.lock().expect("store lock");
        Ok(map.get(&(*key_id, key.to_vec())).cloned())
    }

    fn apply(&self, batch: &[Record]) -> Result<Vec<Applied>, StoreError> {
        let mut map = self.records.lock().expect("store lock");
        Ok(batch
            .iter()
            .map(|r| {
                let k = (r.key_id, r.key.clone());
                match map.get(&k) {
                    Some(old) if old == r => return Applied::Stored,
                    Some(old) if !r.supersedes(old) => return Applied::Kept(old.version),
                    _ => {}
                }
                self.bytes.fetch_add(size(r), Relaxed);
                self.max_hlc.fetch_max(r.version.hlc, Relaxed);
                let old = map.insert(k, r.clone());
                if let Some(old) = &old {
                    self.bytes.fetch_sub(size(old), Relaxed);
                }
                let old = old.as_ref().map(KeyVersion::of);
                self.digests.replace(old.as_ref(), &KeyVersion::of(r));
                Applied::Stored
            })
            .collect())
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
            let k = (*id, key.clone());
            if map.get(&k).is_some_and(|r| r.version == *version) {
                if let Some(old) = map.remove(&k) {
                    self.bytes.fetch_sub(size(&old), Relaxed);
                    self.digests.remove(&KeyVersion::of(&old));
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
