//! Snapshots of a node's state for the API, the CLI and tests.

use chordal_core::{Id, NodeRef};
use std::net::SocketAddr;

/// One run of equal fingers: `fingers[index..]` all point at `node` until
/// the next entry. `start` = node id + 2^index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finger {
    /// The finger's index `i`: it points at the successor of `n + 2^i`.
    pub index: usize,
    /// `n + 2^i`, where the finger's interval starts.
    pub start: Id,
    /// The node the finger points at.
    pub node: NodeRef,
}

/// The routing state of one virtual node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VNodeStatus {
    /// The virtual node itself.
    pub me: NodeRef,
    /// Is it part of a ring?
    pub joined: bool,
    /// Its predecessor, if known.
    pub predecessor: Option<NodeRef>,
    /// Successor list, nearest first (`[me]` when alone).
    pub successors: Vec<NodeRef>,
    /// Distinct fingers, in index order.
    pub fingers: Vec<Finger>,
}

/// A node's state and counters.
#[derive(Clone, Debug)]
pub struct Status {
    /// The peer address.
    pub addr: SocketAddr,
    /// The HTTP API address, if any.
    pub api: Option<SocketAddr>,
    /// The service beside this node (`--service`).
    pub service: Option<String>,
    /// The cluster name (nodes of different clusters refuse each other).
    pub cluster: String,
    /// The first is the primary virtual node.
    pub vnodes: Vec<VNodeStatus>,
    /// Pooled peer connections.
    pub connections: usize,
    /// Records in the local store (tombstones included).
    pub keys_stored: u64,
    /// Processes in the ring: the membership table's count when routing
    /// one hop, else estimated from this node's successor lists (exact in
    /// a ring small enough for a list to come back round).
    pub ring_size_estimate: Option<f64>,
    /// How requests find their owner: `onehop` or `chord`.
    pub routing: &'static str,
    /// One-hop routing's membership table and its upkeep (zero under
    /// Chord routing).
    pub membership: chordal_core::OneHopStats,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Connections refused at the handshake.
    pub bad_handshakes: u64,
    /// Frames that did not decode.
    pub bad_frames: u64,
    /// Frames dropped because a peer's send buffer was full.
    pub dropped_out: u64,
    /// Why this node's storage refuses writes right now (a full disk, an
    /// I/O error); `None` when healthy. It recovers by itself.
    pub storage_problem: Option<String>,
    /// Processes this node saw fail or leave in the last
    /// [`DEPARTED_FOR`] (at most [`MAX_DEPARTED`]), newest last: what lets
    /// `chordal status` and the dashboard show a crashed node as down
    /// instead of just no longer listing it. A process that came back is
    /// still here; callers leave out the ones they find in the ring.
    pub departed: Vec<Departed>,
}

/// How long a departed process is remembered.
pub const DEPARTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// Most departed processes remembered.
pub const MAX_DEPARTED: usize = 64;

/// A process a node saw fail or leave (see [`Status::departed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departed {
    /// Its virtual node we had in our routing state.
    pub node: NodeRef,
    /// The HTTP API address it declared, if any.
    pub api: Option<SocketAddr>,
    /// `Some(true)`: it said goodbye (a graceful leave); `Some(false)`:
    /// it stopped answering us; `None`: the ring's membership news said it
    /// is gone, without saying how.
    pub left: Option<bool>,
    /// How long ago.
    pub ago: std::time::Duration,
}
