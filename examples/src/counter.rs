//! The demo service for `chordal gateway` (binary `counter`): each
//! client's state — a counter and its recent history — lives in Chordal's
//! replicated store, reached through the HTTP API of the node the instance
//! runs beside. Any instance can serve any client, so when a node dies and
//! the gateway sends its clients to the next instance, their counters go
//! on.
//!
//! - `POST /count` (`X-Client-Id: NAME`, optional `X-Request-Id: ID`):
//!   adds one and answers `{"client","count","served_by"}`. A request id
//!   equal to the last one's returns the stored answer again without
//!   counting (the gateway may retry a request on another instance).
//! - `GET /count`: the state as is, `{"client","count","history":[…]}`.
//! - `GET /fail`: answers 500 on purpose (a service error the gateway must
//!   pass through unchanged).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Entries of history kept per client.
const HISTORY: usize = 10;
/// Clients whose requests are serialized here at once (per-client locks).
const MAX_LOCKS: usize = 100_000;

/// One service instance.
pub struct App {
    node: SocketAddr,
    name: String,
    http: reqwest::Client,
    /// One lock per client, so that one instance counts a client's
    /// concurrent requests one after another.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

type Shared = Arc<App>;

impl App {
    /// An instance named `name` using the node whose API is at `node`.
    pub fn new(node: SocketAddr, name: String) -> App {
        // The workspace's reqwest needs a rustls provider in the process.
        chordal_tls::install_ring_provider();
        App {
            node,
            name,
            http: reqwest::Client::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }
}

fn fail(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": msg.into()}))).into_response()
}

fn client_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn missing_client() -> Response {
    fail(StatusCode::BAD_REQUEST, "send an X-Client-Id header")
}

fn state_url(app: &App, client: &str) -> String {
    let key: String = format!("session/{client}")
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("http://{}/v1/kv/{key}", app.node)
}

/// Most tries of one store request the node refuses `not_ready`, and the
/// pause between them (a crashed node's keys wait out its lease, 2 s by
/// default, before its successor decides for them).
const NOT_READY_TRIES: u32 = 12;
const NOT_READY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Sends `request` (built afresh each time) to the node: its status and
/// body. Again while it answers `503 not_ready` — the node decided
/// nothing, so a retry is safe; any other answer is the caller's.
async fn send_to_store(
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), String> {
    let mut tries = 0;
    loop {
        let resp = request().send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| e.to_string())?.to_vec();
        tries += 1;
        let not_ready = status == 503
            && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["code"] == "not_ready");
        if !not_ready || tries >= NOT_READY_TRIES {
            return Ok((status, body));
        }
        tokio::time::sleep(NOT_READY_PAUSE).await;
    }
}

/// The client's state in the store (a fresh one if none).
async fn load(app: &App, client: &str) -> Result<Value, Response> {
    let unavailable = |e: String| fail(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"));
    let url = state_url(app, client);
    let (status, body) = send_to_store(|| app.http.get(&url))
        .await
        .map_err(unavailable)?;
    match status {
        404 => Ok(json!({"count": 0, "history": []})),
        200 => serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string())),
        s => Err(unavailable(format!("HTTP {s}"))),
    }
}

/// Most writes of one state after outcomes the node could not know.
const SAVE_TRIES: u32 = 3;

/// Writes the client's state. A `504` (`timeout`) leaves the write's
/// outcome unknown — the key's owner may have applied it, then died —
/// so the state is read back: if it is there, the save is done; if not,
/// it is written again (a put of the whole state: applied twice, it
/// leaves the same state).
async fn save(app: &App, client: &str, state: &Value) -> Result<(), Response> {
    let unavailable = |e: String| fail(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"));
    let (url, body) = (state_url(app, client), state.to_string());
    let mut tries = 0;
    loop {
        tries += 1;
        let (status, _) = send_to_store(|| app.http.put(&url).body(body.clone()))
            .await
            .map_err(unavailable)?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        if status != 504 || tries >= SAVE_TRIES {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let (status, stored) = send_to_store(|| app.http.get(&url))
            .await
            .map_err(unavailable)?;
        if status == 200 && serde_json::from_slice::<Value>(&stored).ok().as_ref() == Some(state) {
            return Ok(());
        }
    }
}

fn lock_for(app: &App, client: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = app.locks.lock().expect("locks");
    if locks.len() >= MAX_LOCKS {
        locks.retain(|_, l| Arc::strong_count(l) > 1);
    }
    locks.entry(client.to_string()).or_default().clone()
}

async fn count(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let Some(client) = client_of(&headers) else {
        return missing_client();
    };
    let request = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let lock = lock_for(&app, &client);
    let _held = lock.lock().await;
    let mut state = match load(&app, &client).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if request.is_some() && state["last_request"].as_str() == request.as_deref() {
        // A retry of a request already counted: the same answer again.
        return axum::Json(state["last_reply"].clone()).into_response();
    }
    let n = state["count"].as_u64().unwrap_or(0) + 1;
    let reply = json!({"client": client, "count": n, "served_by": app.name});
    let mut history = state["history"].as_array().cloned().unwrap_or_default();
    history.push(json!({"count": n, "served_by": app.name, "request": request}));
    if history.len() > HISTORY {
        history.drain(..history.len() - HISTORY);
    }
    state = json!({
        "count": n,
        "history": history,
        "last_request": request,
        "last_reply": reply,
    });
    if let Err(r) = save(&app, &client, &state).await {
        return r;
    }
    axum::Json(reply).into_response()
}

async fn read(State(app): State<Shared>, headers: HeaderMap) -> Response {
    let Some(client) = client_of(&headers) else {
        return missing_client();
    };
    match load(&app, &client).await {
        Ok(state) => axum::Json(json!({
            "client": client,
            "count": state["count"],
            "history": state["history"],
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn fail_on_purpose() -> Response {
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the service failed on purpose",
    )
}

/// The service's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/count", get(read).post(count))
        .route("/fail", get(fail_on_purpose))
        .with_state(Arc::new(app))
}

/// Serves `app` on `listener` until the task is dropped or fails.
pub async fn serve(listener: tokio::net::TcpListener, app: App) -> std::io::Result<()> {
    axum::serve(listener, router(app)).await
}
