//! Routes and handlers.

use crate::json::*;
use crate::{ApiError, kv, live, topics};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use chordal_core::{Id, LookupMode, NodeRef, replica_set};
use chordal_node::Node;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// API settings: `ApiConfig::default()`, then change what differs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Longest key accepted, in bytes.
    pub max_key: usize,
    /// Most nodes a ring walk visits.
    pub max_ring: usize,
    /// Largest value (or published message) accepted, in bytes.
    pub max_value: usize,
    /// Most streams (`GET /v1/topics/...`, `/v1/watch/...`, `/v1/events`) served at once.
    pub max_streams: usize,
    /// Bearer tokens the API demands (`--api-tokens`); `None`: open.
    pub tokens: Option<std::sync::Arc<crate::auth::Tokens>>,
    /// Serve HTTPS with this configuration (`--api-tls`:
    /// `chordal_tls::TlsFiles::api_server_config`); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Connections served at once, in all and from one address.
    pub limits: chordal_node::accept::ConnLimits,
    /// Handshake, header-read (and keep-alive idle) timeouts.
    pub timeouts: crate::serve::HttpTimeouts,
    /// Cancelled by `POST /v1/admin/leave`: whoever runs the node then
    /// makes it leave and stops its process. `None`: the route answers 501.
    pub leave: Option<tokio_util::sync::CancellationToken>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_key: chordal_core::Config::default().max_key,
            max_ring: 100_000,
            // The same limits as the core's, which checks them too.
            max_value: chordal_core::Config::default().max_value,
            max_streams: 4096,
            tokens: None,
            tls: None,
            limits: chordal_node::accept::ConnLimits {
                max_connections: 4096,
                max_per_source: 256,
            },
            timeouts: crate::serve::HttpTimeouts::default(),
            leave: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub node: Node,
    pub config: ApiConfig,
    /// One permit per stream served (subscriptions, watches, events).
    pub streams: std::sync::Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// A permit for one more stream, held while it lives; 503
    /// `too_many_streams` past `max_streams`.
    pub fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "this node already serves {} streams",
                    self.config.max_streams
                ),
            )
        })
    }
}

/// One route of the API: its path as axum writes it, the methods it
/// serves, and the handlers. [`router`] is built from [`routes`] alone, so
/// that the OpenAPI document (`openapi.rs`) can be checked against it.
pub(crate) struct Route {
    pub path: &'static str,
    /// Read by the tests that check the OpenAPI document against the router.
    #[cfg_attr(not(test), allow(dead_code))]
    pub methods: &'static [&'static str],
    pub handlers: MethodRouter<AppState>,
}

/// Every route of the API.
pub(crate) fn routes() -> Vec<Route> {
    let route = |path, methods, handlers| Route {
        path,
        methods,
        handlers,
    };
    vec![
        route("/v1/health", &["GET"], get(health)),
        route("/v1/openapi.json", &["GET"], get(crate::openapi::serve)),
        route("/metrics", &["GET"], get(metrics)),
        route("/", &["GET"], get(live::dashboard)),
        route("/v1/events", &["GET"], get(live::events)),
        route("/v1/node", &["GET"], get(node_status)),
        route("/v1/ring", &["GET"], get(ring)),
        route("/v1/locate/{*key}", &["GET"], get(locate)),
        route(
            "/v1/kv/{*key}",
            &["GET", "PUT", "DELETE"],
            get(kv::get).put(kv::put).delete(kv::delete),
        ),
        route("/v1/kv:batch", &["POST"], post(crate::batch::batch)),
        route("/v1/keys", &["GET"], get(crate::keys::keys)),
        route("/v1/admin/records", &["GET"], get(crate::admin::records)),
        route(
            "/v1/admin/restore",
            &["POST"],
            post(crate::admin::restore).layer(axum::extract::DefaultBodyLimit::max(
                crate::admin::MAX_RESTORE_BODY,
            )),
        ),
        route("/v1/admin/leave", &["POST"], post(crate::admin::leave)),
        route("/v1/watch/{*key}", &["GET"], get(crate::watch::watch)),
        route(
            "/v1/topics/{*topic}",
            &["GET", "POST"],
            get(topics::subscribe).post(topics::publish),
        ),
    ]
}

/// The API of `node` as an axum router.
pub fn router(node: Node, config: ApiConfig) -> Router {
    let mut router = Router::new();
    for r in routes() {
        router = router.route(r.path, r.handlers);
    }
    router
        // Bodies over the value limit are refused by `kv::put` with a JSON
        // 413; this layer only stops reading far beyond it.
        .layer(axum::extract::DefaultBodyLimit::max(config.max_value + 1))
        .fallback(not_found)
        // Outermost: nothing runs for a request without the token it needs.
        .layer(axum::middleware::from_fn_with_state(
            config.tokens.clone(),
            crate::auth::check,
        ))
        .with_state(AppState {
            node,
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_streams)),
            config,
        })
}

/// Serves the API on `listener` (HTTPS if `config.tls` is set) until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gate = chordal_node::accept::Gate::new(config.limits);
    node.wire_stats().add_listener("http", gate.clone());
    let counter = node.clone();
    let on_timeout: crate::serve::OnTimeout = std::sync::Arc::new(move || {
        counter
            .wire_stats()
            .client_timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let (tls, timeouts) = (config.tls.clone(), config.timeouts);
    crate::serve::serve_router(
        listener,
        tls,
        router(node, config),
        gate,
        timeouts,
        on_timeout,
        shutdown,
    )
    .await
}

/// `GET /metrics`: Prometheus text exposition format.
async fn metrics(State(s): State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let text = s.node.metrics().await?;
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response())
}

/// The answer for a path no route serves (its message starts with
/// [`NO_SUCH_ENDPOINT`]).
async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("{NO_SUCH_ENDPOINT}: {}", uri.path()))
}

/// How the fallback's message starts.
pub(crate) const NO_SUCH_ENDPOINT: &str = "no such endpoint";

async fn health(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
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
async fn node_status(
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

async fn ring(State(s): State<AppState>) -> Result<Json<RingJson>, ApiError> {
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
struct LocateQuery {
    mode: Option<String>,
}

/// The key of a `/v1/.../{key}` path, checked: UTF-8 after percent
/// decoding, not empty, within the key limit.
pub(crate) fn key_from_path(
    key: Result<Path<String>, PathRejection>,
    config: &ApiConfig,
) -> Result<String, ApiError> {
    let Path(key) =
        key.map_err(|e| ApiError::bad_request("bad_key", format!("bad key in path: {e}")))?;
    if key.is_empty() {
        return Err(ApiError::bad_request("bad_key", "empty key"));
    }
    if key.len() > config.max_key {
        return Err(ApiError::bad_request(
            "key_too_long",
            format!(
                "key is {} bytes; the limit is {}",
                key.len(),
                config.max_key
            ),
        ));
    }
    Ok(key)
}

async fn locate(
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
