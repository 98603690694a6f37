//! How an operation started on a [`Node`](crate::Node) ended, as
//! `Event::KvDone` reports it.

use crate::{LookupError, Version};

/// A finished client operation.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum KvOutcome {
    /// Put or delete stored with `version` on `acked` nodes.
    Stored { version: Version, acked: u32 },
    /// Get found a value.
    Found { value: Vec<u8>, version: Version },
    /// Get or delete of a missing key.
    NotFound,
    /// `send`: the owner's application took the message.
    Delivered,
    /// `request`: the owner's application's answer.
    Replied { payload: Vec<u8> },
    /// `publish`: the topic's owner queued it for this many subscriber
    /// processes.
    Published { subscribers: u32 },
}

/// Why a client operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    #[error("operation timed out")]
    Timeout,
    #[error("node is not joined to a ring")]
    NotJoined,
    #[error("too many operations in flight; try again later")]
    Overloaded,
    #[error("{size} bytes is over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot find the key's owner: {0}")]
    Lookup(LookupError),
    #[error("ownership kept moving; gave up after several tries")]
    Redirects,
    #[error("only {acked} of the {needed} copies needed were stored in time")]
    QuorumFailed { acked: u32, needed: u32 },
    #[error("only {available} of the {needed} processes a write needs can hold a copy now")]
    QuorumUnavailable { available: u32, needed: u32 },
    #[error("the owner's storage failed")]
    StoreFailed,
    #[error("the owner's application refused the message or did not answer in time")]
    Refused,
    #[error("the node did not answer")]
    Unreachable,
}
