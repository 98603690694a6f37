//! The owner of a key: versions writes, stores and replicates them,
//! answers after `W` durable copies; serves reads, asking the replicas when
//! it lacks a key while a handoff may still be running.

use super::{Deadline, OwnerOp, Store, StoreKind, StoreWait, newest};
use crate::io::Cx;
use crate::request::ReplyTo;
use crate::{Id, Message, NodeRef, OpResult, Record, Time, Version};

/// What an owner reads a key for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReadFor {
    Get,
    /// A get of a key that may not be ours (see [`Ownership::Maybe`]).
    MaybeGet,
    /// A delete: read, then write a tombstone if there is something.
    Delete,
}

/// Most versions one write gets before the owner gives up on it (each
/// time a copy holds a newer version than the last one tried).
pub const MAX_WRITE_ATTEMPTS: u32 = 4;

impl Store {
    /// Serves a put as the owner `vnode` of `key_id` (checked by the
    /// request machine): versions it and writes it to the quorum.
    pub fn put(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (key_id, key): (Id, Vec<u8>),
        value: Vec<u8>,
        reply: ReplyTo,
    ) {
        if self.refuses_writes() {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        let version = Version {
            hlc: self.hlc.tick(now),
            node: vnode.id,
        };
        let record = Record {
            key_id,
            key,
            version,
            value: Some(value),
        };
        let deadline = reply.answer_by(now, cx.config);
        self.start_write(cx, vnode, record, Some(reply), deadline);
    }

    /// Serves a get as the owner `vnode`; `unsure`: the key may not be
    /// ours (see `Ownership::Maybe`), and a miss answers `WrongOwner`.
    pub fn get(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        key: (Id, Vec<u8>),
        unsure: bool,
        reply: ReplyTo,
    ) {
        let why = if unsure {
            ReadFor::MaybeGet
        } else {
            ReadFor::Get
        };
        self.start_read(cx, now, vnode, key, why, reply)
    }

    /// Serves a delete as the owner `vnode`: reads the key, then writes a
    /// tombstone if there is something.
    pub fn delete(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        key: (Id, Vec<u8>),
        reply: ReplyTo,
    ) {
        if self.refuses_writes() {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        self.start_read(cx, now, vnode, key, ReadFor::Delete, reply)
    }

    /// Draining before a leave (or gone): a write could land behind the
    /// transfer's read position and never reach the successor. The
    /// coordinator tries again; after our farewell it finds the successor.
    fn refuses_writes(&self) -> bool {
        self.leaving.is_some() || self.left.is_some()
    }

    /// Stores `record` locally and on the replicas; answers `reply` once
    /// the write quorum holds it.
    /// the write quorum holds it, or says it failed at `deadline` (before
    /// the coordinator gives up waiting).
    fn start_write(
        &mut self,
        cx: &mut Cx<'_>,
        vnode: NodeRef,
        record: Record,
        reply: Option<ReplyTo>,
        deadline: Time,
    ) {
        self.write_attempt(cx, vnode, record, reply, 1, deadline);
    }

    /// One attempt of a write: sends `record` to the local store and the
    /// replicas.
    fn write_attempt(
        &mut self,
        cx: &mut Cx<'_>,
        vnode: NodeRef,
        record: Record,
        reply: Option<ReplyTo>,
        attempt: u32,
        deadline: Time,
    ) {
        let targets = cx.ring.replica_targets(&vnode, cx.config.replicas);
        let copies = 1 + targets.len();
        let need = match self.write_quorum_for(cx, &vnode, copies) {
            Ok(need) => need,
            Err(needed) => {
                cx.io.counting.error("kv_quorum_unavailable");
                if let Some(r) = reply {
                    let available = copies as u32;
                    let result = OpResult::QuorumUnavailable { available, needed };
                    // Nothing was written: the coordinator may say so.
                    cx.io.answer(r, result);
                }
                return;
            }
        };
        let id = cx.io.next();
        for t in &targets {
            let req = cx.io.next();
            self.replica_reqs.insert(req, id);
            let records = vec![record.clone()];
            cx.io.send(vnode, *t, Message::Replicate { req, records });
        }
        self.store_op(
            cx,
            StoreKind::Apply {
                records: vec![record.clone()],
            },
            StoreWait::OwnerWrite(id),
        );
        self.owners.insert(
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
        self.deadlines.insert((deadline, Deadline::Owner(id)));
    }

    fn start_read(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (key_id, key): (Id, Vec<u8>),
        why: ReadFor,
        reply: ReplyTo,
    ) {
        let delete = why == ReadFor::Delete;
        let unsure = why == ReadFor::MaybeGet;
        let id = cx.io.next();
        // A third of the time: a delete still has to write after.
        let answer_by = reply.answer_by(now, cx.config);
        let deadline = now + answer_by.saturating_since(now) / 3;
        self.store_op(
            cx,
            StoreKind::Get {
                key_id,
                key: key.clone(),
            },
            StoreWait::OwnerRead(id),
        );
        self.owners.insert(
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
        self.deadlines.insert((deadline, Deadline::Owner(id)));
    }

    /// The write quorum `W` of `vnode`'s writes when `copies` processes can
    /// hold one: `--write-quorum` (default a majority of `R`), counted
    /// against `R`. `Err(W)` if fewer than `W` can, unless the ring really
    /// has no more processes (its successor list came back round to us):
    /// then as many copies as there are.
    fn write_quorum_for(&self, cx: &Cx<'_>, vnode: &NodeRef, copies: usize) -> Result<u32, u32> {
        let r = cx.config.replicas.max(1);
        let w = cx.config.write_quorum.unwrap_or(r / 2 + 1).clamp(1, r);
        if copies >= w {
            return Ok(w as u32);
        }
        let complete = cx
            .ring
            .vnodes()
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
    pub(super) fn write_answer(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        ok: bool,
        newer: Option<Version>,
    ) {
        let Some(OwnerOp::Write {
            reply,
            record,
            need,
            acked,
            outstanding,
            ..
        }) = self.owners.get_mut(&id)
        else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        if newer.is_some_and(|v| v > record.version) {
            self.rewrite(cx, now, id);
            return;
        }
        if ok {
            *acked += 1;
        }
        let (acked, need, version, left) = (*acked, *need, record.version, *outstanding);
        if acked >= need
            && let Some(r) = reply.take()
        {
            cx.io.answer(r, OpResult::Stored { version, acked });
        }
        if left == 0 {
            self.end_owner(cx, id);
        }
    }

    /// The owner's own store could not write `id` (a full disk, an I/O
    /// error): the write fails with `StoreFailed` at once, whatever the
    /// replicas say — an owner that cannot hold its keys cannot vouch for
    /// them.
    pub(super) fn owner_store_failed(&mut self, cx: &mut Cx<'_>, id: u64) {
        let Some(OwnerOp::Write {
            reply, deadline, ..
        }) = self.owners.remove(&id)
        else {
            return;
        };
        self.deadlines.remove(&(deadline, Deadline::Owner(id)));
        self.replica_reqs.retain(|_, owner| *owner != id);
        cx.io.counting.error("kv_store_failed");
        if let Some(r) = reply {
            cx.io.answer(r, OpResult::StoreFailed);
        }
    }

    /// Some copy of write `id` holds a newer version: version the write
    /// again above everything seen and start over (or fail the write when
    /// out of attempts or time).
    fn rewrite(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(OwnerOp::Write {
            reply,
            vnode,
            mut record,
            attempt,
            deadline,
            need,
            ..
        }) = self.owners.remove(&id)
        else {
            return;
        };
        self.deadlines.remove(&(deadline, Deadline::Owner(id)));
        self.replica_reqs.retain(|_, owner| *owner != id);
        cx.io.counting.counters.write_rewrites += 1;
        if attempt >= MAX_WRITE_ATTEMPTS || now >= deadline {
            if let Some(r) = reply {
                let result = OpResult::QuorumFailed {
                    acked: 0,
                    needed: need,
                };
                cx.io.answer(r, result);
            }
            return;
        }
        record.version = Version {
            hlc: self.hlc.tick(now),
            node: vnode.id,
        };
        self.write_attempt(cx, vnode, record, reply, attempt + 1, deadline);
    }

    /// A read answer for read `id`: our copy or a replica's.
    pub(super) fn read_answer(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        record: Option<Record>,
    ) {
        let window = cx.config.handoff_window;
        let recently_grew = self
            .range_grew_at
            .is_some_and(|t| now.saturating_since(t) < window);
        let Some(OwnerOp::Read {
            best,
            outstanding,
            asked_replicas,
            unsure,
            vnode,
            key,
            ..
        }) = self.owners.get_mut(&id)
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
        // the replicas too; the newest version wins. Likewise on a miss
        // while we know no predecessor (`unsure`, or a range not known yet):
        // a node that just joined has not heard from its predecessor, and
        // the write it missed sits on its successor — the previous owner,
        // which acknowledged it alone and is still handing the range over.
        let range_unknown = cx.ring.range_of(vnode).is_none();
        let missed_unsure = best.is_none() && (*unsure || range_unknown);
        if !*asked_replicas && (recently_grew || missed_unsure) {
            *asked_replicas = true;
            let (vnode, key) = (*vnode, key.clone());
            let targets = cx.ring.replica_targets(&vnode, cx.config.replicas);
            if !targets.is_empty() {
                if let Some(OwnerOp::Read { outstanding, .. }) = self.owners.get_mut(&id) {
                    *outstanding = targets.len() as u32;
                }
                for t in targets {
                    let req = cx.io.next();
                    self.replica_reqs.insert(req, id);
                    cx.io.send(
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
        self.finish_read(cx, now, id);
    }

    /// A read has all its answers (or ran out of time): answer the get, or
    /// write the tombstone of a delete.
    fn finish_read(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
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
        }) = self.owners.remove(&id)
        else {
            return;
        };
        self.deadlines.remove(&(deadline, Deadline::Owner(id)));
        if asked_replicas && let Some(r) = &best {
            // Repair our own copy with what the replicas had.
            self.store_op(
                cx,
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
                cx.io.answer(reply, OpResult::Found { value, version });
            }
            (Some(r), true) => {
                self.hlc.observe(r.version.hlc);
                let version = Version {
                    hlc: self.hlc.tick(now),
                    node: vnode.id,
                };
                let tombstone = Record {
                    key_id: r.key_id,
                    key: r.key,
                    version,
                    value: None,
                };
                self.start_write(cx, vnode, tombstone, Some(reply), answer_by);
            }
            // Not ours for sure: nothing found proves nothing.
            (None, _) if unsure && !found_any => cx.io.answer(reply, OpResult::WrongOwner),
            (None, _) => cx.io.answer(reply, OpResult::NotFound),
        }
    }

    /// Owner operation `id` reached its deadline.
    pub(super) fn owner_expired(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        match self.owners.get(&id) {
            Some(OwnerOp::Read { .. }) => self.finish_read(cx, now, id),
            Some(OwnerOp::Write { .. }) => self.end_owner(cx, id),
            None => {}
        }
    }

    /// Forgets write `id`; if it never reached its quorum, says so.
    fn end_owner(&mut self, cx: &mut Cx<'_>, id: u64) {
        let Some(op) = self.owners.remove(&id) else {
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
            if reply.is_none() && (acked as usize) < cx.config.replicas {
                cx.io.counting.counters.writes_under_replicated += 1;
            }
            self.deadlines.remove(&(deadline, Deadline::Owner(id)));
            self.replica_reqs.retain(|_, owner| *owner != id);
            if let Some(r) = reply {
                cx.io.answer(
                    r,
                    OpResult::QuorumFailed {
                        acked,
                        needed: need,
                    },
                );
            }
        }
    }
}
