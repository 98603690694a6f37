//! Operations for a key's owner (`Message::Request` carries one), the
//! publications pub/sub delivers, and what an owner answers
//! (`Message::Reply`).

use super::NodeRef;
use crate::{Change, Consistency, Id, Record, Time, Version, WriteOptions};

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
