//! Key-value requests and replies (`KvRequest`, `KvReply`), and the
//! publications pub/sub carries.

use super::*;

pub(super) fn write_options_to_pb(o: &WriteOptions, out: &mut pb::KvRequest) {
    out.expires = o.expires.map(Time::as_micros);
    (out.condition, out.cond_version) = match o.condition {
        Condition::Always => (0, None),
        Condition::Absent => (1, None),
        Condition::Present => (2, None),
        Condition::Version(v) => (3, Some(version_to_pb(&v))),
    };
    out.flags = u32::from(o.keep_ttl) | (u32::from(o.return_old) << 1);
}

pub(super) fn write_options_from_pb(k: &pb::KvRequest) -> Result<WriteOptions, WireError> {
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

pub(super) fn kv_reply_to_pb(req: u64, result: &OpResult) -> pb::KvReply {
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

/// The `KvRequest` of request `req` carrying `op`.
///
/// Long on purpose: one arm per operation, beside [`kv_op_from_pb`]'s.
pub(super) fn kv_request_to_pb(req: u64, op: &Operation) -> pb::KvRequest {
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

/// The operation a `KvRequest` carries, every field checked.
///
/// Long on purpose: one arm per operation, beside [`kv_request_to_pb`]'s.
pub(super) fn kv_op_from_pb(k: &mut pb::KvRequest) -> Result<Operation, WireError> {
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

pub(super) fn publication_to_pb(p: &Publication) -> pb::Publication {
    pb::Publication {
        topic: p.topic.clone(),
        publisher: p.publisher.0.to_vec(),
        incarnation: p.incarnation,
        seq: p.seq,
        payload: p.payload.clone(),
    }
}

pub(super) fn publication_from_pb(p: &pb::Publication) -> Result<Publication, WireError> {
    Ok(Publication {
        topic: p.topic.clone(),
        publisher: id_from_pb(&p.publisher, "publisher")?,
        incarnation: p.incarnation,
        seq: p.seq,
        payload: p.payload.clone(),
    })
}

pub(super) fn kv_reply_from_pb(r: &mut pb::KvReply) -> Result<OpResult, WireError> {
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
