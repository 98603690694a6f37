//! What the core tells its driver and applications.

use crate::{Id, NodeRef};

/// Number a node gives each lookup it starts; returned by
/// [`Node::start_lookup`](crate::Node::start_lookup) and echoed in
/// [`Event::LookupDone`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// Number of a neighbour query started with
/// [`Node::query_neighbors`](crate::Node::query_neighbors).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// The keys a node is responsible for: the half-open interval `(start, end]`.
/// `start == end` means the whole ring.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyRange {
    /// The predecessor's id (exclusive).
    pub start: Id,
    /// The node's own id (inclusive).
    pub end: Id,
}

impl KeyRange {
    /// Does the range hold `key`?
    pub fn contains(&self, key: &Id) -> bool {
        key.in_open_closed(&self.start, &self.end)
    }

    /// What a node gained and lost when its range went from `old` to
    /// `new` (both ending at the node's id): `(gained, lost)`. A new
    /// predecessor closer to us takes `(old.start, new.start]`; losing the
    /// predecessor's predecessor to a failure adds `(new.start,
    /// old.start]`. Call it on every `Event::RangeChanged` to move
    /// application state along with ownership.
    pub fn diff(old: Option<KeyRange>, new: KeyRange) -> (Option<KeyRange>, Option<KeyRange>) {
        let Some(old) = old else {
            return (Some(new), None);
        };
        if old.start == new.start {
            (None, None)
        } else if new.start.in_open(&old.start, &old.end) {
            let lost = KeyRange {
                start: old.start,
                end: new.start,
            };
            (None, Some(lost))
        } else {
            let gained = KeyRange {
                start: new.start,
                end: old.start,
            };
            (Some(gained), None)
        }
    }
}

/// A finished lookup.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LookupResult {
    /// The key (id) that was looked up.
    pub key: Id,
    /// The owner of `key`: `successor(key)`.
    pub owner: NodeRef,
    /// The nodes that follow the owner, as the last hop knew them (replica
    /// candidates).
    pub successors: Vec<NodeRef>,
    /// How many times the query was forwarded (recursive) or how many nodes
    /// were asked (iterative).
    pub hops: u32,
    /// Iterative lookups: the nodes that answered, in the order they were
    /// asked (the route). Empty for recursive lookups, whose origin does
    /// not see the hops.
    pub path: Vec<NodeRef>,
}

/// Why a lookup failed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
pub enum LookupError {
    /// No answer within the lookup deadline.
    #[error("lookup timed out")]
    Timeout,
    /// Forwarded more than `max_hops` times.
    #[error("lookup exceeded the hop limit")]
    HopLimit,
    /// No live node to forward to.
    #[error("no live route towards the key")]
    NoRoute,
    /// The node is not (or no longer) part of a ring.
    #[error("node is not joined to a ring")]
    NotJoined,
    /// Too many requests or lookups in flight.
    #[error("too many lookups in flight")]
    Overloaded,
}

/// What a neighbour query found: a node's predecessor and successor list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Neighbors {
    /// The node that was asked.
    pub node: NodeRef,
    /// Its predecessor.
    pub predecessor: Option<NodeRef>,
    /// Its successor list.
    pub successors: Vec<NodeRef>,
    /// Records its process stores.
    pub keys_stored: u64,
}

/// Something that happened inside the core. `vnode` is the id of the virtual
/// node it happened to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// The virtual node found its successor and is part of the ring.
    Joined {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// The new successor.
        successor: NodeRef,
    },
    /// Every seed was tried `join_rounds` times without success.
    JoinFailed {
        /// The id of our virtual node it happened to.
        vnode: Id,
    },
    /// The predecessor pointer changed.
    PredecessorChanged {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// What it was before (`None`: none).
        old: Option<NodeRef>,
        /// What it is now (`None`: none).
        new: Option<NodeRef>,
    },
    /// The first successor changed.
    SuccessorChanged {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// What it was before.
        old: NodeRef,
        /// What it is now.
        new: NodeRef,
    },
    /// The range of keys the virtual node owns changed (a new predecessor).
    RangeChanged {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// What it was before (`None`: none).
        old: Option<KeyRange>,
        /// What it is now.
        new: KeyRange,
    },
    /// A peer stopped answering (or said it left) and was dropped from the
    /// routing state.
    PeerFailed {
        /// The id of our virtual node it happened to.
        vnode: Id,
        /// The peer that failed.
        peer: NodeRef,
        /// It said goodbye (a graceful leave): it answered everything it
        /// took on before, and takes nothing on after.
        left: bool,
    },
    /// A lookup started with `start_lookup` finished.
    LookupDone {
        /// The number `start_lookup` returned.
        lookup: LookupId,
        /// The owner and its successors, or why the lookup failed.
        result: Result<LookupResult, LookupError>,
    },
    /// A neighbour query finished; `None` if the node did not answer.
    NeighborsQueried {
        /// The number `query_neighbors` returned.
        query: QueryId,
        /// The node's neighbours, or `None` if it did not answer.
        result: Option<Neighbors>,
    },
    /// A key-value operation started with `put`/`get`/`delete` (or an
    /// application message started with `send`/`request`) finished.
    OpDone {
        /// The number the operation was started under.
        op: crate::OpId,
        /// How the operation ended.
        result: Result<crate::Outcome, crate::OpError>,
    },
    /// An application message for a key this node owns. Answer it with
    /// `Node::app_accept`, `Node::app_reply` (if `want_reply`) or
    /// `Node::app_refuse`; unanswered, it is refused after half the
    /// sender's `kv_timeout`.
    AppMessage {
        /// Answer it with `Node::app_accept`, `app_reply` or `app_refuse`.
        msg: crate::AppMsgId,
        /// The process that sent it (its first virtual node).
        from: NodeRef,
        /// The key it was sent to; `None` for a message sent to this node
        /// itself (`Node::send_to`).
        key: Option<Vec<u8>>,
        /// The application's bytes.
        payload: Vec<u8>,
        /// Does the sender wait for the application's answer (a request) or only for it to take the message (a send)?
        want_reply: bool,
    },
    /// A message published on `topic`, which this node subscribes to
    /// (`Node::subscribe`). Publications of one publisher come in the
    /// order it published them; duplicates are dropped.
    Publication {
        /// The topic's name (its id is SHA-1 of it, like a key's).
        topic: Vec<u8>,
        /// The publishing process (its first virtual node's id).
        publisher: Id,
        /// The application's bytes.
        payload: Vec<u8>,
    },
    /// `count` publications on `topic` were dropped on their way here:
    /// this node's queue at the topic's owner was full.
    PublicationsMissed {
        /// The topic's name (its id is SHA-1 of it, like a key's).
        topic: Vec<u8>,
        /// How many were dropped.
        count: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_id() -> impl Strategy<Value = Id> {
        // Few distinct values, so that equal endpoints and keys on them
        // come up often.
        (0u64..12).prop_map(|v| Id::from_u64(v * 1000))
    }

    proptest! {
        /// A key is in the new range exactly when it was in the old one and
        /// not lost, or was gained; what is gained was not owned before and
        /// what is lost is not owned after.
        #[test]
        fn diff_accounts_for_every_key(
            me in any_id(), a in any_id(), b in any_id(), key in any_id(), fresh in any::<bool>()
        ) {
            let old = (!fresh).then_some(KeyRange { start: a, end: me });
            let new = KeyRange { start: b, end: me };
            let (gained, lost) = KeyRange::diff(old, new);
            let was = old.is_some_and(|o| o.contains(&key));
            let in_gained = gained.is_some_and(|g| g.contains(&key));
            let in_lost = lost.is_some_and(|l| l.contains(&key));
            prop_assert_eq!(new.contains(&key), (was && !in_lost) || in_gained);
            prop_assert!(!(in_gained && was));
            prop_assert!(!(in_lost && new.contains(&key)));
        }
    }
}
