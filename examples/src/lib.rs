//! Programs built on `chordal-node`'s application library; the reusable
//! parts live here so that tests can drive them in-process.
//!
//! - `textsend` (bin): each line of stdin goes to the node owning its hash.
//! - `pubsub` (bin): a chat room over pub/sub topics.
//! - `blockstore` (bin, and [`blockstore`]): a CFS-style file store of
//!   self-certifying blocks.
//! - `counter` (bin, and [`counter`]): the demo service behind `chordal
//!   gateway`, its per-client state in the store.

pub mod blockstore;
pub mod counter;
