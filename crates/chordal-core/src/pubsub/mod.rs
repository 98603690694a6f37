//! Publish/subscribe on the ring (docs/design.md §12).
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
//! Everything travels as key-value operations (`KvOp::Subscribe`,
//! `Publish`, `Notify`, `TopicReplica`), so routing, retries after
//! ownership moves and timeouts are the coordinator's, as for `put`.

mod owner;
mod subscriber;

use crate::fasthash::FastMap;
use crate::{Id, KvError, KvOutcome, NodeRef, Publication, Time};
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
pub(crate) struct Topic {
    /// Subscriber processes and when their lease runs out.
    pub subscribers: FastMap<NodeRef, Time>,
}

/// Publications on their way to one subscriber process, in order, at most
/// one `Notify` in flight.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub queue: VecDeque<Publication>,
    pub bytes: usize,
    pub in_flight: bool,
    /// Publications dropped per topic since the last `Notify`.
    pub missed: BTreeMap<Vec<u8>, u64>,
}

/// A topic this process subscribes to.
#[derive(Debug, Default)]
pub(crate) struct Subscription {
    /// A renewal is on its way.
    pub renewing: bool,
    /// Last sequence number taken per (publisher, incarnation).
    pub seen: FastMap<(Id, u64), u64>,
}

/// Publications of this process to one topic: one batch in flight, the
/// rest waiting in order.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// (operation number the caller holds, publication).
    pub waiting: VecDeque<(u64, Publication)>,
    /// Is a batch on its way?
    pub in_flight: bool,
}

/// What an internal key-value operation was started for.
#[derive(Debug)]
pub(crate) enum Internal {
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
pub(crate) struct PubSubState {
    /// Topics we own or hold replicas of, by (topic id, name).
    pub topics: BTreeMap<(Id, Vec<u8>), Topic>,
    /// Replica targets each of our vnodes last pushed its topics to.
    pub targets: FastMap<Id, Vec<NodeRef>>,
    /// Per subscriber process, what we still have to send it.
    pub outboxes: FastMap<NodeRef, Outbox>,
    /// Topics this process subscribes to.
    pub subscriptions: BTreeMap<Vec<u8>, Subscription>,
    /// Our publications, per topic.
    pub outgoing: BTreeMap<Vec<u8>, Outgoing>,
    pub incarnation: u64,
    pub next_seq: u64,
    /// Key-value operations started by pub/sub itself, by number.
    pub internal: FastMap<u64, Internal>,
    /// Results of internal operations, handled at the next flush (where
    /// the current time is known).
    pub done: VecDeque<(Internal, Result<KvOutcome, KvError>)>,
    /// When renewals, replica pushes and lease expiry run next.
    pub tick_at: Option<Time>,
}

impl PubSubState {
    /// Fresh state; `incarnation` tells this start of the process from
    /// earlier ones.
    pub fn new(incarnation: u64) -> PubSubState {
        PubSubState {
            incarnation,
            ..PubSubState::default()
        }
    }
}

impl crate::Node {
    /// Topics this process subscribes to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &[u8]> {
        self.pubsub.subscriptions.keys().map(Vec::as_slice)
    }

    /// The subscribers this process knows for `topic` (as its owner or as
    /// a next owner), with their lease expiry.
    pub fn topic_subscribers(&self, topic: &[u8]) -> Vec<(NodeRef, Time)> {
        let key = (Id::hash(topic), topic.to_vec());
        let mut out: Vec<(NodeRef, Time)> = self
            .pubsub
            .topics
            .get(&key)
            .map(|t| t.subscribers.iter().map(|(n, t)| (*n, *t)).collect())
            .unwrap_or_default();
        out.sort_by_key(|(n, _)| n.id);
        out
    }

    /// Makes sure the periodic pub/sub work is scheduled.
    pub(crate) fn pubsub_schedule(&mut self, now: Time) {
        if self.pubsub.tick_at.is_none() {
            self.pubsub.tick_at = Some(now + self.config.topic_renew);
        }
    }

    /// Handles the results of internal operations; returns whether there
    /// were any (called from `flush`, which loops until all is quiet).
    pub(crate) fn pubsub_flush(&mut self, now: Time) -> bool {
        let mut any = false;
        while let Some((what, result)) = self.pubsub.done.pop_front() {
            any = true;
            match what {
                Internal::Renew(topic) => {
                    if let Some(s) = self.pubsub.subscriptions.get_mut(&topic) {
                        s.renewing = false;
                    }
                }
                Internal::Unsubscribe | Internal::Replica => {}
                Internal::Notify(to) => self.notify_done(now, to, result),
                Internal::Publish { topic, callers } => {
                    self.publish_done(now, topic, callers, result)
                }
            }
        }
        any
    }

    /// The periodic work: lapse expired leases, renew our subscriptions,
    /// push our topics' subscribers to the next owners.
    pub(crate) fn pubsub_timeout(&mut self, now: Time) {
        if self.pubsub.tick_at.is_none_or(|at| at > now) {
            return;
        }
        self.expire_subscribers(now);
        self.renew_subscriptions(now);
        self.replicate_topics(now, |_, _| true);
        let idle = self.pubsub.topics.is_empty()
            && self.pubsub.subscriptions.is_empty()
            && self.pubsub.outboxes.is_empty();
        self.pubsub.tick_at = (!idle).then(|| now + self.config.topic_renew);
    }

    /// Starts an internal key-value operation for pub/sub.
    pub(crate) fn pubsub_op(
        &mut self,
        now: Time,
        op: crate::KvOp,
        to: Option<NodeRef>,
        what: Internal,
    ) {
        // The number is known before the operation starts, so a result
        // that comes at once (not joined, overloaded) is still claimed.
        let id = self.kv.peek_next();
        self.pubsub.internal.insert(id, what);
        let started = self.start_op_quiet(now, op, to);
        debug_assert_eq!(started, id);
    }
}
