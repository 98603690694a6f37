//! The JSON shapes of the API (SPEC.md). Also used by the CLI to parse them.

use serde::{Deserialize, Serialize};

/// A node: `{"id": "<40 hex>", "addr": "ip:port", "api": "ip:port" | null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeJson {
    pub id: String,
    pub addr: String,
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
    pub id: String,
    pub addr: String,
    pub api: Option<String>,
    /// The service beside the node (`--service`), if declared.
    #[serde(default)]
    pub service: Option<String>,
    pub cluster: String,
    pub predecessor: Option<NodeJson>,
    pub successors: Vec<NodeJson>,
    pub fingers: Vec<FingerJson>,
    pub keys_stored: u64,
    pub vnodes: Vec<VNodeJson>,
    pub stats: serde_json::Value,
}

/// One member in `GET /v1/ring`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingNodeJson {
    pub id: String,
    pub addr: String,
    pub api: Option<String>,
    /// The service beside the node (`--service`), if declared.
    #[serde(default)]
    pub service: Option<String>,
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
    pub nodes: Vec<RingNodeJson>,
    pub count: usize,
    /// What looks wrong, in words (empty for a healthy ring).
    #[serde(default)]
    pub problems: Vec<String>,
}

/// `GET /v1/locate/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocateJson {
    pub key: String,
    pub key_id: String,
    pub owner: NodeJson,
    pub replicas: Vec<NodeJson>,
    pub hops: u32,
    /// Iterative lookups: the nodes asked, in order (empty for recursive).
    #[serde(default)]
    pub path: Vec<NodeJson>,
}
