//! The route table: which handler serves which path and method, the
//! router built from it alone (so the OpenAPI document can be checked
//! against it), and serving it.

use crate::ring::{health, locate, node_status, ring};
use crate::state::{ApiConfig, AppState};
use crate::{ApiError, kv, live, topics};
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::{MethodRouter, get, post};
use chordal_node::Node;
use std::future::Future;
use tokio::net::TcpListener;

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
