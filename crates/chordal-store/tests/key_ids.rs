//! Stores written by older releases filed keys under other ids: before
//! hash tags, `{user:1}:cart` under the SHA-1 of the whole key; before
//! hash slots, every key under a bare SHA-1. Opened now, every record
//! moves to `Id::of_key` of its key, where reads look for it, once.

use chordal_core::{Id, Record, Version};
use chordal_store::{RedbStore, Store};
use std::path::Path;

fn record(key: &[u8], key_id: Id, hlc: u64) -> Record {
    let mut r = Record::new(
        key.to_vec(),
        Version {
            term: 3,
            hlc,
            node: Id::from_u64(7),
        },
        Some(format!("value {hlc}").into_bytes()),
    );
    r.key_id = key_id;
    r
}

const TAGGED: &[u8] = b"{user:1}:cart";
const PLAIN: &[u8] = b"plain";
const EMPTY_BRACES: &[u8] = b"x{}y";

/// Writes `old` into a new store at `path`, then marks the store as an
/// older release left it: `era` in its meta (`None`: no entry at all).
fn old_store(path: &Path, old: &[Record], era: Option<&[u8]>) {
    {
        let store = RedbStore::open(path).unwrap();
        store.apply(old).unwrap();
    }
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        assert_eq!(
            meta.remove("key_ids").unwrap().map(|v| v.value().to_vec()),
            Some(b"hash-slots".to_vec()),
            "a store opened now says how it computes key ids"
        );
        if let Some(era) = era {
            meta.insert("key_ids", era).unwrap();
        }
    }
    txn.commit().unwrap();
}

/// Each key is found at `Id::of_key` with the hlc it was written with,
/// nowhere else, and a full scan sees each once.
fn all_moved(store: &RedbStore, keys: &[(&[u8], u64)], old_ids: &[Id]) {
    for (key, hlc) in keys {
        let r = store.get(&Id::of_key(key), key).unwrap().unwrap();
        assert!(r.is_consistent());
        assert_eq!(r.version.hlc, *hlc);
        assert_eq!(r.value, Some(format!("value {hlc}").into_bytes()));
    }
    for ((key, _), old) in keys.iter().zip(old_ids) {
        assert_eq!(store.get(old, key).unwrap(), None, "nothing left behind");
    }
    let mut all = Vec::new();
    store
        .scan_snapshot(&Id::ZERO, &Id::ZERO, None, &mut |r| {
            all.push(r);
            true
        })
        .unwrap();
    assert_eq!(all.len(), keys.len());
    assert!(all.iter().all(Record::is_consistent));
}

#[test]
fn a_store_of_before_hash_tags_moves_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let keys = [(TAGGED, 10), (PLAIN, 11), (EMPTY_BRACES, 12)];
    let old_ids: Vec<Id> = keys.iter().map(|(k, _)| Id::hash(k)).collect();
    let old: Vec<Record> = keys
        .iter()
        .zip(&old_ids)
        .map(|((k, hlc), id)| record(k, *id, *hlc))
        .collect();
    old_store(&path, &old, None);
    let store = RedbStore::open(&path).unwrap();
    all_moved(&store, &keys, &old_ids);
    drop(store);
    // Opened again, nothing changes.
    let store = RedbStore::open(&path).unwrap();
    all_moved(&store, &keys, &old_ids);
}

#[test]
fn a_store_of_before_hash_slots_moves_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let keys = [(TAGGED, 20), (PLAIN, 21), (EMPTY_BRACES, 22)];
    // Then: the SHA-1 of the tag, or of the whole key.
    let old_ids: Vec<Id> = keys
        .iter()
        .map(|(k, _)| Id::hash(chordal_core::hash_tag(k).unwrap_or(k)))
        .collect();
    let old: Vec<Record> = keys
        .iter()
        .zip(&old_ids)
        .map(|((k, hlc), id)| record(k, *id, *hlc))
        .collect();
    old_store(&path, &old, Some(b"hash-tags"));
    let store = RedbStore::open(&path).unwrap();
    all_moved(&store, &keys, &old_ids);
}
