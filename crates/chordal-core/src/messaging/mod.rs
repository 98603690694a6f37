//! The messaging sub-machine: application messages at their receiver.
//!
//! `send(key, payload)` and `request(key, payload)` travel to the key's
//! owner exactly like a store operation (the request machine: local owner,
//! cached owner or lookup; retries when ownership moved or the owner died);
//! `send_to` / `request_to` go to one node, whatever it owns. At the
//! receiver each becomes an `Event::AppMessage` for the application, which
//! accepts, answers or refuses it; the answer travels back as the
//! operation's result. A message nobody answers is refused after half the
//! sender's timeout, so a stalled application never holds the sender or
//! this node's memory.

use crate::fasthash::FastMap;
use crate::io::Cx;
use crate::request::ReplyTo;
use crate::{Event, OpResult, Time};
use std::collections::BTreeSet;

/// Number of an application message handed to this node's application
/// (`Event::AppMessage`); answer it with `Node::app_accept`, `app_reply` or
/// `app_refuse`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct AppMsgId(pub u64);

/// A message handed to the application, waiting for it to accept, answer
/// or refuse.
#[derive(Debug)]
struct Waiting {
    reply: ReplyTo,
    want_reply: bool,
    deadline: Time,
}

/// Application messages waiting for this process's application.
#[derive(Debug, Default)]
pub(crate) struct Messaging {
    waiting: FastMap<u64, Waiting>,
    deadlines: BTreeSet<(Time, u64)>,
}

impl Messaging {
    /// Messages waiting for the application (counted against
    /// `max_kv_ops`).
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// An application message for us: for the owner of `key`, or for this
    /// node itself (`key` = `None`). Hands it to the application, or
    /// refuses it when too many wait already.
    pub fn deliver(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        reply: ReplyTo,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        want_reply: bool,
    ) {
        if self.waiting.len() >= cx.config.max_kv_ops {
            cx.io.answer(reply, OpResult::Refused);
            return;
        }
        let id = cx.io.next();
        let deadline = now + cx.config.kv_timeout / 2;
        self.waiting.insert(
            id,
            Waiting {
                reply,
                want_reply,
                deadline,
            },
        );
        self.deadlines.insert((deadline, id));
        let from = reply.origin(cx.ring.primary().me());
        cx.io.events.push_back(Event::AppMessage {
            msg: AppMsgId(id),
            from,
            key,
            payload,
            want_reply,
        });
    }

    /// The application took message `msg`. For a `send` that is its answer
    /// (`Delivered`); a `request` still waits for [`Messaging::reply`].
    pub fn accept(&mut self, cx: &mut Cx<'_>, msg: AppMsgId) {
        let wants_reply = self.waiting.get(&msg.0).is_some_and(|w| w.want_reply);
        if !wants_reply {
            self.finish(cx, msg.0, OpResult::Delivered);
        }
    }

    /// The application's answer to message `msg` (for a `send`, the same
    /// as accepting it).
    pub fn reply(&mut self, cx: &mut Cx<'_>, msg: AppMsgId, payload: Vec<u8>) {
        let result = match self.waiting.get(&msg.0) {
            Some(w) if w.want_reply => OpResult::Replied { payload },
            _ => OpResult::Delivered,
        };
        self.finish(cx, msg.0, result);
    }

    /// The application will not (or cannot: its inbox is full) take
    /// message `msg`; the sender gets `Refused`.
    pub fn refuse(&mut self, cx: &mut Cx<'_>, msg: AppMsgId) {
        self.finish(cx, msg.0, OpResult::Refused);
    }

    /// Refuses every message the application left unanswered too long.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Time) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.finish(cx, id, OpResult::Refused);
        }
    }

    /// Answers the sender of message `id` (if it still waits).
    fn finish(&mut self, cx: &mut Cx<'_>, id: u64, result: OpResult) {
        let Some(w) = self.waiting.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(w.deadline, id));
        cx.io.answer(w.reply, result);
    }
}
