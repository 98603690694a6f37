//! The JSON shapes of the API (docs/http-api.md). Also used by the CLI to parse them.

use serde::{Deserialize, Serialize};

/// A node: `{"id": "<40 hex>", "addr": "ip:port", "api": "ip:port" | null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeJson {
    /// Its id, in hex.
    pub id: String,
    /// Its peer address.
    pub addr: String,
    /// Its HTTP API address, if known.
    pub api: Option<String>,
}

/// One distinct finger: it covers ids from `start` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerJson {
    pub index: usize,
    pub start: String,
    pub node: NodeJson,
}

/// Routing state of one virtual node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VNodeJson {
    pub id: String,
    pub predecessor: Option<NodeJson>,
    pub successors: Vec<NodeJson>,
    pub fingers: Vec<FingerJson>,
}

/// `GET /v1/node`: the primary virtual node's state at top level, all
/// virtual nodes under `vnodes`, and wire counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatusJson {
    /// Its id, in hex.
    pub id: String,
    /// Its peer address.
    pub addr: String,
    /// Its HTTP API address, if known.
    pub api: Option<String>,
    /// The service beside the node (`--service`), if declared.
    #[serde(default)]
    pub service: Option<String>,
    /// The cluster name.
    pub cluster: String,
    /// The software release the node runs (`chordal --version`).
    #[serde(default)]
    pub version: String,
    /// The peer-protocol versions it speaks, oldest and newest.
    #[serde(default)]
    pub protocol: [u32; 2],
    /// Its predecessor, if known.
    pub predecessor: Option<NodeJson>,
    /// Its successor list, nearest first.
    pub successors: Vec<NodeJson>,
    /// Its finger table.
    pub fingers: Vec<FingerJson>,
    /// Records its process stores.
    pub keys_stored: u64,
    /// Why its storage refuses writes (a full disk, an I/O error), if it
    /// does.
    #[serde(default)]
    pub storage_problem: Option<String>,
    /// Processes in the ring: the membership table's count (one-hop
    /// routing) or an estimate from this node's successor lists (Chord).
    pub ring_size_estimate: Option<f64>,
    /// How requests find their owner: `onehop` or `chord`.
    #[serde(default)]
    pub routing: String,
    /// One-hop routing's membership table: `entries`, `processes`,
    /// `bytes`, `capacity`, and the events it took (`events_detected`,
    /// `events_received`, `events_sent`, `messages_sent`, `copies`).
    #[serde(default)]
    pub membership: serde_json::Value,
    /// The virtual nodes of this process.
    pub vnodes: Vec<VNodeJson>,
    /// Wire statistics.
    pub stats: serde_json::Value,
}

/// One member in `GET /v1/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingNodeJson {
    /// Its id, in hex.
    pub id: String,
    /// Its peer address.
    pub addr: String,
    /// Its HTTP API address, if known.
    pub api: Option<String>,
    /// The service beside the node (`--service`), if declared.
    #[serde(default)]
    pub service: Option<String>,
    /// Records its process stores.
    pub keys_stored: u64,
    /// Its predecessor's id, as it said when walked.
    #[serde(default)]
    pub predecessor: Option<String>,
    /// Its successor list's ids, nearest first.
    #[serde(default)]
    pub successors: Vec<String>,
}

/// `GET /v1/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingJson {
    /// The members, in ring order from the one asked.
    pub nodes: Vec<RingNodeJson>,
    /// How many.
    pub count: usize,
    /// What looks wrong, in words (empty for a healthy ring).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Processes the node asked saw fail or leave in the last ten
    /// minutes and that the walk did not find: a crashed node shows here
    /// as down rather than vanishing.
    #[serde(default)]
    pub down: Vec<DownJson>,
}

/// A process in `GET /v1/ring`'s `down`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownJson {
    /// The id of its vnode the node asked knew, in hex.
    pub id: String,
    /// Its peer address.
    pub addr: String,
    /// Its HTTP API address, if it declared one.
    pub api: Option<String>,
    /// It left gracefully (`true`), stopped answering (`false`), or the
    /// ring's membership news said it is gone without saying how (null).
    pub left: Option<bool>,
    /// Seconds since it was seen to go.
    pub seconds_ago: u64,
}

/// `GET /v1/locate/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocateJson {
    /// The key as given.
    pub key: String,
    /// Its id (SHA-1), in hex.
    pub key_id: String,
    /// The key's owner.
    pub owner: NodeJson,
    /// Where its other copies are.
    pub replicas: Vec<NodeJson>,
    /// Hops the lookup took.
    pub hops: u32,
    /// Iterative lookups: the nodes asked, in order (empty for recursive).
    #[serde(default)]
    pub path: Vec<NodeJson>,
}
