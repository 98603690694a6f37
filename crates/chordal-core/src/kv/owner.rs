//! The owner of a key: versions writes, stores and replicates them,
//! answers after `W` durable copies; serves reads, asking the replicas when
//! it lacks a key while a handoff may still be running.

use super::{KvDeadline, OwnerOp, ReplyTo, StoreKind, StoreWait, newest};
use crate::{Id, KvOp, KvResult, Message, Node, NodeRef, Record, Time, Version};

/// What an owner reads a key for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReadFor {
    Get,
    /// A get of a key that may not be ours (see [`Ownership::Maybe`]).
    MaybeGet,
    /// A delete: read, then write a tombstone if there is something.
    Delete,
}

/// Whether a vnode owns a key (see `Node::takes_key`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ownership {
    Yes,
    Maybe,
    No,
}

/// Most versions one write gets before the owner gives up on it (each
/// time a copy holds a newer version than the last one tried).
pub const MAX_WRITE_ATTEMPTS: u32 = 4;

impl Node {
    /// A joined virtual node of ours that owns `key_id` (the key is in its
    /// range `(predecessor, self]`).
    pub(crate) fn owning_vnode(&self, key_id: &Id) -> Option<NodeRef> {
        self.vnodes
            .iter()
            .filter(|v| v.is_joined())
            .find(|v| v.range().is_some_and(|r| r.contains(key_id)))
            .map(|v| v.me())
    }

    /// Does our vnode `vnode` own `key_id`? `Yes` if the key is in its
    /// range. `Maybe` if it is not but the vnode knows no predecessor (it
    /// just failed): a lookup routed the key here, and it is ours if the
    /// dead predecessor owned it — or a live node's between, which we
    /// cannot tell yet. A `Maybe` key is read (a copy found is the newest
    /// we have) but never written, and a miss answers `WrongOwner` rather
    /// than a false `NotFound`.
    fn takes_key(&self, vnode: &NodeRef, key_id: &Id) -> Ownership {
        let Some(v) = self.vnodes.iter().find(|v| v.me() == *vnode) else {
            return Ownership::No;
        };
        if !v.is_joined() {
            Ownership::No
        } else if v.range().is_none_or(|r| r.contains(key_id)) {
            Ownership::Yes
        } else if v.table().predecessor().is_none() {
            Ownership::Maybe
        } else {
            Ownership::No
        }
    }

    /// Where copies of `owner`'s keys go besides the owner: the next
    /// `R - 1` successors on distinct processes other than ours.
    pub(crate) fn replica_targets(&self, owner: &NodeRef) -> Vec<NodeRef> {
        let Some(v) = self.vnodes.iter().find(|v| v.me() == *owner) else {
            return Vec::new();
        };
        let mut out: Vec<NodeRef> = Vec::new();
        for n in v.table().successors() {
            if out.len() + 1 >= self.config.replicas {
                break;
            }
            if n.addr != self.addr && !out.iter().any(|o| o.addr == n.addr) {
                out.push(*n);
            }
        }
        out
    }

    /// How long the owner may take for an operation answered to `reply`:
    /// 9/10 of what its coordinator waits (the answer must still travel).
    fn answer_by(&self, now: Time, reply: &ReplyTo) -> Time {
        let budget = match reply {
            ReplyTo::Remote { budget, .. } => *budget,
            ReplyTo::Local(_) => self.config.kv_timeout * 3 / 5,
        };
        now + budget * 9 / 10
    }

    /// Starts serving `op` as the owner `vnode`.
    pub(crate) fn owner_start(&mut self, now: Time, vnode: NodeRef, op: KvOp, reply: ReplyTo) {
        let key_id = Id::hash(op.key());
        let owns = self.takes_key(&vnode, &key_id);
        let get = matches!(op, KvOp::Get { .. });
        let refused = match owns {
            Ownership::Yes => false,
            Ownership::Maybe => !get && !op.is_direct(),
            Ownership::No => !op.is_direct(),
        };
        if refused {
            self.owner_reply(now, reply, KvResult::WrongOwner);
            return;
        }
        let unsure = owns == Ownership::Maybe;
        if let Some((size, limit)) = self.oversize(&op) {
            let result = KvResult::TooLarge {
                size: size.min(u32::MAX as u64) as u32,
                limit: limit.min(u32::MAX as u64) as u32,
            };
            self.owner_reply(now, reply, result);
            return;
        }
        // Draining before a leave: a write could land behind the
        // transfer's read position and never reach the successor. The
        // coordinator tries again; after our farewell it finds the
        // successor.
        let write = matches!(op, KvOp::Put { .. } | KvOp::Delete { .. });
        if write && (self.kv.leaving.is_some() || self.kv.left.is_some()) {
            self.owner_reply(now, reply, KvResult::WrongOwner);
            return;
        }
        match op {
            KvOp::Put { key, value } => {
                let version = Version {
                    hlc: self.kv.hlc.tick(now),
                    node: vnode.id,
                };
                let record = Record {
                    key_id,
                    key,
                    version,
                    value: Some(value),
                };
                let deadline = self.answer_by(now, &reply);
                self.start_write(now, vnode, record, Some(reply), deadline);
            }
            KvOp::Get { key } => {
                let why = if unsure {
                    ReadFor::MaybeGet
                } else {
                    ReadFor::Get
                };
                self.start_read(now, vnode, (key_id, key), why, reply)
            }
            KvOp::Delete { key } => {
                self.start_read(now, vnode, (key_id, key), ReadFor::Delete, reply)
            }
            KvOp::Deliver {
                key,
                payload,
                want_reply,
            } => self.owner_deliver(now, reply, Some(key), payload, want_reply),
            KvOp::Direct {
                payload,
                want_reply,
            } => self.owner_deliver(now, reply, None, payload, want_reply),
            KvOp::Subscribe { topic } => self.topic_subscribe(now, reply, topic),
            KvOp::Unsubscribe { topic } => self.topic_unsubscribe(now, reply, topic),
            KvOp::Publish {
                topic,
                publications,
            } => self.topic_publish(now, reply, topic, publications),
            KvOp::Notify { items, missed } => self.topic_notify(now, reply, items, missed),
            KvOp::TopicReplica { topics } => self.topic_replica(now, reply, topics),
        }
    }

    /// Stores `record` locally and on the replicas; answers `reply` once
    /// the write quorum holds it.
    /// the write quorum holds it, or says it failed at `deadline` (before
    /// the coordinator gives up waiting).
    fn start_write(
        &mut self,
        now: Time,
        vnode: NodeRef,
        record: Record,
        reply: Option<ReplyTo>,
        deadline: Time,
    ) {
        self.write_attempt(now, vnode, record, reply, 1, deadline);
    }

    /// One attempt of a write: sends `record` to the local store and the
    /// replicas.
    fn write_attempt(
        &mut self,
        now: Time,
        vnode: NodeRef,
        record: Record,
        reply: Option<ReplyTo>,
        attempt: u32,
        deadline: Time,
    ) {
        let targets = self.replica_targets(&vnode);
        let copies = 1 + targets.len();
        let need = match self.write_quorum_for(&vnode, copies) {
            Ok(need) => need,
            Err(needed) => {
                self.counting.error("kv_quorum_unavailable");
                if let Some(r) = reply {
                    let available = copies as u32;
                    let result = KvResult::QuorumUnavailable { available, needed };
                    // Nothing was written: the coordinator may say so.
                    self.owner_reply(now, r, result);
                }
                return;
            }
        };
        let id = self.kv.next();
        for t in &targets {
            let req = self.kv.next();
            self.kv.replica_reqs.insert(req, id);
            let records = vec![record.clone()];
            self.kv_send(vnode, *t, Message::Replicate { req, records });
        }
        self.kv.store(
            StoreKind::Apply {
                records: vec![record.clone()],
            },
            StoreWait::OwnerWrite(id),
        );
        self.kv.owners.insert(
            id,
            OwnerOp::Write {
                reply,
                vnode,
                record,
                need,
                acked: 0,
                outstanding: copies as u32,
                attempt,
                deadline,
            },
        );
        self.kv.deadlines.insert((deadline, KvDeadline::Owner(id)));
    }

    fn start_read(
        &mut self,
        now: Time,
        vnode: NodeRef,
        (key_id, key): (Id, Vec<u8>),
        why: ReadFor,
        reply: ReplyTo,
    ) {
        let delete = why == ReadFor::Delete;
        let unsure = why == ReadFor::MaybeGet;
        let id = self.kv.next();
        // A third of the time: a delete still has to write after.
        let answer_by = self.answer_by(now, &reply);
        let deadline = now + answer_by.saturating_since(now) / 3;
        self.kv.store(
            StoreKind::Get {
                key_id,
                key: key.clone(),
            },
            StoreWait::OwnerRead(id),
        );
        self.kv.owners.insert(
            id,
            OwnerOp::Read {
                reply,
                vnode,
                key,
                delete,
                unsure,
                best: None,
                outstanding: 1,
                asked_replicas: false,
                deadline,
                answer_by,
            },
        );
        self.kv.deadlines.insert((deadline, KvDeadline::Owner(id)));
    }

    /// The write quorum `W` of `vnode`'s writes when `copies` processes can
    /// hold one: `--write-quorum` (default a majority of `R`), counted
    /// against `R`. `Err(W)` if fewer than `W` can, unless the ring really
    /// has no more processes (its successor list came back round to us):
    /// then as many copies as there are.
    fn write_quorum_for(&self, vnode: &NodeRef, copies: usize) -> Result<u32, u32> {
        let r = self.config.replicas.max(1);
        let w = self.config.write_quorum.unwrap_or(r / 2 + 1).clamp(1, r);
        if copies >= w {
            return Ok(w as u32);
        }
        let complete = self
            .vnodes
            .iter()
            .find(|v| v.me() == *vnode)
            .is_some_and(|v| v.table().is_complete());
        if complete {
            Ok(copies as u32)
        } else {
            Err(w as u32)
        }
    }

    /// One copy of write `id` answered: durable (`ok`) or not, and
    /// whether it kept a `newer` version instead of the write's.
    ///
    /// A copy that kept a newer version does not count: the write is
    /// versioned again above it (the hlc has observed it) and sent anew,
    /// within the same deadline, up to [`MAX_WRITE_ATTEMPTS`] times. If the
    /// newer version turns up after the write was acknowledged, the owner
    /// still versions it again, so that the acknowledged value is what
    /// every copy ends up with.
    pub(crate) fn write_answer(&mut self, now: Time, id: u64, ok: bool, newer: Option<Version>) {
        let Some(OwnerOp::Write {
            reply,
            record,
            need,
            acked,
            outstanding,
            ..
        }) = self.kv.owners.get_mut(&id)
        else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        if newer.is_some_and(|v| v > record.version) {
            self.rewrite(now, id);
            return;
        }
        if ok {
            *acked += 1;
        }
        let (acked, need, version, left) = (*acked, *need, record.version, *outstanding);
        if acked >= need
            && let Some(r) = reply.take()
        {
            self.owner_reply(now, r, KvResult::Stored { version, acked });
        }
        if left == 0 {
            self.end_owner(now, id);
        }
    }

    /// The owner's own store could not write `id` (a full disk, an I/O
    /// error): the write fails with `StoreFailed` at once, whatever the
    /// replicas say — an owner that cannot hold its keys cannot vouch for
    /// them.
    pub(crate) fn owner_store_failed(&mut self, now: Time, id: u64) {
        let Some(OwnerOp::Write {
            reply, deadline, ..
        }) = self.kv.owners.remove(&id)
        else {
            return;
        };
        self.kv.deadlines.remove(&(deadline, KvDeadline::Owner(id)));
        self.kv.replica_reqs.retain(|_, owner| *owner != id);
        self.counting.error("kv_store_failed");
        if let Some(r) = reply {
            self.owner_reply(now, r, KvResult::StoreFailed);
        }
    }

    /// Some copy of write `id` holds a newer version: version the write
    /// again above everything seen and start over (or fail the write when
    /// out of attempts or time).
    fn rewrite(&mut self, now: Time, id: u64) {
        let Some(OwnerOp::Write {
            reply,
            vnode,
            mut record,
            attempt,
            deadline,
            need,
            ..
        }) = self.kv.owners.remove(&id)
        else {
            return;
        };
        self.kv.deadlines.remove(&(deadline, KvDeadline::Owner(id)));
        self.kv.replica_reqs.retain(|_, owner| *owner != id);
        self.counting.counters.write_rewrites += 1;
        if attempt >= MAX_WRITE_ATTEMPTS || now >= deadline {
            if let Some(r) = reply {
                let result = KvResult::QuorumFailed {
                    acked: 0,
                    needed: need,
                };
                self.owner_reply(now, r, result);
            }
            return;
        }
        record.version = Version {
            hlc: self.kv.hlc.tick(now),
            node: vnode.id,
        };
        self.write_attempt(now, vnode, record, reply, attempt + 1, deadline);
    }

    /// A read answer for read `id`: our copy or a replica's.
    pub(crate) fn read_answer(&mut self, now: Time, id: u64, record: Option<Record>) {
        let window = self.config.handoff_window;
        let recently_grew = self
            .kv
            .range_grew_at
            .is_some_and(|t| now.saturating_since(t) < window);
        let Some(OwnerOp::Read {
            best,
            outstanding,
            asked_replicas,
            vnode,
            key,
            ..
        }) = self.kv.owners.get_mut(&id)
        else {
            return;
        };
        *best = newest(best.take(), record);
        *outstanding = outstanding.saturating_sub(1);
        if *outstanding > 0 {
            return;
        }
        // Our range grew recently: our copy may be missing (the handoff is
        // still on its way) or stale (we were down and missed writes). Ask
        // the replicas too; the newest version wins.
        if !*asked_replicas && recently_grew {
            *asked_replicas = true;
            let (vnode, key) = (*vnode, key.clone());
            let targets = self.replica_targets(&vnode);
            if !targets.is_empty() {
                if let Some(OwnerOp::Read { outstanding, .. }) = self.kv.owners.get_mut(&id) {
                    *outstanding = targets.len() as u32;
                }
                for t in targets {
                    let req = self.kv.next();
                    self.kv.replica_reqs.insert(req, id);
                    self.kv_send(
                        vnode,
                        t,
                        Message::ReplicaRead {
                            req,
                            key: key.clone(),
                        },
                    );
                }
                return;
            }
        }
        self.finish_read(now, id);
    }

    /// A read has all its answers (or ran out of time): answer the get, or
    /// write the tombstone of a delete.
    fn finish_read(&mut self, now: Time, id: u64) {
        let Some(OwnerOp::Read {
            reply,
            vnode,
            best,
            delete,
            unsure,
            asked_replicas,
            deadline,
            answer_by,
            ..
        }) = self.kv.owners.remove(&id)
        else {
            return;
        };
        self.kv.deadlines.remove(&(deadline, KvDeadline::Owner(id)));
        if asked_replicas && let Some(r) = &best {
            // Repair our own copy with what the replicas had.
            self.kv.store(
                StoreKind::Apply {
                    records: vec![r.clone()],
                },
                StoreWait::Repair,
            );
        }
        let found_any = best.is_some();
        let live = best.filter(|r| !r.is_tombstone());
        match (live, delete) {
            (Some(r), false) => {
                let (value, version) = (r.value.unwrap_or_default(), r.version);
                self.owner_reply(now, reply, KvResult::Found { value, version });
            }
            (Some(r), true) => {
                self.kv.hlc.observe(r.version.hlc);
                let version = Version {
                    hlc: self.kv.hlc.tick(now),
                    node: vnode.id,
                };
                let tombstone = Record {
                    key_id: r.key_id,
                    key: r.key,
                    version,
                    value: None,
                };
                self.start_write(now, vnode, tombstone, Some(reply), answer_by);
            }
            // Not ours for sure: nothing found proves nothing.
            (None, _) if unsure && !found_any => self.owner_reply(now, reply, KvResult::WrongOwner),
            (None, _) => self.owner_reply(now, reply, KvResult::NotFound),
        }
    }

    /// Owner operation `id` reached its deadline.
    pub(crate) fn owner_expired(&mut self, now: Time, id: u64) {
        match self.kv.owners.get(&id) {
            Some(OwnerOp::Read { .. }) => self.finish_read(now, id),
            Some(OwnerOp::Write { .. }) => self.end_owner(now, id),
            Some(OwnerOp::App { .. }) => self.finish_app(now, id, KvResult::Refused),
            None => {}
        }
    }

    /// Forgets write `id`; if it never reached its quorum, says so.
    fn end_owner(&mut self, now: Time, id: u64) {
        let Some(op) = self.kv.owners.remove(&id) else {
            return;
        };
        if let OwnerOp::Write {
            reply,
            need,
            acked,
            deadline,
            ..
        } = op
        {
            if reply.is_none() && (acked as usize) < self.config.replicas {
                self.counting.counters.writes_under_replicated += 1;
            }
            self.kv.deadlines.remove(&(deadline, KvDeadline::Owner(id)));
            self.kv.replica_reqs.retain(|_, owner| *owner != id);
            if let Some(r) = reply {
                self.owner_reply(
                    now,
                    r,
                    KvResult::QuorumFailed {
                        acked,
                        needed: need,
                    },
                );
            }
        }
    }

    /// Sends an owner's result where it belongs.
    /// The process that sent a request an owner serves (its first virtual
    /// node): the sender of an application message, a subscriber.
    pub(crate) fn reply_origin(&self, reply: ReplyTo) -> NodeRef {
        match reply {
            ReplyTo::Local(_) => self.vnodes[0].me(),
            ReplyTo::Remote { to, .. } => to,
        }
    }

    pub(crate) fn owner_reply(&mut self, now: Time, reply: ReplyTo, result: KvResult) {
        match reply {
            ReplyTo::Local(id) => self.client_result(now, id, result),
            ReplyTo::Remote {
                to, me, req, op, ..
            } => {
                self.kv.remember(now, to.addr, op, &result);
                // Tell the coordinator our range, unless we just said we do
                // not own the key.
                let range = match result {
                    KvResult::WrongOwner => None,
                    _ => self
                        .vnodes
                        .iter()
                        .find(|v| v.me() == me)
                        .and_then(|v| v.range()),
                };
                self.kv_send(me, to, Message::KvReply { req, result, range })
            }
        }
    }
}
