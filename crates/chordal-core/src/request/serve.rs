//! The serving side of a request: admitting a `Request` from a
//! coordinator elsewhere and sending the owner's answer back.

use super::{OpName, ReplyTo, Requests, oversize};
use crate::config::Config;
use crate::io::{Cx, Serve};
use crate::ring::{Ownership, Ring};
use crate::{Message, NodeRef, OpResult, Operation, Target, Time};
use std::time::Duration;

impl Requests {
    /// A `Request` arrived. A retry of an operation already answered
    /// gets that answer again; past `max_kv_ops` operations in flight
    /// (`in_flight`, the whole process's) it is refused `Overloaded`; for
    /// an id we do not host, `WrongOwner`. Otherwise it is handed on
    /// (`Io::serve`) to the machine that serves its operation.
    pub fn handle_request(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (from, to): (NodeRef, Target),
        (req, op, op_id, timeout_ms, retry): (u64, Operation, u64, u32, bool),
        in_flight: usize,
    ) {
        let me = cx.ring.addressee(to.id);
        if from.addr != cx.ring.addr() {
            let forget_before = now.saturating_sub(cx.config.kv_timeout);
            self.remember_requester(now, from, forget_before);
        }
        let budget = match timeout_ms {
            0 => cx.config.kv_timeout * 3 / 5,
            ms => Duration::from_millis(ms as u64).min(cx.config.kv_timeout),
        };
        // Only store operations are remembered: their retries must not act
        // twice.
        let store_op = op.is_store();
        let named = (store_op && op_id != 0).then(|| (op_id, op.key_id()));
        let reply = ReplyTo::Remote {
            to: from,
            me,
            req,
            op: named,
            budget,
        };
        if let Some(result) = self.recalled(now, from.addr, named) {
            // A retry of an operation we already answered.
            self.answer(cx, now, reply, result);
            return;
        }
        let serving = named.map(|(op, key)| (from.addr, op, key));
        if serving.is_some_and(|s| self.serving.contains(&s)) {
            // A retry of an operation we are still serving (its first
            // attempt was slow, not lost): serving it again could apply it
            // twice. Busy: the coordinator asks again, and then gets the
            // answer remembered.
            self.answer(cx, now, reply, OpResult::Overloaded);
            return;
        }
        if in_flight >= cx.config.max_kv_ops {
            // Overloaded: say so (the coordinator backs off) rather than
            // queue without bound or drop silently.
            cx.io.counting.error("kv_overloaded");
            self.answer(cx, now, reply, OpResult::Overloaded);
            return;
        }
        match to.id {
            Some(id) if cx.ring.vnode_by_id(&id).is_some() => {
                self.serving.extend(serving);
                cx.io.serve.push_back(Serve {
                    vnode: NodeRef::new(id, cx.ring.addr()),
                    op,
                    reply,
                    name: named.map(|(id, _)| OpName { id, retry }),
                })
            }
            _ => self.answer(cx, now, reply, OpResult::WrongOwner),
        }
    }

    /// Sends an owner's `result` where it belongs: to the local operation,
    /// or back to the remote coordinator with our range (remembered, so a
    /// retry gets the same answer).
    pub fn answer(&mut self, cx: &mut Cx<'_>, now: Time, reply: ReplyTo, result: OpResult) {
        match reply {
            ReplyTo::Local(id) => self.client_result(cx, now, id, result),
            ReplyTo::Remote {
                to, me, req, op, ..
            } => {
                if let Some((op, key)) = op {
                    self.serving.remove(&(to.addr, op, key));
                }
                self.remember(now, to.addr, op, &result);
                // Tell the coordinator our range, unless we just said we do
                // not own the key.
                let range = match result {
                    OpResult::WrongOwner => None,
                    _ => cx.ring.range_of(&me),
                };
                cx.io.send(me, to, Message::Reply { req, result, range })
            }
        }
    }
}

/// May our vnode `vnode` serve `op`? An operation for a key must be for one
/// the vnode owns (a get also for one it may own, `Ownership::Maybe`, or
/// while its range is not known yet, `Ownership::Unknown`, when any other
/// operation waits: `NotReady`; a direct one for the node itself needs no
/// key), and within the size limits. The refusal is the answer to send.
pub(crate) fn admit(
    config: &Config,
    ring: &Ring,
    vnode: &NodeRef,
    op: &Operation,
) -> Result<Ownership, OpResult> {
    let owns = ring.takes_key(vnode, &op.key_id());
    let get = matches!(op, Operation::Get { .. });
    if owns == Ownership::Unknown && !get && !op.is_direct() {
        return Err(OpResult::NotReady);
    }
    let refused = match owns {
        Ownership::Yes | Ownership::Unknown => false,
        Ownership::Maybe => !get && !op.is_direct(),
        Ownership::No => !op.is_direct(),
    };
    if refused {
        return Err(OpResult::WrongOwner);
    }
    if op.names_reserved_key() {
        // Element keys are the collections' own (see `crate::collection`).
        return Err(OpResult::Refused);
    }
    if let Some((size, limit)) = oversize(config, op) {
        return Err(OpResult::TooLarge {
            size: size.min(u32::MAX as u64) as u32,
            limit: limit.min(u32::MAX as u64) as u32,
        });
    }
    Ok(owns)
}
