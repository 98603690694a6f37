//! An owner's requests to its replicas, and the writes on their way there.
//!
//! Every write an owner decides for one replica between two takings of the
//! process's messages (one pass of the driver: all the requests that
//! arrived together) leaves in one `Replicate`: the replica stores them in
//! one apply and answers once, saying for each record it did not take
//! which newer version it held. The owner then answers each write from the
//! part of the answer about its own records. Under load this divides the
//! replication messages by the number of writes per pass; alone, a write
//! leaves as soon as the driver takes the messages, as before.

use super::Store;
use crate::io::Cx;
use crate::{Message, NodeRef, Record, Version};

/// Most bytes of records one batched `Replicate` carries (a write larger
/// than this goes alone): well inside the peer frame limit.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Most writes one `Replicate` carries.
pub const MAX_BATCH_WRITES: usize = 64;

/// A request to a replica (`Replicate` or `ReplicaRead`) and the owner
/// operations waiting for its answer.
#[derive(Debug)]
pub(super) struct ReplicaReq {
    /// The replica asked.
    pub target: NodeRef,
    /// Each operation, with the index of its first record in the message
    /// and how many it sent (a read: none).
    pub ops: Vec<(u64, u32, u32)>,
}

/// A `Replicate` being filled during this pass.
#[derive(Debug)]
pub(super) struct Outgoing {
    vnode: NodeRef,
    target: NodeRef,
    fence: u64,
    req: u64,
    records: Vec<Record>,
    bytes: usize,
    writes: usize,
}

/// About what a record costs on the wire.
fn size(r: &Record) -> usize {
    64 + r.key.len() + r.value.as_ref().map_or(0, Vec::len)
}

impl Store {
    /// Sends `records` of write `id` (decided by `vnode` under `fence`) to
    /// replica `target`: with the other writes of this pass for the same
    /// replica, vnode and fence, sent when the process's messages are next
    /// taken ([`Store::flush_replicates`]).
    pub(super) fn replicate(
        &mut self,
        cx: &mut Cx<'_>,
        (vnode, target, fence): (NodeRef, NodeRef, u64),
        id: u64,
        records: Vec<Record>,
    ) {
        let bytes: usize = records.iter().map(size).sum();
        let open = self.outgoing.iter().position(|o| {
            o.vnode == vnode
                && o.target == target
                && o.fence == fence
                && o.writes < MAX_BATCH_WRITES
                && o.bytes + bytes <= MAX_BATCH_BYTES
        });
        let o = match open {
            Some(i) => &mut self.outgoing[i],
            None => {
                let req = cx.io.next();
                self.replica_reqs.insert(
                    req,
                    ReplicaReq {
                        target,
                        ops: Vec::new(),
                    },
                );
                self.outgoing.push(Outgoing {
                    vnode,
                    target,
                    fence,
                    req,
                    records: Vec::new(),
                    bytes: 0,
                    writes: 0,
                });
                self.outgoing.last_mut().expect("just pushed")
            }
        };
        let first = o.records.len() as u32;
        let count = records.len() as u32;
        o.records.extend(records);
        o.bytes += bytes;
        o.writes += 1;
        if let Some(r) = self.replica_reqs.get_mut(&o.req) {
            r.ops.push((id, first, count));
        }
        // A copy in this process (not the ring's way, but possible with
        // an authority config) is delivered within the pass: no waiting.
        if target.addr == cx.ring.addr() {
            let at = self.outgoing.iter().position(|o| o.target == target);
            if let Some(o) = at.map(|i| self.outgoing.swap_remove(i)) {
                self.send_outgoing(cx, o);
            }
        }
    }

    /// Sends every `Replicate` filled this pass. Call whenever the
    /// process's messages are taken: `Node::poll_transmit` does.
    pub fn flush_replicates(&mut self, cx: &mut Cx<'_>) {
        for o in std::mem::take(&mut self.outgoing) {
            self.send_outgoing(cx, o);
        }
    }

    fn send_outgoing(&mut self, cx: &mut Cx<'_>, o: Outgoing) {
        // Every write in it may have ended meanwhile (a failed local
        // store, a deadline): nothing to send then.
        if self
            .replica_reqs
            .get(&o.req)
            .is_none_or(|r| r.ops.is_empty())
        {
            self.replica_reqs.remove(&o.req);
            return;
        }
        let msg = Message::Replicate {
            req: o.req,
            records: o.records,
            fence: o.fence,
        };
        cx.io.send(o.vnode, o.target, msg);
    }

    /// Are writes waiting in [`Store::flush_replicates`]?
    pub fn has_replicates(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Forgets operation `id`'s requests to replicas (it ended): says
    /// whether any was still unanswered.
    pub(super) fn forget_replica_reqs(&mut self, id: u64) -> bool {
        let mut unanswered = false;
        self.replica_reqs.retain(|_, r| {
            let before = r.ops.len();
            r.ops.retain(|(op, _, _)| *op != id);
            unanswered |= r.ops.len() != before;
            !r.ops.is_empty()
        });
        unanswered
    }

    /// A replica's answer to `Replicate` `req`: each write it carried
    /// hears whether it is stored, and the newest version the replica
    /// kept instead of one of its records. Returns false if `req` was no
    /// write's (a transfer's page).
    pub(super) fn replicate_acked(
        &mut self,
        cx: &mut Cx<'_>,
        now: crate::Time,
        req: u64,
        (ok, fenced): (bool, u64),
        newer: &[(u32, Version)],
    ) -> bool {
        let Some(r) = self.replica_reqs.remove(&req) else {
            return false;
        };
        for (id, first, count) in r.ops {
            let newer = newer
                .iter()
                .filter(|(i, _)| (first..first + count).contains(i))
                .map(|(_, v)| *v)
                .max();
            if fenced != 0 {
                self.write_fenced(cx, now, id, fenced);
            }
            self.write_answer(cx, now, id, ok, newer);
        }
        true
    }
}
