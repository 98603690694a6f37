//! The request sub-machine: carries an operation to the node that serves
//! it and the answer back (DESIGN §5). Store operations, application
//! messages and pub/sub all travel this way, so routing, retries after
//! ownership moved, owner failures and deadlines are decided once, here.
//!
//! Two halves, usually on different processes:
//! - the **coordinator** (`coordinator.rs`) takes an operation from the
//!   application, finds the key's owner (a local vnode, the owner cache or
//!   a Chord lookup), sends it a `Request` and retries when the owner
//!   answers `WrongOwner`, sheds load or dies;
//! - the **serving side** (`serve.rs`) admits a `Request` (an answer
//!   already given to a retry, overload, an id we do not host), hands it
//!   to the machine that serves it, and sends that machine's answer back
//!   with our range, so the coordinator can skip the next lookup.

mod coordinator;
mod serve;
#[cfg(test)]
mod tests;

pub(crate) use serve::admit;

use crate::config::Config;
use crate::fasthash::FastMap;
use crate::{Id, LookupId, NodeRef, OpError, OpResult, Operation, Time};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Most owner ranges a coordinator caches.
const OWNER_CACHE_MAX: usize = 4096;
/// Most answers an owner remembers by operation id, and for how long (a
/// retry comes within the coordinator's deadline).
const RECENT_MAX: usize = 4096;
const RECENT_FOR: Duration = Duration::from_secs(30);

/// Number of an operation started with `Node::put`, `get`, `send`, ….
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Where an owner's answer goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReplyTo {
    /// An operation this process coordinates.
    Local(u64),
    /// A coordinator elsewhere: answer `req` to `to`, from our vnode `me`.
    /// `op` is the coordinator's operation id and the key's id (`None`:
    /// not named), under which the answer is remembered; `budget` how
    /// long the coordinator waits.
    Remote {
        to: NodeRef,
        me: NodeRef,
        req: u64,
        op: Option<(u64, Id)>,
        budget: Duration,
    },
}

impl ReplyTo {
    /// How long the owner may take for this operation: 9/10 of what its
    /// coordinator waits (the answer must still travel).
    pub fn answer_by(&self, now: Time, config: &Config) -> Time {
        let budget = match self {
            ReplyTo::Remote { budget, .. } => *budget,
            ReplyTo::Local(_) => config.kv_timeout * 3 / 5,
        };
        now + budget * 9 / 10
    }

    /// The process that sent the request (for a local one, `primary`, our
    /// first vnode): the sender of an application message, a subscriber.
    pub fn origin(&self, primary: NodeRef) -> NodeRef {
        match self {
            ReplyTo::Local(_) => primary,
            ReplyTo::Remote { to, .. } => *to,
        }
    }
}

/// `(size, limit)` if `op`'s key or a put's value is over the limits.
pub(crate) fn oversize(config: &Config, op: &Operation) -> Option<(u64, u64)> {
    op.over_limits(config.max_key, config.max_value)
}

/// Who asked, which operation, which key.
type RecentKey = (SocketAddr, u64, Id);

/// An operation this process coordinates.
#[derive(Debug)]
struct ClientOp {
    op: Operation,
    key_id: Id,
    /// Lookups/redirects done so far.
    attempts: u32,
    deadline: Time,
    /// Why the last attempt failed, reported if no attempt is left.
    last_error: Option<OpError>,
    /// A direct message's destination: tried once, never looked up.
    target: Option<NodeRef>,
    /// Between attempts after a `NotReady` or an `Overloaded`: no attempt
    /// is in flight, so if the deadline comes now the operation did
    /// nothing (unless an earlier attempt may have: `retry`).
    refused: bool,
    /// An earlier attempt may have been applied (its owner went silent):
    /// later attempts are retries, which the owner answers from the
    /// record's log rather than apply again (see `oplog.rs`).
    retry: bool,
}

/// An operation's id as its owner sees it, and whether an earlier
/// attempt of it may have been applied (see [`crate::OpLog`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct OpName {
    /// The coordinator's id of the operation (unique per process start).
    pub id: u64,
    /// An earlier attempt may have been applied.
    pub retry: bool,
}

/// A deadline of the request machine.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Deadline {
    /// The whole operation's.
    Client(u64),
    /// A `Request` to an owner awaiting its reply.
    Request(u64),
    /// An operation waiting to try its owner again.
    Retry(u64),
}

/// Operations coordinated here and answers given to coordinators
/// elsewhere.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    clients: FastMap<u64, ClientOp>,
    /// Lookups started for operations.
    lookups: FastMap<LookupId, u64>,
    /// `Request`s sent, by request number → operation, owner, deadline,
    /// and whether a connection to the owner closed since it was sent
    /// (it may have arrived; see [`Requests::connection_closed`]).
    requests: FastMap<u64, (u64, NodeRef, Time, bool)>,
    deadlines: BTreeSet<(Time, Deadline)>,
    /// Owners' ranges learned from their replies, by range end (the owner
    /// id): `(start, owner, expiry)`. Lets a coordinator skip the lookup.
    owner_cache: BTreeMap<Id, (Id, NodeRef, Time)>,
    /// Answers given to remote coordinators, by (coordinator, operation
    /// id, key id), oldest first: a retry of an operation gets the same
    /// answer (a retried delete that already happened says `Stored`, not
    /// `NotFound`).
    recent: BTreeMap<RecentKey, (OpResult, Time)>,
    recent_order: VecDeque<RecentKey>,
    /// Named operations of remote coordinators we are serving now (not
    /// yet answered): a retry of one that arrives meanwhile must not
    /// start it a second time (see `Requests::handle_request`).
    serving: std::collections::BTreeSet<RecentKey>,
    /// Added to our operation numbers to make the ids we send other
    /// nodes: random per incarnation, so that a restarted process never
    /// reuses an id a peer still remembers.
    op_base: u64,
    /// Coordinators that sent us a `Request` lately, by process → (vnode,
    /// when last): a graceful leave tells them too (see
    /// [`Requests::recent_requesters`]). At most [`MAX_REQUESTERS`].
    requesters: FastMap<std::net::SocketAddr, (NodeRef, Time)>,
}

/// Most coordinators [`Requests::recent_requesters`] remembers.
const MAX_REQUESTERS: usize = 1024;

impl Requests {
    /// Fresh state whose operation ids sent to owners start at `op_base`.
    pub fn new(op_base: u64) -> Requests {
        Requests {
            op_base,
            ..Requests::default()
        }
    }

    /// Coordinators that sent us a `Request` since `since`: at our
    /// farewell they hear that we left, so that a request of theirs still
    /// unanswered goes to the next owner (it never reached us, or we
    /// refused it) instead of waiting out its deadline.
    pub fn recent_requesters(&self, since: Time) -> Vec<NodeRef> {
        (self.requesters.values())
            .filter(|(_, at)| *at >= since)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Remembers that `from` sent us a `Request` at `now` (bounded: when
    /// full, the oldest-looking entries older than `forget_before` go; if
    /// none, `from` is not remembered).
    fn remember_requester(&mut self, now: Time, from: NodeRef, forget_before: Time) {
        if self.requesters.len() >= MAX_REQUESTERS && !self.requesters.contains_key(&from.addr) {
            self.requesters.retain(|_, (_, at)| *at >= forget_before);
            if self.requesters.len() >= MAX_REQUESTERS {
                return;
            }
        }
        self.requesters.insert(from.addr, (from, now));
    }

    /// Operations being coordinated (counted against `max_kv_ops`).
    pub fn in_flight(&self) -> usize {
        self.clients.len()
    }

    /// Is lookup `lookup` one of ours?
    pub fn owns_lookup(&self, lookup: &LookupId) -> bool {
        self.lookups.contains_key(lookup)
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The answer already given to operation `op` (id, key id) of
    /// `from`, if recent.
    fn recalled(&self, now: Time, from: SocketAddr, op: Option<(u64, Id)>) -> Option<OpResult> {
        let (op, key) = op?;
        let (result, at) = self.recent.get(&(from, op, key))?;
        (now.saturating_since(*at) < RECENT_FOR).then(|| result.clone())
    }

    /// Remembers the answer to operation `op` of `from` (bounded: the
    /// oldest goes first).
    fn remember(&mut self, now: Time, from: SocketAddr, op: Option<(u64, Id)>, result: &OpResult) {
        let Some((op, key)) = op else {
            return;
        };
        // Transient answers are not the operation's outcome: a retry must
        // be served anew (a `NotReady` replayed to every retry kept a write
        // issued while a ring formed refused until its deadline).
        if matches!(
            result,
            OpResult::WrongOwner | OpResult::Overloaded | OpResult::NotReady
        ) {
            return;
        }
        if self
            .recent
            .insert((from, op, key), (result.clone(), now))
            .is_none()
        {
            self.recent_order.push_back((from, op, key));
        }
        while self.recent_order.len() > RECENT_MAX {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// Remembers that `owner` owns `range` until `now + ttl`.
    fn cache_owner(&mut self, now: Time, range: crate::KeyRange, owner: NodeRef, ttl: Duration) {
        if range.end != owner.id || ttl.is_zero() {
            return;
        }
        if self.owner_cache.len() >= OWNER_CACHE_MAX && !self.owner_cache.contains_key(&range.end) {
            // Full: drop an entry (the first by id; any will do).
            self.owner_cache.pop_first();
        }
        self.owner_cache
            .insert(range.end, (range.start, owner, now + ttl));
    }

    /// The owner of `key` according to the cache, if fresh.
    fn cached_owner(&self, now: Time, key: &Id) -> Option<NodeRef> {
        // The first range ending at or after the key, wrapping around.
        let (_, (start, owner, expiry)) = self
            .owner_cache
            .range(*key..)
            .next()
            .or_else(|| self.owner_cache.iter().next())?;
        let range = crate::KeyRange {
            start: *start,
            end: owner.id,
        };
        (*expiry > now && range.contains(key)).then_some(*owner)
    }

    /// Forgets what the cache says about `owner`.
    fn forget_owner(&mut self, owner: &NodeRef) {
        self.owner_cache.remove(&owner.id);
    }
}
