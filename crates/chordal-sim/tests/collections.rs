//! Collections (`Operation::Collection`: hashes and sets, one record per
//! element) on a simulated ring under authority, through joins, a leave
//! and the crash of the collection's owner — an Elle-style set workload:
//! clients add unique members to one set and increment one field of a
//! hash while others read the whole set; two nodes join just past the
//! collections' key id (each takes them over) and the last one crashes. Checked:
//! - every member acknowledged before a read began is in that read, and
//!   a read that began after another ended holds all that one held (the
//!   set only grows, so this is what linearizability asks of it);
//! - at the end the set holds every acknowledged member and nothing no
//!   one added, its count (the header's) equals its members, and the
//!   hash's counter lies in [acknowledged, acknowledged + unknown].
//!
//! (Replicating only the first record of each write — the header
//! without its elements — fails the first check at once: checked by
//! hand. The simulator's stores apply at once, so it cannot show what
//! the header's hold and the merge of pending writes guard against; the
//! real-process checks can.)

use chordal_core::collection::{CollOp, CollReply};
use chordal_core::{Id, Kind, OpError, OpId, Operation, Outcome, Time};
use chordal_sim::{Sim, SimConfig};
use std::collections::BTreeSet;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const SET: &[u8] = b"{c}members";
const HASH: &[u8] = b"{c}counters";

fn add(member: u64) -> Operation {
    Operation::Collection {
        key: SET.to_vec(),
        kind: Kind::Set,
        op: CollOp::Put {
            pairs: vec![(member.to_string().into_bytes(), Vec::new())],
            only_new: false,
        },
    }
}

fn members() -> Operation {
    Operation::Collection {
        key: SET.to_vec(),
        kind: Kind::Set,
        op: CollOp::All,
    }
}

fn incr() -> Operation {
    Operation::Collection {
        key: HASH.to_vec(),
        kind: Kind::Hash,
        op: CollOp::Incr {
            field: b"n".to_vec(),
            by: b"1".to_vec(),
            float: false,
        },
    }
}

fn read_set(r: Outcome) -> BTreeSet<u64> {
    match r {
        Outcome::Collection(CollReply::Pairs(p)) => p
            .into_iter()
            .map(|(m, _)| std::str::from_utf8(&m).unwrap().parse().unwrap())
            .collect(),
        other => panic!("not a set: {other:?}"),
    }
}

/// What one client slot is waiting for.
#[derive(Clone, Copy)]
enum Waiting {
    /// An add of this member.
    Add(u64),
    /// A read of the whole set, begun at this time, when these many
    /// members had been acknowledged.
    Read(Time, usize),
    Incr,
}

#[test]
fn a_set_keeps_every_acknowledged_member_through_churn() {
    let first: u64 = std::env::var("FIRST_SEED").map_or(0, |s| s.parse().unwrap());
    for seed in first..first + 8 {
        let mut s = Sim::grown(
            SimConfig::with_authority(seed),
            5,
            Duration::from_millis(200),
        );
        s.run_for(5 * SEC);
        let mut alive: Vec<usize> = (0..5).collect();
        // Acknowledged members in the order acknowledged; those whose
        // add ended unknown.
        let mut acked: Vec<u64> = Vec::new();
        let mut unknown: BTreeSet<u64> = BTreeSet::new();
        let (mut incr_acked, mut incr_unknown) = (0i64, 0i64);
        // Reads that ended: (began, ended, what they held).
        let mut reads: Vec<(Time, Time, BTreeSet<u64>)> = Vec::new();
        let mut clients: Vec<Option<(usize, OpId, Waiting)>> = vec![None; 4];
        let start = s.now();
        let mut next_change = 1;
        let mut next_member = 0u64;
        let mut turn = 0usize;
        while s.now() - start < 12 * SEC {
            let at = (s.now() - start).as_secs();
            if at >= next_change * 2 && next_change <= 4 {
                match next_change {
                    // Joins just past the collections' key id: the new
                    // node takes them over.
                    1 | 3 => {
                        let ahead = Id::of_key(SET).wrapping_add(&Id::from_u64(next_change));
                        let fresh = s.add_node_with_ids(&[ahead]);
                        s.join(fresh, alive[0]);
                        alive.push(fresh);
                    }
                    2 => s.leave(alive.remove(2)),
                    _ => {
                        let owner = s.owner_of(SET);
                        alive.retain(|m| *m != owner);
                        s.kill(owner);
                    }
                }
                next_change += 1;
            }
            for c in clients.iter_mut() {
                if let Some((node, id, what)) = *c {
                    let Some(r) = s.take_kv_result(node, id) else {
                        continue;
                    };
                    match (what, r) {
                        (Waiting::Add(m), Ok(Outcome::Collection(CollReply::Count(1)))) => {
                            acked.push(m)
                        }
                        (Waiting::Read(began, known), Ok(o)) => {
                            let held = read_set(o);
                            for m in &acked[..known] {
                                assert!(
                                    held.contains(m),
                                    "seed {seed}: member {m}, acknowledged before a read began, is not in it"
                                );
                            }
                            reads.push((began, s.now(), held));
                        }
                        (Waiting::Incr, Ok(Outcome::Collection(CollReply::Count(_)))) => {
                            incr_acked += 1
                        }
                        (_, Err(e)) if e.nothing_done() || e == OpError::NotJoined => {}
                        (Waiting::Add(m), Err(OpError::Timeout | OpError::QuorumFailed { .. })) => {
                            unknown.insert(m);
                        }
                        (Waiting::Incr, Err(OpError::Timeout | OpError::QuorumFailed { .. })) => {
                            incr_unknown += 1
                        }
                        (Waiting::Read(..), Err(OpError::Timeout)) => {}
                        (_, other) => panic!("seed {seed}: {other:?}"),
                    }
                    *c = None;
                }
                turn += 1;
                let node = alive[turn % alive.len()];
                let (op, what) = match turn % 4 {
                    0 => (members(), Waiting::Read(s.now(), acked.len())),
                    1 => (incr(), Waiting::Incr),
                    _ => {
                        next_member += 1;
                        (add(next_member), Waiting::Add(next_member))
                    }
                };
                *c = Some((node, s.start_store_op(node, op), what));
            }
            s.run_for(Duration::from_millis(2));
        }
        s.run_for(5 * SEC);
        for (node, id, what) in clients.into_iter().flatten() {
            match (what, s.take_kv_result(node, id)) {
                (Waiting::Add(m), Some(Ok(_))) => acked.push(m),
                (Waiting::Add(m), _) => {
                    unknown.insert(m);
                }
                (Waiting::Incr, Some(Ok(_))) => incr_acked += 1,
                (Waiting::Incr, _) => incr_unknown += 1,
                _ => {}
            }
        }
        // A read that began after another ended holds all it held.
        for (began, _, later) in &reads {
            for (_, ended, earlier) in &reads {
                if ended < began {
                    assert!(
                        earlier.is_subset(later),
                        "seed {seed}: a later read lost members {:?}",
                        earlier.difference(later).collect::<Vec<_>>()
                    );
                }
            }
        }
        let end = read_set(s.store_op(alive[0], members()).expect("the last read"));
        let acked_set: BTreeSet<u64> = acked.iter().copied().collect();
        assert!(
            acked_set.is_subset(&end),
            "seed {seed}: acknowledged members lost: {:?}",
            acked_set.difference(&end).collect::<Vec<_>>()
        );
        let extra: Vec<&u64> = end.difference(&acked_set).collect();
        assert!(
            extra.iter().all(|m| unknown.contains(m)),
            "seed {seed}: members no one added: {extra:?}"
        );
        let count = Operation::Collection {
            key: SET.to_vec(),
            kind: Kind::Set,
            op: CollOp::Len,
        };
        assert_eq!(
            s.store_op(alive[0], count),
            Ok(Outcome::Collection(CollReply::Count(end.len() as i64))),
            "seed {seed}: the header's count is not the members'"
        );
        let n = Operation::Collection {
            key: HASH.to_vec(),
            kind: Kind::Hash,
            op: CollOp::Get {
                fields: vec![b"n".to_vec()],
            },
        };
        let Ok(Outcome::Collection(CollReply::Values(v))) = s.store_op(alive[0], n) else {
            panic!("seed {seed}: the counter's read failed");
        };
        let n: i64 = std::str::from_utf8(v[0].as_deref().unwrap_or(b"0"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            n >= incr_acked && n <= incr_acked + incr_unknown,
            "seed {seed}: counter {n}, {incr_acked} acknowledged, {incr_unknown} unknown"
        );
        assert!(
            acked.len() > 100 && reads.len() > 30,
            "seed {seed}: {} adds, {} reads",
            acked.len(),
            reads.len()
        );
    }
}

#[test]
fn a_deleted_collection_comes_back_empty_and_strings_are_not_collections() {
    let mut s = Sim::grown(SimConfig::with_authority(5), 4, Duration::from_millis(200));
    s.run_for(5 * SEC);
    for m in 0..50 {
        assert!(s.store_op(m as usize % 4, add(m)).is_ok());
    }
    let del = Operation::Delete {
        key: SET.to_vec(),
        opts: Default::default(),
    };
    assert!(s.store_op(1, del).is_ok());
    assert!(s.store_op(2, add(1000)).is_ok());
    let held = read_set(s.store_op(3, members()).unwrap());
    assert_eq!(held, BTreeSet::from([1000]));
    // A string at the key: collection commands are refused, and a get of
    // a collection too.
    assert_eq!(s.get(0, SET), Err(OpError::WrongType));
    s.put(0, SET, b"plain").unwrap();
    assert_eq!(s.store_op(1, members()), Err(OpError::WrongType));
    // No one may write an element key directly.
    let element = chordal_core::collection::key::element_key(
        SET,
        chordal_core::collection::key::Family::Member,
        b"x",
    );
    assert_eq!(s.put(2, &element, b"forged"), Err(OpError::Refused));
}
