//! The topic's owner: keeps subscribers under leases, fans publications out
//! through one ordered, bounded queue per subscriber process, and keeps the
//! next owners told who subscribes.

use super::PubSub;
use super::{
    BATCH_BYTES, BATCH_ITEMS, Internal, MAX_PAYLOAD, MAX_SUBSCRIBERS, MAX_TOPICS, OUTBOX_BYTES,
    OUTBOX_ITEMS, REPLICA_TOPICS,
};
use crate::io::Cx;
use crate::request::ReplyTo;
use crate::{Id, NodeRef, OpError, OpResult, Operation, Outcome, Publication, Time};
use std::collections::BTreeMap;

/// A topic and its subscriber processes, as `TopicReplica` carries them.
type TopicList = (Vec<u8>, Vec<NodeRef>);

impl PubSub {
    /// How long a subscription lasts without renewal.
    fn topic_lease(&self, cx: &Cx<'_>) -> std::time::Duration {
        cx.config.topic_renew * 3
    }

    /// A subscriber registers (or renews) with us, the topic's owner.
    pub fn topic_subscribe(&mut self, cx: &mut Cx<'_>, now: Time, reply: ReplyTo, topic: Vec<u8>) {
        let subscriber = reply.origin(cx.ring.primary().me());
        let key = (Id::of_key(&topic), topic);
        if !self.topics.contains_key(&key) && self.topics.len() >= MAX_TOPICS {
            cx.io.answer(reply, OpResult::Refused);
            return;
        }
        let expiry = now + self.topic_lease(cx);
        let t = self.topics.entry(key.clone()).or_default();
        let new = !t.subscribers.contains_key(&subscriber);
        if new && t.subscribers.len() >= MAX_SUBSCRIBERS {
            cx.io.answer(reply, OpResult::Refused);
            return;
        }
        t.subscribers.insert(subscriber, expiry);
        self.pubsub_schedule(cx, now);
        if new {
            // Tell the next owners now rather than at the next period: a
            // crash right after this answer must not lose the subscriber.
            self.replicate_topics(cx, now, |k, _| *k == key);
        }
        cx.io.answer(reply, OpResult::Delivered);
    }

    /// A subscriber leaves the topic.
    pub fn topic_unsubscribe(&mut self, cx: &mut Cx<'_>, reply: ReplyTo, topic: Vec<u8>) {
        let subscriber = reply.origin(cx.ring.primary().me());
        let key = (Id::of_key(&topic), topic);
        if let Some(t) = self.topics.get_mut(&key) {
            t.subscribers.remove(&subscriber);
            if t.subscribers.is_empty() {
                self.topics.remove(&key);
            }
        }
        cx.io.answer(reply, OpResult::Delivered);
    }

    /// Publications for a topic we own: queue them for every subscriber
    /// process whose lease runs, in the order they arrive.
    pub fn topic_publish(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        reply: ReplyTo,
        topic: Vec<u8>,
        publications: Vec<Publication>,
    ) {
        let valid = publications
            .iter()
            .all(|p| p.topic == topic && p.payload.len() <= MAX_PAYLOAD);
        if !valid {
            cx.io.answer(reply, OpResult::Refused);
            return;
        }
        let key = (Id::of_key(&topic), topic);
        let subscribers: Vec<NodeRef> = match self.topics.get(&key) {
            Some(t) => t
                .subscribers
                .iter()
                .filter(|(_, expiry)| **expiry > now)
                .map(|(n, _)| *n)
                .collect(),
            None => Vec::new(),
        };
        let count = subscribers.len() as u32;
        for s in subscribers {
            for p in &publications {
                self.enqueue(s, p.clone());
            }
            self.pump_outbox(cx, s);
        }
        cx.io
            .answer(reply, OpResult::Published { subscribers: count });
    }

    /// Next owners' copy: merge the subscriber lists a topic owner pushed.
    pub fn topic_replica(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        reply: ReplyTo,
        topics: Vec<(Vec<u8>, Vec<NodeRef>)>,
    ) {
        let expiry = now + self.topic_lease(cx);
        for (topic, subscribers) in topics {
            let key = (Id::of_key(&topic), topic);
            if !self.topics.contains_key(&key) && self.topics.len() >= MAX_TOPICS {
                break;
            }
            let t = self.topics.entry(key).or_default();
            for s in subscribers {
                if t.subscribers.len() >= MAX_SUBSCRIBERS && !t.subscribers.contains_key(&s) {
                    break;
                }
                let e = t.subscribers.entry(s).or_insert(expiry);
                *e = (*e).max(expiry);
            }
        }
        self.pubsub_schedule(cx, now);
        cx.io.answer(reply, OpResult::Delivered);
    }

    /// Queues `p` for subscriber `to`, dropping the oldest (counted as
    /// missed) when its queue is full.
    fn enqueue(&mut self, to: NodeRef, p: Publication) {
        let out = self.outboxes.entry(to).or_default();
        out.bytes += p.payload.len();
        out.queue.push_back(p);
        while out.queue.len() > OUTBOX_ITEMS || (out.bytes > OUTBOX_BYTES && out.queue.len() > 1) {
            let Some(old) = out.queue.pop_front() else {
                break;
            };
            out.bytes -= old.payload.len();
            *out.missed.entry(old.topic).or_default() += 1;
        }
    }

    /// Sends subscriber `to` the next batch of its queue, unless one is
    /// already on its way (one at a time keeps them in order).
    pub(super) fn pump_outbox(&mut self, cx: &mut Cx<'_>, to: NodeRef) {
        let Some(out) = self.outboxes.get_mut(&to) else {
            return;
        };
        if out.in_flight || (out.queue.is_empty() && out.missed.is_empty()) {
            return;
        }
        let mut items = Vec::new();
        let mut bytes = 0;
        while let Some(p) = out.queue.front() {
            if !items.is_empty() && (items.len() >= BATCH_ITEMS || bytes >= BATCH_BYTES) {
                break;
            }
            bytes += p.payload.len();
            items.extend(out.queue.pop_front());
        }
        out.bytes -= bytes;
        out.in_flight = true;
        let missed = std::mem::take(&mut out.missed).into_iter().collect();
        let op = Operation::Notify { items, missed };
        self.pubsub_op(cx, op, Some(to), Internal::Notify(to));
    }

    /// A `Notify` to `to` ended: send the next, or give up on a subscriber
    /// that does not answer (it subscribes again if it is alive).
    pub(super) fn notify_done(
        &mut self,
        cx: &mut Cx<'_>,
        to: NodeRef,
        result: Result<Outcome, OpError>,
    ) {
        match result {
            Ok(_) | Err(OpError::Refused) | Err(OpError::Overloaded) => {
                if let Some(out) = self.outboxes.get_mut(&to) {
                    out.in_flight = false;
                }
                self.pump_outbox(cx, to);
            }
            Err(_) => {
                self.outboxes.remove(&to);
                for t in self.topics.values_mut() {
                    t.subscribers.remove(&to);
                }
                self.topics.retain(|_, t| !t.subscribers.is_empty());
            }
        }
    }

    /// Drops lapsed leases, empty topics and idle queues of processes that
    /// subscribe to nothing here any more.
    pub(super) fn expire_subscribers(&mut self, now: Time) {
        for t in self.topics.values_mut() {
            t.subscribers.retain(|_, expiry| *expiry > now);
        }
        self.topics.retain(|_, t| !t.subscribers.is_empty());
        let topics = &self.topics;
        self.outboxes.retain(|n, out| {
            out.in_flight
                || !out.queue.is_empty()
                || topics.values().any(|t| t.subscribers.contains_key(n))
        });
    }

    /// Pushes the subscribers of the topics we own that `which` selects
    /// (given the topic and our vnode owning it) to each of that vnode's
    /// next `R - 1` successors, in bounded messages.
    pub(super) fn replicate_topics(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        which: impl Fn(&(Id, Vec<u8>), &NodeRef) -> bool,
    ) {
        let mut per_target: BTreeMap<NodeRef, Vec<TopicList>> = BTreeMap::new();
        for (key, t) in &self.topics {
            let Some(vnode) = cx.ring.owning_vnode(&key.0) else {
                continue;
            };
            if !which(key, &vnode) {
                continue;
            }
            let subscribers: Vec<NodeRef> = t
                .subscribers
                .iter()
                .filter(|(_, expiry)| **expiry > now)
                .map(|(n, _)| *n)
                .collect();
            for target in cx.ring.replica_targets(&vnode, cx.config.replicas) {
                per_target
                    .entry(target)
                    .or_default()
                    .push((key.1.clone(), subscribers.clone()));
            }
        }
        for (target, topics) in per_target {
            let mut topics = topics.into_iter().peekable();
            while topics.peek().is_some() {
                let chunk: Vec<_> = topics.by_ref().take(REPLICA_TOPICS).collect();
                let op = Operation::TopicReplica { topics: chunk };
                self.pubsub_op(cx, op, Some(target), Internal::Replica);
            }
        }
    }

    /// When the next owners of one of our virtual nodes change (a node
    /// joined or died after it, or its successor list just filled in),
    /// push that vnode's topics to them at once rather than at the next
    /// period: a crash of ours must not find them uninformed. Cheap when
    /// nothing changed; called at every flush while we keep topics.
    pub fn check_topic_targets(&mut self, cx: &mut Cx<'_>, now: Time) {
        if self.topics.is_empty() {
            return;
        }
        for i in 0..cx.ring.vnodes().len() {
            let me = cx.ring.vnodes()[i].me();
            let targets = cx.ring.replica_targets(&me, cx.config.replicas);
            if self.targets.get(&me.id) == Some(&targets) {
                continue;
            }
            self.targets.insert(me.id, targets);
            self.replicate_topics(cx, now, |_, vnode| *vnode == me);
        }
    }

    /// Our range shrank: a new predecessor `to` now owns `(start, end]`.
    /// Hand it the subscribers of the topics there, so publications reach
    /// them before their next renewal.
    pub fn hand_over_topics(&mut self, cx: &mut Cx<'_>, to: NodeRef, start: Id, end: Id) {
        let range = crate::KeyRange { start, end };
        let topics: Vec<TopicList> = self
            .topics
            .iter()
            .filter(|((id, _), _)| range.contains(id))
            .map(|((_, topic), t)| (topic.clone(), t.subscribers.keys().copied().collect()))
            .collect();
        for chunk in topics.chunks(REPLICA_TOPICS) {
            let op = Operation::TopicReplica {
                topics: chunk.to_vec(),
            };
            self.pubsub_op(cx, op, Some(to), Internal::Replica);
        }
    }
}
