//! Walks over the keyspace (`Operation::Scan`, what SCAN, KEYS and
//! FLUSHALL are made of) on a simulated ring under authority: every key
//! present for the whole walk is returned, whatever joins, leaves and
//! crashes happen between its pages, and a page never splits the keys of
//! one hash tag.

use chordal_core::{Id, OpError, Operation, Outcome, ScanPage};
use chordal_sim::{Sim, SimConfig};
use std::collections::BTreeSet;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn config(seed: u64) -> SimConfig {
    SimConfig::with_authority(seed)
}

/// A ring of `n` single-vnode nodes grown by joins, settled.
fn ring(seed: u64, n: usize) -> Sim {
    let mut s = Sim::grown(config(seed), n, Duration::from_millis(200));
    s.run_for(5 * SEC);
    s
}

/// One page from `[start, MAX]` through node `via`, asked again after
/// errors that did nothing (a term catching up, an owner just gone) until
/// `patience` has passed.
fn page(s: &mut Sim, via: usize, start: Id, limit: u32, patience: Duration) -> ScanPage {
    let until = s.now() + patience;
    loop {
        let op = Operation::Scan {
            start,
            end: Id::MAX,
            limit,
        };
        match s.store_op(via, op) {
            Ok(Outcome::Keys(page)) => return page,
            Err(OpError::NotReady | OpError::Timeout | OpError::Redirects | OpError::Lookup(_))
                if s.now() < until =>
            {
                s.run_for(Duration::from_millis(200));
            }
            other => panic!("scan page from {start:?} via {via}: {other:?}"),
        }
    }
}

#[test]
fn a_walk_returns_every_key_present_throughout_despite_joins_leaves_and_a_crash() {
    let first: u64 = std::env::var("FIRST_SEED").map_or(0, |s| s.parse().unwrap());
    for seed in first..first + 6 {
        let mut s = ring(seed, 5);
        let mut members: Vec<usize> = (0..5).collect();
        let mut kept = BTreeSet::new();
        for k in 0..200 {
            let key = format!("k{k}").into_bytes();
            s.put(k % 5, &key, b"v").unwrap();
            kept.insert(key);
        }
        for k in 0..30 {
            let key = format!("{{group}}:{k}").into_bytes();
            s.put(k % 5, &key, b"v").unwrap();
            kept.insert(key);
        }
        // Deleted before the walk: never returned.
        let gone: Vec<Vec<u8>> = (0..20).map(|k| format!("k{k}").into_bytes()).collect();
        for key in &gone {
            s.delete(0, key).unwrap();
            kept.remove(key);
        }
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut start = Id::ZERO;
        let mut pages = 0;
        loop {
            pages += 1;
            // Churn between pages: joins just ahead of the walk (the
            // joiner's first page is asked for as soon as it has joined:
            // while its term may still be catching up), a leave, a crash.
            match pages {
                2 | 5 | 8 | 11 => {
                    // Just ahead of the walk: the next page is the joiner's.
                    let ahead = start.wrapping_add(&Id::from_high_u64(u64::MAX / 40));
                    let fresh = s.add_node_with_ids(&[ahead]);
                    s.join(fresh, members[0]);
                    members.push(fresh);
                    s.run_until_true(Duration::from_millis(10), 10 * SEC, |s| {
                        s.node(fresh).is_joined()
                    });
                }
                4 => {
                    let leaver = members.remove(2);
                    s.leave(leaver);
                }
                7 => {
                    let victim = members.remove(1);
                    s.kill(victim);
                }
                _ => {}
            }
            let via = members[pages % members.len()];
            let p = page(&mut s, via, start, 15, 60 * SEC);
            assert!(p.reached >= start, "seed {seed}: a page went backwards");
            seen.extend(p.keys);
            if p.reached == Id::MAX {
                break;
            }
            start = p.reached.wrapping_add(&Id::from_u64(1));
            assert!(pages < 500, "seed {seed}: the walk does not end");
        }
        let missed: Vec<String> = kept
            .difference(&seen)
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert!(missed.is_empty(), "seed {seed}: the walk missed {missed:?}");
        for key in &gone {
            assert!(!seen.contains(key), "seed {seed}: a deleted key came back");
        }
        assert!(pages > 5, "seed {seed}: {pages} pages: the churn never ran");
    }
}

#[test]
fn a_page_takes_a_hash_tag_group_whole() {
    let mut s = ring(7, 4);
    let group: BTreeSet<Vec<u8>> = (0..40)
        .map(|k| format!("{{cart}}:{k}").into_bytes())
        .collect();
    for key in &group {
        s.put(0, key, b"v").unwrap();
    }
    for k in 0..100 {
        s.put(1, format!("other{k}").as_bytes(), b"v").unwrap();
    }
    let mut start = Id::ZERO;
    let mut pages_with_group = 0;
    loop {
        // Limit 3: far fewer than the group's 40 keys.
        let p = page(&mut s, 2, start, 3, 10 * SEC);
        let tagged: BTreeSet<Vec<u8>> = p
            .keys
            .iter()
            .filter(|k| k.starts_with(b"{cart}"))
            .cloned()
            .collect();
        if !tagged.is_empty() {
            assert_eq!(tagged, group, "a page split the group");
            pages_with_group += 1;
        }
        if p.reached == Id::MAX {
            break;
        }
        start = p.reached.wrapping_add(&Id::from_u64(1));
    }
    assert_eq!(pages_with_group, 1);
}

/// Keys written while the owner's successor was cut off (acknowledged by
/// the owner and the copy after) are missing from that successor's store
/// when the owner dies and it takes the range over: its term reads them
/// from the old copies first (its catch-up), and a page asked of it
/// meanwhile waits for that. Every such key is in a walk asked page after
/// page from the moment of the crash.
#[test]
fn a_new_holder_answers_pages_only_once_caught_up() {
    for seed in 0..4 {
        let mut s = ring(seed, 5);
        let a = 0;
        let a_id = s.node(a).vnodes()[0].me().id;
        let b_id = s.oracle().successor(&a_id.wrapping_add(&Id::from_u64(1)));
        let b = (0..s.len())
            .find(|i| s.node(*i).vnodes()[0].me().id == b_id)
            .expect("a's successor is a node");
        let keys: Vec<Vec<u8>> = (0..2000)
            .map(|k| format!("p{k}").into_bytes())
            .filter(|k| s.owner_of(k) == a)
            .take(40)
            .collect();
        // B cut off for a moment (shorter than failure detection): A and
        // the copy after B acknowledge every write.
        s.partition(|i| u32::from(i == b));
        for key in &keys {
            s.put(a, key, b"v").unwrap();
        }
        s.heal_partition();
        s.kill(a);
        let lacking = keys.iter().filter(|k| !s.holds(b, k)).count();
        assert_eq!(lacking, keys.len(), "seed {seed}: B was not cut off");
        // A walk of the ring through a third node, each page asked again
        // at once after an error: A's range is asked of B from the moment
        // B may serve it.
        let via = (0..5).find(|i| *i != a && *i != b).expect("a third node");
        let mut seen = BTreeSet::new();
        let mut start = Id::ZERO;
        let until = s.now() + 60 * SEC;
        while s.now() < until {
            let op = Operation::Scan {
                start,
                end: Id::MAX,
                limit: 1000,
            };
            let id = s.start_store_op(via, op);
            let result = loop {
                s.run_for(Duration::from_millis(1));
                if let Some(r) = s.take_kv_result(via, id) {
                    break r;
                }
            };
            match result {
                Ok(Outcome::Keys(p)) => {
                    seen.extend(p.keys);
                    start = p.reached.wrapping_add(&Id::from_u64(1));
                    if p.reached == Id::MAX {
                        break;
                    }
                }
                Err(_) => s.run_for(Duration::from_millis(1)),
                Ok(other) => panic!("seed {seed}: {other:?}"),
            }
        }
        let missed = keys.iter().filter(|k| !seen.contains(*k)).count();
        assert_eq!(missed, 0, "seed {seed}: the pages missed {missed} keys");
    }
}
