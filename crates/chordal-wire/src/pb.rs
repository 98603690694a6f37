//! The protobuf messages of `proto/chordal.proto`, derived by hand with
//! prost (no `protoc` needed). `tests/proto.rs` reads both files and
//! checks every message field by field: name, tag, encoding, repeated or
//! optional, and no field on one side only.

#![allow(missing_docs)]

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeRef {
    #[prost(bytes = "bytes", tag = "1")]
    pub id: bytes::Bytes,
    /// `string addr = 2` in the .proto: the same bytes on the wire (UTF-8
    /// text), kept as a slice of the frame; `node_from_pb` checks them.
    #[prost(bytes = "bytes", tag = "2")]
    pub addr: bytes::Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub cluster: String,
    #[prost(string, tag = "3")]
    pub addr: String,
    #[prost(string, tag = "4")]
    pub api: String,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub ids: Vec<Vec<u8>>,
    /// URL of the service instance beside the node (gateway), or empty.
    #[prost(string, tag = "6")]
    pub service: String,
    /// Oldest protocol version the sender speaks (0: only `version`).
    #[prost(uint32, tag = "7")]
    pub min_version: u32,
    /// Newest protocol version the sender speaks (0: only `version`).
    #[prost(uint32, tag = "8")]
    pub max_version: u32,
    /// Redis protocol address, or empty.
    #[prost(string, tag = "9")]
    pub resp: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    #[prost(message, optional, tag = "1")]
    pub from: Option<NodeRef>,
    #[prost(bytes = "bytes", tag = "2")]
    pub to_id: bytes::Bytes,
    #[prost(
        oneof = "Body",
        tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40, 41, 42, 43, 44, 45, 46, 47, 48"
    )]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    #[prost(message, tag = "10")]
    Ping(Req),
    #[prost(message, tag = "11")]
    Pong(Req),
    #[prost(message, tag = "12")]
    GetNeighbors(Req),
    #[prost(message, tag = "13")]
    Neighbors(Neighbors),
    #[prost(message, tag = "14")]
    Notify(Notify),
    #[prost(message, tag = "15")]
    SuccessorHint(SuccessorHint),
    #[prost(message, tag = "16")]
    FindSuccessor(FindSuccessor),
    #[prost(message, tag = "17")]
    LookupAck(LookupAck),
    #[prost(message, tag = "18")]
    FoundSuccessor(FoundSuccessor),
    #[prost(message, tag = "19")]
    LookupFailed(LookupFailed),
    #[prost(message, tag = "20")]
    ClosestPreceding(ClosestPreceding),
    #[prost(message, tag = "21")]
    ClosestPrecedingReply(ClosestPrecedingReply),
    #[prost(message, tag = "22")]
    Leave(Leave),
    #[prost(message, tag = "23")]
    NotHere(Req),
    #[prost(message, tag = "24")]
    MemberEvents(MemberEvents),
    #[prost(message, tag = "25")]
    GetMembers(GetMembers),
    #[prost(message, tag = "26")]
    Members(Members),
    #[prost(message, tag = "27")]
    MemberEventsAck(Req),
    #[prost(message, tag = "30")]
    KvRequest(KvRequest),
    #[prost(message, tag = "31")]
    KvReply(KvReply),
    #[prost(message, tag = "32")]
    Replicate(Replicate),
    #[prost(message, tag = "33")]
    ReplicateAck(ReplicateAck),
    #[prost(message, tag = "34")]
    ReplicaRead(ReplicaRead),
    #[prost(message, tag = "35")]
    ReplicaReadReply(ReplicaReadReply),
    #[prost(message, tag = "36")]
    SyncSummary(SyncSummary),
    #[prost(message, tag = "37")]
    SyncDiff(SyncDiff),
    #[prost(message, tag = "38")]
    Collect(Collect),
    #[prost(message, tag = "40")]
    Prepare(Prepare),
    #[prost(message, tag = "41")]
    Promise(Promise),
    #[prost(message, tag = "42")]
    Renew(Renew),
    #[prost(message, tag = "43")]
    Renewed(Renewed),
    #[prost(message, tag = "44")]
    Release(Release),
    #[prost(message, tag = "45")]
    SyncPushed(SyncPushed),
    #[prost(message, tag = "46")]
    Leaving(Leaving),
    #[prost(message, tag = "47")]
    Handover(Handover),
    #[prost(message, tag = "48")]
    Lineage(Lineage),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Prepare {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub term: u64,
    #[prost(message, repeated, tag = "5")]
    pub config: Vec<NodeRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KnownPromise {
    #[prost(bytes = "vec", tag = "1")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub term: u64,
    #[prost(message, optional, tag = "4")]
    pub holder: Option<NodeRef>,
    #[prost(message, repeated, tag = "5")]
    pub config: Vec<NodeRef>,
    #[prost(uint64, tag = "6")]
    pub settled_term: u64,
    #[prost(message, optional, tag = "7")]
    pub settled_holder: Option<NodeRef>,
    #[prost(message, repeated, tag = "8")]
    pub settled_config: Vec<NodeRef>,
    #[prost(message, repeated, tag = "9")]
    pub settled_pending: Vec<Config>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Config {
    #[prost(message, repeated, tag = "1")]
    pub nodes: Vec<NodeRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Promise {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bool, tag = "2")]
    pub granted: bool,
    #[prost(message, repeated, tag = "3")]
    pub known: Vec<KnownPromise>,
    #[prost(bool, tag = "4")]
    pub outdated: bool,
    #[prost(uint64, tag = "7")]
    pub wait_us: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Renew {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "4")]
    pub term: u64,
    #[prost(message, repeated, tag = "5")]
    pub pending: Vec<Config>,
    #[prost(message, repeated, tag = "6")]
    pub config: Vec<NodeRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Renewed {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bool, tag = "2")]
    pub ok: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Release {
    #[prost(bytes = "vec", tag = "1")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Leaving {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Handover {
    #[prost(bytes = "vec", tag = "1")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub term: u64,
    #[prost(message, repeated, tag = "4")]
    pub known: Vec<KnownPromise>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Lineage {
    #[prost(bytes = "vec", tag = "1")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub term: u64,
    #[prost(message, repeated, tag = "4")]
    pub config: Vec<NodeRef>,
    #[prost(message, repeated, tag = "5")]
    pub pending: Vec<Config>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Collect {
    #[prost(bytes = "vec", tag = "1")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub end: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub before: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncSummary {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub start: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub end: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub buckets: Vec<Vec<u8>>,
    #[prost(bool, tag = "5")]
    pub probe: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncPushed {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bool, tag = "2")]
    pub ok: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SyncDiff {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(uint32, repeated, tag = "2")]
    pub differing: Vec<u32>,
    #[prost(bool, tag = "3")]
    pub refine: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(uint64, tag = "1")]
    pub hlc: u64,
    #[prost(bytes = "bytes", tag = "2")]
    pub node: bytes::Bytes,
    #[prost(uint64, tag = "3")]
    pub term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub version: Option<Version>,
    /// Absent for a tombstone.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub value: Option<Vec<u8>>,
    /// When the value expires (microseconds of the Unix epoch); absent:
    /// never.
    #[prost(uint64, optional, tag = "4")]
    pub expires: Option<u64>,
    /// The last writes that made the record, by operation id, in
    /// `OpLog`'s compact form (empty: none, and none missing).
    #[prost(bytes = "vec", tag = "5")]
    pub ops: Vec<u8>,
    /// What the value is: 0 a string, 1 a hash's header, 2 a set's,
    /// 3 a sorted set's, 4 a list's (a tombstone is always 0).
    #[prost(uint32, tag = "6")]
    pub kind: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KvRequest {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    /// 0 = put, 1 = get, 2 = delete, 3 = send (application message, value =
    /// payload), 4 = request (the same, an answer wanted), 5 / 6 = send /
    /// request to the receiving node itself (no key); pub/sub: 7 =
    /// subscribe, 8 = unsubscribe (key = topic), 9 = publish (`items`, one),
    /// 10 = notify (`items`, `missed`), 11 = topic replica (`topics`),
    /// 12 = update (`change`), 13 = scan (key = first key id, value = last
    /// one wanted, amount = about how many keys), 14 = batch (`steps`,
    /// `all_or_nothing`), 15 = collection (`kind`; `change` = the
    /// command: 0 put, 1 remove, 2 get, 3 all, 4 len, 5 incr, 6 pop,
    /// 7 kind, 8 push, 9 pop an end, 10 range, 11 set at, 12 trim,
    /// 13 remove a value, 14 insert, 15 zadd, 16 zrange, 17 zcount,
    /// 18 zrank, 19 zpop, 20 zremrange, 21 move (`args`: the destination;
    /// `flags`: from the left, bit 1 to the left); `args`; `amount` = only new (put),
    /// float (incr), count (pops, remove), index (set at); `flags` = left
    /// (bit 0) and only existing (bit 1) for pushes and pops, before for
    /// insert; positions as two 8-byte `args`).
    #[prost(int32, tag = "2")]
    pub op: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub value: Vec<u8>,
    #[prost(message, repeated, tag = "5")]
    pub items: Vec<Publication>,
    #[prost(message, repeated, tag = "6")]
    pub missed: Vec<TopicCount>,
    #[prost(message, repeated, tag = "7")]
    pub topics: Vec<TopicNodes>,
    #[prost(uint64, tag = "8")]
    pub op_id: u64,
    #[prost(uint32, tag = "9")]
    pub timeout_ms: u32,
    /// Put: when the value expires (µs of the Unix epoch; absent: never).
    /// Update 2 (expire): the new expiry (absent: none).
    #[prost(uint64, optional, tag = "10")]
    pub expires: Option<u64>,
    /// Put / delete: 0 always, 1 absent, 2 present, 3 `cond_version`.
    #[prost(int32, tag = "11")]
    pub condition: i32,
    #[prost(message, optional, tag = "12")]
    pub cond_version: Option<Version>,
    /// Put / delete: bit 0 keep the current expiry, bit 1 answer the
    /// replaced value.
    #[prost(uint32, tag = "13")]
    pub flags: u32,
    /// Get: 0 owner, 1 quorum, 2 all.
    #[prost(int32, tag = "14")]
    pub consistency: i32,
    /// Update: 0 increment by `amount`, 1 append `value`, 2 expire.
    #[prost(int32, tag = "15")]
    pub change: i32,
    #[prost(sint64, tag = "16")]
    pub amount: i64,
    /// An earlier attempt of this write may have been applied: answer it
    /// from the record's log of writes.
    #[prost(bool, tag = "17")]
    pub retry: bool,
    /// Batch: its steps (puts, gets, deletes, updates).
    #[prost(message, repeated, tag = "18")]
    pub steps: Vec<KvRequest>,
    /// Batch: one failed step cancels every write.
    #[prost(bool, tag = "19")]
    pub all_or_nothing: bool,
    /// Collection (op 15): the collection's kind (see `Record::kind`);
    /// update 3 (restore): the restored record's.
    #[prost(uint32, tag = "20")]
    pub kind: u32,
    /// Collection: the command's fields (put: field, value, field, …;
    /// incr: field, amount).
    #[prost(bytes = "vec", repeated, tag = "21")]
    pub args: Vec<Vec<u8>>,
}

/// A message published on a topic.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Publication {
    #[prost(bytes = "vec", tag = "1")]
    pub topic: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub publisher: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub incarnation: u64,
    #[prost(uint64, tag = "4")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub payload: Vec<u8>,
}

/// Publications on a topic dropped for a slow subscriber.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicCount {
    #[prost(bytes = "vec", tag = "1")]
    pub topic: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub count: u64,
}

/// A topic's subscriber processes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicNodes {
    #[prost(bytes = "vec", tag = "1")]
    pub topic: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub nodes: Vec<NodeRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KvReply {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    /// 0 stored, 1 found, 2 not found, 3 wrong owner, 4 quorum failed, 5 store failed,
    /// 6 delivered, 7 replied (value = the answer), 8 refused, 9 published
    /// (acked = subscriber processes), 10 quorum unavailable, 11 overloaded,
    /// 12 too large, 13 precondition failed (version = the current one, if
    /// any), 14 updated (`number`), 15 replaced (`old`), 16 not an integer,
    /// 17 overflow, 18 not ready, 19 outcome unknown, 20 not a float, 21 keys
    /// (a scan page: `keys`, `value` = the last key id covered), 22 batch
    /// (`results`; `version` and `acked` of its write, no version: none),
    /// 23 cross slot (a batch's keys of several owners), 24 wrong type,
    /// 25 collection (see `shape`).
    #[prost(int32, tag = "2")]
    pub status: i32,
    #[prost(message, optional, tag = "3")]
    pub version: Option<Version>,
    #[prost(bytes = "vec", tag = "4")]
    pub value: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub acked: u32,
    #[prost(uint32, tag = "6")]
    pub needed: u32,
    /// The owner's range `(range_start, range_end]`, both empty if absent.
    #[prost(bytes = "bytes", tag = "7")]
    pub range_start: bytes::Bytes,
    #[prost(bytes = "bytes", tag = "8")]
    pub range_end: bytes::Bytes,
    /// Found: when the value expires (µs of the Unix epoch).
    #[prost(uint64, optional, tag = "9")]
    pub expires: Option<u64>,
    /// Updated: the number.
    #[prost(sint64, tag = "10")]
    pub number: i64,
    /// Replaced: the value replaced (absent: none).
    #[prost(bytes = "vec", optional, tag = "11")]
    pub old: Option<Vec<u8>>,
    /// Keys (a scan page; `value` = the last key id it covers).
    #[prost(bytes = "vec", repeated, tag = "12")]
    pub keys: Vec<Vec<u8>>,
    /// A batch's answers, one per step.
    #[prost(message, repeated, tag = "13")]
    pub results: Vec<KvReply>,
    /// Collection (status 25): 0 a count (`number`), 1 values (`items`,
    /// `value` one byte per item: 1 present, 0 absent), 2 fields and
    /// values (`items`: field, value, …), 3 a float (`value`), 4 a kind
    /// (`number`: its code, -1 none; `expires`), 5 a list's values
    /// (`items`), 6 a refusal (`value`: its text).
    #[prost(uint32, tag = "14")]
    pub shape: u32,
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub items: Vec<Vec<u8>>,
    /// Watched (status 26): the change's records (`version`: its version,
    /// absent with no records).
    #[prost(message, repeated, tag = "16")]
    pub records: Vec<Record>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Replicate {
    #[prost(uint64, tag = "3")]
    pub fence: u64,
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(message, repeated, tag = "2")]
    pub records: Vec<Record>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicateAck {
    #[prost(uint64, tag = "5")]
    pub fenced: u64,
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bool, tag = "2")]
    pub ok: bool,
    #[prost(message, repeated, tag = "6")]
    pub newer: Vec<NewerKept>,
    #[prost(bool, tag = "4")]
    pub busy: bool,
}

/// A record of a `Replicate` the replica did not take, and the newer
/// version it held.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NewerKept {
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(message, optional, tag = "2")]
    pub version: Option<Version>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicaRead {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplicaReadReply {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(message, optional, tag = "2")]
    pub record: Option<Record>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LookupAck {
    #[prost(uint64, repeated, tag = "1")]
    pub reqs: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberEvent {
    #[prost(message, optional, tag = "1")]
    pub node: Option<NodeRef>,
    #[prost(bool, tag = "2")]
    pub joined: bool,
    #[prost(string, tag = "3")]
    pub by: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberEvents {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub until: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub events: Vec<MemberEvent>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMembers {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    /// Empty: from the first id.
    #[prost(bytes = "vec", tag = "2")]
    pub after: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub has_digest: bool,
    #[prost(uint64, tag = "4")]
    pub digest_count: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub digest_xor: Vec<u8>,
    /// None, or one digest per slice of the id space.
    #[prost(message, repeated, tag = "6")]
    pub slices: Vec<MembersDigest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MembersDigest {
    #[prost(uint64, tag = "1")]
    pub count: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub xor: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Members {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(message, repeated, tag = "2")]
    pub nodes: Vec<NodeRef>,
    #[prost(bool, tag = "3")]
    pub more: bool,
    #[prost(bool, tag = "4")]
    pub same: bool,
    /// Bit i: slice i is covered; 0: every slice.
    #[prost(uint64, tag = "5")]
    pub slices: u64,
}

/// `Ping`, `Pong`, `GetNeighbors` and `NotHere`: one field, `req`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Req {
    #[prost(uint64, tag = "1")]
    pub req: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Neighbors {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(message, optional, tag = "2")]
    pub predecessor: Option<NodeRef>,
    #[prost(message, repeated, tag = "3")]
    pub successors: Vec<NodeRef>,
    #[prost(uint64, tag = "4")]
    pub keys_stored: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Notify {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SuccessorHint {
    #[prost(message, optional, tag = "1")]
    pub candidate: Option<NodeRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FindSuccessor {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(message, optional, tag = "2")]
    pub origin: Option<NodeRef>,
    #[prost(uint64, tag = "3")]
    pub lookup: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub hops: u32,
    /// 0 route on, 1 the sender's successor list names the receiver the
    /// owner, 2 the sender's membership table does (`OwnerClaim`).
    #[prost(uint32, tag = "6")]
    pub claim: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FoundSuccessor {
    #[prost(uint64, tag = "1")]
    pub lookup: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub successors: Vec<NodeRef>,
    #[prost(uint32, tag = "4")]
    pub hops: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LookupFailed {
    #[prost(uint64, tag = "1")]
    pub lookup: u64,
    /// 0 = hop limit, 1 = no route.
    #[prost(int32, tag = "2")]
    pub reason: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ClosestPreceding {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ClosestPrecedingReply {
    #[prost(uint64, tag = "1")]
    pub req: u64,
    #[prost(bool, tag = "2")]
    pub done: bool,
    #[prost(message, repeated, tag = "3")]
    pub nodes: Vec<NodeRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Leave {
    #[prost(message, optional, tag = "1")]
    pub predecessor: Option<NodeRef>,
    #[prost(message, repeated, tag = "2")]
    pub successors: Vec<NodeRef>,
}
