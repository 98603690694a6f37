//! Application messages: `send(key, payload)` and `request(key, payload)`
//! go to the key's owner exactly like a key-value operation (the same
//! coordinator: local owner, cached owner or lookup; retries when
//! ownership moved or the owner died). At the owner they become an
//! `Event::AppMessage` for the application, which accepts, answers or
//! refuses each one; the answer travels back as the operation's result.
//! A message nobody answers is refused after half the sender's timeout, so
//! a stalled application never holds the sender or this node's memory.

use super::{AppMsgId, KvDeadline, KvOpId, OwnerOp, ReplyTo};
use crate::{Event, KvOp, KvResult, Node, NodeRef, Time};

impl Node {
    /// Sends `payload` to the application of `key`'s owner; `Event::KvDone`
    /// says `Delivered` once that application accepted it.
    pub fn send(&mut self, now: Time, key: Vec<u8>, payload: Vec<u8>) -> KvOpId {
        let op = KvOp::Deliver {
            key,
            payload,
            want_reply: false,
        };
        self.start_kv(now, op)
    }

    /// Sends `payload` to the application of `key`'s owner and waits for
    /// its answer: `Event::KvDone` carries `Replied { payload }`.
    pub fn request(&mut self, now: Time, key: Vec<u8>, payload: Vec<u8>) -> KvOpId {
        let op = KvOp::Deliver {
            key,
            payload,
            want_reply: true,
        };
        self.start_kv(now, op)
    }

    /// Sends `payload` to the application of node `to` itself (not to a
    /// key's owner): `Delivered` once it took it, `Unreachable` if `to`
    /// does not answer. Tried once.
    pub fn send_to(&mut self, now: Time, to: NodeRef, payload: Vec<u8>) -> KvOpId {
        let op = KvOp::Direct {
            payload,
            want_reply: false,
        };
        self.start_op(now, op, Some(to))
    }

    /// `send_to`, waiting for the application's answer (`Replied`).
    pub fn request_to(&mut self, now: Time, to: NodeRef, payload: Vec<u8>) -> KvOpId {
        let op = KvOp::Direct {
            payload,
            want_reply: true,
        };
        self.start_op(now, op, Some(to))
    }

    /// We own the key of an application message (or it is for us
    /// directly, `key` = `None`): hand it to the application.
    pub(crate) fn owner_deliver(
        &mut self,
        now: Time,
        reply: ReplyTo,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        want_reply: bool,
    ) {
        if self.kv.owners.len() >= self.config.max_kv_ops {
            self.owner_reply(now, reply, KvResult::Refused);
            return;
        }
        let id = self.kv.next();
        let deadline = now + self.config.kv_timeout / 2;
        self.kv.owners.insert(
            id,
            OwnerOp::App {
                reply,
                want_reply,
                deadline,
            },
        );
        self.kv.deadlines.insert((deadline, KvDeadline::Owner(id)));
        let from = self.reply_origin(reply);
        self.events.push_back(Event::AppMessage {
            msg: AppMsgId(id),
            from,
            key,
            payload,
            want_reply,
        });
    }

    /// The application took message `msg`. For a `send` that is its answer
    /// (`Delivered`); a `request` still waits for [`Node::app_reply`].
    pub fn app_accept(&mut self, now: Time, msg: AppMsgId) {
        let wants_reply = matches!(
            self.kv.owners.get(&msg.0),
            Some(OwnerOp::App {
                want_reply: true,
                ..
            })
        );
        if !wants_reply {
            self.finish_app(now, msg.0, KvResult::Delivered);
        }
    }

    /// The application's answer to message `msg` (for a `send`, the same
    /// as accepting it).
    pub fn app_reply(&mut self, now: Time, msg: AppMsgId, payload: Vec<u8>) {
        let result = match self.kv.owners.get(&msg.0) {
            Some(OwnerOp::App {
                want_reply: true, ..
            }) => KvResult::Replied { payload },
            _ => KvResult::Delivered,
        };
        self.finish_app(now, msg.0, result);
    }

    /// The application will not (or cannot: its inbox is full) take
    /// message `msg`; the sender gets `KvError::Refused`.
    pub fn app_refuse(&mut self, now: Time, msg: AppMsgId) {
        self.finish_app(now, msg.0, KvResult::Refused);
    }

    /// Answers the sender of application message `id` (if it still waits).
    pub(crate) fn finish_app(&mut self, now: Time, id: u64, result: KvResult) {
        let Some(OwnerOp::App {
            reply, deadline, ..
        }) = self.kv.owners.get(&id)
        else {
            return;
        };
        let (reply, deadline) = (*reply, *deadline);
        self.kv.owners.remove(&id);
        self.kv.deadlines.remove(&(deadline, KvDeadline::Owner(id)));
        self.owner_reply(now, reply, result);
        self.flush(now);
    }
}
