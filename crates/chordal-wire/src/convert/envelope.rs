//! Whole envelopes: the one match over every message, to protobuf and
//! back, and the frames they travel in.

use super::*;

/// The protobuf form of `env` (its destination address is the connection's).
///
/// Long on purpose: one arm per message, the table of how each is written;
/// split, a message's two directions would sit in different places.
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
///
/// Long on purpose: one arm per message, the table of how each is read and
/// checked, beside [`envelope_to_pb`]'s.
pub(super) fn take_envelope(
    pb: &mut pb::Envelope,
    local: SocketAddr,
) -> Result<Envelope, WireError> {
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
