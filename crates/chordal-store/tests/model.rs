//! The redb store against the memory store as a model: random sequences of
//! operations must give the same answers and leave the same contents.

use chordal_core::{Applied, Id, Record, Version};
use chordal_store::{MemoryStore, RedbStore, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Apply(Vec<Record>),
    Get(usize),
    Remove(Vec<(usize, u64)>),
    Scan(Id, Id, usize),
}

/// Keys from a small pool so that operations collide; half of them share
/// one hash tag, so one key id holds several keys (scans resume inside
/// it, as they do through a collection's elements).
fn keys() -> Vec<Vec<u8>> {
    (0..12)
        .map(|i| match i {
            0..6 => format!("key-{i}").into_bytes(),
            _ => format!("{{tag}}key-{i}").into_bytes(),
        })
        .collect()
}

fn record(k: usize, hlc: u64, node: u64, value: Option<Vec<u8>>) -> Record {
    Record::new(
        keys()[k].clone(),
        Version {
            term: 0,
            hlc,
            node: Id::from_u64(node),
        },
        value,
    )
}

fn any_record() -> impl Strategy<Value = Record> {
    (
        0..12usize,
        0..20u64,
        0..3u64,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
    )
        .prop_map(|(k, hlc, node, v)| record(k, hlc, node, v))
}

fn any_id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<[u8; 20]>().prop_map(Id),
        Just(Id::ZERO),
        Just(Id::MAX)
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::collection::vec(any_record(), 0..6).prop_map(Op::Apply),
        (0..12usize).prop_map(Op::Get),
        proptest::collection::vec((0..12usize, 0..20u64), 0..4).prop_map(Op::Remove),
        (any_id(), any_id(), 1..20usize).prop_map(|(a, b, l)| Op::Scan(a, b, l)),
    ]
}

/// A whole scan done page by page with resume points.
fn scan_all(s: &dyn Store, a: &Id, b: &Id, page: usize) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let resume = out.last().map(|r| (r.key_id, r.key.clone()));
        let got = s
            .scan(
                a,
                b,
                resume.as_ref().map(|(id, k)| (id, k.as_slice())),
                page,
            )
            .unwrap();
        let n = got.len();
        out.extend(got);
        if n < page {
            return out;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn redb_behaves_like_the_model(ops in proptest::collection::vec(any_op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStore::open(&dir.path().join("db")).unwrap();
        let model = MemoryStore::new();
        for op in &ops {
            match op {
                Op::Apply(batch) => {
                    prop_assert_eq!(redb.apply(batch).unwrap(), model.apply(batch).unwrap());
                    prop_assert_eq!(redb.max_hlc().unwrap(), model.max_hlc().unwrap());
                }
                Op::Get(k) => {
                    let key = &keys()[*k];
                    let id = Id::of_key(key);
                    prop_assert_eq!(redb.get(&id, key).unwrap(), model.get(&id, key).unwrap());
                }
                Op::Remove(list) => {
                    let list: Vec<(Id, Vec<u8>, Version)> = list
                        .iter()
                        .map(|(k, hlc)| (Id::of_key(&keys()[*k]), keys()[*k].clone(), Version { term: 0, hlc: *hlc, node: Id::from_u64(1) }))
                        .collect();
                    prop_assert_eq!(redb.remove(&list).unwrap(), model.remove(&list).unwrap());
                }
                Op::Scan(a, b, page) => {
                    let want = scan_all(&model, a, b, *page);
                    prop_assert_eq!(scan_all(&redb, a, b, *page), want.clone());
                    // Every record returned is in the interval, in key-id order
                    // within each unwrapped part.
                    for r in &want {
                        prop_assert!(r.key_id.in_open_closed(a, b));
                    }
                    // And none is missing.
                    let all = scan_all(&model, &Id::ZERO, &Id::ZERO, 1000);
                    let inside = all.iter().filter(|r| r.key_id.in_open_closed(a, b)).count();
                    prop_assert_eq!(want.len(), inside);
                }
            }
        }
        prop_assert_eq!(redb.count().unwrap(), model.count().unwrap());
        let everything = scan_all(&model, &Id::ZERO, &Id::ZERO, 1000);
        prop_assert_eq!(&scan_all(&redb, &Id::ZERO, &Id::ZERO, 1000), &everything);
        // The memory store's byte count follows every change exactly; the
        // database's is its file, never empty.
        let bytes: u64 = everything
            .iter()
            .map(|r| (r.key.len() + r.value.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        prop_assert_eq!(model.bytes().unwrap(), bytes);
        prop_assert!(redb.bytes().unwrap() > 0);
        // Both keep the same digests up to date, write by write.
        prop_assert_eq!(
            redb.fine_digests(0, chordal_store::FINE),
            model.fine_digests(0, chordal_store::FINE)
        );
    }
}

#[test]
fn newer_versions_win_and_tombstones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(&dir.path().join("db")).unwrap();
    let put = record(0, 5, 1, Some(b"v5".to_vec()));
    let older = record(0, 3, 1, Some(b"v3".to_vec()));
    let delete = record(0, 7, 2, None);
    assert_eq!(
        s.apply(&[put.clone(), older]).unwrap(),
        vec![Applied::Stored, Applied::Kept(put.version)]
    );
    assert_eq!(s.get(&put.key_id, &put.key).unwrap(), Some(put.clone()));
    // The same version again is what the store holds: stored.
    assert_eq!(
        s.apply(std::slice::from_ref(&put)).unwrap(),
        vec![Applied::Stored]
    );
    assert_eq!(
        s.apply(std::slice::from_ref(&delete)).unwrap(),
        vec![Applied::Stored]
    );
    // A stale replica's put does not resurrect the key, and the store says
    // which newer version it kept.
    assert_eq!(
        s.apply(std::slice::from_ref(&put)).unwrap(),
        vec![Applied::Kept(delete.version)]
    );
    assert_eq!(s.max_hlc().unwrap(), 7);
    assert!(
        s.get(&put.key_id, &put.key)
            .unwrap()
            .unwrap()
            .is_tombstone()
    );
}

#[test]
fn data_and_meta_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let r = record(3, 9, 1, Some(b"kept".to_vec()));
    {
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.max_hlc().unwrap(), 0);
        s.apply(std::slice::from_ref(&r)).unwrap();
        s.set_meta("node_id", b"abc").unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.get(&r.key_id, &r.key).unwrap(), Some(r));
    // The clock seed survives too.
    assert_eq!(s.max_hlc().unwrap(), 9);
    assert_eq!(s.meta("node_id").unwrap(), Some(b"abc".to_vec()));
    assert_eq!(s.meta("other").unwrap(), None);
}

#[test]
fn concurrent_writers_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(RedbStore::open(&dir.path().join("db")).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let r = Record::new(
                        format!("t{t}-{i}").into_bytes(),
                        Version {
                            term: 0,
                            hlc: i + 1,
                            node: Id::from_u64(t),
                        },
                        Some(vec![t as u8]),
                    );
                    assert_eq!(s.apply(&[r]).unwrap(), vec![Applied::Stored]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.count().unwrap(), 400);
}

/// Keys for the digest tests: many, and some forced into one fine bucket
/// (ids near each other) so that boundaries cut buckets that hold several.
fn digest_record(k: u64, hlc: u64, tombstone: bool) -> Record {
    Record::new(
        format!("digest-{k}").into_bytes(),
        Version {
            term: 0,
            hlc,
            node: Id::from_u64(1),
        },
        (!tombstone).then(|| vec![k as u8; (k % 7) as usize]),
    )
}

/// An interval end for the digest tests: random, at the ring's edges, or
/// right at / next to a record's id (where boundaries cut).
fn interval_end(ids: &[Id], pick: u64, raw: [u8; 20]) -> Id {
    match pick % 5 {
        0 => Id(raw),
        1 => Id::ZERO,
        2 if !ids.is_empty() => ids[(pick / 5) as usize % ids.len()],
        3 if !ids.is_empty() => ids[(pick / 5) as usize % ids.len()].wrapping_add(&Id::from_u64(1)),
        _ => Id::MAX,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Summaries from the fine-bucket digests equal summaries by a full
    /// scan — for any interval (whole ring, wrapping, tiny, cut right at a
    /// record), any bucket count and tombstone horizon, after applies,
    /// overwrites, tombstones and removes, in memory and in redb (also
    /// after reopening, when the digests are rebuilt).
    #[test]
    fn digest_summaries_equal_scanned_ones(
        writes in proptest::collection::vec((0..400u64, 1..50u64, any::<bool>()), 1..300),
        removes in proptest::collection::vec(0..400u64, 0..40),
        intervals in proptest::collection::vec((any::<u64>(), any::<[u8; 20]>(), any::<u64>(), any::<[u8; 20]>(), 1..70u32, 0..60u64), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let redb = RedbStore::open(&path).unwrap();
        let memory = MemoryStore::new();
        for (k, hlc, tomb) in &writes {
            let r = digest_record(*k, *hlc, *tomb);
            redb.apply(std::slice::from_ref(&r)).unwrap();
            memory.apply(std::slice::from_ref(&r)).unwrap();
        }
        for k in &removes {
            let key = format!("digest-{k}").into_bytes();
            let id = Id::of_key(&key);
            if let Some(r) = memory.get(&id, &key).unwrap() {
                let gone = [(id, key.clone(), r.version)];
                prop_assert_eq!(redb.remove(&gone).unwrap(), memory.remove(&gone).unwrap());
            }
        }
        let ids: Vec<Id> = writes.iter().map(|(k, _, _)| Id::of_key(format!("digest-{k}").as_bytes())).collect();
        let check = |s: &dyn Store| -> Result<(), TestCaseError> {
            for (pa, ra, pb, rb, buckets, horizon) in &intervals {
                let (a, b) = (interval_end(&ids, *pa, *ra), interval_end(&ids, *pb, *rb));
                let fast = chordal_store::summarize(s, &a, &b, *buckets, *horizon).unwrap();
                let slow = chordal_store::summarize_by_scan(s, &a, &b, *buckets, *horizon).unwrap();
                prop_assert_eq!(fast, slow, "({:?}, {:?}] in {} buckets", a, b, buckets);
            }
            Ok(())
        };
        check(&memory)?;
        check(&redb)?;
        drop(redb);
        let reopened = RedbStore::open(&path).unwrap();
        check(&reopened)?;
    }
}

/// Two different records with one version (only a forged or damaged one
/// can make them): both stores keep the same one whatever the order they
/// arrive in — the tombstone, else the larger value — so copies converge
/// instead of syncing back and forth forever (found by the `store_model`
/// fuzz target).
#[test]
fn equal_versions_settle_the_same_way_in_every_store_and_order() {
    let value = record(0, 9, 1, Some(vec![]));
    let bigger = record(0, 9, 1, Some(b"z".to_vec()));
    let tomb = record(0, 9, 1, None);
    for (first, second, winner) in [
        (&value, &tomb, &tomb),
        (&tomb, &value, &tomb),
        (&value, &bigger, &bigger),
        (&bigger, &value, &bigger),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStore::open(&dir.path().join("db")).unwrap();
        let memory = MemoryStore::new();
        for s in [&redb as &dyn Store, &memory] {
            assert_eq!(
                s.apply(std::slice::from_ref(first)).unwrap(),
                vec![Applied::Stored]
            );
            let applied = s.apply(std::slice::from_ref(second)).unwrap();
            let want = if second == winner {
                Applied::Stored
            } else {
                Applied::Kept(first.version)
            };
            assert_eq!(applied, vec![want]);
            assert_eq!(
                s.get(&winner.key_id, &winner.key).unwrap().as_ref(),
                Some(winner)
            );
        }
    }
}
