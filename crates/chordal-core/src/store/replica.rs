//! A replica: stores what an owner replicates, and answers an owner's read.

use super::{Store, StoreKind, StoreWait};
use crate::io::Cx;
use crate::{Message, NodeRef, Record, Target};

/// Most `Replicate`s a node stores for others at once: transfers keep a
/// few pages in flight each, so this is many senders' windows.
pub const MAX_REPLICA_APPLIES: usize = 256;

impl Store {
    /// `Replicate` from an owner: store the records that are newer.
    pub(super) fn replica_apply(
        &mut self,
        cx: &mut Cx<'_>,
        (from, to): (NodeRef, Target),
        req: u64,
        records: Vec<Record>,
        fence: u64,
    ) {
        let me = cx.ring.addressee(to.id);
        let nack = |fenced: u64, busy: bool| Message::ReplicateAck {
            req,
            ok: false,
            newer: Vec::new(),
            busy,
            fenced,
        };
        // A record whose id is not its key's hash would be stored in the
        // wrong place: refuse the whole message.
        // After our farewell we keep no new copy: we are about to go.
        if records.iter().any(|r| !r.is_consistent()) || self.gone_from_ring() {
            cx.io.send(me, from, nack(0, false));
            return;
        }
        // The fence: an owner deposed by a later term may not add a copy
        // of what it decided.
        let fenced = cx.authority.fence(fence, &records, &from);
        if fenced != 0 {
            cx.io.counting.error("kv_write_fenced");
            cx.io.send(me, from, nack(fenced, false));
            return;
        }
        if self.replica_applies >= MAX_REPLICA_APPLIES {
            // Overloaded: say so (the sender backs off and sends again)
            // rather than queue without bound or drop silently.
            cx.io.send(me, from, nack(0, true));
            return;
        }
        for r in &records {
            self.hlc.observe(r.version.hlc);
        }
        self.replica_applies += 1;
        // The fence is checked again when the apply is durable: a term
        // granted meanwhile may have read this key without it.
        let keys = (fence != 0).then(|| records.iter().map(|r| r.key_id).collect());
        let wait = StoreWait::ReplicaApply {
            to: from,
            me,
            req,
            fence: keys.map(|k| (fence, k)),
        };
        self.store_op(cx, StoreKind::Apply { records }, wait);
    }

    /// `ReplicaRead` from an owner: read our copy.
    pub(super) fn replica_read(
        &mut self,
        cx: &mut Cx<'_>,
        (from, to): (NodeRef, Target),
        req: u64,
        key: Vec<u8>,
    ) {
        let me = cx.ring.addressee(to.id);
        let key_id = crate::Id::of_key(&key);
        let wait = StoreWait::ReplicaRead { to: from, me, req };
        self.store_op(cx, StoreKind::Get { key_id, key }, wait);
    }
}
