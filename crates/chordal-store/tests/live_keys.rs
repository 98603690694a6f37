//! `live_keys`, the store side of a scan page, on both stores: a walk of
//! pages from id 0 to the top returns exactly the live keys (no
//! tombstone, nothing expired), in key-id order, each once; every page
//! ends where the top 64 bits of the key id change, so keys sharing an
//! id (a hash tag's) come in one page.

use chordal_core::{Id, Record, Time, Version};
use chordal_store::{KeyPage, MemoryStore, RedbStore, Store, live_keys};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// A record of `key` in group `group` (its id's top 64 bits; `low` the
/// rest), live or a tombstone, perhaps expiring at `expires` µs.
fn record(
    key: Vec<u8>,
    (group, low): (u64, u64),
    (hlc, dead): (u64, bool),
    expires: Option<u64>,
) -> Record {
    let version = Version::at(hlc, Id::from_u64(9));
    let mut r = Record::new(key, version, (!dead).then(|| b"v".to_vec()));
    r.key_id = Id::from_high_u64(group).wrapping_add(&Id::from_u64(low));
    r.expires = expires.map(Time::from_micros);
    r
}

/// Walks `store` with pages of `limit` keys and a budget of `budget`
/// records; returns the pages.
fn walk(store: &dyn Store, limit: usize, budget: usize, now: Time) -> Vec<(KeyPage, Id)> {
    let mut pages = Vec::new();
    let mut start = Id::ZERO;
    loop {
        let (keys, reached) = live_keys(store, &start, &Id::MAX, (limit, budget), now).unwrap();
        assert!(reached >= start);
        pages.push((keys, reached));
        if reached == Id::MAX {
            return pages;
        }
        start = reached.wrapping_add(&Id::from_u64(1));
        assert!(pages.len() < 10_000, "the walk does not end");
    }
}

fn check(store: &dyn Store, records: &[Record], limit: usize, budget: usize) {
    let now = Time::from_micros(1_000);
    store.apply(records).unwrap();
    // The newest record per key is what the store keeps (the later ones
    // of the list are newer).
    let mut stored: Vec<&Record> = Vec::new();
    for r in records {
        stored.retain(|s| s.key != r.key || s.key_id != r.key_id);
        stored.push(r);
    }
    let want: BTreeSet<(Id, Vec<u8>)> = stored
        .iter()
        .filter(|r| r.is_live(now))
        .map(|r| (r.key_id, r.key.clone()))
        .collect();
    let pages = walk(store, limit, budget, now);
    let got: Vec<(Id, Vec<u8>)> = pages.iter().flat_map(|(k, _)| k.clone()).collect();
    let in_order: Vec<(Id, Vec<u8>)> = want.iter().cloned().collect();
    assert_eq!(got, in_order);
    // No page cuts a group of ids sharing their top 64 bits.
    for (i, (_, reached)) in pages.iter().enumerate() {
        if *reached != Id::MAX {
            assert_eq!(
                *reached,
                reached.end_of_high_u64(),
                "page {i} ends inside a group"
            );
        }
    }
}

fn any_records() -> impl Strategy<Value = Vec<Record>> {
    proptest::collection::vec(
        (
            0u8..60,
            (0u64..6, 0u64..4),
            proptest::bool::weighted(0.2),
            proptest::option::weighted(0.2, 0u64..2_000),
        ),
        0..80,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, group, dead, expires))| {
                // Groups far apart on the ring, one at the very top.
                let group = if group.0 == 5 {
                    (u64::MAX, group.1)
                } else {
                    (group.0 * 1_000, group.1)
                };
                record(vec![b'k', k], group, (i as u64 + 1, dead), expires)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_walk_of_pages_returns_each_live_key_once_in_order(
        records in any_records(),
        limit in 1usize..6,
        budget in 1usize..12,
    ) {
        check(&MemoryStore::new(), &records, limit, budget);
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        check(&redb, &records, limit, budget);
    }
}
