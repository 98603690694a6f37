//! Model-based: random batches of writes and reads on a redb store (in
//! memory) and on a `BTreeMap` that keeps, per key, the record that
//! supersedes the others (the rule the store promises) — the shape of
//! redb's own `fuzz_redb`. Every apply must report, per record, what the
//! model says it did, and every read and the record count must agree.

use arbitrary::{Arbitrary, Unstructured};
use chordal_core::{Applied, Id, Record, Version};
use chordal_store::{Backing, RedbStore, Store};
use std::cell::RefCell;
use std::collections::BTreeMap;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Records of keys 0..8 with small versions (ties happen).
    Apply(Vec<(u8, u8, u8, Option<u8>)>),
    Get(u8),
}

/// Inputs run on one store before a fresh one is made: opening a redb
/// database costs far more than an input, so each input writes keys of its
/// own (a prefix per run) on a shared store instead.
const RUNS_PER_STORE: u64 = 256;

struct Shared {
    store: RedbStore,
    runs: u64,
}

thread_local! {
    static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

fn fresh_store() -> RedbStore {
    let backing = Backing {
        open: Box::new(|| {
            redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())
        }),
        probe: Box::new(|| Ok(())),
    };
    RedbStore::with_backing(backing).expect("in-memory store opens")
}

fn record(run: u64, key: u8, hlc: u8, node: u8, value: Option<u8>) -> Record {
    Record::new(
        key_of(run, key),
        Version {
            term: 0,
            hlc: hlc as u64,
            node: Id::from_u64(node as u64 % 3),
        },
        value.map(|v| vec![v; (v % 5) as usize]),
    )
}

fn key_of(run: u64, key: u8) -> Vec<u8> {
    format!("{run}/k{}", key % 8).into_bytes()
}

/// The entry point: `data` is read as a list of operations (as
/// libFuzzer's structured `fuzz_target!` reads it).
pub fn store_model(data: &[u8]) {
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        if shared.as_ref().is_none_or(|s| s.runs >= RUNS_PER_STORE) {
            *shared = Some(Shared {
                store: fresh_store(),
                runs: 0,
            });
        }
        let shared = shared.as_mut().expect("just made");
        shared.runs += 1;
        run(&shared.store, shared.runs, ops);
    });
}

fn run(store: &RedbStore, run: u64, ops: Vec<Op>) {
    let before = store.count().expect("memory never fails");
    let mut model: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
    for op in ops.into_iter().take(64) {
        match op {
            Op::Apply(batch) => {
                let batch: Vec<Record> = batch
                    .into_iter()
                    .take(16)
                    .map(|(k, h, n, v)| record(run, k, h, n, v))
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
                let key = key_of(run, k);
                let got = store
                    .get(&Id::of_key(&key), &key)
                    .expect("memory never fails");
                assert_eq!(got.as_ref(), model.get(&key), "get {:?}", key);
            }
        }
    }
    assert_eq!(
        store.count().expect("memory never fails"),
        before + model.len() as u64
    );
}
