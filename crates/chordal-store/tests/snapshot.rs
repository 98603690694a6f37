//! `Store::scan_snapshot`: a range read as one moment saw it, even while
//! writes land in it during the read — what makes a backup consistent per
//! range.

use chordal_core::{Id, Record, Version};
use chordal_store::{MemoryStore, RedbStore, Store};

fn record(key: &str, hlc: u64, value: &str) -> Record {
    Record::new(
        key.as_bytes().to_vec(),
        Version {
            term: 0,
            hlc,
            node: Id::from_u64(1),
        },
        Some(value.as_bytes().to_vec()),
    )
}

/// Writes during the read change existing keys and add new ones; the read
/// hands out exactly what was there when it began, in key-id order, and
/// resumes after a given record.
fn reads_one_moment(store: &dyn Store) {
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let before: Vec<Record> = keys.iter().map(|k| record(k, 1, "before")).collect();
    store.apply(&before).unwrap();
    let mut seen: Vec<Record> = Vec::new();
    let whole = Id::ZERO;
    store
        .scan_snapshot(&whole, &whole, None, &mut |r| {
            if seen.is_empty() {
                // Every key gets a newer version, and new keys appear.
                let after: Vec<Record> = keys.iter().map(|k| record(k, 2, "after")).collect();
                store.apply(&after).unwrap();
                store
                    .apply(&[record("new-during-the-read", 3, "x")])
                    .unwrap();
            }
            seen.push(r);
            true
        })
        .unwrap();
    assert_eq!(seen.len(), keys.len(), "no key added during the read");
    assert!(
        seen.iter()
            .all(|r| r.version.hlc == 1 && r.value.as_deref() == Some(&b"before"[..])),
        "every record as it was when the read began"
    );
    assert!(
        seen.windows(2)
            .all(|w| (w[0].key_id, &w[0].key) < (w[1].key_id, &w[1].key))
    );

    // Resuming after the 100th record gives the rest of a new moment; an
    // answer of false stops the read.
    let resume = (seen[99].key_id, seen[99].key.clone());
    let mut rest = Vec::new();
    store
        .scan_snapshot(&whole, &whole, Some((&resume.0, &resume.1)), &mut |r| {
            rest.push(r);
            rest.len() < 50
        })
        .unwrap();
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0].key_id, seen[100].key_id);
    assert!(
        rest.iter().all(|r| r.version.hlc >= 2),
        "now the newer versions"
    );
}

#[test]
fn the_memory_store_reads_a_range_as_one_moment() {
    reads_one_moment(&MemoryStore::default());
}

#[test]
fn the_redb_store_reads_a_range_as_one_moment() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    reads_one_moment(&store);
}
