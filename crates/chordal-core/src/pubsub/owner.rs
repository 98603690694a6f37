//! The topic's owner: keeps subscribers under leases, fans publications out
//! through one ordered, bounded queue per subscriber process, and keeps the
//! next owners told who subscribes.

use super::{
    BATCH_BYTES, BATCH_ITEMS, Internal, MAX_PAYLOAD, MAX_SUBSCRIBERS, MAX_TOPICS, OUTBOX_BYTES,
    OUTBOX_ITEMS, REPLICA_TOPICS,
};
use crate::kv::ReplyTo;
use crate::{Id, KvError, KvOp, KvOutcome, KvResult, Node, NodeRef, Publication, Time};
use std::collections::BTreeMap;

/// A topic and its subscriber processes, as `TopicReplica` carries them.
type TopicList = (Vec<u8>, Vec<NodeRef>);

impl Node {
    /// How long a subscription lasts without renewal.
    fn topic_lease(&self) -> std::time::Duration {
        self.config.topic_renew * 3
    }

    /// A subscriber registers (or renews) with us, the topic's owner.
    pub(crate) fn topic_subscribe(&mut self, now: Time, reply: ReplyTo, topic: Vec<u8>) {
        let subscriber = self.reply_origin(reply);
        let key = (Id::hash(&topic), topic);
        if !self.pubsub.topics.contains_key(&key) && self.pubsub.topics.len() >= MAX_TOPICS {
            self.owner_reply(now, reply, KvResult::Refused);
            return;
        }
        let expiry = now + self.topic_lease();
        let t = self.pubsub.topics.entry(key.clone()).or_default();
        let new = !t.subscribers.contains_key(&subscriber);
        if new && t.subscribers.len() >= MAX_SUBSCRIBERS {
            self.owner_reply(now, reply, KvResult::Refused);
            return;
        }
        t.subscribers.insert(subscriber, expiry);
        self.pubsub_schedule(now);
        if new {
            // Tell the next owners now rather than at the next period: a
            // crash right after this answer must not lose the subscriber.
            self.replicate_topics(now, |k, _| *k == key);
        }
        self.owner_reply(now, reply, KvResult::Delivered);
    }

    /// A subscriber leaves the topic.
    pub(crate) fn topic_unsubscribe(&mut self, now: Time, reply: ReplyTo, topic: Vec<u8>) {
        let subscriber = self.reply_origin(reply);
        let key = (Id::hash(&topic), topic);
        if let Some(t) = self.pubsub.topics.get_mut(&key) {
            t.subscribers.remove(&subscriber);
            if t.subscribers.is_empty() {
                self.pubsub.topics.remove(&key);
            }
        }
        self.owner_reply(now, reply, KvResult::Delivered);
    }

    /// Publications for a topic we own: queue them for every subscriber
    /// process whose lease runs, in the order they arrive.
    pub(crate) fn topic_publish(
        &mut self,
        now: Time,
        reply: ReplyTo,
        topic: Vec<u8>,
        publications: Vec<Publication>,
    ) {
        let valid = publications
            .iter()
            .all(|p| p.topic == topic && p.payload.len() <= MAX_PAYLOAD);
        if !valid {
            self.owner_reply(now, reply, KvResult::Refused);
            return;
        }
        let key = (Id::hash(&topic), topic);
        let subscribers: Vec<NodeRef> = match self.pubsub.topics.get(&key) {
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
            self.pump_outbox(now, s);
        }
        self.owner_reply(now, reply, KvResult::Published { subscribers: count });
    }

    /// Next owners' copy: merge the subscriber lists a topic owner pushed.
    pub(crate) fn topic_replica(
        &mut self,
        now: Time,
        reply: ReplyTo,
        topics: Vec<(Vec<u8>, Vec<NodeRef>)>,
    ) {
        let expiry = now + self.topic_lease();
        for (topic, subscribers) in topics {
            let key = (Id::hash(&topic), topic);
            if !self.pubsub.topics.contains_key(&key) && self.pubsub.topics.len() >= MAX_TOPICS {
                break;
            }
            let t = self.pubsub.topics.entry(key).or_default();
            for s in subscribers {
                if t.subscribers.len() >= MAX_SUBSCRIBERS && !t.subscribers.contains_key(&s) {
                    break;
                }
                let e = t.subscribers.entry(s).or_insert(expiry);
                *e = (*e).max(expiry);
            }
        }
        self.pubsub_schedule(now);
        self.owner_reply(now, reply, KvResult::Delivered);
    }

    /// Queues `p` for subscriber `to`, dropping the oldest (counted as
    /// missed) when its queue is full.
    fn enqueue(&mut self, to: NodeRef, p: Publication) {
        let out = self.pubsub.outboxes.entry(to).or_default();
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
    pub(crate) fn pump_outbox(&mut self, now: Time, to: NodeRef) {
        let Some(out) = self.pubsub.outboxes.get_mut(&to) else {
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
        let op = KvOp::Notify { items, missed };
        self.pubsub_op(now, op, Some(to), Internal::Notify(to));
    }

    /// A `Notify` to `to` ended: send the next, or give up on a subscriber
    /// that does not answer (it subscribes again if it is alive).
    pub(crate) fn notify_done(
        &mut self,
        now: Time,
        to: NodeRef,
        result: Result<KvOutcome, KvError>,
    ) {
        match result {
            Ok(_) | Err(KvError::Refused) | Err(KvError::Overloaded) => {
                if let Some(out) = self.pubsub.outboxes.get_mut(&to) {
                    out.in_flight = false;
                }
                self.pump_outbox(now, to);
            }
            Err(_) => {
                self.pubsub.outboxes.remove(&to);
                for t in self.pubsub.topics.values_mut() {
                    t.subscribers.remove(&to);
                }
                self.pubsub.topics.retain(|_, t| !t.subscribers.is_empty());
            }
        }
    }

    /// Drops lapsed leases, empty topics and idle queues of processes that
    /// subscribe to nothing here any more.
    pub(crate) fn expire_subscribers(&mut self, now: Time) {
        for t in self.pubsub.topics.values_mut() {
            t.subscribers.retain(|_, expiry| *expiry > now);
        }
        self.pubsub.topics.retain(|_, t| !t.subscribers.is_empty());
        let topics = &self.pubsub.topics;
        self.pubsub.outboxes.retain(|n, out| {
            out.in_flight
                || !out.queue.is_empty()
                || topics.values().any(|t| t.subscribers.contains_key(n))
        });
    }

    /// Pushes the subscribers of the topics we own that `which` selects
    /// (given the topic and our vnode owning it) to each of that vnode's
    /// next `R - 1` successors, in bounded messages.
    pub(crate) fn replicate_topics(
        &mut self,
        now: Time,
        which: impl Fn(&(Id, Vec<u8>), &NodeRef) -> bool,
    ) {
        let mut per_target: BTreeMap<NodeRef, Vec<TopicList>> = BTreeMap::new();
        for (key, t) in &self.pubsub.topics {
            let Some(vnode) = self.owning_vnode(&key.0) else {
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
            for target in self.replica_targets(&vnode) {
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
                let op = KvOp::TopicReplica { topics: chunk };
                self.pubsub_op(now, op, Some(target), Internal::Replica);
            }
        }
    }

    /// When the next owners of one of our virtual nodes change (a node
    /// joined or died after it, or its successor list just filled in),
    /// push that vnode's topics to them at once rather than at the next
    /// period: a crash of ours must not find them uninformed. Cheap when
    /// nothing changed; called at every flush while we keep topics.
    pub(crate) fn check_topic_targets(&mut self, now: Time) {
        if self.pubsub.topics.is_empty() {
            return;
        }
        for i in 0..self.vnodes.len() {
            let me = self.vnodes[i].me();
            let targets = self.replica_targets(&me);
            if self.pubsub.targets.get(&me.id) == Some(&targets) {
                continue;
            }
            self.pubsub.targets.insert(me.id, targets);
            self.replicate_topics(now, |_, vnode| *vnode == me);
        }
    }

    /// Our range shrank: a new predecessor `to` now owns `(start, end]`.
    /// Hand it the subscribers of the topics there, so publications reach
    /// them before their next renewal.
    pub(crate) fn hand_over_topics(&mut self, now: Time, to: NodeRef, start: Id, end: Id) {
        let range = crate::KeyRange { start, end };
        let topics: Vec<TopicList> = self
            .pubsub
            .topics
            .iter()
            .filter(|((id, _), _)| range.contains(id))
            .map(|((_, topic), t)| (topic.clone(), t.subscribers.keys().copied().collect()))
            .collect();
        for chunk in topics.chunks(REPLICA_TOPICS) {
            let op = KvOp::TopicReplica {
                topics: chunk.to_vec(),
            };
            self.pubsub_op(now, op, Some(to), Internal::Replica);
        }
    }
}
