//! The memory store's cost per point operation at a realistic key count:
//! `KEYS` keys written once, then `OPS` overwrites and `OPS` reads of
//! random keys (the shape of `redis-benchmark -r KEYS`), one record per
//! apply as a node applies a SET; then a walk of every key's version in
//! ring order, as a sweep makes. Prints nanoseconds per operation.
//!
//!     cargo run --release -p chordal-store --example point_ops [KEYS] [OPS]
//!
//! Defaults: 100,000 keys, 1,000,000 operations of each kind. A node
//! applies every write it owns or replicates (R = 3: every process, every
//! key), so this is paid three times per SET across a 3-node ring.

use chordal_core::{Id, Record, Rng, Version};
use chordal_store::{MemoryStore, Store};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let keys = args.next().and_then(Result::ok).unwrap_or(100_000);
    let ops = args.next().and_then(Result::ok).unwrap_or(1_000_000);
    let store = MemoryStore::new();
    let key = |i: u64| format!("key:{i:012}").into_bytes();
    let record = |k: Vec<u8>, hlc: u64| {
        let version = Version {
            term: 1,
            hlc,
            node: Id::from_u64(7),
        };
        Record::new(k, version, Some(b"xxx".to_vec()))
    };
    let mut hlc = 1;
    for i in 0..keys {
        hlc += 1;
        store.apply_with(vec![record(key(i), hlc)], Box::new(|_| {}));
    }
    let mut rng = Rng::new(1);
    // The keys chosen before the clock starts: `format!` is not the store's.
    let picks: Vec<(Id, Vec<u8>)> = (0..ops)
        .map(|_| {
            let k = key(rng.below(keys));
            (Id::of_key(&k), k)
        })
        .collect();
    let writes: Vec<Record> = picks
        .iter()
        .map(|(_, k)| {
            hlc += 1;
            record(k.clone(), hlc)
        })
        .collect();
    let start = Instant::now();
    for r in writes {
        store.apply_with(vec![r], Box::new(|_| {}));
    }
    let write_ns = start.elapsed().as_nanos() as f64 / ops as f64;
    let start = Instant::now();
    let mut found = 0;
    for (id, k) in &picks {
        found += usize::from(store.get(id, k).expect("get").is_some());
    }
    let read_ns = start.elapsed().as_nanos() as f64 / ops as f64;
    assert_eq!(found as u64, ops, "every key written is found");
    // A sweep's walk: every key's version, in ring order, in pages. The
    // first walk is not timed: its first allocation pays for glibc's
    // consolidation of the many small blocks the overwrites freed
    // (~10 ms after 10^5 of them), a cost of the allocator, not of the
    // walk.
    walk(&store, keys);
    let start = Instant::now();
    walk(&store, keys);
    let scan_ns = start.elapsed().as_nanos() as f64 / keys as f64;
    println!("keys,ops,write_ns,read_ns,scan_ns");
    println!("{keys},{ops},{write_ns:.0},{read_ns:.0},{scan_ns:.0}");
}

/// Walks every key's version in pages of 4,096, as a sweep does.
fn walk(store: &MemoryStore, keys: u64) {
    let (mut seen, mut resume): (u64, Option<(Id, Vec<u8>)>) = (0, None);
    loop {
        let from = resume.as_ref().map(|(i, k)| (i, k.as_slice()));
        let page = store
            .scan_versions(&Id::ZERO, &Id::ZERO, from, 4096)
            .expect("scan");
        seen += page.len() as u64;
        match page.last() {
            Some(last) => resume = Some((last.key_id, last.key.clone())),
            None => break,
        }
    }
    assert_eq!(seen, keys, "the walk sees every key once");
}
