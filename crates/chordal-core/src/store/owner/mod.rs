//! The owner of a key: versions writes, stores and replicates them,
//! answers after `W` durable copies; decides conditional writes and
//! updates against the current record, one at a time per key (`hot.rs`);
//! serves reads from one copy or a quorum, asking the replicas when it
//! lacks a key while a handoff may still be running, and repairs the
//! copies it found stale.
//!
//! `write.rs` holds the write path, `read.rs` the read path; here is
//! what both use: the decider's term, the end of an owner operation.

use super::hot::{Waiter, Waiting};
use super::{Asker, Attempt, Deadline, OwnerOp, ReadFor, Store, StoreKind, StoreWait, newest};
use crate::io::Cx;
use crate::request::{OpName, ReplyTo};
use crate::write::{Decision, Intent, Then, decide};
use crate::{
    Answered, Consistency, Done, Id, KeyRange, Message, NodeRef, OpLog, OpResult, Record, Retried,
    Time, Version,
};

mod read;
mod write;

/// A write of `key` reached its quorum or ended without: one fewer
/// unacknowledged.
fn settle(unacked: &mut crate::fasthash::FastMap<Vec<u8>, u32>, key: &[u8]) {
    if let Some(n) = unacked.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            unacked.remove(key);
        }
    }
}

/// Has a read quorum (one that meets every majority) of each of
/// `quorums` been `heard` from?
fn quorums_met(quorums: &[Vec<std::net::SocketAddr>], heard: &[std::net::SocketAddr]) -> bool {
    quorums.iter().all(|q| {
        let yes = q.iter().filter(|p| heard.contains(p)).count();
        yes >= crate::authority::read_quorum(q.len())
    })
}

/// The term `vnode` decides `key_id` in now: its lease's under authority,
/// 0 without; `None` if it holds no valid lease.
pub(super) fn decider_term(cx: &Cx<'_>, vnode: &NodeRef, key_id: &Id, now: Time) -> Option<u64> {
    if !cx.config.authority {
        return Some(0);
    }
    cx.authority.lease(vnode, key_id, now).ok().map(|l| l.term)
}

/// The answer for a key no term lets us decide: `NotReady` (retryable:
/// a term is on its way), or `StoreFailed` while our storage refuses the
/// promise table — no term of ours can begin before space comes back.
pub(crate) fn not_ready(cx: &Cx<'_>) -> OpResult {
    if cx.authority.saves_failing() {
        OpResult::StoreFailed
    } else {
        OpResult::NotReady
    }
}

/// Most versions one write gets before the owner gives up on it (each
/// time a copy holds a newer version than the last one tried).
pub const MAX_WRITE_ATTEMPTS: u32 = 4;

impl Store {
    /// A write of ours ended without its quorum (`unacked`: still counted
    /// as in flight). Under authority it may sit on some copies, ours
    /// included, without being on a quorum: nothing may read it from our
    /// copy as if it were. The vnode gives its term up and prepares a new
    /// one, in which every record of the range is older than the term —
    /// and a read of such a record writes it back to a quorum first.
    fn write_failed(&mut self, cx: &mut Cx<'_>, vnode: &NodeRef, record: &Record) {
        if cx.config.authority {
            cx.io.counting.error("kv_write_failed_new_term");
            cx.authority
                .deposed(vnode, &record.key_id, record.version.term, Time::ZERO);
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
            vnode,
            record,
            others,
            unacked,
            ..
        } = op
        {
            if unacked {
                for r in std::iter::once(&record).chain(others.iter()) {
                    settle(&mut self.unacked, &r.key);
                }
                self.write_failed(cx, &vnode, &record);
            }
            if reply.is_none() && (acked as usize) < cx.config.replicas {
                cx.io.counting.counters.writes_under_replicated += 1;
            }
            self.deadlines.remove(&(deadline, Deadline::Owner(id)));
            self.forget_replica_reqs(id);
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

/// What a write that answers as `then` says, for its entry in the
/// record's log (see [`OpLog`]).
fn answered(then: &Then) -> Answered {
    match then {
        Then::Stored | Then::Restored(_) => Answered::Stored,
        Then::Updated(n) => Answered::Updated(*n),
        Then::Replaced(_) | Then::Written | Then::ReadBack | Then::Answer(_) | Then::Batch(_) => {
            Answered::Unrepeatable
        }
    }
}

/// The answer to a retry whose write the record's log holds (`done`):
/// what the write answered then, acknowledged by the quorum our lease's
/// config needs (the caller writes the record back first when it is not
/// known to be on one).
fn recalled(cx: &Cx<'_>, vnode: &NodeRef, key_id: &Id, now: Time, done: &Done) -> OpResult {
    let acked = match cx.authority.lease(vnode, key_id, now) {
        Ok(l) => crate::authority::majority(1 + l.replicas.len()) as u32,
        Err(_) => 1,
    };
    let version = done.version;
    match done.answered {
        Answered::Stored => OpResult::Stored { version, acked },
        Answered::Updated(number) => OpResult::Updated {
            version,
            acked,
            number,
        },
        Answered::Unrepeatable => OpResult::OutcomeUnknown,
    }
}

/// A `ReplicaRead` of operation `id` to `target`.
fn read_req(id: u64, target: NodeRef) -> super::outgoing::ReplicaReq {
    super::outgoing::ReplicaReq {
        target,
        ops: vec![(id, 0, 0)],
    }
}

/// `record` and `others`, as one batch of records to apply.
fn all_of(record: &Record, others: &[Record]) -> Vec<Record> {
    let mut all = Vec::with_capacity(1 + others.len());
    all.push(record.clone());
    all.extend_from_slice(others);
    all
}

/// What a get answers for `r`, a live record: its value, or `WrongType`
/// for a collection's header (its elements are other records).
fn found(r: Record) -> OpResult {
    match r.kind {
        crate::Kind::String => OpResult::Found {
            value: r.value.unwrap_or_default(),
            version: r.version,
            expires: r.expires,
        },
        _ => OpResult::WrongType,
    }
}
