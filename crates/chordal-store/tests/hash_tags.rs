//! A store written before hash tags filed a key like `{user:1}:cart` under
//! the hash of the whole key; opened now, such records move to the id of
//! their tag (`Id::of_key`), where reads look for them, and nothing else
//! moves.

use chordal_core::{Id, Record, Version};
use chordal_store::{RedbStore, Store};

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

#[test]
fn an_old_store_moves_tagged_keys_to_their_tags_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let tagged: &[u8] = b"{user:1}:cart";
    let plain: &[u8] = b"plain";
    let empty_braces: &[u8] = b"x{}y";
    {
        let store = RedbStore::open(&path).unwrap();
        // As a store of before hash tags holds them: every id the hash of
        // the whole key.
        let old = [
            record(tagged, Id::hash(tagged), 10),
            record(plain, Id::hash(plain), 11),
            record(empty_braces, Id::hash(empty_braces), 12),
        ];
        store.apply(&old).unwrap();
    }
    // Forget that the store was opened by this version.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            assert!(
                meta.remove("key_ids").unwrap().is_some(),
                "a store opened now says how it computes key ids"
            );
        }
        txn.commit().unwrap();
    }

    let store = RedbStore::open(&path).unwrap();
    let moved = store.get(&Id::of_key(tagged), tagged).unwrap().unwrap();
    assert_eq!(moved.key_id, Id::hash(b"user:1"));
    assert!(moved.is_consistent());
    assert_eq!(moved.version.hlc, 10);
    assert_eq!(moved.value.as_deref(), Some(&b"value 10"[..]));
    assert_eq!(
        store.get(&Id::hash(tagged), tagged).unwrap(),
        None,
        "nothing left behind"
    );
    // Keys without a tag stay where they were.
    assert_eq!(
        store
            .get(&Id::hash(plain), plain)
            .unwrap()
            .unwrap()
            .version
            .hlc,
        11
    );
    let kept = store.get(&Id::hash(empty_braces), empty_braces).unwrap();
    assert_eq!(kept.unwrap().version.hlc, 12);
    // A full scan sees each record once, at its new place.
    let mut all = Vec::new();
    store
        .scan_snapshot(&Id::ZERO, &Id::ZERO, None, &mut |r| {
            all.push(r);
            true
        })
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(Record::is_consistent));
    drop(store);

    // Opened again, nothing changes.
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store
            .get(&Id::of_key(tagged), tagged)
            .unwrap()
            .unwrap()
            .version
            .hlc,
        10
    );
}
