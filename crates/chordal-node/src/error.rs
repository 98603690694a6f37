//! The one error type of a [`Node`](crate::Node) handle and a
//! [`Client`](crate::Client): what the ring answered (the core's
//! [`OpError`] vocabulary) or why the call could not get an answer.

use chordal_core::{LookupError, OpError};
use std::net::SocketAddr;

/// Why a call failed. Each method's documentation says which variants
/// (and which [`OpError`]s) it can return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring's answer: the owner, the coordinator or a lookup failed
    /// the operation.
    #[error(transparent)]
    Op(#[from] OpError),
    /// The local node has stopped (left, aborted or crashed).
    #[error("the node has stopped")]
    Stopped,
    /// A client could reach none of its seeds.
    #[error("no seed could be reached: {0}")]
    NoSeed(String),
    /// A client's request to this node got no answer in time.
    #[error("node {0} did not answer in time")]
    NodeTimeout(SocketAddr),
    /// A client could not connect to this node (or it broke the
    /// connection, or answered nonsense).
    #[error("cannot reach node {0}: {1}")]
    Connect(SocketAddr, String),
    /// A client's TLS material could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The local store could not be read.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<LookupError> for Error {
    fn from(e: LookupError) -> Error {
        Error::Op(OpError::Lookup(e))
    }
}

impl Error {
    /// The ring's answer, if that is what failed the call.
    pub fn op(&self) -> Option<OpError> {
        match self {
            Error::Op(e) => Some(*e),
            _ => None,
        }
    }
}
