//! Forwarding one request: find the client's node, send the request to
//! the service beside it, fail over to the replica holders' services.

use crate::{Gateway, NODE_HEADER};
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::Bytes;
use chordal_core::Id;
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::Arc;
use tracing::debug;

/// The header that tells a service which attempt of the request this is
/// (2 and up: the gateway retried after an earlier instance failed).
pub const ATTEMPT_HEADER: &str = "x-chordal-attempt";

/// Headers that belong to one hop and are not forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    let body = json!({"error": message, "code": code});
    (status, axum::Json(body)).into_response()
}

/// The request body: kept whole (small enough to send again to another
/// instance) or streamed (one attempt only).
enum Payload {
    Whole(Bytes),
    Stream(Option<Body>),
}

/// Serves one client request.
pub async fn forward(State(g): State<Arc<Gateway>>, req: Request<Body>) -> Response<Body> {
    // Held until the response head is back (its body then streams on).
    let Ok(_permit) = g.in_flight.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("{} requests in flight already", g.config.max_in_flight),
        );
    };
    let Some(client) = g.config.client_key.extract(&req) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_client_key",
            format!(
                "cannot tell which client this is: send {} ({})",
                g.config.client_key.describe(),
                g.config.client_key
            ),
        );
    };
    let key = Id::hash(client.as_bytes());
    let mut candidates = g.view.candidates(&key, g.config.replicas);
    if let Some(assignments) = &g.assignments {
        // Bounded loads: the client's placement first, then the usual
        // instances as fallbacks.
        let members = g.view.members();
        let placed = assignments.lock().expect("assignments").place(
            &client,
            &key,
            &members,
            std::time::Instant::now(),
        );
        if let Some(p) = placed {
            candidates.retain(|c| c.node.addr != p.node.addr);
            candidates.insert(0, p);
        }
    }
    if candidates.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_service",
            "no ring member with a service is known".into(),
        );
    }
    let (parts, body) = req.into_parts();
    let mut payload = match replayable(&parts.headers, g.config.retry_body_limit) {
        // Hyper holds the body to its declared length.
        true => match body.collect().await {
            Ok(b) => Payload::Whole(b.to_bytes()),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("reading the request body: {e}"),
                );
            }
        },
        false => Payload::Stream(Some(body)),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let mut headers = parts.headers.clone();
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::HOST);
    let mut tried = 0;
    for member in &candidates {
        let Some(base) = &member.service else {
            continue;
        };
        let body = match &mut payload {
            Payload::Whole(b) => Body::from(b.clone()),
            Payload::Stream(s) => match s.take() {
                Some(b) => b,
                // A streamed body went to an instance that failed.
                None => break,
            },
        };
        tried += 1;
        let (Some(scheme), Some(authority)) = (base.scheme_str(), base.authority()) else {
            continue;
        };
        let Ok(uri) = format!("{scheme}://{authority}{path}").parse::<Uri>() else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_path",
                format!("bad path {path:?}"),
            );
        };
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .body(body)
            .expect("valid parts");
        *out.headers_mut() = headers.clone();
        out.headers_mut()
            .insert(ATTEMPT_HEADER, HeaderValue::from(tried));
        let sent = tokio::time::timeout(g.config.request_timeout, g.http.request(out)).await;
        match sent {
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                for h in &HOP_BY_HOP {
                    parts.headers.remove(h);
                }
                if let Ok(v) = HeaderValue::from_str(&member.node.id.to_hex()) {
                    parts.headers.insert(NODE_HEADER, v);
                }
                return Response::from_parts(parts, Body::new(body));
            }
            Ok(Err(e)) => {
                debug!(node = %member.node.addr, error = %e, "service failed; trying the next");
            }
            Err(_) => {
                debug!(node = %member.node.addr, "service timed out; trying the next");
            }
        }
        g.view.suspect(member.node.addr);
        g.refresh_soon();
    }
    if matches!(payload, Payload::Stream(None)) && tried == 1 {
        return error(
            StatusCode::BAD_GATEWAY,
            "service_failed",
            "the service failed while the request body streamed to it (too large to retry)".into(),
        );
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_service",
        format!("no service instance answered ({tried} tried)"),
    )
}

/// Whether the body can be kept whole for a retry: a declared length up
/// to `limit`, or no body at all.
fn replayable(headers: &HeaderMap, limit: usize) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n <= limit),
    }
}
