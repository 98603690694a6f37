//! The coordinator: takes an operation, finds the key's owner and gets the
//! answer from it (retrying when ownership moved under it).

use super::{ClientOp, Deadline, OpName, ReplyTo, Requests, oversize};
use crate::io::{Cx, Serve};
use crate::outcome::Answer;
use crate::{
    LookupError, LookupId, LookupMode, LookupResult, Message, NodeRef, OpError, OpResult,
    Operation, Outcome, Time,
};
use std::net::SocketAddr;

/// Lookups (and owner redirects) one operation may use before giving up.
/// From the third on, attempts are a request timeout apart (see
/// `retry_client`), so six span a few stabilization rounds.
const MAX_ATTEMPTS: u32 = 6;

impl Requests {
    /// Starts operation `id` (a number from `Io::next`) for the owner of
    /// its key, or for `target` itself. `in_flight` counts every
    /// operation of the process (bounded by `max_kv_ops`). The result comes
    /// back in `Io::done`.
    pub fn start(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        op: Operation,
        target: Option<NodeRef>,
        in_flight: usize,
    ) {
        if let Some((size, limit)) = oversize(cx.config, &op) {
            cx.io
                .done
                .push_back((id, Err(OpError::TooLarge { size, limit })));
        } else if !cx.ring.any_joined() {
            cx.io.done.push_back((id, Err(OpError::NotJoined)));
        } else if in_flight >= cx.config.max_kv_ops {
            cx.io.done.push_back((id, Err(OpError::Overloaded)));
        } else {
            let deadline = now + cx.config.kv_timeout;
            let key_id = op.key_id();
            self.clients.insert(
                id,
                ClientOp {
                    op,
                    key_id,
                    attempts: 0,
                    deadline,
                    last_error: None,
                    target,
                    refused: false,
                    retry: false,
                },
            );
            self.deadlines.insert((deadline, Deadline::Client(id)));
            self.route_client(cx, now, id);
        }
    }

    /// Sends operation `id` towards its owner: straight to a local virtual
    /// node that owns the key, else through a lookup.
    fn route_client(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.attempts += 1;
        c.refused = false;
        let name = OpName {
            id: self.op_base.wrapping_add(id),
            retry: c.retry,
        };
        if let Some(target) = c.target {
            // A direct message goes to its node once: if that node is gone
            // there is nobody else to ask.
            if c.attempts > 1 {
                self.finish_client(cx, id, Err(OpError::Unreachable));
                return;
            }
            let op = c.op.clone();
            if target.addr == cx.ring.addr() {
                serve_locally(cx, target, op, id, name);
            } else {
                self.send_to_owner(cx, now, id, target, op);
            }
            return;
        }
        // Waiting for a lease is bounded by the deadline (and the pause
        // between tries), not by the attempts.
        if c.attempts > MAX_ATTEMPTS && c.last_error != Some(OpError::NotReady) {
            let error = c.last_error.unwrap_or(OpError::Redirects);
            self.finish_client(cx, id, Err(error));
            return;
        }
        let (key_id, op, first_try) = (c.key_id, c.op.clone(), c.attempts == 1);
        let redirected = c.last_error == Some(OpError::Redirects);
        if let Some(owner) = cx.ring.owning_vnode(&key_id) {
            serve_locally(cx, owner, op, id, name);
            return;
        }
        // One hop: straight to the owner the membership table names —
        // unless that table just proved wrong for this key (`WrongOwner`):
        // then a Chord lookup, whose answer the table learns.
        let addr = cx.ring.addr();
        if !redirected && let Some(owner) = cx.ring.onehop_owner(&key_id).filter(|o| o.addr != addr)
        {
            self.send_to_owner(cx, now, id, owner, op);
            return;
        }
        // The first try may use an owner we heard from recently; a retry
        // (after `WrongOwner`) always looks up.
        if first_try && let Some(owner) = self.cached_owner(now, &key_id) {
            self.send_to_owner(cx, now, id, owner, op);
            return;
        }
        let lookup = cx.ring.start_lookup(now, key_id, LookupMode::Recursive);
        self.lookups.insert(lookup, id);
    }

    /// The lookup for an operation finished (`lookup` is one of ours: see
    /// [`Requests::owns_lookup`]).
    pub fn lookup_done(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        lookup: LookupId,
        result: Result<LookupResult, LookupError>,
    ) {
        let Some(id) = self.lookups.remove(&lookup) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let owner = match result {
            Ok(r) => r.owner,
            // A node that is not part of a ring cannot do better later.
            Err(LookupError::NotJoined) => {
                self.finish_client(cx, id, Err(OpError::Lookup(LookupError::NotJoined)));
                return;
            }
            // Dead hops, a ring in flux: try again shortly.
            Err(e) => {
                c.last_error = Some(OpError::Lookup(e));
                self.retry_client(cx, now, id);
                return;
            }
        };
        let op = c.op.clone();
        if owner.addr == cx.ring.addr() {
            let name = OpName {
                id: self.op_base.wrapping_add(id),
                retry: c.retry,
            };
            serve_locally(cx, owner, op, id, name);
            return;
        }
        self.send_to_owner(cx, now, id, owner, op);
    }

    /// Sends operation `id` to `owner`. If no answer comes within 3/5 of
    /// the operation's time (or what is left of it), the owner is presumed
    /// dead: forgotten, and the operation looked up again. The request
    /// says how long we wait, so that the owner answers (or gives up)
    /// within it, and names the operation, so that the owner answers a
    /// retry as it answered the first try.
    fn send_to_owner(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        owner: NodeRef,
        op: Operation,
    ) {
        let req = cx.io.next();
        let timeout = cx.config.kv_timeout;
        let left = self
            .clients
            .get(&id)
            .map_or(timeout, |c| c.deadline.saturating_since(now));
        let wait = (timeout * 3 / 5).min(left);
        let deadline = now + wait;
        let retry = self.clients.get(&id).is_some_and(|c| c.retry);
        self.requests.insert(req, (id, owner, deadline, false));
        self.deadlines.insert((deadline, Deadline::Request(req)));
        let msg = Message::Request {
            req,
            op,
            op_id: self.op_base.wrapping_add(id),
            timeout_ms: wait.as_millis().clamp(1, u32::MAX as u128) as u32,
            retry,
        };
        cx.io.send(cx.ring.primary().me(), owner, msg);
    }

    /// Runs the deadlines due at `now`.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Time) {
        while let Some(&(at, what)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            match what {
                Deadline::Client(id) => {
                    self.lookups.retain(|_, c| *c != id);
                    self.requests.retain(|_, (c, _, _, _)| *c != id);
                    // Refused (`NotReady`, `Overloaded`) and waiting to ask
                    // again: nothing was done, and the client may know it
                    // (and may retry safely) — unless an earlier attempt
                    // may have been. Otherwise an attempt may be under
                    // way: the outcome is unknown.
                    let error = match self.clients.get(&id) {
                        Some(c) if c.refused && !c.retry => {
                            c.last_error.unwrap_or(OpError::NotReady)
                        }
                        _ => OpError::Timeout,
                    };
                    self.finish_client(cx, id, Err(error));
                }
                Deadline::Request(req) => self.request_expired(cx, now, req),
                Deadline::Retry(id) => self.route_client(cx, now, id),
            }
        }
    }

    /// Request `req` went unanswered: its owner is presumed dead.
    fn request_expired(&mut self, cx: &mut Cx<'_>, now: Time, req: u64) {
        let Some((id, owner, _, _)) = self.requests.remove(&req) else {
            return;
        };
        self.forget_owner(&owner);
        cx.ring.forget(now, &owner);
        self.retry_or_give_up(cx, now, id);
    }

    /// An attempt of operation `id` ended without an answer (the owner
    /// went silent or away): try again. Under authority a write the
    /// silent owner may have applied goes again as a retry: whoever owns
    /// the key then answers it from the record's log of writes (the same
    /// operation id) rather than apply it twice, or says the outcome is
    /// unknown.
    fn retry_or_give_up(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if cx.config.authority && c.op.is_store_write() {
            c.retry = true;
            cx.io.counting.error("kv_write_retried");
        }
        self.route_client(cx, now, id);
    }

    /// Peers matching `dead` failed: operations waiting on them try again
    /// through a fresh lookup, and the owner cache forgets them.
    /// `refused`: the peer could not be reached at all (a connection
    /// refused, a handshake that failed): a request no closed connection
    /// carried never arrived, so even a write may go to the next owner
    /// (a node restarted on another address leaves its old one refusing).
    pub fn peers_failed(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        refused: bool,
        dead: impl Fn(&NodeRef) -> bool,
    ) {
        self.owner_cache.retain(|_, (_, owner, _)| !dead(owner));
        let stuck: Vec<(u64, u64, Time, bool)> = self
            .requests
            .iter()
            .filter(|(_, (_, owner, _, _))| dead(owner))
            .map(|(req, (id, _, deadline, carried))| (*req, *id, *deadline, *carried))
            .collect();
        for (req, id, deadline, carried) in stuck {
            self.requests.remove(&req);
            self.deadlines.remove(&(deadline, Deadline::Request(req)));
            if refused && !carried {
                self.route_client(cx, now, id);
            } else {
                self.retry_or_give_up(cx, now, id);
            }
        }
    }

    /// A connection to `addr` closed, for whatever reason (lost, idle,
    /// evicted): the requests it may have carried may have arrived. A
    /// later refusal of `addr` does not prove otherwise.
    pub fn connection_closed(&mut self, addr: SocketAddr) {
        for (_, owner, _, carried) in self.requests.values_mut() {
            if owner.addr == addr {
                *carried = true;
            }
        }
    }

    /// An owner answered a `Request` of ours, from `from`, telling us its
    /// `range` (unless it said `WrongOwner`). Only the process the request
    /// went to may answer it: a `Reply` from any other (a guessed request
    /// number, an unsolicited range claim) is dropped and counted, so that
    /// no member can answer for another or poison the owner cache. (A
    /// process that no longer hosts the vnode asked answers `WrongOwner`
    /// from another of its vnodes: same address, no range.)
    pub fn handle_reply(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        from: NodeRef,
        req: u64,
        result: OpResult,
        range: Option<crate::KeyRange>,
    ) {
        let Some(&(id, owner, deadline, _)) = self.requests.get(&req) else {
            return;
        };
        if from.addr != owner.addr {
            cx.io.counting.error("reply_from_wrong_node");
            return;
        }
        self.requests.remove(&req);
        if let Some(range) = range.filter(|_| from == owner) {
            self.cache_owner(now, range, owner, cx.config.owner_cache_ttl);
            cx.ring.learn(now, owner);
        }
        self.deadlines.remove(&(deadline, Deadline::Request(req)));
        if result == OpResult::WrongOwner {
            self.forget_owner(&owner);
        }
        self.client_result(cx, now, id, result);
    }

    /// The owner's result for operation `id` (local or remote): the
    /// operation ends, or tries again if ownership moved or the owner shed
    /// load.
    pub(super) fn client_result(&mut self, cx: &mut Cx<'_>, now: Time, id: u64, result: OpResult) {
        let outcome = match result.answer() {
            Answer::Done(outcome) => outcome,
            Answer::Overloaded => {
                // The owner sheds load: back off, then try again.
                if let Some(c) = self.clients.get_mut(&id) {
                    c.last_error = Some(OpError::Overloaded);
                    c.refused = true;
                    let backoff = cx.config.request_timeout * c.attempts.min(4);
                    self.deadlines.insert((now + backoff, Deadline::Retry(id)));
                }
                return;
            }
            // The owner is not sure yet (a handover, a takeover): ask
            // again shortly, the same owner or the next one found.
            Answer::NotReady => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.last_error = Some(OpError::NotReady);
                    c.refused = true;
                    let pause = (cx.config.lease / 16) * c.attempts.clamp(1, 4);
                    self.deadlines.insert((now + pause, Deadline::Retry(id)));
                }
                return;
            }
            // Ownership moved since the lookup: look up again.
            Answer::WrongOwner => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.last_error = Some(OpError::Redirects);
                }
                self.retry_client(cx, now, id);
                return;
            }
        };
        self.finish_client(cx, id, outcome);
    }

    /// Tries operation `id` again after a failed attempt: at once the
    /// first time (a stale owner cache or a range that just moved), later
    /// after a request timeout, so that the ring gets a stabilization round
    /// to agree on the key's owner (right after a failure the owner's new
    /// predecessor may not be known to it yet).
    fn retry_client(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if c.attempts < 2 {
            self.route_client(cx, now, id);
            return;
        }
        let at = now + cx.config.request_timeout;
        self.deadlines.insert((at, Deadline::Retry(id)));
    }

    /// Ends operation `id`: its result goes to `Io::done`. An error that
    /// says only that the last attempt did nothing (refused, redirected,
    /// not found in time) says nothing of an earlier attempt that may have
    /// been applied: after one, it ends `Timeout` (unknown).
    fn finish_client(&mut self, cx: &mut Cx<'_>, id: u64, result: Result<Outcome, OpError>) {
        if let Some(c) = self.clients.remove(&id) {
            self.deadlines.remove(&(c.deadline, Deadline::Client(id)));
            // (A storage failure of the last attempt's owner says as
            // little of an earlier one.)
            let result = match result {
                Err(e) if c.retry && (e.nothing_done() || e == OpError::StoreFailed) => {
                    Err(OpError::Timeout)
                }
                r => r,
            };
            cx.io.done.push_back((id, result));
        }
    }
}

/// Operation `id` (named `name` to the owner) is for our own vnode
/// `vnode`: serve it here.
fn serve_locally(cx: &mut Cx<'_>, vnode: NodeRef, op: Operation, id: u64, name: OpName) {
    cx.io.serve.push_back(Serve {
        vnode,
        op,
        reply: ReplyTo::Local(id),
        name: Some(name),
    });
}
