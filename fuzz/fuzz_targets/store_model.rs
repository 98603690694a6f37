//! Model-based: random batches of writes and reads on a redb store (in
//! memory) and on a `BTreeMap` that keeps, per key, the record that
//! supersedes the others (the rule the store promises). Every apply must report, per record,
//! what the model says it did, and every read must agree with the model.
#![no_main]

use arbitrary::Arbitrary;
use chordal_core::{Applied, Id, Record, Version};
use chordal_store::{Backing, RedbStore, Store};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Records of keys 0..8 with small versions (ties happen).
    Apply(Vec<(u8, u8, u8, Option<u8>)>),
    Get(u8),
}

fn record(key: u8, hlc: u8, node: u8, value: Option<u8>) -> Record {
    Record::new(
        format!("k{}", key % 8).into_bytes(),
        Version {
            hlc: hlc as u64,
            node: Id::from_u64(node as u64 % 3),
        },
        value.map(|v| vec![v; (v % 5) as usize]),
    )
}

fuzz_target!(|ops: Vec<Op>| {
    let backing = Backing {
        open: Box::new(|| {
            redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())
        }),
        probe: Box::new(|| Ok(())),
    };
    let store = RedbStore::with_backing(backing).expect("in-memory store opens");
    let mut model: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
    for op in ops.into_iter().take(64) {
        match op {
            Op::Apply(batch) => {
                let batch: Vec<Record> = batch
                    .into_iter()
                    .take(16)
                    .map(|(k, h, n, v)| record(k, h, n, v))
                    .collect();
                let applied = store.apply(&batch).expect("memory never fails");
                assert_eq!(applied.len(), batch.len());
                for (r, a) in batch.iter().zip(applied) {
                    // The newer version wins; equal versions with other
                    // content are ordered by content (`Record::supersedes`).
                    let want = match model.get(&r.key) {
                        Some(old) if old == r => Applied::Stored,
                        Some(old) if !r.supersedes(old) => Applied::Kept(old.version),
                        _ => {
                            model.insert(r.key.clone(), r.clone());
                            Applied::Stored
                        }
                    };
                    assert_eq!(a, want, "apply of {r:?}");
                }
            }
            Op::Get(k) => {
                let key = format!("k{}", k % 8).into_bytes();
                let got = store
                    .get(&Id::hash(&key), &key)
                    .expect("memory never fails");
                assert_eq!(got.as_ref(), model.get(&key), "get k{}", k % 8);
            }
        }
    }
    assert_eq!(store.count().unwrap(), model.len() as u64);
});
