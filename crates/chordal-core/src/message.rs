//! The peer protocol as the core sees it: who talks to whom, and what they say.
//!
//! `chordal-wire` maps these types to protobuf bytes; the core never sees bytes.
//! Requests carry a `req` number chosen by the sender; the answer echoes it.

use crate::{Id, KeyRange, Record, Version};
use std::net::SocketAddr;

mod operation;

pub use operation::{OpResult, Operation, Publication};

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

impl Envelope {
    /// May a client (a process that is not a ring member) send this? What
    /// [`Message::client_may_send`] allows, and its lookups name the client
    /// itself as origin, so that answers are never reflected at a third
    /// node.
    pub fn client_may_send(&self) -> bool {
        self.msg.client_may_send()
            && match &self.msg {
                Message::FindSuccessor { origin, .. } => *origin == self.from,
                _ => true,
            }
    }
}

/// A change in ring membership, disseminated for one-hop routing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MemberEvent {
    /// The virtual node that joined or left.
    pub node: NodeRef,
    /// Joined (`true`) or left or failed (`false`).
    pub joined: bool,
    /// The process that detected it (the node's successor), for logs and
    /// debugging; the stretches of `MemberEvents` bound the spreading.
    pub by: SocketAddr,
}

pub use crate::ring::MembersDigest;

/// Why a recursive lookup gave up on the way.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LookupFailure {
    /// The query was forwarded more than `max_hops` times.
    HopLimit,
    /// A node on the path had no live next hop.
    NoRoute,
}

/// What the sender of a [`Message::FindSuccessor`] says the receiver is.
/// The last hop of every lookup goes to the owner itself, so that a lookup
/// answers with a node that is alive (ToN'03 §V: a lookup succeeds when it
/// reaches the key's current successor).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum OwnerClaim {
    /// Nothing: the receiver routes on (`find_successor`).
    #[default]
    Route,
    /// The sender's successor list names the receiver the key's successor
    /// (the sender is the key's predecessor): the receiver answers the
    /// origin with itself and its successor list. Not counted as a hop.
    Successor,
    /// The sender's membership table (one-hop routing) names the receiver
    /// the key's owner: the receiver answers if the key is in its range and
    /// routes on otherwise.
    Table,
}

/// Which machine of a node a message is for: `Node` hands each message
/// to the machine its family names. Every message is of exactly one
/// family ([`Message::family`] is an exhaustive match), so a new message
/// must be given one before it compiles, and reaches no machine by a
/// default.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Family {
    /// Chord's upkeep of the ring: pings, neighbour exchanges, notify,
    /// successor hints, leave (a virtual node's).
    Ring,
    /// Lookups: `find_successor` hops, their acknowledgements and answers,
    /// iterative steps (a virtual node's).
    Lookup,
    /// One-hop routing: membership events and table copies (the ring's
    /// membership table).
    Members,
    /// An operation for a key's owner, and its answer (the request
    /// machine).
    Request,
    /// Replication, replica reads, range sync, collection (the store).
    Store,
    /// Terms and leases: prepares, promises, renewals, releases,
    /// handovers, lineage (authority).
    Authority,
}

/// Every message of the peer protocol (see `docs/peer-protocol.md`), by
/// [`Family`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// Liveness probe (`check_predecessor`).
    Ping {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
    },
    /// Answer to [`Message::Ping`].
    Pong {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
    },
    /// `stabilize`: "who is your predecessor, and your successors?"
    GetNeighbors {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
    },
    /// Answer to [`Message::GetNeighbors`].
    Neighbors {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The sender's predecessor, if it knows one.
        predecessor: Option<NodeRef>,
        /// The sender's successor list, nearest first.
        successors: Vec<NodeRef>,
        /// Records the answering process stores (its load).
        keys_stored: u64,
    },
    /// `notify`: "I think I might be your predecessor." One-way.
    Notify,
    /// A hint sent by a node that just accepted a new predecessor to its old
    /// one: "`candidate` now sits between us". Speeds up healing after a join;
    /// the receiver checks it before trusting it. One-way.
    SuccessorHint {
        /// The node that now sits between the receiver and its successor.
        candidate: NodeRef,
    },
    /// Recursive `find_successor(key)`, started by `origin`. `hops` counts the
    /// forwards so far. The receiver acknowledges at once with
    /// [`Message::LookupAck`] (after `ack_delay`, batched) so the sender
    /// can detect a dead next hop.
    FindSuccessor {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The node that started the lookup; the answer goes straight to it.
        origin: NodeRef,
        /// The number the origin gave the lookup.
        lookup: u64,
        /// The key's id.
        key: Id,
        /// Forwards so far.
        hops: u32,
        /// Whether the sender names the receiver the key's owner.
        claim: OwnerClaim,
    },
    /// "I have taken over the lookups you forwarded": acknowledges several
    /// `FindSuccessor` requests at once.
    LookupAck {
        /// The request numbers of the `FindSuccessor`s acknowledged.
        reqs: Vec<u64>,
    },
    /// The answer to a recursive lookup, sent straight to its origin.
    /// `successors[0]` is the owner of `key`; the rest follow it on the ring.
    FoundSuccessor {
        /// The number the origin gave the lookup.
        lookup: u64,
        /// The key's id.
        key: Id,
        /// The owner of `key` first, then the nodes after it.
        successors: Vec<NodeRef>,
        /// Forwards so far.
        hops: u32,
    },
    /// A recursive lookup failed on the way; sent to its origin.
    LookupFailed {
        /// The number the origin gave the lookup.
        lookup: u64,
        /// Why the lookup gave up.
        reason: LookupFailure,
    },
    /// One step of an iterative lookup: "what do you know about `key`?"
    ClosestPreceding {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The key's id.
        key: Id,
    },
    /// Answer to [`Message::ClosestPreceding`]. With `done`, `nodes` is the
    /// successor list starting at the owner; without, the closest preceding
    /// nodes the answerer knows, best first.
    ClosestPrecedingReply {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// Is `nodes` the owner's successor list (the lookup is over)?
        done: bool,
        /// The owner and its successors if `done`, else the closest preceding nodes the answerer knows, best first.
        nodes: Vec<NodeRef>,
    },
    /// Graceful leave: the sender tells both neighbours whom to use instead.
    /// One-way.
    Leave {
        /// The sender's predecessor, if it knows one.
        predecessor: Option<NodeRef>,
        /// The sender's successor list, nearest first.
        successors: Vec<NodeRef>,
    },
    /// One-hop routing (docs/design.md §3): membership events for the
    /// receiver to apply and pass on to the processes after it up to
    /// `until`, along the binomial tree of D1HT's EDRA.
    MemberEvents {
        /// The request number, chosen by the sender; the ack echoes it.
        req: u64,
        /// The receiver covers the processes whose ring positions lie
        /// strictly between its own and this one (see
        /// `members::process_position`).
        until: Id,
        /// What happened, at most a few thousand per message.
        events: Vec<MemberEvent>,
    },
    /// Answer to [`Message::MemberEvents`]: taken (an unacknowledged one
    /// goes to the next process instead, so a dead one does not cut its
    /// subtree off).
    MemberEventsAck {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
    },
    /// Asks for the receiver's membership table, one page of ids after
    /// `after` (from the start when `None`). With `digest`, the asker's own
    /// table: an equal one is answered `same` and no entries.
    GetMembers {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The last id of the page before (`None`: the first page).
        after: Option<Id>,
        /// The asker's table digest, on the first page only.
        digest: Option<MembersDigest>,
        /// The asker's digest of each slice of the id space (`SLICES`, or
        /// none: then the whole table is copied). The answer carries only
        /// the slices that differ.
        slices: Vec<MembersDigest>,
    },
    /// Answer to [`Message::GetMembers`].
    Members {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// Entries in id order.
        nodes: Vec<NodeRef>,
        /// More entries follow: ask again after the last one.
        more: bool,
        /// The asker's digest equals ours: nothing to copy.
        same: bool,
        /// The slices the page covers (bit `i`: slice `i`); `u64::MAX`
        /// the whole table. Never 0 (on the wire 0 means every slice).
        slices: u64,
    },
    /// The addressed virtual node does not live at this address (any more).
    NotHere {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
    },
    /// A client operation sent by a coordinator to the key's owner.
    /// `op_id` names the operation (the same in every retry of it, 0 for
    /// none): an owner that already answered it answers the same again.
    /// `timeout_ms`: how long the coordinator waits for this answer (0:
    /// unknown); the owner finishes or gives up within it.
    Request {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// What the coordinator asks of the owner.
        op: Operation,
        /// Names the operation across its retries (0: not named).
        op_id: u64,
        /// How long the coordinator waits for the answer, in ms (0: unknown).
        timeout_ms: u32,
        /// An earlier attempt of this write may have been applied (its
        /// owner went silent): answer it from the record's log of writes
        /// rather than apply it twice (see `oplog.rs`).
        retry: bool,
    },
    /// The owner's answer to [`Message::Request`].
    /// `range` is the owner's key range `(start, end]` when it answers as
    /// owner: the coordinator caches it and sends later operations on keys
    /// in it straight to the owner, without a lookup.
    Reply {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// How the operation ended at the owner.
        result: OpResult,
        /// The owner's key range, when it answered as owner.
        range: Option<KeyRange>,
    },
    /// Owner to replica: store these records if newer. An owner sends the
    /// writes it decided for one replica in one pass in one `Replicate`
    /// (one apply there, one acknowledgement back).
    Replicate {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The records, each with its key, version and value (or tombstone).
        records: Vec<Record>,
        /// An owner's write decided in this term: a copy that promised a
        /// higher term for a record's key refuses it (the fence, DESIGN
        /// §5 "Who decides"). 0: not an owner's decision (sync, transfer,
        /// repair), stored if newer.
        fence: u64,
    },
    /// Replica's answer to [`Message::Replicate`]: `ok` once durable.
    /// `newer`: for each record sent that the replica did not take because
    /// it already held a newer one, the record's index and the version
    /// kept; that record is not what the replica holds, so an owner
    /// re-versions its write above it. `busy`: refused unstored because
    /// the replica is overloaded; send again later.
    ReplicateAck {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// Stored durably?
        ok: bool,
        /// `(index of a record sent, the newer version kept instead)`, in
        /// index order.
        newer: Vec<(u32, Version)>,
        /// Refused unstored because the replica is overloaded: send again later.
        busy: bool,
        /// Refused unstored because the replica promised this higher term
        /// for the key (0: not fenced): the owner has been deposed.
        fenced: u64,
    },
    /// A holder-to-be asks for `term` over `range` with `config` (phase 1
    /// of DESIGN §5, "Who decides"). Sent by the holder vnode itself.
    Prepare {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The ring interval asked for.
        range: KeyRange,
        /// The term asked for.
        term: u64,
        /// The processes that will hold the copies (the holder's first).
        config: Vec<NodeRef>,
    },
    /// The answer to [`Message::Prepare`]: granted, with the promises the
    /// grant replaced, or refused and why.
    Promise {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// What the grant replaced, or why there was none.
        answer: Result<Vec<crate::Known>, crate::Refusal>,
    },
    /// A holder extends its lease of `term` over `range`.
    Renew {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The ring interval held.
        range: KeyRange,
        /// The term it is held in.
        term: u64,
        /// Older configs that may still hold acknowledged writes not yet
        /// on a majority of the term's config (the term's unfinished
        /// catch-up; empty once finished): recorded with the settled term,
        /// so that the next holder reads them too.
        pending: Vec<Vec<NodeRef>>,
        /// The term's config (the holder's process first): what a process
        /// that did not grant the term records as its newest settled one
        /// (a leaving member learns that the term left it out).
        config: Vec<NodeRef>,
    },
    /// The answer to [`Message::Renew`]: is every point of the range still
    /// promised to the holder in that term?
    Renewed {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// Extended (else the holder lost some of it and must stop).
        ok: bool,
    },
    /// A holder gives up `term` over `range`: others may be granted it at
    /// once (a handover on join, leave or a new config).
    Release {
        /// The ring interval given up.
        range: KeyRange,
        /// The term it was held in.
        term: u64,
    },
    /// A process draining for a graceful leave, to a holder whose config
    /// it is in: prepare a term whose config leaves it out, so that its
    /// going costs no config two members at once (sent again while the
    /// leave waits; see `Authority::may_leave`).
    Leaving,
    /// A graceful leaver's farewell, to the successor that acknowledged
    /// every record of `range`: the leaver held `range` in `term`, caught
    /// up, and grants the successor's next term there in advance — its
    /// answer to that prepare is `known` (its promises over `range`) —
    /// and will grant nothing else. The successor's store has every write
    /// the term acknowledged, so it need not read the term's config: a
    /// config of two processes is not left below a majority.
    Handover {
        /// The interval handed over.
        range: KeyRange,
        /// The term the leaver held it in.
        term: u64,
        /// The leaver's promises over `range`, as a grant would report.
        known: Vec<crate::authority::Known>,
    },
    /// The newest term the sender knows settled over `range`, with that
    /// term's config and pending configs, to the interval's owner: "a
    /// prepare there must ask these". Sent by a member of that config
    /// whom nobody renews the term to any more, and whom the owner may
    /// not know (see `Authority::tell_lineage`). The receiver records it
    /// as it would a renewal it did not grant (`Promises::observe`).
    Lineage {
        /// The interval.
        range: KeyRange,
        /// The term settled there.
        term: u64,
        /// Its config (its holder first).
        config: Vec<NodeRef>,
        /// Older configs its holder had still to read, as last known.
        pending: Vec<Vec<NodeRef>>,
    },
    /// Owner to replica, when the owner lacks a key: "what do you have?"
    ReplicaRead {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The key (its bytes).
        key: Vec<u8>,
    },
    /// Answer to [`Message::ReplicaRead`] (a tombstone included).
    ReplicaReadReply {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The replica's copy (a tombstone included), if any.
        record: Option<Record>,
    },
    /// Range sync, owner to replica: hashes of the owner's records in
    /// `(start, end]`, one per bucket. A `probe` has one hash, of the
    /// whole range; a replica that disagrees answers `refine` instead of
    /// pushing, and the owner sends its buckets.
    SyncSummary {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// The exclusive start of the ring interval `(start, end]`.
        start: Id,
        /// The inclusive end of the ring interval `(start, end]`.
        end: Id,
        /// The hashes of the owner's buckets, in order.
        buckets: Vec<Id>,
        /// Is `buckets` one hash of the whole range (a probe)?
        probe: bool,
    },
    /// Answer to [`Message::SyncSummary`]: the buckets whose hashes differ.
    /// Both sides then push their records of those buckets to each other
    /// (`Replicate`), and newest wins. `refine`: the probe's hash differs,
    /// send the buckets (`differing` is then empty).
    SyncDiff {
        /// The request number, chosen by the sender; the answer echoes it.
        req: u64,
        /// Indexes of the buckets whose hashes differ.
        differing: Vec<u32>,
        /// The probe's hash differs: send the buckets.
        refine: bool,
    },
    /// Replica to owner, after a [`Message::SyncDiff`] that named buckets:
    /// its push of them ended — every record it held there when it
    /// compared is now at the owner (`ok`), or the push failed or could
    /// not start (try again later). Lets an owner finishing a term's
    /// catch-up know what it has pulled (DESIGN §5).
    SyncPushed {
        /// The sync's request number.
        req: u64,
        /// Did every page arrive?
        ok: bool,
    },
    /// Owner to replicas, when all agree: drop the tombstones of
    /// `(start, end]` whose hlc is below `before`. One-way.
    Collect {
        /// The exclusive start of the ring interval `(start, end]`.
        start: Id,
        /// The inclusive end of the ring interval `(start, end]`.
        end: Id,
        /// Tombstones with an hlc below this go.
        before: u64,
    },
}

impl Message {
    /// The request number of a request that expects an answer.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Message::Ping { req }
            | Message::GetNeighbors { req }
            | Message::GetMembers { req, .. }
            | Message::MemberEvents { req, .. }
            | Message::FindSuccessor { req, .. }
            | Message::ClosestPreceding { req, .. }
            | Message::Request { req, .. }
            | Message::Replicate { req, .. }
            | Message::Prepare { req, .. }
            | Message::Renew { req, .. }
            | Message::ReplicaRead { req, .. }
            | Message::SyncSummary { req, .. } => Some(*req),
            _ => None,
        }
    }

    /// May a process that is not a ring member (a client: the native
    /// `Client`, a gateway, an application outside the ring) send this?
    /// Clients ask — liveness, neighbours, lookups, store operations,
    /// application messages and pub/sub — and never speak for the ring:
    /// no `Notify`, stabilization answers, `Leave`, replica, sync or
    /// handoff traffic, and no topic-owner traffic (`Notify` and
    /// `TopicReplica` operations). The driver closes a client connection
    /// that sends anything else.
    pub fn client_may_send(&self) -> bool {
        match self {
            Message::Ping { .. }
            | Message::Pong { .. }
            | Message::GetNeighbors { .. }
            | Message::GetMembers { .. }
            | Message::FindSuccessor { .. }
            | Message::ClosestPreceding { .. } => true,
            Message::Request { op, .. } => !matches!(
                op,
                Operation::Notify { .. } | Operation::TopicReplica { .. }
            ),
            Message::Neighbors { .. }
            | Message::Notify
            | Message::SuccessorHint { .. }
            | Message::LookupAck { .. }
            | Message::FoundSuccessor { .. }
            | Message::LookupFailed { .. }
            | Message::ClosestPrecedingReply { .. }
            | Message::Leave { .. }
            | Message::NotHere { .. }
            | Message::MemberEvents { .. }
            | Message::MemberEventsAck { .. }
            | Message::Members { .. }
            | Message::Reply { .. }
            | Message::Replicate { .. }
            | Message::ReplicateAck { .. }
            | Message::ReplicaRead { .. }
            | Message::ReplicaReadReply { .. }
            | Message::SyncSummary { .. }
            | Message::SyncDiff { .. }
            | Message::SyncPushed { .. }
            | Message::Collect { .. }
            | Message::Prepare { .. }
            | Message::Promise { .. }
            | Message::Renew { .. }
            | Message::Renewed { .. }
            | Message::Release { .. }
            | Message::Leaving
            | Message::Handover { .. }
            | Message::Lineage { .. } => false,
        }
    }

    /// Authority control (prepares, renewals, their answers, releases):
    /// small frames a lease's life depends on. A driver writes them ahead
    /// of the bulk (replica writes, transfers) already queued for the same
    /// peer, so that a busy connection does not let a lease lapse. Their
    /// order relative to other messages does not matter: the fence and the
    /// terms, not arrival order, decide what an acceptor takes.
    pub fn is_urgent(&self) -> bool {
        matches!(
            self,
            Message::Prepare { .. }
                | Message::Promise { .. }
                | Message::Renew { .. }
                | Message::Renewed { .. }
                | Message::Release { .. }
        )
    }

    /// The machine this message is for.
    pub fn family(&self) -> Family {
        use Message::*;
        match self {
            Ping { .. }
            | Pong { .. }
            | GetNeighbors { .. }
            | Neighbors { .. }
            | Notify
            | SuccessorHint { .. }
            | Leave { .. }
            | NotHere { .. } => Family::Ring,
            FindSuccessor { .. }
            | LookupAck { .. }
            | FoundSuccessor { .. }
            | LookupFailed { .. }
            | ClosestPreceding { .. }
            | ClosestPrecedingReply { .. } => Family::Lookup,
            MemberEvents { .. } | MemberEventsAck { .. } | GetMembers { .. } | Members { .. } => {
                Family::Members
            }
            Request { .. } | Reply { .. } => Family::Request,
            Replicate { .. }
            | ReplicateAck { .. }
            | ReplicaRead { .. }
            | ReplicaReadReply { .. }
            | SyncSummary { .. }
            | SyncDiff { .. }
            | SyncPushed { .. }
            | Collect { .. } => Family::Store,
            Prepare { .. }
            | Promise { .. }
            | Renew { .. }
            | Renewed { .. }
            | Release { .. }
            | Leaving
            | Handover { .. }
            | Lineage { .. } => Family::Authority,
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
            Message::MemberEvents { .. } => "member_events",
            Message::MemberEventsAck { .. } => "member_events_ack",
            Message::GetMembers { .. } => "get_members",
            Message::Members { .. } => "members",
            Message::Request { .. } => "kv_request",
            Message::Reply { .. } => "kv_reply",
            Message::Replicate { .. } => "replicate",
            Message::ReplicateAck { .. } => "replicate_ack",
            Message::ReplicaRead { .. } => "replica_read",
            Message::ReplicaReadReply { .. } => "replica_read_reply",
            Message::SyncSummary { .. } => "sync_summary",
            Message::SyncDiff { .. } => "sync_diff",
            Message::SyncPushed { .. } => "sync_pushed",
            Message::Collect { .. } => "collect",
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Renew { .. } => "renew",
            Message::Renewed { .. } => "renewed",
            Message::Release { .. } => "release",
            Message::Leaving => "leaving",
            Message::Handover { .. } => "handover",
            Message::Lineage { .. } => "lineage",
        }
    }
}
