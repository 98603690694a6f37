//! # chordal-core: the Chord protocol as a sans-IO state machine
//!
//! This crate decides everything and does nothing: it never touches a
//! socket, a file, the clock or a global RNG. A driver (the tokio runtime in
//! `chordal-node`, or the simulator in `chordal-sim`) feeds it inputs with the
//! current [`Time`] and carries out what it asks for:
//!
//! ```text
//!  handle_message(now, envelope) ─┐                 ┌─> poll_transmit() -> Envelope
//!  handle_timeout(now)           ─┼─> Node ─────────┼─> poll_event()    -> Event
//!  create / join / leave / start_lookup            └─> poll_timeout()  -> Time
//! ```
//!
//! Start with [`Node`] (a process hosting virtual nodes), then [`VNode`]
//! (the protocol of one ring member, following Stoica et al.'s pseudocode),
//! [`RoutingTable`] (predecessor, successor list, fingers) and [`Id`]
//! (160-bit ring arithmetic).

mod config;
mod counters;
mod event;
pub mod fasthash;
mod id;
mod kv;
mod message;
mod node;
mod oracle;
mod pubsub;
mod record;
mod rng;
mod routing;
mod time;
mod vnode;

pub use config::{Config, LookupMode};
pub use counters::Counters;
pub use event::{Event, KeyRange, LookupError, LookupId, LookupResult, Neighbors, QueryId};
pub use id::{ID_BITS, ID_BYTES, Id, ParseIdError};
pub use kv::{
    AppMsgId, Applied, KvError, KvOpId, KvOutcome, LeaveReport, StoreKind, StoreOpId, StoreRequest,
    StoreResult, bucket_hash, bucket_of, record_digest,
};
pub use message::{Envelope, KvOp, KvResult, LookupFailure, Message, NodeRef, Publication, Target};
pub use node::Node;
pub use oracle::Oracle;
pub use record::{Hlc, Record, Version};
pub use rng::Rng;
pub use routing::RoutingTable;
pub use time::Time;
pub use vnode::{Phase, VNode};
