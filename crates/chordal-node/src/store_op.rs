//! [`StoreOp`]: a store operation as an application gives it, before the
//! handle that starts it makes its expiry absolute.

use chordal_core::collection::CollOp;
use chordal_core::{Change, Consistency, Expiry, Id, Kind, Operation, PutOptions, Time, Version};

/// A store operation as an application gives it: an expiry may still be
/// relative ([`Expiry::After`]); the handle makes it absolute with its clock
/// when it starts the operation.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StoreOp {
    /// Store `value` under `key`.
    Put {
        /// The key (its bytes).
        key: Vec<u8>,
        /// The value's bytes.
        value: Vec<u8>,
        /// Expiry, condition, whether to answer the replaced value.
        options: PutOptions,
    },
    /// Read `key`.
    Get {
        /// The key (its bytes).
        key: Vec<u8>,
        /// How many copies answer.
        consistency: Consistency,
    },
    /// Delete `key`.
    Delete {
        /// The key (its bytes).
        key: Vec<u8>,
        /// Condition, whether to answer the deleted value.
        options: PutOptions,
    },
    /// Increment or append at the owner.
    Update {
        /// The key (its bytes).
        key: Vec<u8>,
        /// What to compute (not [`Change::Expire`]: see `Expire`).
        change: Change,
    },
    /// Give the value a new expiry ([`Expiry::Never`]: none).
    Expire {
        /// The key (its bytes).
        key: Vec<u8>,
        /// The new expiry.
        expiry: Expiry,
    },
    /// Several operations on keys of one owner, decided together (see
    /// [`KeyValue::batch`](crate::KeyValue::batch)).
    Batch {
        /// Puts, gets, deletes, updates and expiries, in order.
        steps: Vec<StoreOp>,
        /// Does one failed step cancel every write?
        all_or_nothing: bool,
    },
    /// A command on the collection (hash, set) at `key` (see
    /// [`KeyValue::collection`](crate::KeyValue::collection)).
    Collection {
        /// The collection's key.
        key: Vec<u8>,
        /// Which kind of collection the command is for.
        kind: Kind,
        /// What to do.
        op: CollOp,
    },
    /// Wait at the owner for a change of `key` (or its group) newer than
    /// `after` (see [`KeyValue::watch`](crate::KeyValue::watch)).
    Watch {
        /// The key, or any key of the group.
        key: Vec<u8>,
        /// Answer only a change newer than this.
        after: Option<Version>,
        /// Every key sharing `key`'s key id (its hash tag's group).
        group: bool,
    },
    /// One page of a walk over the keyspace (see [`KeyValue::scan`](crate::KeyValue::scan)).
    Scan {
        /// The first key id of the page.
        start: Id,
        /// The last key id wanted (inclusive).
        end: Id,
        /// About how many keys.
        limit: u32,
    },
}

impl StoreOp {
    /// A put with `options`, answering the replaced value if `return_old`.
    pub fn put(key: Vec<u8>, value: Vec<u8>, options: PutOptions, return_old: bool) -> StoreOp {
        let options = PutOptions {
            return_old,
            ..options
        };
        StoreOp::Put {
            key,
            value,
            options,
        }
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        match self {
            StoreOp::Put { key, .. }
            | StoreOp::Get { key, .. }
            | StoreOp::Delete { key, .. }
            | StoreOp::Update { key, .. }
            | StoreOp::Expire { key, .. }
            | StoreOp::Watch { key, .. }
            | StoreOp::Collection { key, .. } => key,
            StoreOp::Batch { steps, .. } => steps.first().map_or(&[], StoreOp::key),
            StoreOp::Scan { .. } => &[],
        }
    }

    /// The operation for the owner, its expiry made absolute at `now`.
    pub fn at(self, now: Time) -> Operation {
        match self {
            StoreOp::Put {
                key,
                value,
                options,
            } => Operation::Put {
                key,
                value,
                opts: options.at(now),
            },
            StoreOp::Get { key, consistency } => Operation::Get { key, consistency },
            StoreOp::Delete { key, options } => Operation::Delete {
                key,
                opts: options.at(now),
            },
            StoreOp::Update { key, change } => Operation::Update { key, change },
            StoreOp::Expire { key, expiry } => Operation::Update {
                key,
                change: Change::Expire(expiry.resolve(now)),
            },
            StoreOp::Batch {
                steps,
                all_or_nothing,
            } => Operation::Batch {
                steps: steps.into_iter().map(|s| s.at(now)).collect(),
                all_or_nothing,
            },
            StoreOp::Scan { start, end, limit } => Operation::Scan { start, end, limit },
            StoreOp::Watch { key, after, group } => Operation::Watch { key, after, group },
            StoreOp::Collection { key, kind, op } => Operation::Collection { key, kind, op },
        }
    }

    /// A short name for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            StoreOp::Put { .. } => "put",
            StoreOp::Get { .. } => "get",
            StoreOp::Delete { .. } => "delete",
            StoreOp::Update { .. } => "update",
            StoreOp::Expire { .. } => "expire",
            StoreOp::Batch { .. } => "batch",
            StoreOp::Scan { .. } => "scan",
            StoreOp::Watch { .. } => "watch",
            StoreOp::Collection { .. } => "collection",
        }
    }
}
