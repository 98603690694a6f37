//! # chordal-node: a Chord node on tokio
//!
//! [`NodeBuilder::start`] binds the peer port, creates or joins a ring and returns a
//! handle once every virtual node has joined. The protocol itself lives in
//! `chordal-core`; this crate only moves its messages over TCP
//! (`chordal-wire` framing), runs its timers and answers the handle.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chordal_node::{KeyValue, Node};
//! let first = Node::builder().start().await?; // creates a ring on 127.0.0.1
//! let second = Node::builder().join(first.addr().to_string()).start().await?;
//! // Alone or not, a node stores and serves any key of the ring.
//! let written = second.put(b"user:42".to_vec(), b"Ada".to_vec()).await?;
//! let read = first.get(b"user:42".to_vec()).await?.expect("stored");
//! assert_eq!(read.value, b"Ada");
//! // The same write (a later term of the key's owner may have raised its
//! // term: the version's clock and writer name the write).
//! assert!(read.version.same_write(&written.version));
//! let owner = second.locate(b"user:42").await?.owner;
//! println!("{} owns user:42", owner.id);
//! second.leave().await;
//! first.leave().await;
//! # Ok(()) }
//! ```
//!
//! [`Node::builder`] sets what differs from the defaults: it is the one way
//! to configure a node.
//!
//! ## Building an application on the ring
//!
//! A program does not need to know the other nodes: it names keys.
//!
//! - **Where does a key live?** [`Node::locate`] gives its owner and the
//!   nodes after it. A key with a hash tag lives where its tag does (see
//!   [`chordal_core::Id::of_key`]): `{user:42}:cart` and
//!   `{user:42}:profile` share an owner and their copies.
//! - **Talk to a key's owner.** [`Node::send`] delivers bytes to the
//!   application of the node that owns a key (acknowledged once that
//!   application took them); [`Node::request`] also waits for its answer.
//!   Each node's application reads [`Node::messages`] and answers requests
//!   through their [`Responder`]. Everything is bounded: a full inbox, an
//!   application that does not listen or one that never answers makes the
//!   sender's call fail with `Refused`, never hang or grow memory.
//! - **Follow ownership.** [`Node::events`] reports joins, neighbour
//!   changes and the exact key ranges this node gained and lost
//!   ([`NodeEvent::RangeGained`], [`NodeEvent::RangeLost`]): move your own
//!   state when they come. Replayed, they always add up to the range the
//!   node owns, and the ranges of all nodes cover the ring once.
//! - **Publish and subscribe.** [`Node::subscribe`] returns a stream of
//!   what [`Node::publish`] sends to a topic from any node; each
//!   publisher's messages arrive in order, and a subscription survives
//!   the crash of the node that owns the topic.
//! - **Store data** with the [`KeyValue`] operations on a `Node`: put, get,
//!   delete, with expiries, conditions (create-only, compare-version),
//!   increments and appends decided atomically at the owner, and reads from
//!   a quorum of copies (replicated, persistent) — or from outside the
//!   ring, the same operations on a [`Client`].
//!
//! ```no_run
//! # async fn demo(node: chordal_node::Node) -> Result<(), chordal_node::Error> {
//! // Every node runs this: answer whatever arrives for our keys.
//! let mut inbox = node.messages().expect("taken once");
//! tokio::spawn(async move {
//!     while let Some(msg) = inbox.next().await {
//!         let answer = format!("{} bytes for {:?}", msg.payload.len(), msg.key);
//!         msg.reply(answer.into_bytes());
//!     }
//! });
//! // Any node can then ask the owner of any key.
//! let answer = node.request(b"user:42".to_vec(), b"hello".to_vec()).await?;
//! # Ok(()) }
//! ```
//!
//! Where things are: `builder.rs` and `config.rs` say how a node starts,
//! `start.rs` starts it, `handle.rs` is the [`Node`] handle, `driver/`
//! runs the core (with `conn.rs`, `pool.rs`, `outbox.rs` for the peer
//! connections), `kv.rs` the store operations every handle shares,
//! `tokens.rs` who may do what, `status.rs` and `survey.rs` what a node
//! reports.

#![warn(missing_docs)]

pub mod accept;
mod app;
mod bindings;
mod builder;
mod client;
mod config;
mod conn;
mod driver;
mod error;
mod events;
pub mod glob;
mod handle;
mod kv;
pub mod local;
mod metrics;
pub mod notify;
mod outbox;
mod pool;
mod start;
mod status;
mod store_op;
mod survey;
mod tls;
pub mod tokens;
mod topics;
mod walk;

pub use app::{Incoming, Messages, Responder};
pub use builder::NodeBuilder;
/// The store's option and result types ([`KeyValue`]).
pub use chordal_core::{Change, Condition, Consistency, Expiry, PutOptions, Replaced, Updated};
/// The core's types this crate's API uses, re-exported so that an
/// application depends on `chordal-node` alone.
pub use chordal_core::{
    Config, Id, KeyRange, LeaveReport, LookupError, LookupMode, LookupResult, Neighbors, NodeRef,
    OpError, Oracle, Record, Version, Versioned, Written,
};
/// Why a data directory could not be opened ([`StartError::Store`]).
pub use chordal_store::StoreError;
pub use chordal_wire::{PROTOCOL_VERSIONS, Versions};
pub use client::{Client, ClientConfig};
pub(crate) use config::NodeConfig;
pub use config::StartError;
pub use conn::{WireStats, probe};
pub use driver::wall_clock;
pub use error::Error;
pub use events::{NodeEvent, NodeEvents};
pub use handle::{Located, Node, PeerInfo, RingMember};
pub use kv::{KeyValue, StoreOp, restore, scan_cursor};
pub use status::{DEPARTED_FOR, Departed, Finger, MAX_DEPARTED, Status, VNodeStatus};
pub use survey::RingSurvey;
pub use topics::{Publication, Subscription};
