//! Encode/decode round trips and hostile input for the peer protocol.

use bytes::{BufMut, BytesMut};
use chordal_core::collection::{CollOp, CollReply, ZBy, ZWhen};
use chordal_core::{
    Answered, Change, Condition, Consistency, Done, Envelope, Id, Kind, LookupFailure, MAX_DONE,
    Message, NodeRef, OpLog, OpResult, Operation, OwnerClaim, Publication, Record, Target, Time,
    Version, WriteOptions,
};
use chordal_wire::*;
use proptest::prelude::*;
use std::net::SocketAddr;
use tokio_util::codec::Decoder;

fn local() -> SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}

fn any_id() -> impl Strategy<Value = Id> {
    any::<[u8; 20]>().prop_map(Id)
}

fn any_node() -> impl Strategy<Value = NodeRef> {
    (any_id(), any::<[u8; 4]>(), any::<u16>(), any::<bool>()).prop_map(|(id, ip, port, v6)| {
        let addr = if v6 {
            SocketAddr::from(([0, 0, 0, 0, 0, 0xffff, ip[0] as u16, ip[1] as u16], port))
        } else {
            SocketAddr::from((ip, port))
        };
        NodeRef::new(id, addr)
    })
}

fn any_nodes() -> impl Strategy<Value = Vec<NodeRef>> {
    proptest::collection::vec(any_node(), 0..10)
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..40)
}

fn any_version() -> impl Strategy<Value = Version> {
    (any::<u64>(), any::<u64>(), any_id()).prop_map(|(term, hlc, node)| Version { term, hlc, node })
}

fn any_done() -> impl Strategy<Value = Done> {
    let answered = prop_oneof![
        Just(Answered::Stored),
        any::<i64>().prop_map(Answered::Updated),
        Just(Answered::Unrepeatable),
    ];
    (any::<u64>(), any_version(), answered).prop_map(|(op, version, answered)| Done {
        op,
        version,
        answered,
    })
}

fn any_record() -> impl Strategy<Value = Record> {
    (
        any_bytes(),
        any_version(),
        proptest::option::of(any_bytes()),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(any_done(), 0..=MAX_DONE),
        any::<bool>(),
        any_kind(),
    )
        .prop_map(|(key, version, value, expires, done, cut, kind)| {
            // A tombstone never expires and is always a string's.
            let expires = expires.filter(|_| value.is_some()).map(Time::from_micros);
            let kind = if value.is_some() { kind } else { Kind::String };
            let mut r = Record::new(key, version, value)
                .expiring(expires)
                .of_kind(kind);
            r.ops = OpLog::new(&done, cut);
            r
        })
}

fn any_kind() -> impl Strategy<Value = Kind> {
    (0u8..5).prop_map(|c| Kind::from_code(c).expect("a kind"))
}

fn any_coll_op() -> impl Strategy<Value = CollOp> {
    let fields = || proptest::collection::vec(any_bytes(), 0..4);
    prop_oneof![
        (
            proptest::collection::vec((any_bytes(), any_bytes()), 0..4),
            any::<bool>()
        )
            .prop_map(|(pairs, only_new)| CollOp::Put { pairs, only_new }),
        fields().prop_map(|fields| CollOp::Remove { fields }),
        fields().prop_map(|fields| CollOp::Get { fields }),
        Just(CollOp::All),
        Just(CollOp::Len),
        (any_bytes(), any_bytes(), any::<bool>()).prop_map(|(field, by, float)| CollOp::Incr {
            field,
            by,
            float
        }),
        any::<u32>().prop_map(|count| CollOp::Pop { count }),
        Just(CollOp::Kind),
        (fields(), any::<bool>(), any::<bool>()).prop_map(|(values, left, only_existing)| {
            CollOp::Push {
                values,
                left,
                only_existing,
            }
        }),
        (any::<bool>(), any::<u32>()).prop_map(|(left, count)| CollOp::PopEnd { left, count }),
        (any::<i64>(), any::<i64>()).prop_map(|(start, stop)| CollOp::Range { start, stop }),
        (any::<i64>(), any_bytes()).prop_map(|(index, value)| CollOp::SetAt { index, value }),
        (any::<i64>(), any::<i64>()).prop_map(|(start, stop)| CollOp::Trim { start, stop }),
        (any::<i64>(), any_bytes()).prop_map(|(count, value)| CollOp::RemoveValue { count, value }),
        (any::<bool>(), any_bytes(), any_bytes()).prop_map(|(before, pivot, value)| {
            CollOp::Insert {
                before,
                pivot,
                value,
            }
        }),
        (
            proptest::collection::vec((any::<u64>(), any_bytes()), 0..4),
            any::<[bool; 6]>()
        )
            .prop_map(|(pairs, f)| CollOp::ZAdd {
                pairs,
                when: ZWhen {
                    nx: f[0],
                    xx: f[1],
                    gt: f[2],
                    lt: f[3],
                },
                ch: f[4],
                incr: f[5],
            }),
        (
            any_zby(),
            any::<bool>(),
            proptest::option::of((any::<u64>(), any::<u64>()))
        )
            .prop_map(|(by, rev, limit)| CollOp::ZRange { by, rev, limit }),
        any_zby().prop_map(|by| CollOp::ZCount { by }),
        (any_bytes(), any::<bool>()).prop_map(|(member, rev)| CollOp::ZRank { member, rev }),
        (any::<bool>(), any::<u32>()).prop_map(|(max, count)| CollOp::ZPop { max, count }),
        any_zby().prop_map(|by| CollOp::ZRemRange { by }),
        (any_bytes(), any::<bool>(), any::<bool>()).prop_map(|(to, from_left, to_left)| {
            CollOp::Move {
                to,
                from_left,
                to_left,
            }
        }),
    ]
}

fn any_zby() -> impl Strategy<Value = ZBy> {
    prop_oneof![
        (any::<i64>(), any::<i64>()).prop_map(|(start, stop)| ZBy::Rank { start, stop }),
        (any::<u64>(), any::<bool>(), any::<u64>(), any::<bool>()).prop_map(
            |(min, min_excl, max, max_excl)| ZBy::Score {
                min,
                min_excl,
                max,
                max_excl
            }
        ),
        (any_bytes(), any_bytes()).prop_map(|(min, max)| ZBy::Lex { min, max }),
    ]
}

fn any_coll_reply() -> impl Strategy<Value = CollReply> {
    prop_oneof![
        any::<i64>().prop_map(CollReply::Count),
        proptest::collection::vec(proptest::option::of(any_bytes()), 0..4)
            .prop_map(CollReply::Values),
        proptest::collection::vec((any_bytes(), any_bytes()), 0..4).prop_map(CollReply::Pairs),
        any_bytes().prop_map(CollReply::Number),
        proptest::option::of((any_kind(), any_time())).prop_map(CollReply::Kind),
        proptest::collection::vec(any_bytes(), 0..4).prop_map(CollReply::Items),
        "[a-z ]{0,20}".prop_map(CollReply::Error),
    ]
}

fn any_time() -> impl Strategy<Value = Option<Time>> {
    proptest::option::of(any::<u64>().prop_map(Time::from_micros))
}

fn any_write_options() -> impl Strategy<Value = WriteOptions> {
    let condition = prop_oneof![
        Just(Condition::Always),
        Just(Condition::Absent),
        Just(Condition::Present),
        any_version().prop_map(Condition::Version),
    ];
    (any_time(), any::<bool>(), condition, any::<bool>()).prop_map(
        |(expires, keep_ttl, condition, return_old)| WriteOptions {
            expires,
            keep_ttl,
            condition,
            return_old,
        },
    )
}

/// Puts, gets, deletes and updates: what a batch's steps are.
fn any_store_op() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (any_bytes(), any_bytes(), any_write_options())
            .prop_map(|(key, value, opts)| Operation::Put { key, value, opts }),
        (
            any_bytes(),
            prop_oneof![
                Just(Consistency::Owner),
                Just(Consistency::Quorum),
                Just(Consistency::All)
            ]
        )
            .prop_map(|(key, consistency)| Operation::Get { key, consistency }),
        (any_bytes(), any_write_options()).prop_map(|(key, opts)| Operation::Delete { key, opts }),
        (
            any_bytes(),
            prop_oneof![
                any::<i64>().prop_map(Change::IncrBy),
                any_bytes().prop_map(Change::Append),
                any_time().prop_map(Change::Expire),
                (0..i64::MAX as u64, any_bytes())
                    .prop_map(|(offset, bytes)| Change::SetRange { offset, bytes }),
                (0..i64::MAX as u64, any::<bool>())
                    .prop_map(|(offset, bit)| Change::SetBit { offset, bit }),
                any_bytes().prop_map(Change::IncrByFloat),
                any_time().prop_map(Change::GetEx),
                (
                    any_time(),
                    prop_oneof![
                        Just(chordal_core::ExpireWhen::Nx),
                        Just(chordal_core::ExpireWhen::Xx),
                        Just(chordal_core::ExpireWhen::Gt),
                        Just(chordal_core::ExpireWhen::Lt),
                        Just(chordal_core::ExpireWhen::LtExisting)
                    ]
                )
                    .prop_map(|(expires, when)| Change::ExpireIf { expires, when }),
                (any_bytes(), any::<bool>())
                    .prop_map(|(from, replace)| Change::CopyFrom { from, replace }),
                proptest::option::of(any_version()).prop_map(Change::Expect),
                (
                    any_version(),
                    proptest::option::of(any_bytes()),
                    any_time(),
                    any_kind()
                )
                    .prop_map(|(version, value, expires, kind)| Change::Restore {
                        version,
                        value,
                        expires,
                        kind,
                    }),
            ]
        )
            .prop_map(|(key, change)| Operation::Update { key, change }),
    ]
}

fn any_kv_op() -> impl Strategy<Value = Operation> {
    prop_oneof![
        any_store_op(),
        (
            proptest::collection::vec(any_store_op(), 0..4),
            any::<bool>()
        )
            .prop_map(|(steps, all_or_nothing)| Operation::Batch {
                steps,
                all_or_nothing
            }),
        (any_bytes(), any_bytes(), any::<bool>()).prop_map(|(key, payload, want_reply)| {
            Operation::Deliver {
                key,
                payload,
                want_reply,
            }
        }),
        (any_bytes(), any::<bool>()).prop_map(|(payload, want_reply)| Operation::Direct {
            payload,
            want_reply
        }),
        (any_bytes(), any_kind(), any_coll_op())
            .prop_map(|(key, kind, op)| Operation::Collection { key, kind, op }),
        (any_id(), any_id(), any::<u32>()).prop_map(|(start, end, limit)| Operation::Scan {
            start,
            end,
            limit
        }),
        (
            any_bytes(),
            proptest::option::of(any_version()),
            any::<bool>()
        )
            .prop_map(|(key, after, group)| Operation::Watch { key, after, group }),
        any_bytes().prop_map(|topic| Operation::Subscribe { topic }),
        any_bytes().prop_map(|topic| Operation::Unsubscribe { topic }),
        (
            any_bytes(),
            proptest::collection::vec(any_publication(), 1..4)
        )
            .prop_map(|(topic, mut publications)| {
                for p in &mut publications {
                    p.topic = topic.clone();
                }
                Operation::Publish {
                    topic,
                    publications,
                }
            }),
        (
            proptest::collection::vec(any_publication(), 0..5),
            proptest::collection::vec((any_bytes(), any::<u64>()), 0..3)
        )
            .prop_map(|(items, missed)| Operation::Notify { items, missed }),
        proptest::collection::vec((any_bytes(), any_nodes()), 0..4)
            .prop_map(|topics| Operation::TopicReplica { topics }),
    ]
}

fn any_publication() -> impl Strategy<Value = Publication> {
    (
        any_bytes(),
        any_id(),
        any::<u64>(),
        any::<u64>(),
        any_bytes(),
    )
        .prop_map(
            |(topic, publisher, incarnation, seq, payload)| Publication {
                topic,
                publisher,
                incarnation,
                seq,
                payload,
            },
        )
}

fn any_kv_result() -> impl Strategy<Value = OpResult> {
    prop_oneof![
        (any_version(), any::<u32>())
            .prop_map(|(version, acked)| OpResult::Stored { version, acked }),
        (any_bytes(), any_version(), any_time()).prop_map(|(value, version, expires)| {
            OpResult::Found {
                value,
                version,
                expires,
            }
        }),
        proptest::option::of(any_version())
            .prop_map(|current| OpResult::PreconditionFailed { current }),
        (any_version(), any::<u32>(), any::<i64>()).prop_map(|(version, acked, number)| {
            OpResult::Updated {
                version,
                acked,
                number,
            }
        }),
        (
            any_version(),
            any::<u32>(),
            proptest::option::of(any_bytes())
        )
            .prop_map(|(version, acked, old)| OpResult::Replaced {
                version,
                acked,
                old
            }),
        Just(OpResult::NotAnInteger),
        Just(OpResult::NotAFloat),
        Just(OpResult::Overflow),
        Just(OpResult::NotFound),
        Just(OpResult::WrongOwner),
        (any::<u32>(), any::<u32>())
            .prop_map(|(acked, needed)| OpResult::QuorumFailed { acked, needed }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(available, needed)| OpResult::QuorumUnavailable { available, needed }),
        Just(OpResult::Overloaded),
        Just(OpResult::NotReady),
        Just(OpResult::OutcomeUnknown),
        (any::<u32>(), any::<u32>()).prop_map(|(size, limit)| OpResult::TooLarge { size, limit }),
        Just(OpResult::StoreFailed),
        Just(OpResult::Delivered),
        any_bytes().prop_map(|payload| OpResult::Replied { payload }),
        Just(OpResult::Refused),
        any::<u32>().prop_map(|subscribers| OpResult::Published { subscribers }),
        (proptest::collection::vec(any_bytes(), 0..4), any_id())
            .prop_map(|(keys, reached)| OpResult::Keys { keys, reached }),
        Just(OpResult::WrongType),
        any_coll_reply().prop_map(OpResult::Collection),
        (
            proptest::option::of(any_version()),
            proptest::collection::vec(any_record(), 0..3)
        )
            .prop_map(|(version, records)| OpResult::Watched { version, records }),
    ]
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u64>().prop_map(|req| Message::Ping { req }),
        any::<u64>().prop_map(|req| Message::Pong { req }),
        any::<u64>().prop_map(|req| Message::GetNeighbors { req }),
        (
            any::<u64>(),
            proptest::option::of(any_node()),
            any_nodes(),
            any::<u64>()
        )
            .prop_map(
                |(req, predecessor, successors, keys_stored)| Message::Neighbors {
                    req,
                    predecessor,
                    successors,
                    keys_stored,
                }
            ),
        Just(Message::Notify),
        any_node().prop_map(|candidate| Message::SuccessorHint { candidate }),
        (
            any::<u64>(),
            any_node(),
            any::<u64>(),
            any_id(),
            any::<u32>(),
            prop_oneof![
                Just(OwnerClaim::Route),
                Just(OwnerClaim::Successor),
                Just(OwnerClaim::Table)
            ]
        )
            .prop_map(
                |(req, origin, lookup, key, hops, claim)| Message::FindSuccessor {
                    req,
                    origin,
                    lookup,
                    key,
                    hops,
                    claim
                }
            ),
        proptest::collection::vec(any::<u64>(), 0..20).prop_map(|reqs| Message::LookupAck { reqs }),
        (any::<u64>(), any_id(), any_nodes(), any::<u32>()).prop_map(
            |(lookup, key, successors, hops)| Message::FoundSuccessor {
                lookup,
                key,
                successors,
                hops
            }
        ),
        (any::<u64>(), any::<bool>()).prop_map(|(lookup, h)| Message::LookupFailed {
            lookup,
            reason: if h {
                LookupFailure::HopLimit
            } else {
                LookupFailure::NoRoute
            }
        }),
        (any::<u64>(), any_id()).prop_map(|(req, key)| Message::ClosestPreceding { req, key }),
        (any::<u64>(), any::<bool>(), any_nodes())
            .prop_map(|(req, done, nodes)| Message::ClosestPrecedingReply { req, done, nodes }),
        (proptest::option::of(any_node()), any_nodes()).prop_map(|(predecessor, successors)| {
            Message::Leave {
                predecessor,
                successors,
            }
        }),
        any::<u64>().prop_map(|req| Message::NotHere { req }),
        any::<u64>().prop_map(|req| Message::MemberEventsAck { req }),
        (
            any::<u64>(),
            any_id(),
            proptest::collection::vec((any_node(), any::<bool>(), any_node()), 0..8)
        )
            .prop_map(|(req, until, events)| Message::MemberEvents {
                req,
                until,
                events: events
                    .into_iter()
                    .map(|(node, joined, by)| chordal_core::MemberEvent {
                        node,
                        joined,
                        by: by.addr
                    })
                    .collect(),
            }),
        (
            any::<u64>(),
            proptest::option::of(any_id()),
            proptest::option::of((any::<u64>(), any_id()))
        )
            .prop_flat_map(|(req, after, digest)| {
                let slices = prop_oneof![
                    Just(Vec::new()),
                    proptest::collection::vec(
                        (any::<u64>(), any_id())
                            .prop_map(|(count, xor)| chordal_core::MembersDigest { count, xor }),
                        chordal_core::MEMBER_SLICES,
                    ),
                ];
                slices.prop_map(move |slices| Message::GetMembers {
                    req,
                    after,
                    digest: digest.map(|(count, xor)| chordal_core::MembersDigest { count, xor }),
                    slices,
                })
            }),
        (
            any::<u64>(),
            any_nodes(),
            any::<bool>(),
            any::<bool>(),
            // 0 is never sent: on the wire it means every slice.
            1..=u64::MAX
        )
            .prop_map(|(req, nodes, more, same, slices)| Message::Members {
                req,
                nodes,
                more,
                same,
                slices
            }),
        (
            any::<u64>(),
            any_kv_op(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(|(req, op, op_id, timeout_ms, retry)| Message::Request {
                req,
                op,
                op_id,
                timeout_ms,
                retry
            }),
        (
            any::<u64>(),
            any_kv_result(),
            proptest::option::of((any_id(), any_id()))
        )
            .prop_map(|(req, result, range)| Message::Reply {
                req,
                result,
                range: range.map(|(start, end)| chordal_core::KeyRange { start, end }),
            }),
        (
            any::<u64>(),
            proptest::collection::vec(any_record(), 0..5),
            any::<u64>()
        )
            .prop_map(|(req, records, fence)| Message::Replicate {
                req,
                records,
                fence
            }),
        (
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec((any::<u32>(), any_version()), 0..4),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(req, ok, newer, busy, fenced)| Message::ReplicateAck {
                req,
                ok,
                newer,
                busy,
                fenced
            }),
        (any::<u64>(), any_bytes()).prop_map(|(req, key)| Message::ReplicaRead { req, key }),
        (any::<u64>(), proptest::option::of(any_record()))
            .prop_map(|(req, record)| Message::ReplicaReadReply { req, record }),
        (
            any::<u64>(),
            any_id(),
            any_id(),
            proptest::collection::vec(any_id(), 0..8),
            any::<bool>()
        )
            .prop_map(|(req, start, end, buckets, probe)| Message::SyncSummary {
                req,
                start,
                end,
                buckets,
                probe
            }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<u32>(), 0..8),
            any::<bool>()
        )
            .prop_map(|(req, differing, refine)| Message::SyncDiff {
                req,
                differing,
                refine
            }),
        (any::<u64>(), any::<bool>()).prop_map(|(req, ok)| Message::SyncPushed { req, ok }),
        (any_id(), any_id(), any::<u64>()).prop_map(|(start, end, before)| Message::Collect {
            start,
            end,
            before
        }),
        authority_message(),
    ]
}

fn any_range() -> impl Strategy<Value = chordal_core::KeyRange> {
    (any_id(), any_id()).prop_map(|(start, end)| chordal_core::KeyRange { start, end })
}

/// A few configs (a term's pending ones).
fn any_configs() -> impl Strategy<Value = Vec<Vec<chordal_core::NodeRef>>> {
    proptest::collection::vec(any_nodes(), 0..3)
}

/// The messages of authority (terms, leases, fences).
fn authority_message() -> impl Strategy<Value = Message> {
    let known = || {
        let settled = (1..u64::MAX, any_node(), any_nodes(), any_configs()).prop_map(
            |(term, holder, config, pending)| chordal_core::Settled {
                term,
                holder,
                config,
                pending,
            },
        );
        (
            any_range(),
            any::<u64>(),
            any_node(),
            any_nodes(),
            proptest::option::of(settled),
        )
            .prop_map(
                |(range, term, holder, config, settled)| chordal_core::Known {
                    range,
                    term,
                    holder,
                    config,
                    settled,
                },
            )
    };
    let answer = prop_oneof![
        proptest::collection::vec(known(), 0..4).prop_map(Ok),
        known().prop_map(|promise| Err(chordal_core::Refusal::Outdated {
            promise: Box::new(promise)
        })),
        (known(), any::<u32>()).prop_map(|(promise, us)| Err(chordal_core::Refusal::Held {
            promise: Box::new(promise),
            wait: std::time::Duration::from_micros(u64::from(us)),
        })),
    ];
    prop_oneof![
        (any::<u64>(), any_range(), any::<u64>(), any_nodes()).prop_map(
            |(req, range, term, config)| Message::Prepare {
                req,
                range,
                term,
                config
            }
        ),
        (any::<u64>(), answer).prop_map(|(req, answer)| Message::Promise { req, answer }),
        (
            any::<u64>(),
            any_range(),
            any::<u64>(),
            any_configs(),
            any_nodes()
        )
            .prop_map(|(req, range, term, pending, config)| Message::Renew {
                req,
                range,
                term,
                pending,
                config,
            }),
        (any::<u64>(), any::<bool>()).prop_map(|(req, ok)| Message::Renewed { req, ok }),
        (any_range(), any::<u64>()).prop_map(|(range, term)| Message::Release { range, term }),
        Just(Message::Leaving),
        (
            any_range(),
            any::<u64>(),
            proptest::collection::vec(known(), 0..4)
        )
            .prop_map(|(range, term, known)| Message::Handover { range, term, known }),
        (any_range(), any::<u64>(), any_nodes(), any_configs()).prop_map(
            |(range, term, config, pending)| Message::Lineage {
                range,
                term,
                config,
                pending,
            }
        ),
    ]
}

proptest! {
    #[test]
    fn envelopes_round_trip(from in any_node(), to_id in proptest::option::of(any_id()), msg in any_message()) {
        let env = Envelope { from, to: Target { addr: local(), id: to_id }, msg };
        let bytes = encode_envelope(&env);
        prop_assert_eq!(decode_envelope(bytes.into(), local()), Ok(env));
    }

    #[test]
    fn frames_decode_with_the_codec(from in any_node(), msg in any_message()) {
        let env = Envelope { from, to: Target { addr: local(), id: None }, msg };
        let mut buf = BytesMut::new();
        let len = encode_frame(&env, &mut buf);
        prop_assert_eq!(buf.len(), 4 + len);
        prop_assert_eq!(frame_len(&env), buf.len());
        let frame = frame_codec(1 << 20).decode(&mut buf).unwrap().expect("one whole frame");
        prop_assert_eq!(decode_envelope(frame.freeze(), local()), Ok(env));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_envelope(bytes.clone().into(), local());
        let _ = decode_hello(&bytes, "c");
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        // Drain whatever frames the bytes contain; errors are fine, panics are not.
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }

    #[test]
    fn hello_round_trips(ids in proptest::collection::vec(any_id(), 0..8), cluster in "[a-z]{0,12}") {
        let h = Hello {
            cluster: cluster.clone(),
            addr: Some(local()),
            api: Some("127.0.0.1:8000".parse().unwrap()),
            ids,
            service: (!cluster.is_empty()).then(|| format!("http://{cluster}:9000")),
            resp: (cluster.len() % 2 == 0).then(|| "127.0.0.1:6380".parse().unwrap()),
        };
        prop_assert_eq!(decode_hello(&encode_hello(&h), &cluster), Ok(h));
    }
}

#[test]
fn absurd_length_prefix_is_rejected_before_allocating() {
    let mut codec = frame_codec(1024);
    let mut buf = BytesMut::new();
    buf.put_u32(u32::MAX);
    buf.put_slice(b"xx");
    assert!(codec.decode(&mut buf).is_err());
}

#[test]
fn half_a_frame_waits_for_the_rest() {
    let mut codec = frame_codec(1024);
    let body = encode_envelope(&Envelope {
        from: NodeRef::new(Id::from_u64(1), local()),
        to: Target {
            addr: local(),
            id: None,
        },
        msg: Message::Ping { req: 9 },
    });
    let mut buf = BytesMut::new();
    buf.put_u32(body.len() as u32);
    buf.put_slice(&body[..body.len() / 2]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.put_slice(&body[body.len() / 2..]);
    let frame = codec.decode(&mut buf).unwrap().expect("whole frame");
    assert_eq!(
        decode_envelope(frame.freeze(), local()).unwrap().msg,
        Message::Ping { req: 9 }
    );
}

#[test]
fn wrong_magic_version_and_cluster_are_named() {
    let mut p = preamble();
    assert_eq!(check_preamble(&p), Ok(PROTOCOL_VERSION));
    p[11] = 9;
    assert_eq!(check_preamble(&p), Err(WireError::Version(9)));
    let http = *b"GET / HTTP/1";
    assert_eq!(check_preamble(&http), Err(WireError::BadMagic));
    let h = Hello {
        cluster: "a".into(),
        addr: None,
        api: None,
        ids: vec![],
        service: None,
        resp: None,
    };
    assert_eq!(
        decode_hello(&encode_hello(&h), "b"),
        Err(WireError::Cluster("a".into()))
    );
}

#[test]
fn invalid_fields_are_named() {
    // An id of the wrong length.
    let mut pb = envelope_to_pb(&Envelope {
        from: NodeRef::new(Id::from_u64(1), local()),
        to: Target {
            addr: local(),
            id: None,
        },
        msg: Message::ClosestPreceding {
            req: 1,
            key: Id::from_u64(2),
        },
    });
    if let Some(pb::Body::ClosestPreceding(c)) = pb.body.as_mut() {
        c.key.truncate(19);
    }
    assert_eq!(
        envelope_from_pb(&pb, local()),
        Err(WireError::Invalid("key"))
    );
    pb.from = None;
    assert_eq!(
        envelope_from_pb(&pb, local()),
        Err(WireError::Missing("from"))
    );
}
