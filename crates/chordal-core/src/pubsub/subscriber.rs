//! Subscribers and publishers: the calls an application makes, lease
//! renewal, and taking publications in order.

use super::PubSub;
use super::{BATCH_BYTES, BATCH_ITEMS, Internal, PUBLISH_QUEUE, SEEN_PUBLISHERS, Subscription};
use crate::io::Cx;
use crate::request::{OpId, ReplyTo};
use crate::{Event, OpError, OpResult, Operation, Outcome, Publication, Time};

impl PubSub {
    /// Subscribes this process to `topic`: from now on, what is published
    /// there arrives as `Event::Publication`. `Event::OpDone` for the
    /// returned operation says when the topic's owner has registered us
    /// (`Delivered`); the subscription is renewed every `topic_renew`
    /// until [`Node::unsubscribe`], also if that first registration fails.
    pub fn subscribe(&mut self, cx: &mut Cx<'_>, now: Time, topic: Vec<u8>) -> OpId {
        self.subscriptions.entry(topic.clone()).or_default();
        self.pubsub_schedule(cx, now);
        OpId(cx.io.start_op(Operation::Subscribe { topic }, None))
    }

    /// Ends this process's subscription to `topic` (and tells its owner,
    /// best effort: otherwise the lease lapses within three periods).
    pub fn unsubscribe(&mut self, cx: &mut Cx<'_>, topic: Vec<u8>) {
        if self.subscriptions.remove(&topic).is_some() {
            let op = Operation::Unsubscribe { topic };
            self.pubsub_op(cx, op, None, Internal::Unsubscribe);
        }
    }

    /// Publishes `payload` on `topic`. `Event::OpDone` says `Published`
    /// with the number of subscriber processes once the topic's owner has
    /// queued it for them. Publications of this process to one topic go
    /// out in call order, one batch at a time (what waits while a batch is
    /// on its way forms the next), so subscribers get them in that order.
    pub fn publish(&mut self, cx: &mut Cx<'_>, topic: Vec<u8>, payload: Vec<u8>) -> OpId {
        let caller = cx.io.next();
        let out = self.outgoing.entry(topic.clone()).or_default();
        if out.waiting.len() >= PUBLISH_QUEUE {
            cx.io.events.push_back(Event::OpDone {
                op: OpId(caller),
                result: Err(OpError::Overloaded),
            });
            return OpId(caller);
        }
        self.next_seq += 1;
        let publication = Publication {
            topic: topic.clone(),
            publisher: cx.ring.vnodes()[0].me().id,
            incarnation: self.incarnation,
            seq: self.next_seq,
            payload,
        };
        out.waiting.push_back((caller, publication));
        self.publish_next(cx, topic);
        OpId(caller)
    }

    /// Sends the publications waiting for `topic` (a bounded batch, in
    /// order), unless a batch is on its way.
    fn publish_next(&mut self, cx: &mut Cx<'_>, topic: Vec<u8>) {
        let Some(out) = self.outgoing.get_mut(&topic) else {
            return;
        };
        if out.in_flight {
            return;
        }
        if out.waiting.is_empty() {
            self.outgoing.remove(&topic);
            return;
        }
        let (mut callers, mut publications, mut bytes) = (Vec::new(), Vec::new(), 0);
        while let Some((_, p)) = out.waiting.front() {
            if !publications.is_empty()
                && (publications.len() >= BATCH_ITEMS || bytes + p.payload.len() > BATCH_BYTES)
            {
                break;
            }
            bytes += p.payload.len();
            let (caller, p) = out.waiting.pop_front().expect("front exists");
            callers.push(caller);
            publications.push(p);
        }
        out.in_flight = true;
        let op = Operation::Publish {
            topic: topic.clone(),
            publications,
        };
        self.pubsub_op(cx, op, None, Internal::Publish { topic, callers });
    }

    /// A batch of our publications ended: tell each caller, send the next.
    pub(super) fn publish_done(
        &mut self,
        cx: &mut Cx<'_>,
        topic: Vec<u8>,
        callers: Vec<u64>,
        result: Result<Outcome, OpError>,
    ) {
        if let Some(out) = self.outgoing.get_mut(&topic) {
            out.in_flight = false;
        }
        for caller in callers {
            cx.io.events.push_back(Event::OpDone {
                op: OpId(caller),
                result: result.clone(),
            });
        }
        self.publish_next(cx, topic);
    }

    /// Renews every subscription that has no renewal on its way.
    pub(super) fn renew_subscriptions(&mut self, cx: &mut Cx<'_>) {
        let due: Vec<Vec<u8>> = self
            .subscriptions
            .iter_mut()
            .filter(|(_, s)| !s.renewing)
            .map(|(topic, s)| {
                s.renewing = true;
                topic.clone()
            })
            .collect();
        for topic in due {
            let op = Operation::Subscribe {
                topic: topic.clone(),
            };
            self.pubsub_op(cx, op, None, Internal::Renew(topic));
        }
    }

    /// A topic owner's `Notify` reached us: hand the application what it
    /// subscribes to, each publisher's in order, without duplicates.
    pub fn topic_notify(
        &mut self,
        cx: &mut Cx<'_>,
        reply: ReplyTo,
        items: Vec<Publication>,
        missed: Vec<(Vec<u8>, u64)>,
    ) {
        for (topic, count) in missed {
            if self.subscriptions.contains_key(&topic) && count > 0 {
                cx.io
                    .events
                    .push_back(Event::PublicationsMissed { topic, count });
            }
        }
        for p in items {
            let Some(sub) = self.subscriptions.get_mut(&p.topic) else {
                continue;
            };
            if !take_in_order(sub, &p) {
                continue;
            }
            cx.io.events.push_back(Event::Publication {
                topic: p.topic,
                publisher: p.publisher,
                payload: p.payload,
            });
        }
        cx.io.answer(reply, OpResult::Delivered);
    }
}

/// Is `p` newer than what `sub` last took from its publisher? Records it
/// if so.
fn take_in_order(sub: &mut Subscription, p: &Publication) -> bool {
    let from = (p.publisher, p.incarnation);
    match sub.seen.get_mut(&from) {
        Some(last) if *last >= p.seq => false,
        Some(last) => {
            *last = p.seq;
            true
        }
        None => {
            if sub.seen.len() >= SEEN_PUBLISHERS {
                // Forget everyone (a duplicate may then slip through once)
                // rather than grow without bound.
                sub.seen.clear();
            }
            sub.seen.insert(from, p.seq);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    fn p(publisher: u64, incarnation: u64, seq: u64) -> Publication {
        Publication {
            topic: b"t".to_vec(),
            publisher: Id::from_u64(publisher),
            incarnation,
            seq,
            payload: Vec::new(),
        }
    }

    #[test]
    fn takes_each_publishers_publications_once_and_in_order() {
        let mut sub = Subscription::default();
        assert!(take_in_order(&mut sub, &p(1, 7, 1)));
        assert!(take_in_order(&mut sub, &p(1, 7, 3)));
        // A duplicate (a retried publish) and a straggler are dropped.
        assert!(!take_in_order(&mut sub, &p(1, 7, 3)));
        assert!(!take_in_order(&mut sub, &p(1, 7, 2)));
        // Other publishers, and a restarted one, count on their own.
        assert!(take_in_order(&mut sub, &p(2, 7, 1)));
        assert!(take_in_order(&mut sub, &p(1, 8, 1)));
        assert!(take_in_order(&mut sub, &p(1, 7, 4)));
    }

    #[test]
    fn remembers_a_bounded_number_of_publishers() {
        let mut sub = Subscription::default();
        for i in 0..(SEEN_PUBLISHERS as u64 * 2) {
            assert!(take_in_order(&mut sub, &p(i, 0, 1)));
            assert!(sub.seen.len() <= SEEN_PUBLISHERS);
        }
    }
}
