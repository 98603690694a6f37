//! The ring as this node sees it: `GET /v1/health`, `/v1/node`,
//! `/v1/ring` (with the processes seen to go) and `/v1/locate/{key}`.

use crate::ApiError;
use crate::json::*;
use crate::params::key_from_path;
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chordal_core::{Id, LookupMode, NodeRef, replica_set};
use chordal_node::Node;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;

pub(crate) async fn health(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let status = s.node.status().await?;
    if status.vnodes.iter().all(|v| v.joined) {
        let id = s.node.ids()[0].to_hex();
        // Writes fail, reads are served: still up (a liveness check must
        // not restart it), but say why writes fail.
        Ok(Json(match status.storage_problem {
            None => json!({"status": "ok", "id": id}),
            Some(problem) => json!({"status": "degraded", "id": id, "storage": problem}),
        }))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_joined",
            "node has not joined the ring",
        ))
    }
}

/// API addresses of the processes at `addrs`, as far as the node knows them.
async fn apis(node: &Node, mut addrs: Vec<SocketAddr>) -> HashMap<SocketAddr, String> {
    addrs.sort();
    addrs.dedup();
    // One trip to the driver for all of them.
    let infos = node.peer_infos(addrs.clone()).await.unwrap_or_default();
    addrs
        .into_iter()
        .zip(infos)
        .filter_map(|(a, info)| Some((a, info.api?.to_string())))
        .collect()
}

fn node_json(n: &NodeRef, apis: &HashMap<SocketAddr, String>) -> NodeJson {
    NodeJson {
        id: n.id.to_hex(),
        addr: n.addr.to_string(),
        api: apis.get(&n.addr).cloned(),
    }
}

/// `GET /v1/node`. Readable from any origin: the dashboard served by one
/// node shows another node's fingers by asking that node.
pub(crate) async fn node_status(
    State(s): State<AppState>,
) -> Result<
    (
        [(axum::http::HeaderName, &'static str); 1],
        Json<NodeStatusJson>,
    ),
    ApiError,
> {
    let status = s.node.status().await?;
    let mut addrs: Vec<SocketAddr> = vec![status.addr];
    for v in &status.vnodes {
        addrs.extend(v.predecessor.iter().map(|n| n.addr));
        addrs.extend(v.successors.iter().map(|n| n.addr));
        addrs.extend(v.fingers.iter().map(|f| f.node.addr));
    }
    let apis = apis(&s.node, addrs).await;
    let vnodes: Vec<VNodeJson> = status
        .vnodes
        .iter()
        .map(|v| VNodeJson {
            id: v.me.id.to_hex(),
            predecessor: v.predecessor.as_ref().map(|p| node_json(p, &apis)),
            successors: v.successors.iter().map(|n| node_json(n, &apis)).collect(),
            fingers: v
                .fingers
                .iter()
                .map(|f| FingerJson {
                    index: f.index,
                    start: f.start.to_hex(),
                    node: node_json(&f.node, &apis),
                })
                .collect(),
        })
        .collect();
    let primary = vnodes[0].clone();
    let anyone = [(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];
    Ok((
        anyone,
        Json(NodeStatusJson {
            id: primary.id,
            addr: status.addr.to_string(),
            api: status.api.map(|a| a.to_string()),
            service: status.service,
            cluster: status.cluster,
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: [
                chordal_node::PROTOCOL_VERSIONS.min,
                chordal_node::PROTOCOL_VERSIONS.max,
            ],
            storage_problem: status.storage_problem,
            predecessor: primary.predecessor,
            successors: primary.successors,
            fingers: primary.fingers,
            keys_stored: status.keys_stored,
            ring_size_estimate: status.ring_size_estimate.map(|n| (n * 10.0).round() / 10.0),
            routing: status.routing.to_string(),
            membership: {
                let m = status.membership;
                json!({
                    "entries": m.entries, "processes": m.processes, "bytes": m.bytes,
                    "capacity": m.capacity, "refused": m.refused,
                    "events_detected": m.events_detected, "events_received": m.events_received,
                    "events_sent": m.events_sent, "messages_sent": m.messages_sent,
                    "events_dropped": m.events_dropped, "copies": m.copies,
                })
            },
            vnodes,
            stats: json!({
                "connections": status.connections,
                "frames_in": status.frames_in,
                "frames_out": status.frames_out,
                "bad_handshakes": status.bad_handshakes,
                "bad_frames": status.bad_frames,
                "dropped_out": status.dropped_out,
            }),
        }),
    ))
}

pub(crate) async fn ring(State(s): State<AppState>) -> Result<Json<RingJson>, ApiError> {
    let survey = s.node.survey_ring(s.config.max_ring).await?;
    let problems = survey.problems(s.node.replicas());
    let nodes: Vec<RingNodeJson> = survey
        .members
        .iter()
        .map(|m| RingNodeJson {
            id: m.node.id.to_hex(),
            addr: m.node.addr.to_string(),
            api: m.api.map(|a| a.to_string()),
            service: m.service.clone(),
            keys_stored: m.keys_stored,
            predecessor: m.predecessor.map(|p| p.id.to_hex()),
            successors: m.successors.iter().map(|s| s.id.to_hex()).collect(),
        })
        .collect();
    // The processes this node saw go that the walk did not find.
    let status = s.node.status().await?;
    let down = status
        .departed
        .iter()
        .filter(|d| !survey.members.iter().any(|m| m.node.addr == d.node.addr))
        .map(|d| DownJson {
            id: d.node.id.to_hex(),
            addr: d.node.addr.to_string(),
            api: d.api.map(|a| a.to_string()),
            left: d.left,
            seconds_ago: d.ago.as_secs(),
        })
        .collect();
    Ok(Json(RingJson {
        count: nodes.len(),
        nodes,
        problems,
        down,
    }))
}

#[derive(Deserialize)]
pub(crate) struct LocateQuery {
    mode: Option<String>,
}

pub(crate) async fn locate(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    Query(q): Query<LocateQuery>,
) -> Result<Json<LocateJson>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let mode = match q.mode.as_deref() {
        None | Some("recursive") => LookupMode::Recursive,
        Some("iterative") => LookupMode::Iterative,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_mode",
                format!("mode must be recursive or iterative, not {other:?}"),
            ));
        }
    };
    let key_id = Id::of_key(key.as_bytes());
    // The answer and the API addresses of the nodes it names in one trip
    // to the driver.
    let located = s.node.lookup_with_infos(key_id, mode).await?;
    let r = located.result;
    let replicas = replica_set(&r.owner, &r.successors, s.node.replicas());
    let mut known: HashMap<SocketAddr, String> = located
        .infos
        .into_iter()
        .filter_map(|(a, info)| Some((a, info.api?.to_string())))
        .collect();
    if !known.contains_key(&r.owner.addr) {
        // Not connected to the owner yet: a neighbour query opens a
        // connection, whose handshake tells its API address.
        let _ = s.node.neighbors_of(r.owner).await;
        let mut addrs: Vec<SocketAddr> = vec![r.owner.addr];
        addrs.extend(replicas.iter().map(|n| n.addr));
        addrs.extend(r.path.iter().map(|n| n.addr));
        known = apis(&s.node, addrs).await;
    }
    Ok(Json(LocateJson {
        key,
        key_id: key_id.to_hex(),
        owner: node_json(&r.owner, &known),
        replicas: replicas.iter().map(|n| node_json(n, &known)).collect(),
        hops: r.hops,
        path: r.path.iter().map(|n| node_json(n, &known)).collect(),
    }))
}
