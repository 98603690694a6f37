//! Pub/sub for applications: [`Subscription`] streams and the driver's
//! table of them. The protocol (topic owners, leases, fan-out, order) is
//! the core's (`chordal_core` `pubsub`); this file only hands each
//! publication to every local stream of its topic.
//!
//! Bounded: each stream buffers `NodeBuilder::subscription_buffer`
//! publications; a stream that falls further behind loses the newest ones
//! and counts them in [`Subscription::missed`] (the node never waits for a
//! slow reader).

use chordal_core::Id;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A message published on a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The topic it was published on.
    pub topic: Vec<u8>,
    /// The publishing node (its first virtual node's id).
    pub publisher: Id,
    /// The publisher's bytes.
    pub payload: Vec<u8>,
}

/// The publications on one topic, from the moment [`crate::Node::subscribe`]
/// returned. Each publisher's come in the order it published them. Also a
/// `futures::Stream`. Dropping it ends the subscription (the node stops
/// renewing it once no stream of the topic is left).
#[derive(Debug)]
pub struct Subscription {
    topic: Vec<u8>,
    rx: mpsc::Receiver<Publication>,
    missed: Arc<AtomicU64>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &[u8] {
        &self.topic
    }

    /// The next publication; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<Publication> {
        self.rx.recv().await
    }

    /// Publications this stream lost so far because it fell behind (here,
    /// or in this node's queue at the topic's owner).
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl futures_util::Stream for Subscription {
    type Item = Publication;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Publication>> {
        self.rx.poll_recv(cx)
    }
}

/// The driver's end of one stream.
#[derive(Debug)]
pub(crate) struct LocalSub {
    tx: mpsc::Sender<Publication>,
    missed: Arc<AtomicU64>,
}

/// A new stream: the application's end and the driver's.
pub(crate) fn stream(topic: Vec<u8>, buffer: usize) -> (Subscription, LocalSub) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let missed = Arc::new(AtomicU64::new(0));
    let sub = Subscription {
        topic,
        rx,
        missed: missed.clone(),
    };
    (sub, LocalSub { tx, missed })
}

/// Every open stream, by topic.
#[derive(Debug, Default)]
pub(crate) struct LocalTopics {
    subs: HashMap<Vec<u8>, Vec<LocalSub>>,
}

impl LocalTopics {
    /// Adds a stream of `topic`.
    pub fn add(&mut self, topic: Vec<u8>, sub: LocalSub) {
        self.subs.entry(topic).or_default().push(sub);
    }

    /// Hands a publication to every stream of its topic. Returns true if
    /// the topic has no open stream left (time to unsubscribe).
    pub fn deliver(&mut self, p: Publication) -> bool {
        let Some(subs) = self.subs.get_mut(&p.topic) else {
            return true;
        };
        subs.retain(|s| match s.tx.try_send(p.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.missed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.drop_if_empty(&p.topic)
    }

    /// `count` publications on `topic` were lost before reaching us.
    pub fn missed(&mut self, topic: &[u8], count: u64) {
        for s in self.subs.get(topic).into_iter().flatten() {
            s.missed.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Forgets closed streams; returns the topics left with none.
    pub fn prune(&mut self) -> Vec<Vec<u8>> {
        for subs in self.subs.values_mut() {
            subs.retain(|s| !s.tx.is_closed());
        }
        let empty: Vec<Vec<u8>> = self
            .subs
            .iter()
            .filter(|(_, s)| s.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        for t in &empty {
            self.subs.remove(t);
        }
        empty
    }

    fn drop_if_empty(&mut self, topic: &[u8]) -> bool {
        if self.subs.get(topic).is_some_and(|s| s.is_empty()) {
            self.subs.remove(topic);
            return true;
        }
        false
    }
}
