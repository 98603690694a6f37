//! Snapshots of a node's state for the API, the CLI and tests.

use chordal_core::{Id, NodeRef};
use std::net::SocketAddr;

/// One run of equal fingers: `fingers[index..]` all point at `node` until
/// the next entry. `start` = node id + 2^index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finger {
    pub index: usize,
    pub start: Id,
    pub node: NodeRef,
}

/// The routing state of one virtual node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VNodeStatus {
    pub me: NodeRef,
    pub joined: bool,
    pub predecessor: Option<NodeRef>,
    /// Successor list, nearest first (`[me]` when alone).
    pub successors: Vec<NodeRef>,
    /// Distinct fingers, in index order.
    pub fingers: Vec<Finger>,
}

/// A node's state and counters.
#[derive(Clone, Debug)]
pub struct Status {
    pub addr: SocketAddr,
    pub api: Option<SocketAddr>,
    /// The service beside this node (`--service`).
    pub service: Option<String>,
    pub cluster: String,
    /// The first is the primary virtual node.
    pub vnodes: Vec<VNodeStatus>,
    /// Pooled peer connections.
    pub connections: usize,
    /// Records in the local store (tombstones included).
    pub keys_stored: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bad_handshakes: u64,
    pub bad_frames: u64,
    pub dropped_out: u64,
    /// Why this node's storage refuses writes right now (a full disk, an
    /// I/O error); `None` when healthy. It recovers by itself.
    pub storage_problem: Option<String>,
}
