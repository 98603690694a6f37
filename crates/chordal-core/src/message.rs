//! The peer protocol as the core sees it: who talks to whom, and what they say.
//!
//! `chordal-wire` maps these types to protobuf bytes; the core never sees bytes.
//! Requests carry a `req` number chosen by the sender; the answer echoes it.

use crate::{Change, Consistency, Id, KeyRange, Record, Time, Version, WriteOptions};
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

/// What a client asks of a key's owner.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Operation {
    /// Store `value` under `key`, perhaps expiring, perhaps only if the
    /// current value meets a condition.
    Put {
        /// The key (its bytes).
        key: Vec<u8>,
        /// The value's bytes.
        value: Vec<u8>,
        /// Expiry, condition, whether to answer the replaced value.
        opts: WriteOptions,
    },
    /// Read `key` from as many copies as `consistency` says.
    Get {
        /// The key (its bytes).
        key: Vec<u8>,
        /// How many copies answer.
        consistency: Consistency,
    },
    /// Delete `key` (a tombstone), perhaps only if the current value meets
    /// a condition.
    Delete {
        /// The key (its bytes).
        key: Vec<u8>,
        /// Condition, whether to answer the deleted value (the expiry is
        /// ignored).
        opts: WriteOptions,
    },
    /// A write the owner computes from the current value (increment,
    /// append, new expiry), decided atomically there.
    Update {
        /// The key (its bytes).
        key: Vec<u8>,
        /// What to compute.
        change: Change,
    },
    /// An application message for the key's owner (`Node::send` and
    /// `Node::request`): handed to the owner's application, which accepts,
    /// answers or refuses it.
    Deliver {
        /// The key (its bytes).
        key: Vec<u8>,
        /// The application's bytes.
        payload: Vec<u8>,
        /// Does the sender wait for the application's answer (a request) or only for it to take the message (a send)?
        want_reply: bool,
    },
    /// An application message for the receiving process itself, whatever
    /// keys it owns (`Node::send_to`, `Node::request_to`): for services
    /// that already know their peers, like a topic owner fanning out to
    /// its subscribers. No key, no ownership check.
    Direct {
        /// The application's bytes.
        payload: Vec<u8>,
        /// Does the sender wait for the application's answer (a request) or only for it to take the message (a send)?
        want_reply: bool,
    },
    /// Several operations on keys of one owner — keys sharing one key id,
    /// so one hash tag (see [`Id::of_key`]) — decided together at the
    /// owner, in order, each against the state the ones before it left,
    /// and written in one atomic step at every copy (MULTI/EXEC, MSETNX,
    /// RENAME, COPY). `steps` are puts, gets, deletes, updates (among
    /// them [`Change::CopyFrom`] and [`Change::Expect`]) and collection
    /// commands (a command that reads a run of elements reads its
    /// collection whole first, up to
    /// [`MAX_READ_ELEMENTS`](crate::collection::MAX_READ_ELEMENTS)). With
    /// `all_or_nothing`, a step that fails (a condition, not a number, too
    /// large) makes the batch write nothing; a failed `Expect` always
    /// does. Answered [`OpResult::Batch`].
    Batch {
        /// The operations, in order.
        steps: Vec<Operation>,
        /// Does one failed step cancel every write?
        all_or_nothing: bool,
    },
    /// A command on the collection (hash, set) at `key`, decided at its
    /// owner with the header and the elements it touches as one batch
    /// (see [`crate::collection`]). Answered [`OpResult::Collection`], or
    /// [`OpResult::WrongType`] when the key holds another kind.
    Collection {
        /// The collection's key.
        key: Vec<u8>,
        /// The kind of collection the command is for.
        kind: crate::Kind,
        /// What to do.
        op: crate::collection::CollOp,
    },
    /// Wait at `key`'s owner for a write newer than `after` and answer it
    /// ([`OpResult::Watched`]): of the key itself (its elements too, for
    /// a collection), or with `group` of any key sharing its key id (a
    /// hash tag's group). The owner first reads what it holds newer than
    /// `after` (the oldest such change answers at once), then waits for
    /// acknowledged writes until the request's time is nearly up and
    /// answers "nothing yet". `after: None` on a key answers its current
    /// record at once; on a group, the next write. Watching again from
    /// each answer's version follows every change a key goes through,
    /// whichever owner decides it.
    Watch {
        /// The key, or any key of the group.
        key: Vec<u8>,
        /// Answer only a change newer than this version.
        after: Option<Version>,
        /// Every key sharing `key`'s key id, not only `key`.
        group: bool,
    },
    /// The live keys of the owner of `start` whose ids lie in `[start,
    /// end]` (`start <= end`, no wrap), in key-id order: one page of a
    /// walk over the keyspace (SCAN, KEYS, FLUSHALL). The owner stops at
    /// the end of its range, or after about `limit` keys — but only
    /// where the top 64 bits of the key id change, so that a page never
    /// cuts a group of keys sharing an id (a hash tag's) and a walk can
    /// resume from a 64-bit position (see [`ScanPage`](crate::ScanPage)).
    Scan {
        /// The first key id of the page.
        start: Id,
        /// The last key id the walk wants (inclusive).
        end: Id,
        /// About how many keys (a page may hold more: see above).
        limit: u32,
    },
    /// Pub/sub, subscriber to the topic's owner: "send me what is
    /// published on `topic`". Renewed every `topic_renew`; the owner
    /// forgets a subscriber not renewed for three periods.
    Subscribe {
        /// The topic's name (its id is SHA-1 of it, like a key's).
        topic: Vec<u8>,
    },
    /// Pub/sub, subscriber to the topic's owner: stop sending.
    Unsubscribe {
        /// The topic's name (its id is SHA-1 of it, like a key's).
        topic: Vec<u8>,
    },
    /// Pub/sub, publisher to the topic's owner, which fans them out: one
    /// or more publications on `topic`, in the order they were made.
    Publish {
        /// The topic's name (its id is SHA-1 of it, like a key's).
        topic: Vec<u8>,
        /// The publications, in the order they were made.
        publications: Vec<Publication>,
    },
    /// Pub/sub, topic owner to one subscriber process (direct, no key):
    /// publications in the order the owner took them, and how many were
    /// dropped per topic because this subscriber fell behind.
    Notify {
        /// The publications, in the order the owner took them.
        items: Vec<Publication>,
        /// Per topic, publications dropped because this subscriber fell behind.
        missed: Vec<(Vec<u8>, u64)>,
    },
    /// Pub/sub, topic owner to the next owners (direct, no key): the
    /// subscribers of its topics, so that they can take over at once.
    TopicReplica {
        /// Topics and their subscriber processes.
        topics: Vec<(Vec<u8>, Vec<NodeRef>)>,
    },
}

/// A message published on a topic, as it travels to the topic's owner and
/// on to the subscribers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Publication {
    /// The topic's name (its id is SHA-1 of it, like a key's).
    pub topic: Vec<u8>,
    /// The publishing process (its first virtual node's id).
    pub publisher: Id,
    /// Chosen at random when the publishing process starts, so that a
    /// restarted publisher's sequence numbers are not taken for old ones.
    pub incarnation: u64,
    /// Counts up from 1 per incarnation of the publisher: subscribers drop
    /// a publication not newer than the last one they took from it.
    pub seq: u64,
    /// The application's bytes.
    pub payload: Vec<u8>,
}

impl Operation {
    /// The key the operation is about.
    pub fn key(&self) -> &[u8] {
        match self {
            Operation::Put { key, .. }
            | Operation::Get { key, .. }
            | Operation::Delete { key, .. }
            | Operation::Update { key, .. }
            | Operation::Collection { key, .. }
            | Operation::Watch { key, .. }
            | Operation::Deliver { key, .. }
            | Operation::Subscribe { topic: key }
            | Operation::Unsubscribe { topic: key }
            | Operation::Publish { topic: key, .. } => key,
            Operation::Batch { steps, .. } => steps.first().map_or(&[], |s| s.key()),
            Operation::Direct { .. }
            | Operation::Notify { .. }
            | Operation::TopicReplica { .. }
            | Operation::Scan { .. } => &[],
        }
    }

    /// Where on the ring the operation goes: its key's id (see
    /// [`Id::of_key`]), or for a scan the page's first id.
    pub fn key_id(&self) -> Id {
        match self {
            Operation::Scan { start, .. } => *start,
            _ => Id::of_key(self.key()),
        }
    }

    /// Is it an operation of the store (put, get, delete, update)? Their
    /// keys and values are held to the store's size limits, and an owner
    /// remembers their answers so that a retry never acts twice.
    pub fn is_store(&self) -> bool {
        matches!(
            self,
            Operation::Put { .. }
                | Operation::Get { .. }
                | Operation::Delete { .. }
                | Operation::Update { .. }
                | Operation::Batch { .. }
                | Operation::Collection { .. }
                | Operation::Watch { .. }
        )
    }

    /// The keys a batch's steps name, each once, in order; for any other
    /// operation its key.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Operation::Batch { steps, .. } => Operation::batch_keys(steps),
            other => vec![other.key()],
        }
    }

    /// The keys batch steps `steps` name (a copy names two), each once, in
    /// order.
    pub fn batch_keys(steps: &[Operation]) -> Vec<&[u8]> {
        let mut keys: Vec<&[u8]> = Vec::new();
        for s in steps {
            let from = match s {
                Operation::Update {
                    change: Change::CopyFrom { from, .. },
                    ..
                } => Some(from.as_slice()),
                Operation::Collection {
                    op: crate::collection::CollOp::Move { to, .. },
                    ..
                } => Some(to.as_slice()),
                _ => None,
            };
            for k in from.into_iter().chain([s.key()]) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        keys
    }

    /// May `steps` be one batch: at least one, all store operations
    /// (collection commands among them), on keys of one key id? What an
    /// owner checks before deciding it.
    pub fn one_owner(steps: &[Operation]) -> bool {
        let simple = steps.iter().all(|s| {
            matches!(
                s,
                Operation::Put { .. }
                    | Operation::Get { .. }
                    | Operation::Delete { .. }
                    | Operation::Update { .. }
                    | Operation::Collection { .. }
            )
        });
        let keys = Operation::batch_keys(steps);
        let id = Id::of_key(keys.first().copied().unwrap_or_default());
        simple && !steps.is_empty() && keys.iter().all(|k| Id::of_key(k) == id)
    }

    /// Does a store operation name a key of the collections' reserved
    /// element space (see [`crate::collection::key`])? Only a restore
    /// may: it writes back what a backup read.
    pub fn names_reserved_key(&self) -> bool {
        if !self.is_store()
            || matches!(
                self,
                Operation::Update {
                    change: Change::Restore { .. },
                    ..
                }
            )
        {
            return false;
        }
        self.keys()
            .iter()
            .any(|k| crate::collection::key::is_reserved(k))
    }

    /// Is it a store write (put, delete, update)? Sending one again after
    /// an owner went silent could apply it twice.
    pub fn is_store_write(&self) -> bool {
        match self {
            Operation::Get { .. } | Operation::Watch { .. } => false,
            Operation::Collection { op, .. } => !op.is_read(),
            other => other.is_store(),
        }
    }

    /// `(size, limit)` if a store operation's key is longer than `max_key`,
    /// or the value of a put or an append longer than `max_value`. Checked
    /// by coordinators, owners and the native client alike.
    pub fn over_limits(&self, max_key: usize, max_value: usize) -> Option<(u64, u64)> {
        if let Operation::Batch { steps, .. } = self {
            return steps.iter().find_map(|s| s.over_limits(max_key, max_value));
        }
        let key = self.key().len();
        if self.is_store() && key > max_key {
            return Some((key as u64, max_key as u64));
        }
        match self {
            Operation::Put { value, .. }
            | Operation::Update {
                change: Change::Append(value),
                ..
            }
            | Operation::Update {
                change:
                    Change::Restore {
                        value: Some(value), ..
                    },
                ..
            } if value.len() > max_value => Some((value.len() as u64, max_value as u64)),
            Operation::Collection { op, .. } => op.over_limits(max_key, max_value),
            _ => None,
        }
    }

    /// Is the operation for a node itself rather than a key's owner (no
    /// ownership check at the receiver)?
    pub fn is_direct(&self) -> bool {
        matches!(
            self,
            Operation::Direct { .. } | Operation::Notify { .. } | Operation::TopicReplica { .. }
        )
    }
}

/// How a key-value operation ended at the owner.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpResult {
    /// Put or delete stored with `version`, durable on `acked` nodes
    /// (owner included), at least the write quorum.
    Stored {
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// Copies that stored it durably (the owner's included).
        acked: u32,
    },
    /// Get: the value, its version and expiry.
    Found {
        /// The value's bytes.
        value: Vec<u8>,
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// When the value expires (`None`: never).
        expires: Option<Time>,
    },
    /// A put or delete that asked for the value it replaced: stored like
    /// `Stored`, with that value (`None`: the key had none).
    Replaced {
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// Copies that stored it durably (the owner's included).
        acked: u32,
        /// The value the write replaced.
        old: Option<Vec<u8>>,
    },
    /// An update (increment, append, expiry) stored like `Stored`, with its
    /// number: the new integer, the new length, 1 (or 0 and nothing written
    /// when the expiry was already that one; then `acked` is 0 and
    /// `version` the current one).
    Updated {
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// Copies that stored it durably (the owner's included).
        acked: u32,
        /// The new integer, the new length, or 1 / 0 for an expiry.
        number: i64,
    },
    /// A conditional write's condition did not hold: nothing was written.
    PreconditionFailed {
        /// The key's current version (`None`: no live value).
        current: Option<Version>,
    },
    /// An increment of a value that is not a decimal 64-bit integer.
    NotAnInteger,
    /// A float increment of a value (or by an amount) that is not a
    /// decimal number.
    NotAFloat,
    /// A command for one kind of value (a string's, a hash's…) on a key
    /// holding another (Redis's `WRONGTYPE`).
    WrongType,
    /// What a collection command answers (see [`crate::collection`]).
    Collection(crate::collection::CollReply),
    /// An increment that would overflow a 64-bit integer.
    Overflow,
    /// Get or delete of a key that does not exist (or was deleted).
    NotFound,
    /// The receiver does not own the key (routing was stale): look up again.
    WrongOwner,
    /// Fewer than the write quorum stored the write in time; it may still
    /// exist on some nodes.
    QuorumFailed {
        /// Copies that stored it durably (the owner's included).
        acked: u32,
        /// Copies the write quorum needed.
        needed: u32,
    },
    /// Fewer than the write quorum of processes can hold a copy right now
    /// (the successor list is still filling, or members are down): nothing
    /// was written.
    QuorumUnavailable {
        /// Processes that can hold a copy now.
        available: u32,
        /// Copies the write quorum needed.
        needed: u32,
    },
    /// The owner's storage failed.
    StoreFailed,
    /// The owner has too many operations in flight: try again later.
    Overloaded,
    /// The owner by Chord holds no valid lease for the key now (a
    /// handover or takeover in flight, a lease being renewed, a minority
    /// side): nothing was done; try again shortly.
    NotReady,
    /// A retried write the owner cannot place: its record no longer
    /// remembers enough of its writes to say whether the first attempt
    /// was applied (see `oplog.rs`). Nothing was done now; the first
    /// attempt may or may not have been.
    OutcomeUnknown,
    /// The key or value is larger than the owner accepts.
    TooLarge {
        /// The size, in bytes.
        size: u32,
        /// The limit, in bytes.
        limit: u32,
    },
    /// An application message reached the owner's application.
    Delivered,
    /// The owner's application answered a request.
    Replied {
        /// The application's bytes.
        payload: Vec<u8>,
    },
    /// The owner's application refused the message, was too busy to take
    /// it, or did not answer in time.
    Refused,
    /// A publication was queued for `subscribers` subscriber processes.
    Published {
        /// Subscriber processes the publication was queued for.
        subscribers: u32,
    },
    /// A batch's answer: per step, what it answered (`version` in those
    /// of steps that wrote is the batch's), and the batch's write, if it
    /// wrote anything: its version and the copies that hold it.
    Batch {
        /// Per step, its answer.
        results: Vec<OpResult>,
        /// The version every record the batch wrote has (`None`: it
        /// wrote nothing).
        version: Option<Version>,
        /// Copies that stored the batch durably (0: nothing written).
        acked: u32,
    },
    /// A batch's keys do not share one owner (one key id): nothing done.
    CrossSlot,
    /// A watch's answer: the records one write made at `version`, oldest
    /// change first (a value `None` is a deletion; a collection's record
    /// is its header: its kind, and a value that is the header's
    /// encoding, not for display). No records: nothing newer by the
    /// deadline (watch again), or, for a key watched from `None`, no
    /// record at all.
    Watched {
        /// The change's version (`None` with no records).
        version: Option<Version>,
        /// The records the change wrote, each without its log of writes.
        records: Vec<Record>,
    },
    /// A page of a scan: the live keys with ids in `[start, reached]`.
    Keys {
        /// The keys, in key-id order.
        keys: Vec<Vec<u8>>,
        /// The last key id the page covers (inclusive).
        reached: Id,
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
