//! Core messages to protobuf and back. Decoding checks every field that
//! came from the network and never panics.

use crate::WireError;
use crate::pb::{self, Body};
use bytes::Bytes;
use chordal_core::{Change, Condition, Consistency, ExpireWhen, Kind, OpLog, WriteOptions};
use chordal_core::{
    Envelope, Id, KeyRange, Known, LookupFailure, Message, NodeRef, OpResult, Operation,
    OwnerClaim, Publication, Record, Refusal, Settled, Target, Time, Version,
};
use chordal_core::{
    MAX_EVENTS_PER_MESSAGE, MEMBER_SLICES, MEMBERS_PAGE, MemberEvent, MembersDigest,
};
use prost::Message as _;
use std::mem::take;
use std::net::SocketAddr;

/// Most nodes a list in one message may carry (successor lists, candidates).
pub const MAX_LIST: usize = 64;
/// Most request numbers one `LookupAck` may carry.
pub const MAX_ACKS: usize = 1024;

/// Nodes, and ids, whose protobuf form one thread keeps (see `kept`).
const NODE_MEMO: usize = 4096;

/// The protobuf forms this thread made already (see [`node_to_pb`] and
/// [`id_to_pb`]).
#[derive(Default)]
struct Kept {
    nodes: std::collections::HashMap<NodeRef, pb::NodeRef>,
    ids: std::collections::HashMap<Id, Bytes>,
}

thread_local! {
    static KEPT: std::cell::RefCell<Kept> = std::cell::RefCell::new(Kept::default());
}

/// `map[k]`, made by `make` the first time (at most [`NODE_MEMO`] kept:
/// a ring bigger than this starts over). The value kept is a clone of
/// the one returned: `Bytes` made from a slice turn shared at their first
/// clone (an allocation, once here), and later clones only count.
fn kept<K: std::hash::Hash + Eq + Copy, V: Clone>(
    map: &mut std::collections::HashMap<K, V>,
    k: K,
    make: impl FnOnce() -> V,
) -> V {
    if let Some(v) = map.get(&k) {
        return v.clone();
    }
    if map.len() >= NODE_MEMO {
        map.clear();
    }
    let v = make();
    map.insert(k, v.clone());
    v
}

/// The protobuf form of `n`. Kept per thread: a process names the same
/// few nodes (its own vnodes, its peers) in nearly every message, and
/// cloning a kept form costs two reference counts where building one
/// costs two allocations and an address formatted as text.
fn node_to_pb(n: &NodeRef) -> pb::NodeRef {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        let id = kept(&mut k.ids, n.id, || Bytes::copy_from_slice(&n.id.0));
        kept(&mut k.nodes, *n, || pb::NodeRef {
            id,
            addr: Bytes::from(n.addr.to_string()),
        })
    })
}

/// The protobuf form of a vnode's id (a message's addressee, a version's
/// writer, a range's bounds), kept per thread like [`node_to_pb`]: a
/// fresh one costs an allocation, and another when prost's encoder
/// clones it.
fn id_to_pb(id: &Id) -> Bytes {
    KEPT.with(|k| {
        kept(&mut k.borrow_mut().ids, *id, || {
            Bytes::copy_from_slice(&id.0)
        })
    })
}

fn nodes_to_pb(ns: &[NodeRef]) -> Vec<pb::NodeRef> {
    ns.iter().map(node_to_pb).collect()
}

fn id_from_pb(bytes: &[u8], field: &'static str) -> Result<Id, WireError> {
    Id::from_slice(bytes).ok_or(WireError::Invalid(field))
}

fn node_from_pb(n: &pb::NodeRef, field: &'static str) -> Result<NodeRef, WireError> {
    let id = id_from_pb(&n.id, field)?;
    let addr: SocketAddr = std::str::from_utf8(&n.addr)
        .ok()
        .and_then(|a| a.parse().ok())
        .ok_or(WireError::Invalid(field))?;
    Ok(NodeRef::new(id, addr))
}

fn required(n: &Option<pb::NodeRef>, field: &'static str) -> Result<NodeRef, WireError> {
    node_from_pb(n.as_ref().ok_or(WireError::Missing(field))?, field)
}

fn optional(n: &Option<pb::NodeRef>, field: &'static str) -> Result<Option<NodeRef>, WireError> {
    n.as_ref().map(|n| node_from_pb(n, field)).transpose()
}

fn nodes_from_pb(ns: &[pb::NodeRef], field: &'static str) -> Result<Vec<NodeRef>, WireError> {
    if ns.len() > MAX_LIST {
        return Err(WireError::Invalid(field));
    }
    ns.iter().map(|n| node_from_pb(n, field)).collect()
}

/// Most buckets a range summary may have.
pub const MAX_BUCKETS: usize = 4096;

/// Most records one `Replicate` may carry.
pub const MAX_RECORDS: usize = 4096;

/// Most promises one grant may say it replaced.
pub const MAX_KNOWN: usize = 4096;

fn range_from_pb(start: &[u8], end: &[u8]) -> Result<KeyRange, WireError> {
    Ok(KeyRange {
        start: id_from_pb(start, "start")?,
        end: id_from_pb(end, "end")?,
    })
}

fn known_to_pb(k: &Known) -> pb::KnownPromise {
    pb::KnownPromise {
        start: k.range.start.0.to_vec(),
        end: k.range.end.0.to_vec(),
        term: k.term,
        holder: Some(node_to_pb(&k.holder)),
        config: k.config.iter().map(node_to_pb).collect(),
        settled_term: k.settled.as_ref().map_or(0, |s| s.term),
        settled_holder: k.settled.as_ref().map(|s| node_to_pb(&s.holder)),
        settled_config: k
            .settled
            .as_ref()
            .map_or_else(Vec::new, |s| s.config.iter().map(node_to_pb).collect()),
        settled_pending: k
            .settled
            .as_ref()
            .map_or_else(Vec::new, |s| configs_to_pb(&s.pending)),
    }
}

/// Most configs a term may name as pending.
pub const MAX_PENDING: usize = 64;

fn configs_to_pb(configs: &[Vec<NodeRef>]) -> Vec<pb::Config> {
    configs
        .iter()
        .map(|c| pb::Config {
            nodes: c.iter().map(node_to_pb).collect(),
        })
        .collect()
}

fn configs_from_pb(
    configs: &[pb::Config],
    field: &'static str,
) -> Result<Vec<Vec<NodeRef>>, WireError> {
    if configs.len() > MAX_PENDING {
        return Err(WireError::Invalid(field));
    }
    configs
        .iter()
        .map(|c| nodes_from_pb(&c.nodes, field))
        .collect()
}

fn known_from_pb(k: &pb::KnownPromise) -> Result<Known, WireError> {
    let holder = k.holder.as_ref().ok_or(WireError::Missing("holder"))?;
    Ok(Known {
        range: range_from_pb(&k.start, &k.end)?,
        term: k.term,
        holder: node_from_pb(holder, "holder")?,
        config: nodes_from_pb(&k.config, "config")?,
        settled: match &k.settled_holder {
            _ if k.settled_term == 0 => None,
            None => return Err(WireError::Missing("settled_holder")),
            Some(h) => Some(Settled {
                term: k.settled_term,
                holder: node_from_pb(h, "settled_holder")?,
                config: nodes_from_pb(&k.settled_config, "settled_config")?,
                pending: configs_from_pb(&k.settled_pending, "settled_pending")?,
            }),
        },
    })
}

/// A grant carries the promises it replaced in `known`; a refusal the one
/// promise that refused, as `known`'s only entry.
fn promise_to_pb(req: u64, answer: &Result<Vec<Known>, Refusal>) -> pb::Promise {
    let mut out = pb::Promise {
        req,
        ..Default::default()
    };
    match answer {
        Ok(known) => {
            out.granted = true;
            out.known = known.iter().map(known_to_pb).collect();
        }
        Err(Refusal::Outdated { promise }) => {
            out.outdated = true;
            out.known = vec![known_to_pb(promise)];
        }
        Err(Refusal::Held { promise, wait }) => {
            out.known = vec![known_to_pb(promise)];
            out.wait_us = wait.as_micros().min(u64::MAX as u128) as u64;
        }
    }
    out
}

fn promise_from_pb(p: &pb::Promise) -> Result<Message, WireError> {
    if p.known.len() > MAX_KNOWN {
        return Err(WireError::Invalid("known"));
    }
    let known = p
        .known
        .iter()
        .map(known_from_pb)
        .collect::<Result<Vec<_>, WireError>>()?;
    let answer = if p.granted {
        Ok(known)
    } else {
        let [promise] = <[Known; 1]>::try_from(known).map_err(|_| WireError::Invalid("known"))?;
        let promise = Box::new(promise);
        if p.outdated {
            Err(Refusal::Outdated { promise })
        } else {
            let wait = std::time::Duration::from_micros(p.wait_us);
            Err(Refusal::Held { promise, wait })
        }
    };
    Ok(Message::Promise { req: p.req, answer })
}

fn version_to_pb(v: &Version) -> pb::Version {
    pb::Version {
        hlc: v.hlc,
        node: id_to_pb(&v.node),
        term: v.term,
    }
}

fn version_from_pb(v: &Option<pb::Version>) -> Result<Version, WireError> {
    let v = v.as_ref().ok_or(WireError::Missing("version"))?;
    Ok(Version {
        term: v.term,
        hlc: v.hlc,
        node: id_from_pb(&v.node, "version")?,
    })
}

fn record_to_pb(r: &Record) -> pb::Record {
    pb::Record {
        key: r.key.clone(),
        version: Some(version_to_pb(&r.version)),
        value: r.value.clone(),
        expires: r.expires.map(Time::as_micros),
        ops: r.ops.as_bytes().to_vec(),
        kind: u32::from(r.kind.code()),
    }
}

/// The key id is recomputed from the key: a peer cannot make us file a
/// record under the wrong id. A tombstone has no expiry; a log of writes
/// must be well formed (at most `MAX_DONE` entries).
fn record_from_pb(r: &mut pb::Record) -> Result<Record, WireError> {
    if r.value.is_none() && r.expires.is_some() {
        return Err(WireError::Invalid("expires"));
    }
    let version = version_from_pb(&r.version)?;
    let mut record = Record::new(take(&mut r.key), version, r.value.take())
        .expiring(r.expires.map(Time::from_micros));
    record.ops = OpLog::from_bytes(&r.ops).ok_or(WireError::Invalid("ops"))?;
    record.kind = kind_from_pb(r.kind)?;
    if record.value.is_none() && record.kind != Kind::String {
        return Err(WireError::Invalid("a tombstone's kind"));
    }
    Ok(record)
}

fn kind_from_pb(code: u32) -> Result<Kind, WireError> {
    u8::try_from(code)
        .ok()
        .and_then(Kind::from_code)
        .ok_or(WireError::Invalid("kind"))
}

fn write_options_to_pb(o: &WriteOptions, out: &mut pb::KvRequest) {
    out.expires = o.expires.map(Time::as_micros);
    (out.condition, out.cond_version) = match o.condition {
        Condition::Always => (0, None),
        Condition::Absent => (1, None),
        Condition::Present => (2, None),
        Condition::Version(v) => (3, Some(version_to_pb(&v))),
    };
    out.flags = u32::from(o.keep_ttl) | (u32::from(o.return_old) << 1);
}

fn write_options_from_pb(k: &pb::KvRequest) -> Result<WriteOptions, WireError> {
    let condition = match k.condition {
        0 => Condition::Always,
        1 => Condition::Absent,
        2 => Condition::Present,
        3 => Condition::Version(version_from_pb(&k.cond_version)?),
        _ => return Err(WireError::Invalid("condition")),
    };
    if k.flags > 3 {
        return Err(WireError::Invalid("flags"));
    }
    Ok(WriteOptions {
        expires: k.expires.map(Time::from_micros),
        keep_ttl: k.flags & 1 != 0,
        condition,
        return_old: k.flags & 2 != 0,
    })
}

fn kv_reply_to_pb(req: u64, result: &OpResult) -> pb::KvReply {
    let mut out = pb::KvReply {
        req,
        ..Default::default()
    };
    match result {
        OpResult::Stored { version, acked } => {
            out.status = 0;
            out.version = Some(version_to_pb(version));
            out.acked = *acked;
        }
        OpResult::Found {
            value,
            version,
            expires,
        } => {
            out.status = 1;
            out.version = Some(version_to_pb(version));
            out.value = value.clone();
            out.expires = expires.map(Time::as_micros);
        }
        OpResult::PreconditionFailed { current } => {
            out.status = 13;
            out.version = current.as_ref().map(version_to_pb);
        }
        OpResult::Updated {
            version,
            acked,
            number,
        } => {
            out.status = 14;
            out.version = Some(version_to_pb(version));
            out.acked = *acked;
            out.number = *number;
        }
        OpResult::Replaced {
            version,
            acked,
            old,
        } => {
            out.status = 15;
            out.version = Some(version_to_pb(version));
            out.acked = *acked;
            out.old = old.clone();
        }
        OpResult::NotAnInteger => out.status = 16,
        OpResult::NotAFloat => out.status = 20,
        OpResult::Overflow => out.status = 17,
        OpResult::NotFound => out.status = 2,
        OpResult::WrongOwner => out.status = 3,
        OpResult::QuorumFailed { acked, needed } => {
            out.status = 4;
            out.acked = *acked;
            out.needed = *needed;
        }
        OpResult::QuorumUnavailable { available, needed } => {
            out.status = 10;
            out.acked = *available;
            out.needed = *needed;
        }
        OpResult::StoreFailed => out.status = 5,
        OpResult::Overloaded => out.status = 11,
        OpResult::NotReady => out.status = 18,
        OpResult::OutcomeUnknown => out.status = 19,
        OpResult::TooLarge { size, limit } => {
            out.status = 12;
            out.acked = *size;
            out.needed = *limit;
        }
        OpResult::Delivered => out.status = 6,
        OpResult::Replied { payload } => {
            out.status = 7;
            out.value = payload.clone();
        }
        OpResult::Refused => out.status = 8,
        OpResult::Published { subscribers } => {
            out.status = 9;
            out.acked = *subscribers;
        }
        OpResult::Batch {
            results,
            version,
            acked,
        } => {
            out.status = 22;
            out.version = version.as_ref().map(version_to_pb);
            out.acked = *acked;
            out.results = results.iter().map(|r| kv_reply_to_pb(0, r)).collect();
        }
        OpResult::CrossSlot => out.status = 23,
        OpResult::WrongType => out.status = 24,
        OpResult::Collection(reply) => crate::collection::reply_to_pb(reply, &mut out),
        OpResult::Watched { version, records } => {
            out.status = 26;
            out.version = version.as_ref().map(version_to_pb);
            out.records = records.iter().map(record_to_pb).collect();
        }
        OpResult::Keys { keys, reached } => {
            out.status = 21;
            out.keys = keys.clone();
            out.value = reached.0.to_vec();
        }
    }
    out
}

/// Most records in one watch's answer (one write's: a batch's steps, a
/// collection's header).
pub const MAX_WATCH_RECORDS: usize = 8192;

/// Most steps in one batch (and answers in its reply).
pub const MAX_BATCH_STEPS: usize = 4096;

/// Most publications in one `Notify`, topics in one `TopicReplica`.
pub const MAX_ITEMS: usize = 4096;
/// Most subscriber processes listed for one topic.
pub const MAX_TOPIC_NODES: usize = 65_536;

fn kv_request_to_pb(req: u64, op: &Operation) -> pb::KvRequest {
    let mut out = pb::KvRequest {
        req,
        ..Default::default()
    };
    match op {
        Operation::Put { key, value, opts } => {
            out.op = 0;
            out.key = key.clone();
            out.value = value.clone();
            write_options_to_pb(opts, &mut out);
        }
        Operation::Get { key, consistency } => {
            (out.op, out.key) = (1, key.clone());
            out.consistency = match consistency {
                Consistency::Owner => 0,
                Consistency::Quorum => 1,
                Consistency::All => 2,
            };
        }
        Operation::Delete { key, opts } => {
            (out.op, out.key) = (2, key.clone());
            write_options_to_pb(opts, &mut out);
        }
        Operation::Update { key, change } => {
            (out.op, out.key) = (12, key.clone());
            match change {
                Change::IncrBy(n) => (out.change, out.amount) = (0, *n),
                Change::Append(tail) => (out.change, out.value) = (1, tail.clone()),
                Change::SetRange { offset, bytes } => {
                    (out.change, out.amount, out.value) = (4, *offset as i64, bytes.clone())
                }
                Change::SetBit { offset, bit } => {
                    (out.change, out.amount, out.value) = (5, *offset as i64, vec![u8::from(*bit)])
                }
                Change::IncrByFloat(by) => (out.change, out.value) = (6, by.clone()),
                Change::GetEx(t) => (out.change, out.expires) = (7, t.map(Time::as_micros)),
                Change::ExpireIf { expires, when } => {
                    out.change = 8;
                    out.expires = expires.map(Time::as_micros);
                    out.amount = match when {
                        ExpireWhen::Nx => 0,
                        ExpireWhen::Xx => 1,
                        ExpireWhen::Gt => 2,
                        ExpireWhen::Lt => 3,
                        ExpireWhen::LtExisting => 4,
                    };
                }
                Change::Expire(t) => (out.change, out.expires) = (2, t.map(Time::as_micros)),
                Change::CopyFrom { from, replace } => {
                    (out.change, out.value, out.amount) = (9, from.clone(), i64::from(*replace))
                }
                Change::Expect(v) => {
                    out.change = 10;
                    out.amount = i64::from(v.is_some());
                    out.cond_version = v.as_ref().map(version_to_pb);
                }
                Change::Restore {
                    version,
                    value,
                    expires,
                    kind,
                } => {
                    out.change = 3;
                    out.kind = u32::from(kind.code());
                    out.cond_version = Some(version_to_pb(version));
                    out.expires = expires.map(Time::as_micros);
                    match value {
                        Some(v) => out.value = v.clone(),
                        None => out.amount = 1,
                    }
                }
            }
        }
        Operation::Deliver {
            key,
            payload,
            want_reply,
        } => {
            out.op = if *want_reply { 4 } else { 3 };
            out.key = key.clone();
            out.value = payload.clone();
        }
        Operation::Direct {
            payload,
            want_reply,
        } => {
            out.op = if *want_reply { 6 } else { 5 };
            out.value = payload.clone();
        }
        Operation::Batch {
            steps,
            all_or_nothing,
        } => {
            out.op = 14;
            out.steps = steps.iter().map(|s| kv_request_to_pb(0, s)).collect();
            out.all_or_nothing = *all_or_nothing;
        }
        Operation::Collection { key, kind, op } => {
            out.op = 15;
            out.key = key.clone();
            crate::collection::op_to_pb(*kind, op, &mut out);
        }
        Operation::Watch { key, after, group } => {
            out.op = 16;
            out.key = key.clone();
            out.cond_version = after.as_ref().map(version_to_pb);
            out.flags = u32::from(*group);
        }
        Operation::Scan { start, end, limit } => {
            out.op = 13;
            out.key = start.0.to_vec();
            out.value = end.0.to_vec();
            out.amount = i64::from(*limit);
        }
        Operation::Subscribe { topic } => (out.op, out.key) = (7, topic.clone()),
        Operation::Unsubscribe { topic } => (out.op, out.key) = (8, topic.clone()),
        Operation::Publish {
            topic,
            publications,
        } => {
            out.op = 9;
            out.key = topic.clone();
            out.items = publications.iter().map(publication_to_pb).collect();
        }
        Operation::Notify { items, missed } => {
            out.op = 10;
            out.items = items.iter().map(publication_to_pb).collect();
            out.missed = missed
                .iter()
                .map(|(topic, count)| pb::TopicCount {
                    topic: topic.clone(),
                    count: *count,
                })
                .collect();
        }
        Operation::TopicReplica { topics } => {
            out.op = 11;
            out.topics = topics
                .iter()
                .map(|(topic, nodes)| pb::TopicNodes {
                    topic: topic.clone(),
                    nodes: nodes_to_pb(nodes),
                })
                .collect();
        }
    }
    out
}

fn kv_op_from_pb(k: &mut pb::KvRequest) -> Result<Operation, WireError> {
    if k.items.len() > MAX_ITEMS || k.missed.len() > MAX_ITEMS || k.topics.len() > MAX_ITEMS {
        return Err(WireError::Invalid("items"));
    }
    Ok(match k.op {
        0 => Operation::Put {
            key: take(&mut k.key),
            value: take(&mut k.value),
            opts: write_options_from_pb(k)?,
        },
        1 => Operation::Get {
            key: take(&mut k.key),
            consistency: match k.consistency {
                0 => Consistency::Owner,
                1 => Consistency::Quorum,
                2 => Consistency::All,
                _ => return Err(WireError::Invalid("consistency")),
            },
        },
        2 => Operation::Delete {
            key: take(&mut k.key),
            opts: write_options_from_pb(k)?,
        },
        12 => Operation::Update {
            key: take(&mut k.key),
            change: match k.change {
                0 => Change::IncrBy(k.amount),
                1 => Change::Append(take(&mut k.value)),
                2 => Change::Expire(k.expires.map(Time::from_micros)),
                3 => Change::Restore {
                    version: version_from_pb(&k.cond_version)?,
                    value: match k.amount {
                        0 => Some(take(&mut k.value)),
                        1 => None,
                        _ => return Err(WireError::Invalid("restore tombstone")),
                    },
                    expires: k.expires.map(Time::from_micros),
                    kind: kind_from_pb(k.kind)?,
                },
                4 => Change::SetRange {
                    offset: u64::try_from(k.amount).map_err(|_| WireError::Invalid("offset"))?,
                    bytes: take(&mut k.value),
                },
                5 => Change::SetBit {
                    offset: u64::try_from(k.amount).map_err(|_| WireError::Invalid("offset"))?,
                    bit: match k.value.as_slice() {
                        [0] => false,
                        [1] => true,
                        _ => return Err(WireError::Invalid("bit")),
                    },
                },
                6 => Change::IncrByFloat(take(&mut k.value)),
                7 => Change::GetEx(k.expires.map(Time::from_micros)),
                8 => Change::ExpireIf {
                    expires: k.expires.map(Time::from_micros),
                    when: match k.amount {
                        0 => ExpireWhen::Nx,
                        1 => ExpireWhen::Xx,
                        2 => ExpireWhen::Gt,
                        3 => ExpireWhen::Lt,
                        4 => ExpireWhen::LtExisting,
                        _ => return Err(WireError::Invalid("expire condition")),
                    },
                },
                9 => Change::CopyFrom {
                    from: take(&mut k.value),
                    replace: match k.amount {
                        0 => false,
                        1 => true,
                        _ => return Err(WireError::Invalid("copy replace")),
                    },
                },
                10 => Change::Expect(match k.amount {
                    0 => None,
                    1 => Some(version_from_pb(&k.cond_version)?),
                    _ => return Err(WireError::Invalid("expected version")),
                }),
                _ => return Err(WireError::Invalid("change")),
            },
        },
        14 => {
            if k.steps.len() > MAX_BATCH_STEPS {
                return Err(WireError::Invalid("batch steps"));
            }
            Operation::Batch {
                steps: k
                    .steps
                    .iter_mut()
                    .map(|step| match step.op {
                        0 | 1 | 2 | 12 | 15 => kv_op_from_pb(step),
                        _ => Err(WireError::Invalid("batch step")),
                    })
                    .collect::<Result<_, _>>()?,
                all_or_nothing: k.all_or_nothing,
            }
        }
        15 => {
            let (kind, op) = crate::collection::op_from_pb(k)?;
            Operation::Collection {
                key: take(&mut k.key),
                kind,
                op,
            }
        }
        3 | 4 => Operation::Deliver {
            key: take(&mut k.key),
            payload: take(&mut k.value),
            want_reply: k.op == 4,
        },
        5 | 6 => Operation::Direct {
            payload: take(&mut k.value),
            want_reply: k.op == 6,
        },
        16 => Operation::Watch {
            key: take(&mut k.key),
            after: match k.cond_version {
                Some(_) => Some(version_from_pb(&k.cond_version)?),
                None => None,
            },
            group: k.flags & 1 != 0,
        },
        13 => Operation::Scan {
            start: id_from_pb(&k.key, "scan start")?,
            end: id_from_pb(&k.value, "scan end")?,
            limit: u32::try_from(k.amount).map_err(|_| WireError::Invalid("scan limit"))?,
        },
        7 => Operation::Subscribe {
            topic: take(&mut k.key),
        },
        8 => Operation::Unsubscribe {
            topic: take(&mut k.key),
        },
        9 => {
            let publications: Vec<Publication> = k
                .items
                .iter()
                .map(publication_from_pb)
                .collect::<Result<_, _>>()?;
            if publications.is_empty() || publications.iter().any(|p| p.topic != k.key) {
                return Err(WireError::Invalid("items"));
            }
            Operation::Publish {
                topic: take(&mut k.key),
                publications,
            }
        }
        10 => Operation::Notify {
            items: k
                .items
                .iter()
                .map(publication_from_pb)
                .collect::<Result<_, _>>()?,
            missed: k
                .missed
                .iter()
                .map(|m| (m.topic.clone(), m.count))
                .collect(),
        },
        11 => Operation::TopicReplica {
            topics: k
                .topics
                .iter()
                .map(|t| {
                    if t.nodes.len() > MAX_TOPIC_NODES {
                        return Err(WireError::Invalid("topics"));
                    }
                    let nodes = t
                        .nodes
                        .iter()
                        .map(|n| node_from_pb(n, "topics"))
                        .collect::<Result<_, _>>()?;
                    Ok((t.topic.clone(), nodes))
                })
                .collect::<Result<_, _>>()?,
        },
        _ => return Err(WireError::Invalid("op")),
    })
}

fn publication_to_pb(p: &Publication) -> pb::Publication {
    pb::Publication {
        topic: p.topic.clone(),
        publisher: p.publisher.0.to_vec(),
        incarnation: p.incarnation,
        seq: p.seq,
        payload: p.payload.clone(),
    }
}

fn publication_from_pb(p: &pb::Publication) -> Result<Publication, WireError> {
    Ok(Publication {
        topic: p.topic.clone(),
        publisher: id_from_pb(&p.publisher, "publisher")?,
        incarnation: p.incarnation,
        seq: p.seq,
        payload: p.payload.clone(),
    })
}

fn kv_reply_from_pb(r: &mut pb::KvReply) -> Result<OpResult, WireError> {
    Ok(match r.status {
        0 => OpResult::Stored {
            version: version_from_pb(&r.version)?,
            acked: r.acked,
        },
        1 => OpResult::Found {
            value: take(&mut r.value),
            version: version_from_pb(&r.version)?,
            expires: r.expires.map(Time::from_micros),
        },
        13 => OpResult::PreconditionFailed {
            current: match &r.version {
                Some(_) => Some(version_from_pb(&r.version)?),
                None => None,
            },
        },
        14 => OpResult::Updated {
            version: version_from_pb(&r.version)?,
            acked: r.acked,
            number: r.number,
        },
        15 => OpResult::Replaced {
            version: version_from_pb(&r.version)?,
            acked: r.acked,
            old: take(&mut r.old),
        },
        16 => OpResult::NotAnInteger,
        20 => OpResult::NotAFloat,
        17 => OpResult::Overflow,
        2 => OpResult::NotFound,
        3 => OpResult::WrongOwner,
        4 => OpResult::QuorumFailed {
            acked: r.acked,
            needed: r.needed,
        },
        5 => OpResult::StoreFailed,
        6 => OpResult::Delivered,
        7 => OpResult::Replied {
            payload: take(&mut r.value),
        },
        8 => OpResult::Refused,
        9 => OpResult::Published {
            subscribers: r.acked,
        },
        22 => {
            if r.results.len() > MAX_BATCH_STEPS {
                return Err(WireError::Invalid("batch results"));
            }
            OpResult::Batch {
                results: r
                    .results
                    .iter_mut()
                    .map(|step| match step.status {
                        22 => Err(WireError::Invalid("a batch in a batch")),
                        _ => kv_reply_from_pb(step),
                    })
                    .collect::<Result<_, _>>()?,
                version: match &r.version {
                    Some(_) => Some(version_from_pb(&r.version)?),
                    None => None,
                },
                acked: r.acked,
            }
        }
        23 => OpResult::CrossSlot,
        24 => OpResult::WrongType,
        25 => OpResult::Collection(crate::collection::reply_from_pb(r)?),
        26 => {
            if r.records.len() > MAX_WATCH_RECORDS {
                return Err(WireError::Invalid("watched records"));
            }
            OpResult::Watched {
                version: match r.version {
                    Some(_) => Some(version_from_pb(&r.version)?),
                    None => None,
                },
                records: r
                    .records
                    .iter_mut()
                    .map(record_from_pb)
                    .collect::<Result<_, _>>()?,
            }
        }
        21 => OpResult::Keys {
            keys: r.keys.clone(),
            reached: id_from_pb(&r.value, "scan reached")?,
        },
        11 => OpResult::Overloaded,
        18 => OpResult::NotReady,
        19 => OpResult::OutcomeUnknown,
        12 => OpResult::TooLarge {
            size: r.acked,
            limit: r.needed,
        },
        10 => OpResult::QuorumUnavailable {
            available: r.acked,
            needed: r.needed,
        },
        _ => return Err(WireError::Invalid("status")),
    })
}

/// The protobuf form of `env` (its destination address is the connection's).
pub fn envelope_to_pb(env: &Envelope) -> pb::Envelope {
    let body = match &env.msg {
        Message::Ping { req } => Body::Ping(pb::Req { req: *req }),
        Message::Pong { req } => Body::Pong(pb::Req { req: *req }),
        Message::GetNeighbors { req } => Body::GetNeighbors(pb::Req { req: *req }),
        Message::Neighbors {
            req,
            predecessor,
            successors,
            keys_stored,
        } => Body::Neighbors(pb::Neighbors {
            req: *req,
            predecessor: predecessor.as_ref().map(node_to_pb),
            successors: nodes_to_pb(successors),
            keys_stored: *keys_stored,
        }),
        Message::Notify => Body::Notify(pb::Notify {}),
        Message::SuccessorHint { candidate } => Body::SuccessorHint(pb::SuccessorHint {
            candidate: Some(node_to_pb(candidate)),
        }),
        Message::FindSuccessor {
            req,
            origin,
            lookup,
            key,
            hops,
            claim,
        } => Body::FindSuccessor(pb::FindSuccessor {
            req: *req,
            origin: Some(node_to_pb(origin)),
            lookup: *lookup,
            key: key.0.to_vec(),
            hops: *hops,
            claim: match claim {
                OwnerClaim::Route => 0,
                OwnerClaim::Successor => 1,
                OwnerClaim::Table => 2,
            },
        }),
        Message::LookupAck { reqs } => Body::LookupAck(pb::LookupAck { reqs: reqs.clone() }),
        Message::FoundSuccessor {
            lookup,
            key,
            successors,
            hops,
        } => Body::FoundSuccessor(pb::FoundSuccessor {
            lookup: *lookup,
            key: key.0.to_vec(),
            successors: nodes_to_pb(successors),
            hops: *hops,
        }),
        Message::LookupFailed { lookup, reason } => Body::LookupFailed(pb::LookupFailed {
            lookup: *lookup,
            reason: match reason {
                LookupFailure::HopLimit => 0,
                _ => 1,
            },
        }),
        Message::ClosestPreceding { req, key } => Body::ClosestPreceding(pb::ClosestPreceding {
            req: *req,
            key: key.0.to_vec(),
        }),
        Message::ClosestPrecedingReply { req, done, nodes } => {
            Body::ClosestPrecedingReply(pb::ClosestPrecedingReply {
                req: *req,
                done: *done,
                nodes: nodes_to_pb(nodes),
            })
        }
        Message::Leave {
            predecessor,
            successors,
        } => Body::Leave(pb::Leave {
            predecessor: predecessor.as_ref().map(node_to_pb),
            successors: nodes_to_pb(successors),
        }),
        Message::NotHere { req } => Body::NotHere(pb::Req { req: *req }),
        Message::MemberEventsAck { req } => Body::MemberEventsAck(pb::Req { req: *req }),
        Message::MemberEvents { req, until, events } => Body::MemberEvents(pb::MemberEvents {
            req: *req,
            until: until.0.to_vec(),
            events: events
                .iter()
                .map(|e| pb::MemberEvent {
                    node: Some(node_to_pb(&e.node)),
                    joined: e.joined,
                    by: e.by.to_string(),
                })
                .collect(),
        }),
        Message::GetMembers {
            req,
            after,
            digest,
            slices,
        } => Body::GetMembers(pb::GetMembers {
            req: *req,
            after: after.map(|id| id.0.to_vec()).unwrap_or_default(),
            has_digest: digest.is_some(),
            digest_count: digest.map_or(0, |d| d.count),
            digest_xor: digest.map(|d| d.xor.0.to_vec()).unwrap_or_default(),
            slices: slices
                .iter()
                .map(|d| pb::MembersDigest {
                    count: d.count,
                    xor: d.xor.0.to_vec(),
                })
                .collect(),
        }),
        Message::Members {
            req,
            nodes,
            more,
            same,
            slices,
        } => Body::Members(pb::Members {
            req: *req,
            nodes: nodes_to_pb(nodes),
            more: *more,
            same: *same,
            // 0 on the wire is "every slice" (what a peer that does not
            // compare slices sends).
            slices: if *slices == u64::MAX { 0 } else { *slices },
        }),
        Message::Request {
            req,
            op,
            op_id,
            timeout_ms,
            retry,
        } => {
            let mut pb = kv_request_to_pb(*req, op);
            pb.op_id = *op_id;
            pb.timeout_ms = *timeout_ms;
            pb.retry = *retry;
            Body::KvRequest(pb)
        }
        Message::Reply { req, result, range } => {
            let mut pb = kv_reply_to_pb(*req, result);
            if let Some(r) = range {
                pb.range_start = id_to_pb(&r.start);
                pb.range_end = id_to_pb(&r.end);
            }
            Body::KvReply(pb)
        }
        Message::Replicate {
            req,
            records,
            fence,
        } => Body::Replicate(pb::Replicate {
            req: *req,
            records: records.iter().map(record_to_pb).collect(),
            fence: *fence,
        }),
        Message::ReplicateAck {
            req,
            ok,
            newer,
            busy,
            fenced,
        } => Body::ReplicateAck(pb::ReplicateAck {
            req: *req,
            ok: *ok,
            newer: newer
                .iter()
                .map(|(index, v)| pb::NewerKept {
                    index: *index,
                    version: Some(version_to_pb(v)),
                })
                .collect(),
            busy: *busy,
            fenced: *fenced,
        }),
        Message::Prepare {
            req,
            range,
            term,
            config,
        } => Body::Prepare(pb::Prepare {
            req: *req,
            start: range.start.0.to_vec(),
            end: range.end.0.to_vec(),
            term: *term,
            config: config.iter().map(node_to_pb).collect(),
        }),
        Message::Promise { req, answer } => Body::Promise(promise_to_pb(*req, answer)),
        Message::Renew {
            req,
            range,
            term,
            pending,
            config,
        } => Body::Renew(pb::Renew {
            req: *req,
            start: range.start.0.to_vec(),
            end: range.end.0.to_vec(),
            term: *term,
            pending: configs_to_pb(pending),
            config: nodes_to_pb(config),
        }),
        Message::Renewed { req, ok } => Body::Renewed(pb::Renewed { req: *req, ok: *ok }),
        Message::Release { range, term } => Body::Release(pb::Release {
            start: range.start.0.to_vec(),
            end: range.end.0.to_vec(),
            term: *term,
        }),
        Message::Leaving => Body::Leaving(pb::Leaving {}),
        Message::Handover { range, term, known } => Body::Handover(pb::Handover {
            start: range.start.0.to_vec(),
            end: range.end.0.to_vec(),
            term: *term,
            known: known.iter().map(known_to_pb).collect(),
        }),
        Message::Lineage {
            range,
            term,
            config,
            pending,
        } => Body::Lineage(pb::Lineage {
            start: range.start.0.to_vec(),
            end: range.end.0.to_vec(),
            term: *term,
            config: nodes_to_pb(config),
            pending: configs_to_pb(pending),
        }),
        Message::ReplicaRead { req, key } => Body::ReplicaRead(pb::ReplicaRead {
            req: *req,
            key: key.clone(),
        }),
        Message::SyncSummary {
            req,
            start,
            end,
            buckets,
            probe,
        } => Body::SyncSummary(pb::SyncSummary {
            req: *req,
            start: start.0.to_vec(),
            end: end.0.to_vec(),
            buckets: buckets.iter().map(|b| b.0.to_vec()).collect(),
            probe: *probe,
        }),
        Message::Collect { start, end, before } => Body::Collect(pb::Collect {
            start: start.0.to_vec(),
            end: end.0.to_vec(),
            before: *before,
        }),
        Message::SyncDiff {
            req,
            differing,
            refine,
        } => Body::SyncDiff(pb::SyncDiff {
            req: *req,
            differing: differing.clone(),
            refine: *refine,
        }),
        Message::SyncPushed { req, ok } => Body::SyncPushed(pb::SyncPushed { req: *req, ok: *ok }),
        Message::ReplicaReadReply { req, record } => Body::ReplicaReadReply(pb::ReplicaReadReply {
            req: *req,
            record: record.as_ref().map(record_to_pb),
        }),
    };
    pb::Envelope {
        from: Some(node_to_pb(&env.from)),
        to_id: env.to.id.map(|id| id_to_pb(&id)).unwrap_or_default(),
        body: Some(body),
    }
}

/// Encodes `env` as a frame body.
pub fn encode_envelope(env: &Envelope) -> Vec<u8> {
    envelope_to_pb(env).encode_to_vec()
}

/// Appends `env` as a whole frame (u32 big-endian length, then the body)
/// to `buf`. Returns the body length.
pub fn encode_frame(env: &Envelope, buf: &mut bytes::BytesMut) -> usize {
    let pb = envelope_to_pb(env);
    let len = pb.encoded_len();
    buf.reserve(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    pb.encode(buf).expect("reserved enough space");
    len
}

/// The bytes `env` takes on a connection as a whole frame (length prefix
/// and body), without encoding it. The simulator sizes its traffic with it.
pub fn frame_len(env: &Envelope) -> usize {
    4 + envelope_to_pb(env).encoded_len()
}

/// Decodes a frame body received on a connection to our address `local`.
///
/// Decoding from a `Bytes` (the frame a connection read) lets the ids in
/// it be slices of that frame rather than copies: give the frame itself.
pub fn decode_envelope(bytes: Bytes, local: SocketAddr) -> Result<Envelope, WireError> {
    let mut pb = pb::Envelope::decode(bytes).map_err(|_| WireError::Protobuf)?;
    take_envelope(&mut pb, local)
}

/// Checks and converts a decoded protobuf envelope.
pub fn envelope_from_pb(pb: &pb::Envelope, local: SocketAddr) -> Result<Envelope, WireError> {
    take_envelope(&mut pb.clone(), local)
}

/// [`envelope_from_pb`] that moves keys, values and records out of `pb`
/// instead of copying them (what is left of `pb` is not to be used).
fn take_envelope(pb: &mut pb::Envelope, local: SocketAddr) -> Result<Envelope, WireError> {
    let from = required(&pb.from, "from")?;
    let to_id = if pb.to_id.is_empty() {
        None
    } else {
        Some(id_from_pb(&pb.to_id, "to_id")?)
    };
    let msg = match pb.body.as_mut().ok_or(WireError::Missing("body"))? {
        Body::Ping(r) => Message::Ping { req: r.req },
        Body::Pong(r) => Message::Pong { req: r.req },
        Body::GetNeighbors(r) => Message::GetNeighbors { req: r.req },
        Body::Neighbors(n) => Message::Neighbors {
            req: n.req,
            predecessor: optional(&n.predecessor, "predecessor")?,
            successors: nodes_from_pb(&n.successors, "successors")?,
            keys_stored: n.keys_stored,
        },
        Body::Notify(_) => Message::Notify,
        Body::SuccessorHint(h) => Message::SuccessorHint {
            candidate: required(&h.candidate, "candidate")?,
        },
        Body::FindSuccessor(f) => Message::FindSuccessor {
            req: f.req,
            origin: required(&f.origin, "origin")?,
            lookup: f.lookup,
            key: id_from_pb(&f.key, "key")?,
            hops: f.hops,
            claim: match f.claim {
                0 => OwnerClaim::Route,
                1 => OwnerClaim::Successor,
                2 => OwnerClaim::Table,
                _ => return Err(WireError::Invalid("claim")),
            },
        },
        Body::LookupAck(a) => {
            if a.reqs.len() > MAX_ACKS {
                return Err(WireError::Invalid("reqs"));
            }
            Message::LookupAck {
                reqs: a.reqs.clone(),
            }
        }
        Body::FoundSuccessor(f) => Message::FoundSuccessor {
            lookup: f.lookup,
            key: id_from_pb(&f.key, "key")?,
            successors: nodes_from_pb(&f.successors, "successors")?,
            hops: f.hops,
        },
        Body::LookupFailed(f) => Message::LookupFailed {
            lookup: f.lookup,
            reason: match f.reason {
                0 => LookupFailure::HopLimit,
                1 => LookupFailure::NoRoute,
                _ => return Err(WireError::Invalid("reason")),
            },
        },
        Body::ClosestPreceding(c) => Message::ClosestPreceding {
            req: c.req,
            key: id_from_pb(&c.key, "key")?,
        },
        Body::ClosestPrecedingReply(c) => Message::ClosestPrecedingReply {
            req: c.req,
            done: c.done,
            nodes: nodes_from_pb(&c.nodes, "nodes")?,
        },
        Body::Leave(l) => Message::Leave {
            predecessor: optional(&l.predecessor, "predecessor")?,
            successors: nodes_from_pb(&l.successors, "successors")?,
        },
        Body::NotHere(r) => Message::NotHere { req: r.req },
        Body::MemberEvents(m) => {
            if m.events.len() > MAX_EVENTS_PER_MESSAGE {
                return Err(WireError::Invalid("events"));
            }
            let events = m
                .events
                .iter()
                .map(|e| {
                    Ok(MemberEvent {
                        node: required(&e.node, "node")?,
                        joined: e.joined,
                        by: e.by.parse().map_err(|_| WireError::Invalid("by"))?,
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            Message::MemberEvents {
                req: m.req,
                until: id_from_pb(&m.until, "until")?,
                events,
            }
        }
        Body::MemberEventsAck(r) => Message::MemberEventsAck { req: r.req },
        Body::GetMembers(g) => Message::GetMembers {
            req: g.req,
            after: if g.after.is_empty() {
                None
            } else {
                Some(id_from_pb(&g.after, "after")?)
            },
            digest: if g.has_digest {
                Some(MembersDigest {
                    count: g.digest_count,
                    xor: id_from_pb(&g.digest_xor, "digest_xor")?,
                })
            } else {
                None
            },
            slices: {
                if !g.slices.is_empty() && g.slices.len() != MEMBER_SLICES {
                    return Err(WireError::Invalid("slices"));
                }
                g.slices
                    .iter()
                    .map(|d| {
                        Ok(MembersDigest {
                            count: d.count,
                            xor: id_from_pb(&d.xor, "slices")?,
                        })
                    })
                    .collect::<Result<_, WireError>>()?
            },
        },
        Body::Members(m) => {
            if m.nodes.len() > MEMBERS_PAGE {
                return Err(WireError::Invalid("nodes"));
            }
            Message::Members {
                req: m.req,
                nodes: m
                    .nodes
                    .iter()
                    .map(|n| node_from_pb(n, "nodes"))
                    .collect::<Result<_, _>>()?,
                more: m.more,
                same: m.same,
                slices: if m.slices == 0 { u64::MAX } else { m.slices },
            }
        }
        Body::KvRequest(k) => Message::Request {
            req: k.req,
            op: kv_op_from_pb(k)?,
            op_id: k.op_id,
            timeout_ms: k.timeout_ms,
            retry: k.retry,
        },
        Body::KvReply(r) => Message::Reply {
            req: r.req,
            result: kv_reply_from_pb(r)?,
            range: if r.range_end.is_empty() {
                None
            } else {
                Some(KeyRange {
                    start: id_from_pb(&r.range_start, "range_start")?,
                    end: id_from_pb(&r.range_end, "range_end")?,
                })
            },
        },
        Body::Replicate(r) => {
            if r.records.len() > MAX_RECORDS {
                return Err(WireError::Invalid("records"));
            }
            Message::Replicate {
                req: r.req,
                records: r
                    .records
                    .iter_mut()
                    .map(record_from_pb)
                    .collect::<Result<_, _>>()?,
                fence: r.fence,
            }
        }
        Body::ReplicateAck(a) => Message::ReplicateAck {
            req: a.req,
            ok: a.ok,
            newer: a
                .newer
                .iter()
                .map(|n| Ok((n.index, version_from_pb(&n.version)?)))
                .collect::<Result<_, WireError>>()?,
            busy: a.busy,
            fenced: a.fenced,
        },
        Body::Prepare(p) => Message::Prepare {
            req: p.req,
            range: range_from_pb(&p.start, &p.end)?,
            term: p.term,
            config: nodes_from_pb(&p.config, "config")?,
        },
        Body::Promise(p) => promise_from_pb(p)?,
        Body::Renew(r) => Message::Renew {
            req: r.req,
            range: range_from_pb(&r.start, &r.end)?,
            term: r.term,
            pending: configs_from_pb(&r.pending, "pending")?,
            config: nodes_from_pb(&r.config, "config")?,
        },
        Body::Renewed(r) => Message::Renewed {
            req: r.req,
            ok: r.ok,
        },
        Body::Release(r) => Message::Release {
            range: range_from_pb(&r.start, &r.end)?,
            term: r.term,
        },
        Body::Leaving(_) => Message::Leaving,
        Body::Handover(h) => {
            if h.known.len() > MAX_KNOWN {
                return Err(WireError::Invalid("known"));
            }
            Message::Handover {
                range: range_from_pb(&h.start, &h.end)?,
                term: h.term,
                known: h
                    .known
                    .iter()
                    .map(known_from_pb)
                    .collect::<Result<Vec<_>, WireError>>()?,
            }
        }
        Body::Lineage(l) => Message::Lineage {
            range: range_from_pb(&l.start, &l.end)?,
            term: l.term,
            config: nodes_from_pb(&l.config, "config")?,
            pending: configs_from_pb(&l.pending, "pending")?,
        },
        Body::ReplicaRead(r) => Message::ReplicaRead {
            req: r.req,
            key: r.key.clone(),
        },
        Body::SyncSummary(s) => {
            if s.buckets.len() > MAX_BUCKETS {
                return Err(WireError::Invalid("buckets"));
            }
            Message::SyncSummary {
                req: s.req,
                start: id_from_pb(&s.start, "start")?,
                end: id_from_pb(&s.end, "end")?,
                buckets: s
                    .buckets
                    .iter()
                    .map(|b| id_from_pb(b, "buckets"))
                    .collect::<Result<_, _>>()?,
                probe: s.probe,
            }
        }
        Body::Collect(c) => Message::Collect {
            start: id_from_pb(&c.start, "start")?,
            end: id_from_pb(&c.end, "end")?,
            before: c.before,
        },
        Body::SyncDiff(d) => {
            if d.differing.len() > MAX_BUCKETS {
                return Err(WireError::Invalid("differing"));
            }
            Message::SyncDiff {
                req: d.req,
                differing: d.differing.clone(),
                refine: d.refine,
            }
        }
        Body::SyncPushed(p) => Message::SyncPushed {
            req: p.req,
            ok: p.ok,
        },
        Body::ReplicaReadReply(r) => Message::ReplicaReadReply {
            req: r.req,
            record: r.record.as_mut().map(record_from_pb).transpose()?,
        },
    };
    Ok(Envelope {
        from,
        to: Target {
            addr: local,
            id: to_id,
        },
        msg,
    })
}
