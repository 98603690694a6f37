//! The coordinator: takes a client's operation, finds the key's owner and
//! gets the answer from it (retrying when ownership moved under it).

use super::{ClientOp, KvDeadline, KvError, KvOpId, KvOutcome, ReplyTo};
use crate::{
    Event, Id, KvOp, KvResult, LookupError, LookupId, LookupMode, LookupResult, Message, Node,
    NodeRef, Time,
};

/// Lookups (and owner redirects) one operation may use before giving up.
/// From the third on, attempts are a request timeout apart (see
/// `retry_client`), so six span a few stabilization rounds.
const MAX_ATTEMPTS: u32 = 6;

impl Node {
    /// Stores `value` under `key`; the answer comes as `Event::KvDone`.
    pub fn put(&mut self, now: Time, key: Vec<u8>, value: Vec<u8>) -> KvOpId {
        self.start_kv(now, KvOp::Put { key, value })
    }

    /// Reads `key`; the answer comes as `Event::KvDone`.
    pub fn get(&mut self, now: Time, key: Vec<u8>) -> KvOpId {
        self.start_kv(now, KvOp::Get { key })
    }

    /// Deletes `key` (writes a tombstone); `NotFound` if it does not exist.
    pub fn delete(&mut self, now: Time, key: Vec<u8>) -> KvOpId {
        self.start_kv(now, KvOp::Delete { key })
    }

    pub(crate) fn start_kv(&mut self, now: Time, op: KvOp) -> KvOpId {
        self.start_op(now, op, None)
    }

    /// Starts `op` for the owner of its key, or for `target` itself.
    pub(crate) fn start_op(&mut self, now: Time, op: KvOp, target: Option<NodeRef>) -> KvOpId {
        let id = self.start_op_quiet(now, op, target);
        self.flush(now);
        KvOpId(id)
    }

    /// `start_op` without flushing (for callers inside the node); returns
    /// the operation's number.
    pub(crate) fn start_op_quiet(&mut self, now: Time, op: KvOp, target: Option<NodeRef>) -> u64 {
        let id = self.kv.next();
        if let Some((size, limit)) = self.oversize(&op) {
            self.kv_done(id, Err(KvError::TooLarge { size, limit }));
        } else if !self.vnodes.iter().any(|v| v.is_joined()) {
            self.kv_done(id, Err(KvError::NotJoined));
        } else if self.kv.in_flight() >= self.config.max_kv_ops {
            self.kv_done(id, Err(KvError::Overloaded));
        } else {
            let deadline = now + self.config.kv_timeout;
            let key_id = Id::hash(op.key());
            self.kv.clients.insert(
                id,
                ClientOp {
                    op,
                    key_id,
                    attempts: 0,
                    deadline,
                    last_error: None,
                    target,
                },
            );
            self.kv.deadlines.insert((deadline, KvDeadline::Client(id)));
            self.route_client(now, id);
        }
        id
    }

    /// `(size, limit)` if `op`'s key or a put's value is over the limits.
    pub(crate) fn oversize(&self, op: &KvOp) -> Option<(u64, u64)> {
        let key = op.key().len();
        if matches!(
            op,
            KvOp::Put { .. } | KvOp::Get { .. } | KvOp::Delete { .. }
        ) && key > self.config.max_key
        {
            return Some((key as u64, self.config.max_key as u64));
        }
        match op {
            KvOp::Put { value, .. } if value.len() > self.config.max_value => {
                Some((value.len() as u64, self.config.max_value as u64))
            }
            _ => None,
        }
    }

    /// Sends client operation `id` towards its owner: straight to a local
    /// virtual node that owns the key, else through a lookup.
    pub(crate) fn route_client(&mut self, now: Time, id: u64) {
        let Some(c) = self.kv.clients.get_mut(&id) else {
            return;
        };
        c.attempts += 1;
        if let Some(target) = c.target {
            // A direct message goes to its node once: if that node is gone
            // there is nobody else to ask.
            if c.attempts > 1 {
                self.finish_client(id, Err(KvError::Unreachable));
                return;
            }
            let op = c.op.clone();
            if target.addr == self.addr {
                self.owner_start(now, target, op, ReplyTo::Local(id));
            } else {
                self.send_to_owner(now, id, target, op);
            }
            return;
        }
        if c.attempts > MAX_ATTEMPTS {
            let error = c.last_error.unwrap_or(KvError::Redirects);
            self.finish_client(id, Err(error));
            return;
        }
        let (key_id, op, first_try) = (c.key_id, c.op.clone(), c.attempts == 1);
        if let Some(owner) = self.owning_vnode(&key_id) {
            self.owner_start(now, owner, op, ReplyTo::Local(id));
            return;
        }
        // The first try may use an owner we heard from recently; a retry
        // (after `WrongOwner`) always looks up.
        if first_try && let Some(owner) = self.kv.cached_owner(now, &key_id) {
            self.send_to_owner(now, id, owner, op);
            return;
        }
        let lookup = self.start_lookup_quiet(now, key_id, LookupMode::Recursive);
        self.kv.lookups.insert(lookup, id);
    }

    /// The lookup for a client operation finished.
    pub(crate) fn kv_lookup_done(
        &mut self,
        now: Time,
        lookup: LookupId,
        result: Result<LookupResult, LookupError>,
    ) {
        let Some(id) = self.kv.lookups.remove(&lookup) else {
            return;
        };
        let Some(c) = self.kv.clients.get_mut(&id) else {
            return;
        };
        let owner = match result {
            Ok(r) => r.owner,
            // A node that is not part of a ring cannot do better later.
            Err(LookupError::NotJoined) => {
                self.finish_client(id, Err(KvError::Lookup(LookupError::NotJoined)));
                return;
            }
            // Dead hops, a ring in flux: try again shortly.
            Err(e) => {
                c.last_error = Some(KvError::Lookup(e));
                self.retry_client(now, id);
                return;
            }
        };
        let op = c.op.clone();
        if owner.addr == self.addr {
            self.owner_start(now, owner, op, ReplyTo::Local(id));
            return;
        }
        self.send_to_owner(now, id, owner, op);
    }

    /// Sends operation `id` to `owner`. If no answer comes within 3/5 of
    /// the operation's time (or what is left of it), the owner is presumed
    /// dead: forgotten, and the operation looked up again. The request
    /// says how long we wait, so that the owner answers (or gives up)
    /// within it, and names the operation, so that the owner answers a
    /// retry as it answered the first try.
    fn send_to_owner(&mut self, now: Time, id: u64, owner: NodeRef, op: KvOp) {
        let req = self.kv.next();
        let left = self
            .kv
            .clients
            .get(&id)
            .map_or(self.config.kv_timeout, |c| c.deadline.saturating_since(now));
        let wait = (self.config.kv_timeout * 3 / 5).min(left);
        let deadline = now + wait;
        self.kv.requests.insert(req, (id, owner, deadline));
        self.kv
            .deadlines
            .insert((deadline, KvDeadline::Request(req)));
        let from = self.vnodes[0].me();
        let msg = Message::KvRequest {
            req,
            op,
            op_id: self.kv.op_base.wrapping_add(id),
            timeout_ms: wait.as_millis().clamp(1, u32::MAX as u128) as u32,
        };
        self.kv_send(from, owner, msg);
    }

    /// Request `req` went unanswered: its owner is presumed dead.
    pub(crate) fn request_expired(&mut self, now: Time, req: u64) {
        let Some((id, owner, _)) = self.kv.requests.remove(&req) else {
            return;
        };
        self.kv.forget_owner(&owner);
        self.route_client(now, id);
    }

    /// Peers matching `dead` failed: operations waiting on them try again
    /// through a fresh lookup, and the owner cache forgets them.
    pub(crate) fn kv_peers_failed(&mut self, now: Time, dead: impl Fn(&NodeRef) -> bool) {
        self.kv.owner_cache.retain(|_, (_, owner, _)| !dead(owner));
        let stuck: Vec<(u64, u64, Time)> = self
            .kv
            .requests
            .iter()
            .filter(|(_, (_, owner, _))| dead(owner))
            .map(|(req, (id, _, deadline))| (*req, *id, *deadline))
            .collect();
        for (req, id, deadline) in stuck {
            self.kv.requests.remove(&req);
            self.kv
                .deadlines
                .remove(&(deadline, KvDeadline::Request(req)));
            self.route_client(now, id);
        }
    }

    /// An owner answered a `KvRequest` of ours.
    pub(crate) fn kv_reply(&mut self, now: Time, req: u64, result: KvResult) {
        let Some((id, owner, deadline)) = self.kv.requests.remove(&req) else {
            return;
        };
        self.kv
            .deadlines
            .remove(&(deadline, KvDeadline::Request(req)));
        if result == KvResult::WrongOwner {
            self.kv.forget_owner(&owner);
        }
        self.client_result(now, id, result);
    }

    /// The owner's result for client operation `id` (local or remote).
    pub(crate) fn client_result(&mut self, now: Time, id: u64, result: KvResult) {
        let outcome = match result {
            KvResult::Stored { version, acked } => Ok(KvOutcome::Stored { version, acked }),
            KvResult::Found { value, version } => Ok(KvOutcome::Found { value, version }),
            KvResult::NotFound => Ok(KvOutcome::NotFound),
            KvResult::QuorumFailed { acked, needed } => {
                Err(KvError::QuorumFailed { acked, needed })
            }
            KvResult::QuorumUnavailable { available, needed } => {
                Err(KvError::QuorumUnavailable { available, needed })
            }
            KvResult::StoreFailed => Err(KvError::StoreFailed),
            KvResult::TooLarge { size, limit } => Err(KvError::TooLarge {
                size: size as u64,
                limit: limit as u64,
            }),
            KvResult::Overloaded => {
                // The owner sheds load: back off, then try again.
                if let Some(c) = self.kv.clients.get_mut(&id) {
                    c.last_error = Some(KvError::Overloaded);
                    let backoff = self.config.request_timeout * c.attempts.min(4);
                    self.kv
                        .deadlines
                        .insert((now + backoff, KvDeadline::Retry(id)));
                }
                return;
            }
            KvResult::Delivered => Ok(KvOutcome::Delivered),
            KvResult::Replied { payload } => Ok(KvOutcome::Replied { payload }),
            KvResult::Refused => Err(KvError::Refused),
            KvResult::Published { subscribers } => Ok(KvOutcome::Published { subscribers }),
            // Ownership moved since the lookup: look up again.
            _ => {
                if let Some(c) = self.kv.clients.get_mut(&id) {
                    c.last_error = Some(KvError::Redirects);
                }
                self.retry_client(now, id);
                return;
            }
        };
        self.finish_client(id, outcome);
    }

    /// Tries client operation `id` again after a failed attempt: at once
    /// the first time (a stale owner cache or a range that just moved),
    /// later after a request timeout, so that the ring gets a
    /// stabilization round to agree on the key's owner (right after a
    /// failure the owner's new predecessor may not be known to it yet).
    fn retry_client(&mut self, now: Time, id: u64) {
        let Some(c) = self.kv.clients.get(&id) else {
            return;
        };
        if c.attempts < 2 {
            self.route_client(now, id);
            return;
        }
        let at = now + self.config.request_timeout;
        self.kv.deadlines.insert((at, KvDeadline::Retry(id)));
    }

    /// Ends client operation `id`.
    pub(crate) fn finish_client(&mut self, id: u64, result: Result<KvOutcome, KvError>) {
        if let Some(c) = self.kv.clients.remove(&id) {
            self.kv
                .deadlines
                .remove(&(c.deadline, KvDeadline::Client(id)));
            self.kv_done(id, result);
        }
    }

    fn kv_done(&mut self, id: u64, result: Result<KvOutcome, KvError>) {
        if let Err(e) = &result {
            self.counting.error(e.kind());
        }
        // Operations pub/sub started itself: its business, not an event.
        if let Some(what) = self.pubsub.internal.remove(&id) {
            self.pubsub.done.push_back((what, result));
            return;
        }
        self.events.push_back(Event::KvDone {
            op: KvOpId(id),
            result,
        });
    }
}
