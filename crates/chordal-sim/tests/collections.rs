//! Collections (`Operation::Collection`: hashes and sets, one record per
//! element) on a simulated ring under authority, through joins, a leave
//! and the crash of the collection's owner — an Elle-style set workload:
//! clients add unique members to one set and to one sorted set (each
//! scored by its number), append unique values to one list and increment
//! one field of a hash while others read the set, the list and the
//! sorted set whole; two nodes join just past the collections' key
//! id (each takes them over) and the last one crashes. Checked:
//! - every member acknowledged before a read began is in that read, and
//!   a read that began after another ended holds all that one held (the
//!   set only grows, so this is what linearizability asks of it);
//! - at the end the set holds every acknowledged member and nothing no
//!   one added, its count (the header's) equals its members, and the
//!   hash's counter lies in [acknowledged, acknowledged + unknown];
//! - the list (Elle's list-append): every read is a prefix of every
//!   longer read (one order for everyone), a later read is no shorter,
//!   appends acknowledged before a read are in it, and at the end it
//!   holds each acknowledged value once and nothing no one appended;
//! - the sorted set: every read in score order with each member's own
//!   score, acknowledged members present, its count its members'.
//!
//! (Replicating only the first record of each write — the header
//! without its elements — fails the first check at once: checked by
//! hand. The simulator's stores apply at once, so it cannot show what
//! the header's hold and the merge of pending writes guard against; the
//! real-process checks can.)

use chordal_core::collection::{CollOp, CollReply, ZBy, zset};
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

const LIST: &[u8] = b"{c}log";

fn append(value: u64) -> Operation {
    Operation::Collection {
        key: LIST.to_vec(),
        kind: Kind::List,
        op: CollOp::Push {
            values: vec![value.to_string().into_bytes()],
            left: false,
            only_existing: false,
        },
    }
}

fn read_list() -> Operation {
    Operation::Collection {
        key: LIST.to_vec(),
        kind: Kind::List,
        op: CollOp::Range { start: 0, stop: -1 },
    }
}

fn list_of(r: Outcome) -> Vec<u64> {
    match r {
        Outcome::Collection(CollReply::Items(v)) => v
            .into_iter()
            .map(|m| std::str::from_utf8(&m).unwrap().parse().unwrap())
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

const BOARD: &[u8] = b"{c}board";

/// Member `m` with score `m` (scores in the reverse order of the members'
/// bytes for some, so that score order is not key order).
fn rank(m: u64) -> Operation {
    Operation::Collection {
        key: BOARD.to_vec(),
        kind: Kind::ZSet,
        op: CollOp::ZAdd {
            pairs: vec![(zset::score_key(m as f64), m.to_string().into_bytes())],
            when: Default::default(),
            ch: false,
            incr: false,
        },
    }
}

fn read_board() -> Operation {
    Operation::Collection {
        key: BOARD.to_vec(),
        kind: Kind::ZSet,
        op: CollOp::ZRange {
            by: ZBy::Rank { start: 0, stop: -1 },
            rev: false,
            limit: None,
        },
    }
}

/// The board's members in order; each member's score must be itself.
fn board_of(r: Outcome) -> Vec<u64> {
    match r {
        Outcome::Collection(CollReply::Pairs(p)) => p
            .into_iter()
            .map(|(m, score)| {
                let m: u64 = std::str::from_utf8(&m).unwrap().parse().unwrap();
                assert_eq!(score, m.to_string().into_bytes(), "member {m}'s score");
                m
            })
            .collect(),
        other => panic!("not a sorted set: {other:?}"),
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
    /// An append of this value to the list.
    Append(u64),
    /// A read of the whole list, begun at this time, when these many
    /// appends had been acknowledged.
    ReadList(Time, usize),
    /// An add of this member to the sorted set.
    Rank(u64),
    /// A read of the whole sorted set, when these many adds had been
    /// acknowledged.
    ReadBoard(usize),
}

#[test]
fn collections_keep_every_acknowledged_element_through_churn() {
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
        let mut appended: Vec<u64> = Vec::new();
        let mut append_unknown: BTreeSet<u64> = BTreeSet::new();
        let mut list_reads: Vec<(Time, Time, Vec<u64>)> = Vec::new();
        let mut ranked: Vec<u64> = Vec::new();
        let mut board_reads = 0;
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
                        (Waiting::Append(v), Ok(Outcome::Collection(CollReply::Count(_)))) => {
                            appended.push(v)
                        }
                        (Waiting::ReadList(began, known), Ok(o)) => {
                            let list = list_of(o);
                            for v in &appended[..known] {
                                assert!(
                                    list.contains(v),
                                    "seed {seed}: value {v}, appended before a read began, is not in it"
                                );
                            }
                            list_reads.push((began, s.now(), list));
                        }
                        (
                            Waiting::Append(v),
                            Err(OpError::Timeout | OpError::QuorumFailed { .. }),
                        ) => {
                            append_unknown.insert(v);
                        }
                        (_, Err(e)) if e.nothing_done() || e == OpError::NotJoined => {}
                        (Waiting::Add(m), Err(OpError::Timeout | OpError::QuorumFailed { .. })) => {
                            unknown.insert(m);
                        }
                        (Waiting::Incr, Err(OpError::Timeout | OpError::QuorumFailed { .. })) => {
                            incr_unknown += 1
                        }
                        (Waiting::Rank(m), Ok(Outcome::Collection(CollReply::Count(1)))) => {
                            ranked.push(m)
                        }
                        (Waiting::ReadBoard(known), Ok(o)) => {
                            let board = board_of(o);
                            assert!(
                                board.windows(2).all(|w| w[0] < w[1]),
                                "seed {seed}: the sorted set is out of order: {board:?}"
                            );
                            for m in &ranked[..known] {
                                assert!(
                                    board.contains(m),
                                    "seed {seed}: member {m} of the sorted set lost"
                                );
                            }
                            board_reads += 1;
                        }
                        (
                            Waiting::Rank(_),
                            Err(OpError::Timeout | OpError::QuorumFailed { .. }),
                        ) => {}
                        (
                            Waiting::Read(..) | Waiting::ReadList(..) | Waiting::ReadBoard(_),
                            Err(OpError::Timeout),
                        ) => {}
                        (_, other) => panic!("seed {seed}: {other:?}"),
                    }
                    *c = None;
                }
                turn += 1;
                let node = alive[turn % alive.len()];
                next_member += 1;
                let (op, what) = match turn % 8 {
                    0 => (members(), Waiting::Read(s.now(), acked.len())),
                    1 => (incr(), Waiting::Incr),
                    2 => (read_list(), Waiting::ReadList(s.now(), appended.len())),
                    3 => (append(next_member), Waiting::Append(next_member)),
                    4 => (rank(next_member), Waiting::Rank(next_member)),
                    5 => (read_board(), Waiting::ReadBoard(ranked.len())),
                    _ => (add(next_member), Waiting::Add(next_member)),
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
                (Waiting::Append(v), Some(Ok(_))) => appended.push(v),
                (Waiting::Append(v), _) => {
                    append_unknown.insert(v);
                }
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
        // The list: one order for everyone (each read a prefix of every
        // longer one), and a read that began after another ended is at
        // least as long.
        for (began, _, later) in &list_reads {
            for (_, ended, earlier) in &list_reads {
                let (short, long) = match earlier.len() <= later.len() {
                    true => (earlier, later),
                    false => (later, earlier),
                };
                assert_eq!(
                    &long[..short.len()],
                    &short[..],
                    "seed {seed}: two reads of the list disagree on its order"
                );
                if ended < began {
                    assert!(
                        earlier.len() <= later.len(),
                        "seed {seed}: a later read of the list is shorter"
                    );
                }
            }
        }
        let list = list_of(
            s.store_op(alive[0], read_list())
                .expect("the last list read"),
        );
        let in_list: BTreeSet<u64> = list.iter().copied().collect();
        assert_eq!(
            in_list.len(),
            list.len(),
            "seed {seed}: a value appended twice"
        );
        for v in &appended {
            assert!(in_list.contains(v), "seed {seed}: appended value {v} lost");
        }
        for v in &list {
            assert!(
                appended.contains(v) || append_unknown.contains(v),
                "seed {seed}: {v} in the list, never appended"
            );
        }
        let board = board_of(
            s.store_op(alive[0], read_board())
                .expect("the last board read"),
        );
        for m in &ranked {
            assert!(board.contains(m), "seed {seed}: ranked member {m} lost");
        }
        let card = Operation::Collection {
            key: BOARD.to_vec(),
            kind: Kind::ZSet,
            op: CollOp::Len,
        };
        assert_eq!(
            s.store_op(alive[0], card),
            Ok(Outcome::Collection(CollReply::Count(board.len() as i64))),
            "seed {seed}: the sorted set's count is not its members'"
        );
        assert!(
            board_reads > 20,
            "seed {seed}: {board_reads} reads of the sorted set"
        );
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
            acked.len() > 100 && reads.len() > 30 && appended.len() > 100 && list_reads.len() > 30,
            "seed {seed}: {} adds, {} reads, {} appends, {} list reads",
            acked.len(),
            reads.len(),
            appended.len(),
            list_reads.len()
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
