//! # chordal-core: the Chord protocol as sans-IO state machines
//!
//! This crate decides everything and does nothing: it never touches a
//! socket, a file, the clock or a global RNG. A driver (the tokio runtime in
//! `chordal-node`, or the simulator in `chordal-sim`) feeds it inputs with the
//! current [`Time`] and carries out what it asks for:
//!
//! ```text
//!  handle_message(now, envelope)  ─┐              ┌─> poll_transmit() -> Envelope
//!  handle_timeout(now)            ─┤              ├─> poll_store()    -> StoreRequest
//!  handle_store(now, op, result)  ─┼─> Node ──────┼─> poll_event()    -> Event
//!  create / join / leave / put /  ─┘              └─> poll_timeout()  -> Time
//!  get / send / publish / start_lookup
//! ```
//!
//! Inside, [`Node`] only routes, between five sub-machines that each own
//! their state: the **ring** (virtual nodes, [`RoutingTable`], lookups and
//! the placement rule [`replica_set`]), **requests** (the coordinator that
//! carries an operation to its key's owner and the answer back), the
//! **store** (owner, replica, sync, sweep, transfer, leave), **messaging**
//! (application messages) and **pub/sub**. `docs/architecture.md` draws
//! them and follows a lookup and a put through them.
//!
//! A driver's whole job, for a one-node ring and one put (a real driver
//! also sends `poll_transmit`'s messages and calls `handle_timeout` at
//! `poll_timeout` — which, under authority, the default, is also how the
//! node's first term is prepared and settled before it decides; this
//! sketch turns authority off so that the put is decided at once):
//!
//! ```
//! use chordal_core::{Applied, Config, Event, Id, Outcome, Node, StoreKind, StoreResult, Time};
//!
//! let addr = "127.0.0.1:7000".parse().unwrap();
//! let config = Config { authority: false, ..Config::default() };
//! let mut node = Node::new(config, addr, &[Id::hash(b"n1")], 1);
//! let now = Time::from_millis(1_000);
//! node.create(now);
//! let op = node.put(now, b"key".to_vec(), b"value".to_vec());
//! // The core asks for storage; the driver performs it and reports back.
//! while let Some(request) = node.poll_store() {
//!     let result = match request.kind {
//!         StoreKind::Apply { records } => StoreResult::Applied(vec![Applied::Stored; records.len()]),
//!         _ => StoreResult::Failed,
//!     };
//!     node.handle_store(now, request.op, result);
//! }
//! // Alone on its ring, the node's own copy is the whole quorum.
//! let done = std::iter::from_fn(|| node.poll_event()).find_map(|e| match e {
//!     Event::OpDone { op: id, result } if id == op => Some(result),
//!     _ => None,
//! });
//! assert!(matches!(done, Some(Ok(Outcome::Stored { acked: 1, .. }))));
//! ```
//!
//! Start with [`Node`] (a process hosting virtual nodes), then [`VNode`]
//! (the protocol of one ring member, following Stoica et al.'s pseudocode),
//! [`RoutingTable`] (predecessor, successor list, fingers) and [`Id`]
//! (160-bit ring arithmetic).

#![warn(missing_docs)]

mod authority;
mod batch;
pub mod collection;
mod config;
mod counters;
mod event;
pub mod fasthash;
mod id;
mod io;
mod message;
mod messaging;
mod node;
mod oplog;
mod oracle;
mod outcome;
mod pubsub;
mod record;
mod request;
mod ring;
mod rng;
mod store;
#[cfg(test)]
mod testkit;
mod time;
mod write;

pub use authority::{Known, Refusal, Settled};
pub use config::{Config, LookupMode, Routing};
pub use counters::Counters;
pub use event::{Event, KeyRange, LookupError, LookupId, LookupResult, Neighbors, QueryId};
pub use id::{ID_BITS, ID_BYTES, Id, ParseIdError, SLOTS, hash_tag, slot_of};
pub use message::{
    Envelope, Family, LookupFailure, MemberEvent, Message, NodeRef, OpResult, Operation,
    OwnerClaim, Publication, Target,
};
pub use messaging::AppMsgId;
pub use node::Node;
pub use oplog::{Answered, DONE_BYTES, Done, MAX_DONE, OpLog, Retried};
pub use oracle::Oracle;
pub use outcome::{
    Answer, Batched, OpError, Outcome, Replaced, ScanPage, Updated, Versioned, Written,
};
pub use record::{Hlc, Kind, Record, Version, dead_since};
pub use request::OpId;
pub use ring::{
    MAX_EVENTS_PER_MESSAGE, MEMBER_SLICES, MEMBERS_PAGE, MembersDigest, OneHopStats, Phase,
    RoutingTable, VNode, replica_set, replica_set_where, ring_size, successor_index,
};
pub use rng::Rng;
pub use store::{
    Applied, FINE, LeaveReport, StoreKind, StoreOpId, StoreRequest, StoreResult, bucket_count,
    bucket_hash, bucket_of, bucket_span, fine_bounds, fine_of, fine_span, record_digest,
};
pub use time::Time;
pub use write::{
    Change, Condition, Consistency, ExpireWhen, Expiry, PutOptions, WriteOptions, format_float,
    parse_float, parse_integer,
};
