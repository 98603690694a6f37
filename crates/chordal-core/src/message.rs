//! The peer protocol as the core sees it: who talks to whom, and what they say.
//!
//! `chordal-wire` maps these types to protobuf bytes; the core never sees bytes.
//! Requests carry a `req` number chosen by the sender; the answer echoes it.

use crate::{Id, KeyRange, Record, Version};
use std::net::SocketAddr;

/// A virtual node: its ring id and the peer address of the physical node that
/// hosts it. Several `NodeRef`s may share one address (virtual nodes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct NodeRef {
    /// Position on the ring.
    pub id: Id,
    /// Peer-protocol address of the hosting process.
    pub addr: SocketAddr,
}

impl NodeRef {
    /// A reference to the virtual node `id` hosted at `addr`.
    pub fn new(id: Id, addr: SocketAddr) -> NodeRef {
        NodeRef { id, addr }
    }
}

/// Where a message goes: a process, and optionally one virtual node in it.
///
/// `id` is `None` only when the sender knows just an address (a join seed);
/// the receiving process then hands the message to its first virtual node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Target {
    /// Peer-protocol address of the receiving process.
    pub addr: SocketAddr,
    /// The receiving virtual node, if known.
    pub id: Option<Id>,
}

impl From<NodeRef> for Target {
    fn from(n: NodeRef) -> Target {
        Target {
            addr: n.addr,
            id: Some(n.id),
        }
    }
}

/// A message with its sender and destination.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Envelope {
    /// The sending virtual node.
    pub from: NodeRef,
    /// The destination.
    pub to: Target,
    /// What is said.
    pub msg: Message,
}

/// Why a recursive lookup gave up on the way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LookupFailure {
    /// The query was forwarded more than `max_hops` times.
    HopLimit,
    /// A node on the path had no live next hop.
    NoRoute,
}

/// Every message of the peer protocol (see `docs/protocol.md`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// Liveness probe (`check_predecessor`).
    Ping { req: u64 },
    /// Answer to [`Message::Ping`].
    Pong { req: u64 },
    /// `stabilize`: "who is your predecessor, and your successors?"
    GetNeighbors { req: u64 },
    /// Answer to [`Message::GetNeighbors`].
    Neighbors {
        req: u64,
        predecessor: Option<NodeRef>,
        successors: Vec<NodeRef>,
        /// Records the answering process stores (its load).
        keys_stored: u64,
    },
    /// `notify`: "I think I might be your predecessor." One-way.
    Notify,
    /// A hint sent by a node that just accepted a new predecessor to its old
    /// one: "`candidate` now sits between us". Speeds up healing after a join;
    /// the receiver checks it before trusting it. One-way.
    SuccessorHint { candidate: NodeRef },
    /// Recursive `find_successor(key)`, started by `origin`. `hops` counts the
    /// forwards so far. The receiver acknowledges at once with
    /// [`Message::LookupAck`] (after `ack_delay`, batched) so the sender
    /// can detect a dead next hop.
    FindSuccessor {
        req: u64,
        origin: NodeRef,
        lookup: u64,
        key: Id,
        hops: u32,
    },
    /// "I have taken over the lookups you forwarded": acknowledges several
    /// `FindSuccessor` requests at once.
    LookupAck { reqs: Vec<u64> },
    /// The answer to a recursive lookup, sent straight to its origin.
    /// `successors[0]` is the owner of `key`; the rest follow it on the ring.
    FoundSuccessor {
        lookup: u64,
        key: Id,
        successors: Vec<NodeRef>,
        hops: u32,
    },
    /// A recursive lookup failed on the way; sent to its origin.
    LookupFailed { lookup: u64, reason: LookupFailure },
    /// One step of an iterative lookup: "what do you know about `key`?"
    ClosestPreceding { req: u64, key: Id },
    /// Answer to [`Message::ClosestPreceding`]. With `done`, `nodes` is the
    /// successor list starting at the owner; without, the closest preceding
    /// nodes the answerer knows, best first.
    ClosestPrecedingReply {
        req: u64,
        done: bool,
        nodes: Vec<NodeRef>,
    },
    /// Graceful leave: the sender tells both neighbours whom to use instead.
    /// One-way.
    Leave {
        predecessor: Option<NodeRef>,
        successors: Vec<NodeRef>,
    },
    /// The addressed virtual node does not live at this address (any more).
    NotHere { req: u64 },
    /// A client operation sent by a coordinator to the key's owner.
    /// `op_id` names the operation (the same in every retry of it, 0 for
    /// none): an owner that already answered it answers the same again.
    /// `timeout_ms`: how long the coordinator waits for this answer (0:
    /// unknown); the owner finishes or gives up within it.
    KvRequest {
        req: u64,
        op: KvOp,
        op_id: u64,
        timeout_ms: u32,
    },
    /// The owner's answer to [`Message::KvRequest`].
    /// `range` is the owner's key range `(start, end]` when it answers as
    /// owner: the coordinator caches it and sends later operations on keys
    /// in it straight to the owner, without a lookup.
    KvReply {
        req: u64,
        result: KvResult,
        range: Option<KeyRange>,
    },
    /// Owner to replica: store these records if newer.
    Replicate { req: u64, records: Vec<Record> },
    /// Replica's answer to [`Message::Replicate`]: `ok` once durable.
    /// `newer`: the newest version the replica kept instead of a record
    /// sent (it already held a newer one); that record is not what the
    /// replica holds, so an owner re-versions its write above it. `busy`:
    /// refused unstored because the replica is overloaded; send again later.
    ReplicateAck {
        req: u64,
        ok: bool,
        newer: Option<Version>,
        busy: bool,
    },
    /// Owner to replica, when the owner lacks a key: "what do you have?"
    ReplicaRead { req: u64, key: Vec<u8> },
    /// Answer to [`Message::ReplicaRead`] (a tombstone included).
    ReplicaReadReply { req: u64, record: Option<Record> },
    /// Range sync, owner to replica: hashes of the owner's records in
    /// `(start, end]`, one per bucket. A `probe` has one hash, of the
    /// whole range; a replica that disagrees answers `refine` instead of
    /// pushing, and the owner sends its buckets.
    SyncSummary {
        req: u64,
        start: Id,
        end: Id,
        buckets: Vec<Id>,
        probe: bool,
    },
    /// Answer to [`Message::SyncSummary`]: the buckets whose hashes differ.
    /// Both sides then push their records of those buckets to each other
    /// (`Replicate`), and newest wins. `refine`: the probe's hash differs,
    /// send the buckets (`differing` is then empty).
    SyncDiff {
        req: u64,
        differing: Vec<u32>,
        refine: bool,
    },
    /// Owner to replicas, when all agree: drop the tombstones of
    /// `(start, end]` whose hlc is below `before`. One-way.
    Collect { start: Id, end: Id, before: u64 },
}

/// What a client asks of a key's owner.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KvOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// An application message for the key's owner (`Node::send` and
    /// `Node::request`): handed to the owner's application, which accepts,
    /// answers or refuses it.
    Deliver {
        key: Vec<u8>,
        payload: Vec<u8>,
        want_reply: bool,
    },
    /// An application message for the receiving process itself, whatever
    /// keys it owns (`Node::send_to`, `Node::request_to`): for services
    /// that already know their peers, like a topic owner fanning out to
    /// its subscribers. No key, no ownership check.
    Direct {
        payload: Vec<u8>,
        want_reply: bool,
    },
    /// Pub/sub, subscriber to the topic's owner: "send me what is
    /// published on `topic`". Renewed every `topic_renew`; the owner
    /// forgets a subscriber not renewed for three periods.
    Subscribe {
        topic: Vec<u8>,
    },
    /// Pub/sub, subscriber to the topic's owner: stop sending.
    Unsubscribe {
        topic: Vec<u8>,
    },
    /// Pub/sub, publisher to the topic's owner, which fans them out: one
    /// or more publications on `topic`, in the order they were made.
    Publish {
        topic: Vec<u8>,
        publications: Vec<Publication>,
    },
    /// Pub/sub, topic owner to one subscriber process (direct, no key):
    /// publications in the order the owner took them, and how many were
    /// dropped per topic because this subscriber fell behind.
    Notify {
        items: Vec<Publication>,
        missed: Vec<(Vec<u8>, u64)>,
    },
    /// Pub/sub, topic owner to the next owners (direct, no key): the
    /// subscribers of its topics, so that they can take over at once.
    TopicReplica {
        topics: Vec<(Vec<u8>, Vec<NodeRef>)>,
    },
}

/// A message published on a topic, as it travels to the topic's owner and
/// on to the subscribers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Publication {
    pub topic: Vec<u8>,
    /// The publishing process (its first virtual node's id).
    pub publisher: Id,
    /// Chosen at random when the publishing process starts, so that a
    /// restarted publisher's sequence numbers are not taken for old ones.
    pub incarnation: u64,
    /// Counts up from 1 per incarnation of the publisher: subscribers drop
    /// a publication not newer than the last one they took from it.
    pub seq: u64,
    pub payload: Vec<u8>,
}

impl KvOp {
    /// The key the operation is about.
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Put { key, .. }
            | KvOp::Get { key }
            | KvOp::Delete { key }
            | KvOp::Deliver { key, .. }
            | KvOp::Subscribe { topic: key }
            | KvOp::Unsubscribe { topic: key }
            | KvOp::Publish { topic: key, .. } => key,
            KvOp::Direct { .. } | KvOp::Notify { .. } | KvOp::TopicReplica { .. } => &[],
        }
    }

    /// Is the operation for a node itself rather than a key's owner (no
    /// ownership check at the receiver)?
    pub fn is_direct(&self) -> bool {
        matches!(
            self,
            KvOp::Direct { .. } | KvOp::Notify { .. } | KvOp::TopicReplica { .. }
        )
    }
}

/// How a key-value operation ended at the owner.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KvResult {
    /// Put or delete stored with `version`, durable on `acked` nodes
    /// (owner included), at least the write quorum.
    Stored { version: Version, acked: u32 },
    /// Get: the value and its version.
    Found { value: Vec<u8>, version: Version },
    /// Get or delete of a key that does not exist (or was deleted).
    NotFound,
    /// The receiver does not own the key (routing was stale): look up again.
    WrongOwner,
    /// Fewer than the write quorum stored the write in time; it may still
    /// exist on some nodes.
    QuorumFailed { acked: u32, needed: u32 },
    /// Fewer than the write quorum of processes can hold a copy right now
    /// (the successor list is still filling, or members are down): nothing
    /// was written.
    QuorumUnavailable { available: u32, needed: u32 },
    /// The owner's storage failed.
    StoreFailed,
    /// The owner has too many operations in flight: try again later.
    Overloaded,
    /// The key or value is larger than the owner accepts.
    TooLarge { size: u32, limit: u32 },
    /// An application message reached the owner's application.
    Delivered,
    /// The owner's application answered a request.
    Replied { payload: Vec<u8> },
    /// The owner's application refused the message, was too busy to take
    /// it, or did not answer in time.
    Refused,
    /// A publication was queued for `subscribers` subscriber processes.
    Published { subscribers: u32 },
}

impl Message {
    /// The request number of a request that expects an answer.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Message::Ping { req }
            | Message::GetNeighbors { req }
            | Message::FindSuccessor { req, .. }
            | Message::ClosestPreceding { req, .. }
            | Message::KvRequest { req, .. }
            | Message::Replicate { req, .. }
            | Message::ReplicaRead { req, .. }
            | Message::SyncSummary { req, .. } => Some(*req),
            _ => None,
        }
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::GetNeighbors { .. } => "get_neighbors",
            Message::Neighbors { .. } => "neighbors",
            Message::Notify => "notify",
            Message::SuccessorHint { .. } => "successor_hint",
            Message::FindSuccessor { .. } => "find_successor",
            Message::LookupAck { .. } => "lookup_ack",
            Message::FoundSuccessor { .. } => "found_successor",
            Message::LookupFailed { .. } => "lookup_failed",
            Message::ClosestPreceding { .. } => "closest_preceding",
            Message::ClosestPrecedingReply { .. } => "closest_preceding_reply",
            Message::Leave { .. } => "leave",
            Message::NotHere { .. } => "not_here",
            Message::KvRequest { .. } => "kv_request",
            Message::KvReply { .. } => "kv_reply",
            Message::Replicate { .. } => "replicate",
            Message::ReplicateAck { .. } => "replicate_ack",
            Message::ReplicaRead { .. } => "replica_read",
            Message::ReplicaReadReply { .. } => "replica_read_reply",
            Message::SyncSummary { .. } => "sync_summary",
            Message::SyncDiff { .. } => "sync_diff",
            Message::Collect { .. } => "collect",
        }
    }
}
