//! Publish/subscribe on the ring (docs/design.md §8).
//!
//! A topic lives at the successor of its hash, like a key. Three roles,
//! all possibly the same process:
//!
//! - the **subscriber** registers with the topic's owner and renews the
//!   registration every `topic_renew` (a lease of three periods), so a
//!   new owner learns it within one period whatever happened to the old
//!   one (`subscriber.rs`);
//! - the **owner** keeps the topic's subscribers, fans each publication out
//!   to them through one ordered, bounded queue per subscriber process, and
//!   pushes the subscriber lists of its topics to its next `R - 1`
//!   successors every period (and at once when one is added), so that the
//!   successor that takes over after a crash already knows them
//!   (`owner.rs`);
//! - the **publisher** sends its publications to a topic one at a time, in
//!   the order they were made, numbered, so per-publisher order holds end
//!   to end and duplicates from retries are dropped (`subscriber.rs`).
//!
//! Everything travels as key-value operations (`Operation::Subscribe`,
//! `Publish`, `Notify`, `TopicReplica`), so routing, retries after
//! ownership moves and timeouts are the coordinator's, as for `put`.

mod owner;
mod subscriber;

use crate::fasthash::FastMap;
use crate::io::Cx;
use crate::{Id, NodeRef, OpError, Outcome, Publication, Time};
use std::collections::{BTreeMap, VecDeque};

/// Topics one owner keeps (owned and replicas); more are refused.
const MAX_TOPICS: usize = 65_536;
/// Subscriber processes of one topic; more are refused.
const MAX_SUBSCRIBERS: usize = 65_536;
/// Publications queued for one subscriber process; beyond, the oldest are
/// dropped and counted as missed.
const OUTBOX_ITEMS: usize = 1024;
/// Payload bytes queued for one subscriber process.
const OUTBOX_BYTES: usize = 16 << 20;
/// A `Notify` or `Publish` carries at most this many publications...
const BATCH_ITEMS: usize = 256;
/// ... and stops adding more past this many payload bytes.
const BATCH_BYTES: usize = 256 << 10;
/// Largest publication payload an owner takes (its `Notify` frames must
/// stay under the wire's frame limit).
const MAX_PAYLOAD: usize = 2 << 20;
/// Publications waiting behind the one in flight, per topic, at a
/// publisher; more fail at once with `Overloaded`.
const PUBLISH_QUEUE: usize = 4096;
/// Publishers remembered per subscription for dropping duplicates.
const SEEN_PUBLISHERS: usize = 4096;
/// Subscriber lists in one `TopicReplica` (a large list goes alone).
const REPLICA_TOPICS: usize = 256;

/// One topic at its owner (or a replica of it at the next owners).
#[derive(Debug, Default)]
struct Topic {
    /// Subscriber processes and when their lease runs out.
    subscribers: FastMap<NodeRef, Time>,
}

/// Publications on their way to one subscriber process, in order, at most
/// one `Notify` in flight.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Publication>,
    bytes: usize,
    in_flight: bool,
    /// Publications dropped per topic since the last `Notify`.
    missed: BTreeMap<Vec<u8>, u64>,
}

/// A topic this process subscribes to.
#[derive(Debug, Default)]
struct Subscription {
    /// A renewal is on its way.
    renewing: bool,
    /// Last sequence number taken per (publisher, incarnation).
    seen: FastMap<(Id, u64), u64>,
}

/// Publications of this process to one topic: one batch in flight, the
/// rest waiting in order.
#[derive(Debug, Default)]
struct Outgoing {
    /// (operation number the caller holds, publication).
    waiting: VecDeque<(u64, Publication)>,
    /// Is a batch on its way?
    in_flight: bool,
}

/// What an internal key-value operation was started for.
#[derive(Debug)]
pub(super) enum Internal {
    /// Renewing our subscription to a topic.
    Renew(Vec<u8>),
    /// Telling an owner we unsubscribed (nothing waits).
    Unsubscribe,
    /// A `Notify` to this subscriber process.
    Notify(NodeRef),
    /// Subscriber lists pushed to a next owner (nothing waits).
    Replica,
    /// Publications to this topic; the callers' operation numbers.
    Publish { topic: Vec<u8>, callers: Vec<u64> },
}

/// All pub/sub state of one process.
#[derive(Debug, Default)]
pub(crate) struct PubSub {
    /// Topics we own or hold replicas of, by (topic id, name).
    topics: BTreeMap<(Id, Vec<u8>), Topic>,
    /// Replica targets each of our vnodes last pushed its topics to.
    targets: FastMap<Id, Vec<NodeRef>>,
    /// Per subscriber process, what we still have to send it.
    outboxes: FastMap<NodeRef, Outbox>,
    /// Topics this process subscribes to.
    subscriptions: BTreeMap<Vec<u8>, Subscription>,
    /// Our publications, per topic.
    outgoing: BTreeMap<Vec<u8>, Outgoing>,
    incarnation: u64,
    next_seq: u64,
    /// Key-value operations started by pub/sub itself, by number.
    internal: FastMap<u64, Internal>,
    /// When renewals, replica pushes and lease expiry run next.
    tick_at: Option<Time>,
}

impl PubSub {
    /// Fresh state; `incarnation` tells this start of the process from
    /// earlier ones.
    pub fn new(incarnation: u64) -> PubSub {
        PubSub {
            incarnation,
            ..PubSub::default()
        }
    }
}

impl PubSub {
    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.tick_at
    }

    /// Topics this process subscribes to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &[u8]> {
        self.subscriptions.keys().map(Vec::as_slice)
    }

    /// The subscribers this process knows for `topic` (as its owner or as
    /// a next owner), with their lease expiry.
    pub fn topic_subscribers(&self, topic: &[u8]) -> Vec<(NodeRef, Time)> {
        let key = (Id::of_key(topic), topic.to_vec());
        let mut out: Vec<(NodeRef, Time)> = self
            .topics
            .get(&key)
            .map(|t| t.subscribers.iter().map(|(n, t)| (*n, *t)).collect())
            .unwrap_or_default();
        out.sort_by_key(|(n, _)| n.id);
        out
    }

    /// Makes sure the periodic pub/sub work is scheduled.
    pub(super) fn pubsub_schedule(&mut self, cx: &mut Cx<'_>, now: Time) {
        if self.tick_at.is_none() {
            self.tick_at = Some(now + cx.config.topic_renew);
        }
    }

    /// Is operation `id` one pub/sub started itself (its result goes to
    /// [`PubSub::op_done`], not to the application)?
    pub fn claims(&self, id: u64) -> bool {
        self.internal.contains_key(&id)
    }

    /// The result of an operation pub/sub started itself.
    pub fn op_done(&mut self, cx: &mut Cx<'_>, id: u64, result: Result<Outcome, OpError>) {
        let Some(what) = self.internal.remove(&id) else {
            return;
        };
        match what {
            Internal::Renew(topic) => {
                if let Some(s) = self.subscriptions.get_mut(&topic) {
                    s.renewing = false;
                }
            }
            Internal::Unsubscribe | Internal::Replica => {}
            Internal::Notify(to) => self.notify_done(cx, to, result),
            Internal::Publish { topic, callers } => self.publish_done(cx, topic, callers, result),
        }
    }

    /// The periodic work: lapse expired leases, renew our subscriptions,
    /// push our topics' subscribers to the next owners.
    pub fn handle_timeout(&mut self, cx: &mut Cx<'_>, now: Time) {
        if self.tick_at.is_none_or(|at| at > now) {
            return;
        }
        self.expire_subscribers(now);
        self.renew_subscriptions(cx);
        self.replicate_topics(cx, now, |_, _| true);
        let idle =
            self.topics.is_empty() && self.subscriptions.is_empty() && self.outboxes.is_empty();
        self.tick_at = (!idle).then(|| now + cx.config.topic_renew);
    }

    /// Starts an operation for pub/sub itself (routed by the request
    /// machine; its result comes back to [`PubSub::op_done`]).
    fn pubsub_op(
        &mut self,
        cx: &mut Cx<'_>,
        op: crate::Operation,
        to: Option<NodeRef>,
        what: Internal,
    ) {
        let id = cx.io.start_op(op, to);
        self.internal.insert(id, what);
    }
}
