//! Conditional writes, updates and quorum reads at the owner, tested on
//! the store machine alone (a fixed ring, a fake clock, storage answered by
//! hand): a write that needs the current record holds the key, the next
//! waits and decides against the first one's record even before the store
//! has applied it.

use super::tests::{answers, read, replica_reads};
use super::*;
use crate::request::OpName;
use crate::testkit::{Fixture, key_in};
use crate::write::Intent;
use crate::{Change, Condition, Consistency, OpLog, OpResult, WriteOptions};

fn write(store: &mut Store, fx: &mut Fixture, key: &[u8], intent: Intent, id: u64) {
    write_named(store, fx, key, (intent, None), id);
}

/// [`write`] with the operation's id and retry flag.
fn write_named(
    store: &mut Store,
    fx: &mut Fixture,
    key: &[u8],
    named: (Intent, Option<OpName>),
    id: u64,
) {
    let (me, now) = (fx.me, fx.now);
    let key = (Id::of_key(key), key.to_vec());
    store.write(&mut fx.cx(), now, me, key, named, ReplyTo::Local(id));
}

fn create_only(value: &[u8]) -> Intent {
    Intent::Put {
        value: value.to_vec(),
        opts: WriteOptions {
            condition: Condition::Absent,
            ..WriteOptions::default()
        },
    }
}

/// The storage requests asked for so far.
fn requests(store: &mut Store) -> Vec<StoreRequest> {
    std::iter::from_fn(|| store.poll_store()).collect()
}

/// Answers a storage read with `record`.
fn answer_read(store: &mut Store, fx: &mut Fixture, req: &StoreRequest, record: Option<Record>) {
    assert!(matches!(req.kind, StoreKind::Get { .. }), "{:?}", req.kind);
    let now = fx.now;
    store.handle_store(&mut fx.cx(), now, req.op, StoreResult::Got(record));
}

/// Acknowledges every `Replicate` sent so far, as durable replicas do.
fn ack_all(store: &mut Store, fx: &mut Fixture) {
    for e in super::tests::sent(store, fx) {
        if let Message::Replicate { req, .. } = e.msg {
            let from = NodeRef::new(e.to.id.unwrap(), e.to.addr);
            let to = fx.me.into();
            let msg = Message::ReplicateAck {
                fenced: 0,
                req,
                ok: true,
                newer: vec![],
                busy: false,
            };
            let now = fx.now;
            store.handle_message(&mut fx.cx(), now, Envelope { from, to, msg });
        }
    }
}

#[test]
fn of_two_create_only_writes_exactly_one_succeeds() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    write(&mut store, &mut fx, &key, create_only(b"first"), 1);
    write(&mut store, &mut fx, &key, create_only(b"second"), 2);
    // Only the first reads: the second waits for the key.
    let reqs = requests(&mut store);
    assert_eq!(reqs.len(), 1);
    answer_read(&mut store, &mut fx, &reqs[0], None);
    // The first writes; the second now reads — and the store has not
    // applied the first yet, so its read misses.
    let reqs = requests(&mut store);
    assert!(matches!(reqs[0].kind, StoreKind::Apply { .. }));
    answer_read(&mut store, &mut fx, &reqs[1], None);
    ack_all(&mut store, &mut fx);
    let got = answers(&mut fx);
    let first = got.iter().find(|(id, _)| *id == 1).expect("first answered");
    let OpResult::Stored { version, .. } = first.1 else {
        panic!("the first is stored: {got:?}");
    };
    let second = got
        .iter()
        .find(|(id, _)| *id == 2)
        .expect("second answered");
    assert_eq!(
        second.1,
        OpResult::PreconditionFailed {
            current: Some(version)
        }
    );
}

#[test]
fn increments_queue_on_the_key_and_none_is_lost() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    for id in 1..=3 {
        write(
            &mut store,
            &mut fx,
            &key,
            Intent::Update(Change::IncrBy(5)),
            id,
        );
    }
    // Each increment reads only once the one before it is versioned; the
    // store never applies anything here, so every read misses and only the
    // pending records carry the count.
    for _ in 0..3 {
        let reqs = requests(&mut store);
        let read = reqs
            .iter()
            .find(|r| matches!(r.kind, StoreKind::Get { .. }))
            .expect("the next increment reads");
        answer_read(&mut store, &mut fx, read, None);
    }
    ack_all(&mut store, &mut fx);
    let mut numbers: Vec<i64> = answers(&mut fx)
        .into_iter()
        .map(|(_, r)| match r {
            OpResult::Updated { number, .. } => number,
            other => panic!("an increment answered {other:?}"),
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers, vec![5, 10, 15]);
}

#[test]
fn a_read_sees_a_write_the_store_has_not_applied_yet() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let put = Intent::Put {
        value: b"v1".to_vec(),
        opts: WriteOptions::default(),
    };
    write(&mut store, &mut fx, &key, put, 1);
    ack_all(&mut store, &mut fx);
    assert!(matches!(
        answers(&mut fx)[..],
        [(1, OpResult::Stored { .. })]
    ));
    let k = (Id::of_key(&key), key.clone());
    read(&mut store, &mut fx, k, (Consistency::Owner, false), 2);
    let reqs = requests(&mut store);
    let read = reqs
        .iter()
        .find(|r| matches!(r.kind, StoreKind::Get { .. }));
    answer_read(&mut store, &mut fx, read.expect("a read"), None);
    let got = answers(&mut fx);
    assert!(
        matches!(&got[..], [(2, OpResult::Found { value, .. })] if value == b"v1"),
        "{got:?}"
    );
}

#[test]
fn a_quorum_read_takes_the_newest_of_two_copies_and_repairs_the_stale_one() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let key_id = Id::of_key(&key);
    let (me, now) = (fx.me, fx.now);
    let k = (key_id, key.clone());
    read(&mut store, &mut fx, k, (Consistency::Quorum, false), 5);
    let asked = replica_reads(&mut fx);
    assert_eq!(asked.len(), 2, "both replicas are asked at once");
    let old = Version {
        term: 0,
        hlc: 5,
        node: me.id,
    };
    let new = Version {
        term: 0,
        hlc: 9,
        node: me.id,
    };
    let rec = |v: Version, value: &[u8]| Record::new(key.clone(), v, Some(value.to_vec()));
    // Our copy is old; the first replica has the newest: two copies, done.
    let reqs = requests(&mut store);
    answer_read(&mut store, &mut fx, &reqs[0], Some(rec(old, b"old")));
    assert!(answers(&mut fx).is_empty(), "one copy is not a quorum of 3");
    let reply = Message::ReplicaReadReply {
        req: asked[0].1,
        record: Some(rec(new, b"new")),
    };
    let env = Envelope {
        from: asked[0].0,
        to: me.into(),
        msg: reply,
    };
    store.handle_message(&mut fx.cx(), now, env);
    let got = answers(&mut fx);
    assert!(
        matches!(&got[..], [(5, OpResult::Found { value, version, .. })] if value == b"new" && *version == new),
        "{got:?}"
    );
    // Our stale copy is repaired; the replica that had not answered is not
    // waited for.
    let repairs = requests(&mut store);
    assert!(
        matches!(&repairs[..], [StoreRequest { kind: StoreKind::Apply { records }, .. }] if records[0].version == new)
    );
    let applied = StoreResult::Applied(vec![Applied::Stored]);
    store.handle_store(&mut fx.cx(), now, repairs[0].op, applied);
    assert_eq!(store.in_flight(), 0, "nothing is left waiting");
}

#[test]
fn an_expired_value_reads_as_missing() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let (me, now) = (fx.me, fx.now);
    let v = Version {
        term: 0,
        hlc: 5,
        node: me.id,
    };
    let expired = Record::new(key.clone(), v, Some(b"x".to_vec())).expiring(Some(now));
    let k = (Id::of_key(&key), key.clone());
    read(&mut store, &mut fx, k, (Consistency::Owner, false), 1);
    let reqs = requests(&mut store);
    answer_read(&mut store, &mut fx, &reqs[0], Some(expired));
    assert_eq!(answers(&mut fx), vec![(1, OpResult::NotFound)]);
}

/// A backup's record, as `chordal restore` puts it back.
fn restore(hlc: u64, value: Option<&[u8]>) -> Intent {
    Intent::Update(Change::Restore {
        version: Version {
            term: 0,
            hlc,
            node: Id::hash(b"the writer of long ago"),
        },
        value: value.map(<[u8]>::to_vec),
        expires: None,
        kind: crate::Kind::String,
    })
}

/// A restore (version 1,000, op 1) of a key the owner finds no record of,
/// read and decided: its record is now being written.
fn restored_onto_nothing() -> (Fixture, Store, Vec<u8>) {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    write(&mut store, &mut fx, &key, restore(1_000, Some(b"old")), 1);
    let reqs = requests(&mut store);
    answer_read(&mut store, &mut fx, &reqs[0], None);
    (fx, store, key)
}

#[test]
fn a_restored_record_keeps_its_version_and_loses_to_a_newer_one() {
    // Onto nothing: written as it was, version and all.
    let (mut fx, mut store, key) = restored_onto_nothing();
    let applied = requests(&mut store);
    let StoreKind::Apply { records } = &applied[0].kind else {
        panic!("applies: {:?}", applied[0].kind);
    };
    assert_eq!(records[0].version.hlc, 1_000);
    assert_eq!(records[0].value.as_deref(), Some(&b"old"[..]));
    ack_all(&mut store, &mut fx);
    let got = answers(&mut fx);
    assert!(
        matches!(got[0], (1, OpResult::Stored { version, .. }) if version.hlc == 1_000),
        "{got:?}"
    );

    // Onto a newer record (a tombstone too): nothing is written.
    let newer = Record {
        key_id: Id::of_key(&key),
        key: key.clone(),
        version: Version {
            term: 0,
            hlc: 2_000,
            node: fx.me.id,
        },
        value: None,
        expires: None,
        ops: OpLog::default(),
        kind: crate::Kind::String,
    };
    write(
        &mut store,
        &mut fx,
        &key,
        restore(1_500, Some(b"resurrected")),
        2,
    );
    let reqs: Vec<_> = requests(&mut store)
        .into_iter()
        .filter(|r| matches!(r.kind, StoreKind::Get { .. }))
        .collect();
    answer_read(&mut store, &mut fx, &reqs[0], Some(newer.clone()));
    assert!(
        !requests(&mut store)
            .iter()
            .any(|r| matches!(r.kind, StoreKind::Apply { .. })),
        "a restore older than the current record writes nothing"
    );
    assert_eq!(
        answers(&mut fx),
        [(
            2,
            OpResult::PreconditionFailed {
                current: Some(newer.version)
            }
        )]
    );
}

#[test]
fn a_replica_holding_a_newer_copy_wins_over_a_restore() {
    let (mut fx, mut store, _) = restored_onto_nothing();
    let newer = Version {
        term: 0,
        hlc: 5_000,
        node: fx.me.id,
    };
    let replicates: Vec<_> = super::tests::sent(&mut store, &mut fx)
        .into_iter()
        .filter(|e| matches!(e.msg, Message::Replicate { .. }))
        .collect();
    assert!(!replicates.is_empty());
    let Message::Replicate { req, .. } = replicates[0].msg else {
        unreachable!()
    };
    let from = NodeRef::new(replicates[0].to.id.unwrap(), replicates[0].to.addr);
    let msg = Message::ReplicateAck {
        fenced: 0,
        req,
        ok: false,
        newer: vec![(0, newer)],
        busy: false,
    };
    let now = fx.now;
    let to = fx.me.into();
    store.handle_message(&mut fx.cx(), now, Envelope { from, to, msg });
    let got = answers(&mut fx);
    assert_eq!(
        got,
        [(
            1,
            OpResult::PreconditionFailed {
                current: Some(newer)
            }
        )],
        "not versioned again above the newer copy"
    );
    assert!(
        !super::tests::sent(&mut store, &mut fx)
            .iter()
            .any(|e| matches!(e.msg, Message::Replicate { .. })),
        "no second attempt"
    );
}

#[test]
fn restoring_the_version_the_ring_holds_writes_it_again() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let Intent::Update(Change::Restore { version, .. }) = restore(1_000, Some(b"old")) else {
        unreachable!()
    };
    // A retried restore: the owner already holds the record (say, on one
    // copy only): it is written again, so that it reaches the quorum.
    let mut held = Record::new(key.clone(), version, Some(b"old".to_vec()));
    held.key_id = Id::of_key(&key);
    write(&mut store, &mut fx, &key, restore(1_000, Some(b"old")), 1);
    let reqs = requests(&mut store);
    answer_read(&mut store, &mut fx, &reqs[0], Some(held));
    assert!(
        requests(&mut store).iter().any(
            |r| matches!(&r.kind, StoreKind::Apply { records } if records[0].version == version)
        ),
        "the same version is applied again"
    );
    ack_all(&mut store, &mut fx);
    assert!(
        matches!(answers(&mut fx)[..], [(1, OpResult::Stored { version: v, .. })] if v == version)
    );
}

/// An increment named `op` (a retry if `retry`).
fn named_incr(op: u64, retry: bool) -> (Intent, Option<OpName>) {
    let name = OpName { id: op, retry };
    (Intent::Update(Change::IncrBy(5)), Some(name))
}

/// The records the store was asked to apply so far, and every storage
/// request (answered: applies succeed).
fn applied(store: &mut Store, fx: &mut Fixture) -> Vec<Record> {
    let mut out = Vec::new();
    for r in requests(store) {
        if let StoreKind::Apply { records } = &r.kind {
            out.extend(records.iter().cloned());
            let now = fx.now;
            let result = StoreResult::Applied(vec![Applied::Stored; records.len()]);
            store.handle_store(&mut fx.cx(), now, r.op, result);
        }
    }
    out
}

/// The answers so far to operation `id`.
fn answer_to(fx: &mut Fixture, id: u64) -> Vec<OpResult> {
    answers(fx)
        .into_iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, r)| r)
        .collect()
}

/// Idempotent retries: a retried write whose id the record's
/// log holds is answered as the first attempt was, and nothing is written;
/// one the log never saw is applied; one a cut log cannot place is
/// `OutcomeUnknown`, nothing written. A first attempt is never looked up.
#[test]
fn a_retried_increment_is_answered_from_the_record_log_not_applied_again() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let read_then = |store: &mut Store, fx: &mut Fixture, current: Option<Record>| {
        let reqs = requests(store);
        let read = reqs
            .iter()
            .find(|r| matches!(r.kind, StoreKind::Get { .. }))
            .expect("the write reads the record first");
        answer_read(store, fx, read, current);
    };
    // The first attempt of op 77: applied, its id in the record's log.
    write_named(&mut store, &mut fx, &key, named_incr(77, false), 1);
    read_then(&mut store, &mut fx, None);
    let first = applied(&mut store, &mut fx);
    ack_all(&mut store, &mut fx);
    assert!(matches!(
        answer_to(&mut fx, 1)[..],
        [OpResult::Updated { number: 5, .. }]
    ));
    let record = first.last().expect("the increment was written").clone();
    let ops = record.ops.entries();
    assert_eq!(ops.len(), 1, "{:?}", record.ops);
    assert_eq!(ops[0].op, 77);
    assert!(!record.ops.is_cut());

    // Its retry, at an owner whose copy is that record: the same answer,
    // nothing written.
    write_named(&mut store, &mut fx, &key, named_incr(77, true), 2);
    read_then(&mut store, &mut fx, Some(record.clone()));
    assert!(
        applied(&mut store, &mut fx).is_empty(),
        "a retry wrote again"
    );
    let got = answer_to(&mut fx, 2);
    assert!(
        matches!(got[..], [OpResult::Updated { number: 5, version, .. }] if version == record.version),
        "{got:?}"
    );

    // The retry of an operation the record never saw is applied.
    write_named(&mut store, &mut fx, &key, named_incr(78, true), 3);
    read_then(&mut store, &mut fx, Some(record.clone()));
    let second = applied(&mut store, &mut fx);
    ack_all(&mut store, &mut fx);
    assert!(matches!(
        answer_to(&mut fx, 3)[..],
        [OpResult::Updated { number: 10, .. }]
    ));
    let ops: Vec<u64> = second[0].ops.entries().iter().map(|d| d.op).collect();
    assert_eq!(ops, vec![77, 78]);

    // A cut log that does not hold the retried id cannot say.
    let mut cut = second[0].clone();
    cut.ops = OpLog::new(&cut.ops.entries(), true);
    write_named(&mut store, &mut fx, &key, named_incr(79, true), 4);
    read_then(&mut store, &mut fx, Some(cut.clone()));
    assert!(applied(&mut store, &mut fx).is_empty());
    assert_eq!(answer_to(&mut fx, 4), vec![OpResult::OutcomeUnknown]);

    // A first attempt is decided whatever the log holds.
    write_named(&mut store, &mut fx, &key, named_incr(77, false), 5);
    read_then(&mut store, &mut fx, Some(cut));
    assert_eq!(applied(&mut store, &mut fx).len(), 1);
    ack_all(&mut store, &mut fx);
    assert!(matches!(
        answer_to(&mut fx, 5)[..],
        [OpResult::Updated { number: 15, .. }]
    ));
}

/// A put that does not read the record leaves a cut log (what it
/// replaced is unknown), so a later retry of an older write is not
/// applied again on the strength of a log that never saw it.
#[test]
fn a_blind_put_cuts_the_log() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let put = Intent::Put {
        value: b"v".to_vec(),
        opts: WriteOptions::default(),
    };
    let name = OpName {
        id: 9,
        retry: false,
    };
    write_named(&mut store, &mut fx, &key, (put, Some(name)), 1);
    let written = applied(&mut store, &mut fx);
    let log = &written[0].ops;
    assert!(log.is_cut(), "{log:?}");
    let ops: Vec<u64> = log.entries().iter().map(|d| d.op).collect();
    assert_eq!(ops, vec![9]);
}
