//! What an application hears about its node's place on the ring
//! ([`crate::Node::events`]): joins, neighbour changes, and the exact key
//! ranges gained and lost — what it needs to move its own state when
//! ownership moves.

use chordal_core::{Event, Id, KeyRange, NodeRef};
use std::collections::VecDeque;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One change of this node's place on the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// Virtual node `vnode` joined (or created) the ring.
    Joined {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// Its successor.
        successor: NodeRef,
    },
    /// This node left the ring (or stopped); the stream ends after it.
    Left,
    /// `vnode`'s predecessor changed.
    PredecessorChanged {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// What it was before.
        old: Option<NodeRef>,
        /// What it is now.
        new: Option<NodeRef>,
    },
    /// `vnode`'s first successor changed.
    SuccessorChanged {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// What it was before.
        old: NodeRef,
        /// What it is now.
        new: NodeRef,
    },
    /// `vnode` now owns `range` too (a predecessor failed or left, or the
    /// ring was created).
    RangeGained {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// The key range `(start, end]`.
        range: KeyRange,
    },
    /// `vnode` no longer owns `range` (a node joined just before it).
    RangeLost {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// The key range `(start, end]`.
        range: KeyRange,
    },
    /// A peer left or stopped answering and was dropped.
    PeerGone {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// The peer that is gone.
        peer: NodeRef,
    },
    /// The application read too slowly and this many events were dropped;
    /// re-read the node's state (`Node::status`) to catch up.
    Missed(u64),
}

/// The stream of [`NodeEvent`]s from [`crate::Node::events`] on.
pub struct NodeEvents {
    rx: broadcast::Receiver<Event>,
    stopped: CancellationToken,
    pending: VecDeque<NodeEvent>,
    done: bool,
}

impl NodeEvents {
    pub(crate) fn new(rx: broadcast::Receiver<Event>, stopped: CancellationToken) -> NodeEvents {
        NodeEvents {
            rx,
            stopped,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The next event; `None` after `Left`.
    pub async fn next(&mut self) -> Option<NodeEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            let received = tokio::select! {
                biased;
                r = self.rx.recv() => r,
                _ = self.stopped.cancelled() => Err(broadcast::error::RecvError::Closed),
            };
            match received {
                Ok(e) => self.translate(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.pending.push_back(NodeEvent::Missed(n))
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    self.pending.push_back(NodeEvent::Left);
                }
            }
        }
    }

    fn translate(&mut self, e: Event) {
        let out = &mut self.pending;
        match e {
            Event::Joined { vnode, successor } => {
                out.push_back(NodeEvent::Joined { vnode, successor })
            }
            Event::PredecessorChanged { vnode, old, new } => {
                out.push_back(NodeEvent::PredecessorChanged { vnode, old, new })
            }
            Event::SuccessorChanged { vnode, old, new } => {
                out.push_back(NodeEvent::SuccessorChanged { vnode, old, new })
            }
            Event::RangeChanged { vnode, old, new } => {
                let (gained, lost) = KeyRange::diff(old, new);
                out.extend(lost.map(|range| NodeEvent::RangeLost { vnode, range }));
                out.extend(gained.map(|range| NodeEvent::RangeGained { vnode, range }));
            }
            Event::PeerFailed { vnode, peer, .. } => {
                out.push_back(NodeEvent::PeerGone { vnode, peer })
            }
            _ => {}
        }
    }
}
