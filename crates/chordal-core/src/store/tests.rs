//! The owner's decisions, tested on the store machine alone (a fixed ring
//! of one vnode, a fake clock): when a write is acknowledged, when it is
//! versioned again, when it is refused, what a read asks the replicas.

use super::*;
use crate::testkit::{Fixture, key_in, node};
use crate::write::Intent;
use crate::{Config, Consistency, OpResult, Version, WriteOptions};

/// The owner's answers so far, for the local operation numbers.
pub(super) fn answers(fx: &mut Fixture) -> Vec<(u64, OpResult)> {
    fx.io
        .answers
        .drain(..)
        .map(|(reply, result)| match reply {
            ReplyTo::Local(id) => (id, result),
            ReplyTo::Remote { req, .. } => (req, result),
        })
        .collect()
}

/// Every message sent so far, the writes waiting for the replicas
/// included (as `Node::poll_transmit` takes them).
pub(super) fn sent(store: &mut Store, fx: &mut Fixture) -> Vec<Envelope> {
    store.flush_replicates(&mut fx.cx());
    fx.sent()
}

/// The `Replicate`s sent: (destination, request number, records).
fn replicates(store: &mut Store, fx: &mut Fixture) -> Vec<(NodeRef, u64, Vec<Record>)> {
    sent(store, fx)
        .into_iter()
        .filter_map(|e| match e.msg {
            Message::Replicate { req, records, .. } => {
                Some((NodeRef::new(e.to.id.unwrap(), e.to.addr), req, records))
            }
            _ => None,
        })
        .collect()
}

/// Starts read `id` of `key` (its id and bytes) at the fixture's vnode:
/// `(consistency, unsure)`.
pub(super) fn read(
    store: &mut Store,
    fx: &mut Fixture,
    key: (Id, Vec<u8>),
    (consistency, unsure): (Consistency, bool),
    id: u64,
) {
    let (me, now) = (fx.me, fx.now);
    let reply = ReplyTo::Local(id);
    store.get(&mut fx.cx(), now, (me, key), (consistency, unsure), reply);
}

/// Acknowledges `req` from `from`, as a replica does once durable.
fn ack(store: &mut Store, fx: &mut Fixture, from: NodeRef, req: u64, newer: Vec<(u32, Version)>) {
    let env = Envelope {
        from,
        to: fx.me.into(),
        msg: Message::ReplicateAck {
            fenced: 0,
            req,
            ok: true,
            newer,
            busy: false,
        },
    };
    let now = fx.now;
    store.handle_message(&mut fx.cx(), now, env);
}

/// Answers the next storage request with `result`.
fn store_answers(store: &mut Store, fx: &mut Fixture, result: StoreResult) -> StoreKind {
    let request = store.poll_store().expect("a storage request");
    let now = fx.now;
    store.handle_store(&mut fx.cx(), now, request.op, result);
    request.kind
}

fn put(store: &mut Store, fx: &mut Fixture, key: &[u8], id: u64) {
    let (me, now) = (fx.me, fx.now);
    let key = (Id::of_key(key), key.to_vec());
    let intent = Intent::Put {
        value: b"v".to_vec(),
        opts: WriteOptions::default(),
    };
    store.write(
        &mut fx.cx(),
        now,
        me,
        key,
        (intent, None),
        ReplyTo::Local(id),
    );
}

#[test]
fn a_write_is_acknowledged_once_the_quorum_holds_it_durably() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    put(&mut store, &mut fx, &key, 7);
    // One copy here, one on each of the next two processes (DESIGN §5).
    let sent = replicates(&mut store, &mut fx);
    let targets: Vec<NodeRef> = sent.iter().map(|(to, _, _)| *to).collect();
    assert_eq!(targets, vec![node(200, 2), node(300, 3)]);
    let record = sent[0].2[0].clone();
    assert_eq!(
        record.version.node, fx.me.id,
        "versioned by the owner vnode"
    );
    // Our own copy alone is not W = 2 of R = 3.
    let kind = store_answers(
        &mut store,
        &mut fx,
        StoreResult::Applied(vec![Applied::Stored]),
    );
    assert!(matches!(kind, StoreKind::Apply { .. }));
    assert!(answers(&mut fx).is_empty());
    // The first replica's acknowledgement makes two: the write is done.
    ack(&mut store, &mut fx, sent[0].0, sent[0].1, vec![]);
    let version = record.version;
    assert_eq!(
        answers(&mut fx),
        vec![(7, OpResult::Stored { version, acked: 2 })]
    );
    // The third copy changes nothing for the client.
    ack(&mut store, &mut fx, sent[1].0, sent[1].1, vec![]);
    assert!(answers(&mut fx).is_empty());
    assert_eq!(
        store.in_flight(),
        0,
        "the write is forgotten once all answered"
    );
}

#[test]
fn a_copy_holding_a_newer_version_makes_the_owner_version_the_write_again() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    put(&mut store, &mut fx, &key, 1);
    let first = replicates(&mut store, &mut fx);
    let tried = first[0].2[0].version;
    // A replica already holds a version from a node whose clock is ahead.
    let ahead = Version {
        term: 0,
        hlc: tried.hlc + 5_000_000,
        node: node(999, 9).id,
    };
    ack(
        &mut store,
        &mut fx,
        first[0].0,
        first[0].1,
        vec![(0, ahead)],
    );
    // Not acknowledged: sent again, above the newer version.
    assert!(answers(&mut fx).is_empty());
    let second = replicates(&mut store, &mut fx);
    assert_eq!(second.len(), 2);
    let again = second[0].2[0].version;
    assert!(again > ahead, "{again:?} must dominate {ahead:?}");
    // The new attempt's copies answer: that version is what the client gets.
    store_answers(
        &mut store,
        &mut fx,
        StoreResult::Applied(vec![Applied::Stored]),
    );
    store_answers(
        &mut store,
        &mut fx,
        StoreResult::Applied(vec![Applied::Stored]),
    );
    ack(&mut store, &mut fx, second[0].0, second[0].1, vec![]);
    let answer = answers(&mut fx);
    assert_eq!(
        answer,
        vec![(
            1,
            OpResult::Stored {
                version: again,
                acked: 2
            }
        )]
    );
}

/// Two writes decided in one pass leave in one `Replicate` per replica;
/// the replica's answer names the record it did not take, and only the
/// write of that record is versioned again — the other is done.
#[test]
fn writes_of_one_pass_share_a_replicate_and_each_hears_its_own_answer() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let range = fx.ring.range_of(&fx.me).expect("joined");
    let keys: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("pair-{i}").into_bytes())
        .filter(|k| range.contains(&Id::of_key(k)))
        .take(2)
        .collect();
    put(&mut store, &mut fx, &keys[0], 1);
    put(&mut store, &mut fx, &keys[1], 2);
    let sent = replicates(&mut store, &mut fx);
    let targets: Vec<NodeRef> = sent.iter().map(|(to, _, _)| *to).collect();
    assert_eq!(targets, vec![node(200, 2), node(300, 3)], "one per replica");
    let sent_keys: Vec<&[u8]> = sent[0].2.iter().map(|r| r.key.as_slice()).collect();
    assert_eq!(sent_keys, vec![&keys[0][..], &keys[1][..]]);
    let second = sent[0].2[1].version;
    for _ in 0..2 {
        store_answers(
            &mut store,
            &mut fx,
            StoreResult::Applied(vec![Applied::Stored]),
        );
    }
    // The first replica held something newer for the second key only.
    let ahead = Version {
        term: 0,
        hlc: second.hlc + 5_000_000,
        node: node(999, 9).id,
    };
    ack(&mut store, &mut fx, sent[0].0, sent[0].1, vec![(1, ahead)]);
    let version = sent[0].2[0].version;
    assert_eq!(
        answers(&mut fx),
        vec![(1, OpResult::Stored { version, acked: 2 })],
        "the first write is done; the second is not"
    );
    // The second goes again, alone, above the newer version.
    let again = replicates(&mut store, &mut fx);
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].2.len(), 1);
    assert_eq!(again[0].2[0].key, keys[1]);
    assert!(again[0].2[0].version > ahead);
}

#[test]
fn a_write_that_cannot_reach_the_quorum_is_refused_before_anything_is_stored() {
    // Our successor list names only our own process (a second vnode of
    // ours) and does not come back round to us: fewer than W = 2
    // processes can hold a copy, and the ring may have more.
    let config = Config {
        replicas: 3,
        authority: false,
        ..Config::default()
    };
    let mut fx = Fixture::new(config, node(100, 1), node(50, 4), &[node(200, 1)]);
    let mut store = Store::default();
    let key = key_in(&fx);
    put(&mut store, &mut fx, &key, 3);
    assert_eq!(
        answers(&mut fx),
        vec![(
            3,
            OpResult::QuorumUnavailable {
                available: 1,
                needed: 2
            }
        )]
    );
    assert!(store.poll_store().is_none(), "nothing written");
    assert!(replicates(&mut store, &mut fx).is_empty());
}

#[test]
fn the_owners_storage_failing_fails_the_write_whatever_the_replicas_say() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    put(&mut store, &mut fx, &key, 4);
    let sent = replicates(&mut store, &mut fx);
    ack(&mut store, &mut fx, sent[0].0, sent[0].1, vec![]);
    ack(&mut store, &mut fx, sent[1].0, sent[1].1, vec![]);
    // Two replicas alone make the quorum.
    let answered = answers(&mut fx);
    assert!(matches!(
        answered[..],
        [(4, OpResult::Stored { acked: 2, .. })]
    ));
    // A second write whose own copy fails (the first write's own copy is
    // the first storage request, and succeeds).
    put(&mut store, &mut fx, &key, 5);
    replicates(&mut store, &mut fx);
    store_answers(
        &mut store,
        &mut fx,
        StoreResult::Applied(vec![Applied::Stored]),
    );
    store_answers(&mut store, &mut fx, StoreResult::Failed);
    assert_eq!(answers(&mut fx), vec![(5, OpResult::StoreFailed)]);
}

#[test]
fn a_read_that_misses_after_the_range_grew_asks_the_replicas_and_repairs() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let key_id = Id::of_key(&key);
    store.range_grew(fx.now);
    let now = fx.now;
    read(
        &mut store,
        &mut fx,
        (key_id, key.clone()),
        (Consistency::Owner, false),
        9,
    );
    // Our copy is missing (the handoff is still on its way).
    store_answers(&mut store, &mut fx, StoreResult::Got(None));
    let asked = replica_reads(&mut fx);
    assert_eq!(asked.len(), 2, "both replicas are asked");
    let version = |hlc| Version {
        term: 0,
        hlc,
        node: node(300, 3).id,
    };
    let record =
        |hlc: u64| Record::new(key.clone(), version(hlc), Some(hlc.to_be_bytes().to_vec()));
    for ((from, req), hlc) in asked.into_iter().zip([10, 20]) {
        let env = Envelope {
            from,
            to: fx.me.into(),
            msg: Message::ReplicaReadReply {
                req,
                record: Some(record(hlc)),
            },
        };
        store.handle_message(&mut fx.cx(), now, env);
    }
    // The newest copy wins, and ours is repaired with it.
    let value = 20u64.to_be_bytes().to_vec();
    assert_eq!(
        answers(&mut fx),
        vec![(
            9,
            OpResult::Found {
                value,
                version: version(20),
                expires: None,
            }
        )]
    );
    let repair = store.poll_store().expect("a repair");
    assert_eq!(
        repair.kind,
        StoreKind::Apply {
            records: vec![record(20)]
        }
    );
}

/// The `ReplicaRead`s the store sent since the fixture's last look.
pub(super) fn replica_reads(fx: &mut Fixture) -> Vec<(NodeRef, u64)> {
    fx.sent()
        .into_iter()
        .filter_map(|e| match e.msg {
            Message::ReplicaRead { req, .. } => {
                Some((NodeRef::new(e.to.id.unwrap(), e.to.addr), req))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_miss_is_not_found_unless_the_key_may_not_be_ours() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let (me, now) = (fx.me, fx.now);
    // Sure it is ours: a miss is NotFound at once.
    let k = (Id::of_key(&key), key.clone());
    read(
        &mut store,
        &mut fx,
        k.clone(),
        (Consistency::Owner, false),
        1,
    );
    store_answers(&mut store, &mut fx, StoreResult::Got(None));
    assert!(replica_reads(&mut fx).is_empty());
    // Unsure (no predecessor known): the replicas are asked first; none
    // has it either, so the key is probably not ours: WrongOwner.
    read(&mut store, &mut fx, k, (Consistency::Owner, true), 2);
    store_answers(&mut store, &mut fx, StoreResult::Got(None));
    let asked = replica_reads(&mut fx);
    assert_eq!(asked.len(), 2, "both successors are asked");
    for (from, req) in asked {
        let msg = Message::ReplicaReadReply { req, record: None };
        let env = Envelope {
            from,
            to: me.into(),
            msg,
        };
        store.handle_message(&mut fx.cx(), now, env);
    }
    assert_eq!(
        answers(&mut fx),
        vec![(1, OpResult::NotFound), (2, OpResult::WrongOwner)]
    );
}

#[test]
fn an_unsure_miss_finds_the_write_its_successor_acknowledged_alone() {
    // Just after a join: our predecessor is not known yet, and the write
    // was acknowledged by our successor (then alone on the ring), which is
    // still handing the range over. The read asks it and finds the write.
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let (me, now) = (fx.me, fx.now);
    read(
        &mut store,
        &mut fx,
        (Id::of_key(&key), key.clone()),
        (Consistency::Owner, true),
        3,
    );
    store_answers(&mut store, &mut fx, StoreResult::Got(None));
    let version = Version {
        term: 0,
        hlc: 7,
        node: node(300, 3).id,
    };
    for (i, (from, req)) in replica_reads(&mut fx).into_iter().enumerate() {
        let record = (i == 0).then(|| Record::new(key.clone(), version, Some(b"v".to_vec())));
        let env = Envelope {
            from,
            to: me.into(),
            msg: Message::ReplicaReadReply { req, record },
        };
        store.handle_message(&mut fx.cx(), now, env);
    }
    assert_eq!(
        answers(&mut fx),
        vec![(
            3,
            OpResult::Found {
                value: b"v".to_vec(),
                version,
                expires: None,
            }
        )]
    );
}

#[test]
fn writes_are_refused_while_draining_for_a_leave_and_reads_still_served() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    let now = fx.now;
    store.start_leave(&mut fx.cx(), now, std::time::Duration::from_secs(60));
    assert!(store.is_leaving());
    fx.sent();
    put(&mut store, &mut fx, &key, 1);
    let me = fx.me;
    let k = (Id::of_key(&key), key.clone());
    let delete = Intent::Delete {
        opts: WriteOptions::default(),
    };
    store.write(
        &mut fx.cx(),
        now,
        me,
        k.clone(),
        (delete, None),
        ReplyTo::Local(2),
    );
    read(&mut store, &mut fx, k, (Consistency::Owner, false), 3);
    assert_eq!(
        answers(&mut fx),
        vec![(1, OpResult::WrongOwner), (2, OpResult::WrongOwner)]
    );
    // The read goes on: a storage read was asked for.
    let mut kinds = std::iter::from_fn(|| store.poll_store()).map(|r| r.kind);
    assert!(kinds.any(|k| matches!(k, StoreKind::Get { .. })));
}

#[test]
fn an_unanswered_write_fails_at_its_deadline_with_what_was_acknowledged() {
    let mut fx = Fixture::three_processes();
    let mut store = Store::default();
    let key = key_in(&fx);
    put(&mut store, &mut fx, &key, 6);
    replicates(&mut store, &mut fx);
    store_answers(
        &mut store,
        &mut fx,
        StoreResult::Applied(vec![Applied::Stored]),
    );
    // Nothing more: at the deadline (9/10 of the coordinator's wait) the
    // write fails with the one copy it had.
    let deadline = store.poll_timeout().expect("a deadline");
    let wait = fx.config.kv_timeout * 3 / 5;
    assert_eq!(deadline, fx.now + wait * 9 / 10);
    fx.now = deadline;
    let now = fx.now;
    store.handle_timeout(&mut fx.cx(), now);
    assert_eq!(
        answers(&mut fx),
        vec![(
            6,
            OpResult::QuorumFailed {
                acked: 1,
                needed: 2
            }
        )]
    );
}
