//! What the sub-machines hand back to [`Node`](crate::Node): messages to
//! send, events for the application, and work for one another. No
//! sub-machine calls another; each pushes here, and `Node::flush` routes
//! every item to where it belongs until nothing is left.
//!
//! ```text
//!  Requests ──Serve──────▶ Store | Messaging | PubSub   (a local owner serves)
//!  Store, Messaging, PubSub ──Answer──▶ Requests          (the owner's result)
//!  PubSub ──Start────────▶ Requests                       (its own operations)
//!  Requests ──Done───────▶ PubSub or Event::OpDone        (a finished operation)
//! ```

use crate::config::Config;
use crate::counters::Counting;
use crate::event::Event;
use crate::message::{Envelope, Message, NodeRef, OpResult, Operation};
use crate::request::ReplyTo;
use crate::ring::Ring;
use crate::{OpError, Outcome};
use std::collections::VecDeque;

/// What every sub-machine method gets besides its own state: the
/// configuration, the ring (read, and asked for lookups) and the outputs.
pub(crate) struct Cx<'a> {
    pub config: &'a Config,
    pub ring: &'a mut Ring,
    pub io: &'a mut Io,
    /// Who may decide for which keys (read by the store before deciding).
    pub authority: &'a mut crate::authority::Authority,
}

/// An operation to serve as the owner `vnode` (ours), answering `reply`.
#[derive(Debug)]
pub(crate) struct Serve {
    pub vnode: NodeRef,
    pub op: Operation,
    pub reply: ReplyTo,
    /// The operation's id and retry flag (`None`: not named).
    pub name: Option<crate::request::OpName>,
}

/// An operation pub/sub wants routed, under the number it chose.
#[derive(Debug)]
pub(crate) struct Start {
    pub id: u64,
    pub op: Operation,
    pub target: Option<NodeRef>,
}

/// The outputs of the sub-machines, and the numbers they share.
#[derive(Debug, Default)]
pub(crate) struct Io {
    next_id: u64,
    /// Messages to send (those for our own vnodes are delivered locally).
    pub out: VecDeque<Envelope>,
    /// Events for the application.
    pub events: VecDeque<Event>,
    /// Running totals for metrics.
    pub counting: Counting,
    pub serve: VecDeque<Serve>,
    pub answers: VecDeque<(ReplyTo, OpResult)>,
    pub start: VecDeque<Start>,
    pub done: VecDeque<(u64, Result<Outcome, OpError>)>,
    /// The store has drained before a graceful leave: the vnodes may say
    /// goodbye.
    pub farewell: bool,
    /// The promise table to make durable, then the messages to send (the
    /// grants that wait for it).
    pub saves: VecDeque<(Vec<u8>, Vec<Envelope>)>,
}

impl Io {
    /// A fresh number for operations, requests and storage operations
    /// (one sequence for all machines, so replies never mix them up).
    pub fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Queues `msg` from our vnode `from` to `to`.
    pub fn send(&mut self, from: NodeRef, to: NodeRef, msg: Message) {
        self.out.push_back(Envelope {
            from,
            to: to.into(),
            msg,
        });
    }

    /// The owner's `result` for the operation answered to `reply`.
    pub fn answer(&mut self, reply: ReplyTo, result: OpResult) {
        self.answers.push_back((reply, result));
    }

    /// Asks the coordinator to route `op` (to its key's owner, or to
    /// `target` itself); returns the operation's number, under which its
    /// result comes back in `done`.
    pub fn start_op(&mut self, op: Operation, target: Option<NodeRef>) -> u64 {
        let id = self.next();
        self.start.push_back(Start { id, op, target });
        id
    }

    /// Is there work for `Node::flush` to route?
    pub fn has_work(&self) -> bool {
        !(self.out.is_empty()
            && self.serve.is_empty()
            && self.answers.is_empty()
            && self.start.is_empty()
            && self.done.is_empty()
            && self.saves.is_empty())
            || self.farewell
    }
}
