//! The key-value store's operations, once for every handle that reaches the
//! ring: a [`Node`](crate::Node) inside it and a [`Client`](crate::Client)
//! outside. Each handle only says how it carries a [`StoreOp`] to the key's
//! owner ([`KeyValue::run`]); the typed operations are written here.

use crate::Error;
pub use crate::store_op::StoreOp;
use chordal_core::collection::{CollOp, CollReply};
use chordal_core::{
    Change, Condition, Consistency, ExpireWhen, Expiry, Id, Kind, OpError, Outcome, PutOptions,
    Record, Replaced, ScanPage, Version, Versioned, Written,
};
use std::future::Future;

/// The store's operations, on any handle that reaches the ring. Bring it
/// into scope (`use chordal_node::KeyValue;`) to call them.
///
/// Every operation fails with the [`OpError`]s of [`Error::Op`] its
/// documentation names, or with the handle's own errors (for a `Node`:
/// [`Error::Stopped`]; for a `Client`: no seed reachable, a timeout).
pub trait KeyValue: Sync {
    /// Carries `op` to the key's owner and returns how it ended.
    fn run(&self, op: StoreOp) -> impl Future<Output = Result<Outcome, Error>> + Send;

    /// Runs `ops` at once; their outcomes in the same order. A `Node`
    /// starts them together, so that the requests for one owner leave in
    /// one write (a batch of n keys costs about one round trip per owner).
    fn run_many(
        &self,
        ops: Vec<StoreOp>,
    ) -> impl Future<Output = Vec<Result<Outcome, Error>>> + Send {
        futures_util::future::join_all(ops.into_iter().map(|op| self.run(op)))
    }

    /// Reads every key of `keys` at once, as [`KeyValue::get`] does each;
    /// the answers in the same order.
    fn get_many(
        &self,
        keys: Vec<Vec<u8>>,
    ) -> impl Future<Output = Vec<Result<Option<Versioned>, Error>>> + Send {
        async move {
            let consistency = Consistency::Owner;
            let ops = keys
                .into_iter()
                .map(|key| StoreOp::Get { key, consistency })
                .collect();
            let outcomes = self.run_many(ops).await;
            outcomes.into_iter().map(|r| Ok(r?.value()?)).collect()
        }
    }

    /// Stores every `(key, value)` of `pairs` at once, as
    /// [`KeyValue::put`] does each; the answers in the same order.
    fn put_many(
        &self,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> impl Future<Output = Vec<Result<Written, Error>>> + Send {
        async move {
            let ops = pairs
                .into_iter()
                .map(|(key, value)| StoreOp::put(key, value, PutOptions::default(), false))
                .collect();
            let outcomes = self.run_many(ops).await;
            outcomes.into_iter().map(|r| Ok(r?.written()?)).collect()
        }
    }

    /// Stores `value` under `key`, durable on the write quorum when `Ok`.
    /// Fails with `Timeout`, `NotJoined`, `Overloaded`, `TooLarge`,
    /// `Lookup`, `Redirects`, `QuorumFailed` (the write may exist on fewer
    /// copies), `QuorumUnavailable` (nothing was written) or `StoreFailed`.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// use chordal_node::KeyValue;
    /// let written = node.put(b"user:42".to_vec(), b"Ada".to_vec()).await?;
    /// println!("version {:?} on {} copies", written.version, written.acked);
    /// # Ok(()) }
    /// ```
    fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<Written, Error>> + Send {
        self.put_with(key, value, PutOptions::default())
    }

    /// [`KeyValue::put`] with options: an expiry, a condition on the
    /// current value (fails with `PreconditionFailed` naming the current
    /// version when it does not hold, and nothing is written).
    /// `options.return_old` is ignored: see [`KeyValue::swap`].
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// use chordal_node::{Condition, Expiry, KeyValue, PutOptions};
    /// use std::time::Duration;
    /// let lease = PutOptions {
    ///     expiry: Expiry::After(Duration::from_secs(30)),
    ///     condition: Condition::Absent, // create only
    ///     ..PutOptions::default()
    /// };
    /// node.put_with(b"lock:a".to_vec(), b"me".to_vec(), lease).await?;
    /// # Ok(()) }
    /// ```
    fn put_with(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        options: PutOptions,
    ) -> impl Future<Output = Result<Written, Error>> + Send {
        let op = StoreOp::put(key, value, options, false);
        async move { Ok(self.run(op).await?.written()?) }
    }

    /// Stores `value` under `key` like [`KeyValue::put_with`] and returns
    /// the value it replaced (RESP `SET … GET`).
    fn swap(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        options: PutOptions,
    ) -> impl Future<Output = Result<Replaced, Error>> + Send {
        let op = StoreOp::put(key, value, options, true);
        async move {
            let replaced = self.run(op).await?.replaced()?;
            replaced.ok_or(Error::Op(OpError::UnexpectedAnswer))
        }
    }

    /// Reads `key` from its owner: value, version and expiry, or `None` if
    /// it does not exist (or was deleted, or expired). Fails as
    /// [`KeyValue::put`] does, but never with a quorum error.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// use chordal_node::KeyValue;
    /// if let Some(v) = node.get(b"user:42".to_vec()).await? {
    ///     println!("{}", String::from_utf8_lossy(&v.value));
    /// }
    /// # Ok(()) }
    /// ```
    fn get(&self, key: Vec<u8>) -> impl Future<Output = Result<Option<Versioned>, Error>> + Send {
        self.get_with(key, Consistency::Owner)
    }

    /// Reads `key` from as many copies as `consistency` says: the newest
    /// wins and stale copies are repaired. `QuorumFailed` if fewer copies
    /// answered in time.
    fn get_with(
        &self,
        key: Vec<u8>,
        consistency: Consistency,
    ) -> impl Future<Output = Result<Option<Versioned>, Error>> + Send {
        async move {
            let op = StoreOp::Get { key, consistency };
            Ok(self.run(op).await?.value()?)
        }
    }

    /// Deletes `key` (writes a tombstone): the tombstone's write, or `None`
    /// if the key did not exist. Fails as [`KeyValue::put`] does.
    fn delete(&self, key: Vec<u8>) -> impl Future<Output = Result<Option<Written>, Error>> + Send {
        self.delete_if(key, Condition::Always)
    }

    /// Deletes `key` if `condition` holds (else `PreconditionFailed`).
    fn delete_if(
        &self,
        key: Vec<u8>,
        condition: Condition,
    ) -> impl Future<Output = Result<Option<Written>, Error>> + Send {
        async move {
            let options = PutOptions {
                condition,
                ..PutOptions::default()
            };
            let op = StoreOp::Delete { key, options };
            Ok(self.run(op).await?.deleted()?)
        }
    }

    /// Deletes `key` and returns the value it held (RESP `GETDEL`), or
    /// `None` if it did not exist.
    fn take(&self, key: Vec<u8>) -> impl Future<Output = Result<Option<Replaced>, Error>> + Send {
        async move {
            let options = PutOptions {
                return_old: true,
                ..PutOptions::default()
            };
            let op = StoreOp::Delete { key, options };
            Ok(self.run(op).await?.replaced()?)
        }
    }

    /// Adds `by` to the value read as a decimal 64-bit integer (a missing
    /// key counts as 0), atomically at the owner: concurrent increments
    /// from any nodes all count. Returns the new value. `NotAnInteger`,
    /// `Overflow` when they say so; the value's expiry stays.
    fn incr_by(&self, key: Vec<u8>, by: i64) -> impl Future<Output = Result<i64, Error>> + Send {
        async move {
            let op = StoreOp::Update {
                key,
                change: Change::IncrBy(by),
            };
            updated_number(self.run(op).await?)
        }
    }

    /// Appends `tail` to the value (a missing key counts as empty),
    /// atomically at the owner; returns the new length. `TooLarge` past
    /// the value limit.
    fn append(
        &self,
        key: Vec<u8>,
        tail: Vec<u8>,
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        async move {
            let op = StoreOp::Update {
                key,
                change: Change::Append(tail),
            };
            Ok(updated_number(self.run(op).await?)?.max(0) as u64)
        }
    }

    /// Gives `key`'s value a new expiry ([`Expiry::Never`]: none; a time in
    /// the past expires it now). `false` if the key does not exist, or
    /// already had no expiry when asked for none.
    fn expire(
        &self,
        key: Vec<u8>,
        expiry: Expiry,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        async move {
            let op = StoreOp::Expire { key, expiry };
            match self.run(op).await?.updated()? {
                Some(u) => Ok(u.number == 1),
                None => Ok(false),
            }
        }
    }

    /// Gives `key`'s value a new expiry if its current one passes `when`
    /// (RESP `EXPIRE … NX | XX | GT | LT`), atomically at the owner.
    /// `false` if the key does not exist or its expiry did not pass.
    fn expire_if(
        &self,
        key: Vec<u8>,
        expiry: Expiry,
        when: ExpireWhen,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        async move {
            let expires = expiry.resolve(crate::wall_clock());
            let change = Change::ExpireIf { expires, when };
            match self.run(StoreOp::Update { key, change }).await?.updated()? {
                Some(u) => Ok(u.number == 1),
                None => Ok(false),
            }
        }
    }

    /// Reads `key` and gives its value a new expiry in one step at the
    /// owner (RESP `GETEX`; [`Expiry::Never`]: none): the value as
    /// written, or `None` if the key does not exist.
    fn get_ex(
        &self,
        key: Vec<u8>,
        expiry: Expiry,
    ) -> impl Future<Output = Result<Option<Versioned>, Error>> + Send {
        async move {
            let change = Change::GetEx(expiry.resolve(crate::wall_clock()));
            Ok(self.run(StoreOp::Update { key, change }).await?.value()?)
        }
    }

    /// Writes `bytes` into the value from byte `offset` on, padding with
    /// zero bytes (a missing key counts as empty), atomically at the
    /// owner (RESP `SETRANGE`); returns the new length. `TooLarge` past
    /// the value limit.
    fn set_range(
        &self,
        key: Vec<u8>,
        offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<u64, Error>> + Send {
        async move {
            let change = Change::SetRange { offset, bytes };
            Ok(updated_number(self.run(StoreOp::Update { key, change }).await?)?.max(0) as u64)
        }
    }

    /// Sets bit `offset` of the value (bit 0 is the most significant bit
    /// of byte 0) to `bit`, atomically at the owner (RESP `SETBIT`);
    /// returns the bit's value before.
    fn set_bit(
        &self,
        key: Vec<u8>,
        offset: u64,
        bit: bool,
    ) -> impl Future<Output = Result<bool, Error>> + Send {
        async move {
            let change = Change::SetBit { offset, bit };
            Ok(updated_number(self.run(StoreOp::Update { key, change }).await?)? == 1)
        }
    }

    /// Runs `steps` — puts, gets, deletes, updates, expiries, collection
    /// commands — on keys of one owner as one atomic decision at that
    /// owner, in order, each step seeing what the ones before it wrote
    /// (MULTI/EXEC, MSETNX, RENAME): every record the batch changes is
    /// written in one step at every copy, durable on the write quorum
    /// when `Ok`. The keys must share one key id — one hash tag,
    /// `{user:42}:cart` and `{user:42}:profile` — else `CrossSlot` and
    /// nothing is done (also for a step that is itself a batch, a scan
    /// or a watch). A collection command that reads a run of elements
    /// (HGETALL, LRANGE, a pop…) reads its collection whole first, so
    /// inside a batch it fails `TooLarge` on more than
    /// [`MAX_READ_ELEMENTS`](chordal_core::collection::MAX_READ_ELEMENTS)
    /// elements.
    /// `all_or_nothing`: a step that fails (a condition, not a number,
    /// too large) cancels every write; a failed [`Change::Expect`] always
    /// does. Steps cancelled with their batch answer `Refused`.
    ///
    /// ```no_run
    /// # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
    /// use chordal_node::{KeyValue, PutOptions, StoreOp};
    /// use chordal_core::Change;
    /// let steps = vec![
    ///     StoreOp::put(b"{acct:7}:balance".to_vec(), b"100".to_vec(), PutOptions::default(), false),
    ///     StoreOp::Update { key: b"{acct:7}:ops".to_vec(), change: Change::IncrBy(1) },
    /// ];
    /// let done = node.batch(steps, true).await?;
    /// println!("written in {:?}", done.written);
    /// # Ok(()) }
    /// ```
    fn batch(
        &self,
        steps: Vec<StoreOp>,
        all_or_nothing: bool,
    ) -> impl Future<Output = Result<chordal_core::Batched, Error>> + Send {
        async move {
            // The owner checks that the keys are its own (`CrossSlot`);
            // a step that is no single-key operation never leaves.
            if steps.iter().any(|s| {
                matches!(
                    s,
                    StoreOp::Batch { .. } | StoreOp::Scan { .. } | StoreOp::Watch { .. }
                )
            }) {
                return Err(Error::Op(OpError::CrossSlot));
            }
            let op = StoreOp::Batch {
                steps,
                all_or_nothing,
            };
            Ok(self.run(op).await?.batched()?)
        }
    }

    /// Runs collection command `op` on the `kind` collection at `key`
    /// (a hash or a set), decided at the key's owner with the header and
    /// the elements it touches as one batch, so linearizable like
    /// `incr_by`. Fails with `WrongType` when the key holds another kind,
    /// `TooLarge` when a command reading every element meets more than
    /// [`MAX_READ_ELEMENTS`](chordal_core::collection::MAX_READ_ELEMENTS)
    /// (or as many bytes), `NotAnInteger`/`NotAFloat`/`Overflow` from an
    /// increment.
    fn collection(
        &self,
        key: Vec<u8>,
        kind: Kind,
        op: CollOp,
    ) -> impl Future<Output = Result<CollReply, Error>> + Send {
        async move {
            Ok(self
                .run(StoreOp::Collection { key, kind, op })
                .await?
                .collection()?)
        }
    }

    /// Sets each field of the hash at `key` (creating it); how many fields
    /// were new (RESP `HSET`).
    fn hset(
        &self,
        key: Vec<u8>,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> impl Future<Output = Result<i64, Error>> + Send {
        async move {
            let op = CollOp::Put {
                pairs,
                only_new: false,
            };
            count(self.collection(key, Kind::Hash, op).await?)
        }
    }

    /// The value of `field` in the hash at `key` (RESP `HGET`).
    fn hget(
        &self,
        key: Vec<u8>,
        field: Vec<u8>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Error>> + Send {
        async move {
            let op = CollOp::Get {
                fields: vec![field],
            };
            match self.collection(key, Kind::Hash, op).await? {
                CollReply::Values(mut v) if v.len() == 1 => Ok(v.pop().flatten()),
                _ => Err(Error::Op(OpError::UnexpectedAnswer)),
            }
        }
    }

    /// Every field and value of the hash at `key`, in no promised order
    /// (RESP `HGETALL`).
    fn hgetall(&self, key: Vec<u8>) -> impl Future<Output = Result<Fields, Error>> + Send {
        async move {
            match self.collection(key, Kind::Hash, CollOp::All).await? {
                CollReply::Pairs(p) => Ok(p),
                _ => Err(Error::Op(OpError::UnexpectedAnswer)),
            }
        }
    }

    /// Adds each member to the set at `key` (creating it); how many were
    /// new (RESP `SADD`).
    fn sadd(
        &self,
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<i64, Error>> + Send {
        async move {
            let pairs = members.into_iter().map(|m| (m, Vec::new())).collect();
            let op = CollOp::Put {
                pairs,
                only_new: false,
            };
            count(self.collection(key, Kind::Set, op).await?)
        }
    }

    /// Every member of the set at `key` (RESP `SMEMBERS`).
    fn smembers(&self, key: Vec<u8>) -> impl Future<Output = Result<Vec<Vec<u8>>, Error>> + Send {
        async move {
            match self.collection(key, Kind::Set, CollOp::All).await? {
                CollReply::Pairs(p) => Ok(p.into_iter().map(|(m, _)| m).collect()),
                _ => Err(Error::Op(OpError::UnexpectedAnswer)),
            }
        }
    }

    /// One page of a walk over the keyspace: the live keys with ids in
    /// `[start, end]` (`start <= end`) that the owner of `start` holds, in
    /// key-id order — up to the end of its range, or about `limit` keys
    /// (a page never splits keys whose ids share their top 64 bits, so it
    /// may hold more). Go on from the id after `reached`; most callers
    /// want [`scan_cursor`], which does. Fails with `NotReady` while the
    /// owner's term is still catching up (the coordinator retries it).
    fn scan(
        &self,
        start: Id,
        end: Id,
        limit: u32,
    ) -> impl Future<Output = Result<ScanPage, Error>> + Send {
        async move {
            let op = StoreOp::Scan { start, end, limit };
            Ok(self.run(op).await?.scanned()?)
        }
    }

    /// Waits at `key`'s owner for a change newer than `after` — of `key`
    /// itself (for a collection: any write to it), or with `group` of any
    /// key sharing its key id (its hash tag's group) — and returns it:
    /// its version and the records it wrote (a value `None`: deleted). No
    /// records: nothing newer within about a second and a half (watch
    /// again from the same version), or for a key watched from `None`,
    /// no record at all. `after: None` on a key returns its record now.
    /// Watching again from each answer's version sees every state the key
    /// goes through that its owner's store still holds, whichever node
    /// owns it meanwhile (see `chordal_core` `store/watch.rs`).
    fn watch(
        &self,
        key: Vec<u8>,
        after: Option<Version>,
        group: bool,
    ) -> impl Future<Output = Result<(Option<Version>, Vec<Record>), Error>> + Send {
        async move {
            let op = StoreOp::Watch { key, after, group };
            Ok(self.run(op).await?.watched()?)
        }
    }

    /// Adds the decimal number `by` (its text, e.g. `b"0.1"` or
    /// `b"5.0e3"`) to the value read as one (a missing key counts as 0),
    /// atomically at the owner (RESP `INCRBYFLOAT`); returns the new
    /// value's text. `NotAFloat` if either is not a number, `Overflow` if
    /// the sum is not finite.
    fn incr_by_float(
        &self,
        key: Vec<u8>,
        by: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Error>> + Send {
        async move {
            if chordal_core::parse_float(&by).is_none() {
                return Err(Error::Op(OpError::NotAFloat));
            }
            let change = Change::IncrByFloat(by);
            match self.run(StoreOp::Update { key, change }).await?.value()? {
                Some(v) => Ok(v.value),
                None => Err(Error::Op(OpError::UnexpectedAnswer)),
            }
        }
    }
}

/// Hops one call of [`scan_cursor`] makes before it closes its page at
/// the next 64-bit boundary (a sparse ring could otherwise be walked
/// whole in one call).
const MAX_SCAN_HOPS: u32 = 8;

/// One step of a walk over the whole keyspace with a 64-bit cursor, as
/// Redis's SCAN takes it: `0` starts a walk, and the cursor answered
/// continues it (`0` again once the walk is over). Returns about `count`
/// keys (perhaps more, perhaps none before the end).
///
/// The cursor is the top 64 bits of the next key id to read: the walk
/// goes through the ring in key-id order, each part from the node that
/// owns it when it is read, so a key present for the whole walk is
/// returned (once, unless ownership moves back over it), whichever nodes
/// join or leave meanwhile, and any node can continue a walk another
/// began. A key written or deleted during the walk may or may not be.
pub async fn scan_cursor<K: KeyValue + ?Sized>(
    kv: &K,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<Vec<u8>>), Error> {
    let count = count.max(1);
    let mut start = Id::from_high_u64(cursor);
    let mut keys = Vec::new();
    let mut hops = 0;
    loop {
        hops += 1;
        // Enough keys (or hops): end this call at the end of the 64-bit
        // group `start` is in, so that the next one resumes from a cursor.
        let closing = keys.len() >= count || hops > MAX_SCAN_HOPS;
        let (end, want) = if closing {
            (start.end_of_high_u64(), u32::MAX)
        } else {
            (Id::MAX, (count - keys.len()).min(u32::MAX as usize) as u32)
        };
        let page = kv.scan(start, end, want).await?;
        keys.extend(page.keys);
        if page.reached == Id::MAX {
            return Ok((0, keys));
        }
        let next = page.reached.wrapping_add(&Id::from_u64(1));
        let on_boundary = next == Id::from_high_u64(next.high_u64());
        if on_boundary && (keys.len() >= count || hops >= MAX_SCAN_HOPS) {
            return Ok((next.high_u64(), keys));
        }
        start = next;
    }
}

/// Puts back `record` exactly as a backup holds it, its version included
/// (tombstones too), unless the ring holds a newer version of the key:
/// `Ok(true)` once it is durable on the write quorum (also when the ring
/// held exactly that version), `Ok(false)` when the ring keeps a newer
/// version (nothing is written).
///
/// What `chordal restore` calls for each record of a backup file. Fails
/// as [`KeyValue::put`] does.
pub async fn restore<K: KeyValue + ?Sized>(kv: &K, record: Record) -> Result<bool, Error> {
    let op = StoreOp::Update {
        key: record.key,
        change: Change::Restore {
            version: record.version,
            value: record.value,
            expires: record.expires,
            kind: record.kind,
        },
    };
    match kv.run(op).await {
        Ok(outcome) => outcome.written().map(|_| true).map_err(Error::Op),
        Err(Error::Op(OpError::PreconditionFailed { .. })) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The number of an update's outcome; a missing key cannot happen for
/// increments and appends.
fn updated_number(outcome: Outcome) -> Result<i64, Error> {
    match outcome.updated()? {
        Some(u) => Ok(u.number),
        None => Err(Error::Op(OpError::UnexpectedAnswer)),
    }
}

/// A hash's fields and values.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// The number a collection command answered.
fn count(reply: CollReply) -> Result<i64, Error> {
    match reply {
        CollReply::Count(n) => Ok(n),
        _ => Err(Error::Op(OpError::UnexpectedAnswer)),
    }
}
