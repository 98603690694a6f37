//! `PUT`, `GET` and `DELETE /v1/kv/{key}`.

use crate::ApiError;
use crate::routes::{AppState, key_from_path};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chordal_core::{KvError, KvOutcome};
use chordal_node::KvCallError;
use serde_json::json;

/// The header that carries a value's version on `GET`.
pub const VERSION_HEADER: &str = "x-chordal-version";

pub(crate) fn kv_error(e: KvCallError) -> ApiError {
    let msg = e.to_string();
    match e {
        KvCallError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", msg)
        }
        KvCallError::Kv(KvError::Timeout) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", msg)
        }
        KvCallError::Kv(KvError::QuorumFailed { .. }) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "quorum_failed", msg)
        }
        KvCallError::Kv(KvError::QuorumUnavailable { .. }) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "quorum_unavailable", msg)
        }
        KvCallError::Kv(KvError::StoreFailed) => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            msg,
        ),
        KvCallError::Kv(KvError::Overloaded) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", msg)
        }
        KvCallError::Kv(KvError::TooLarge { .. }) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "value_too_large", msg)
        }
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg),
    }
}

fn unexpected(o: KvOutcome) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("unexpected outcome {o:?}"),
    )
}

/// The JSON answer of a stored put or delete.
/// `replicas` is the target R, beside the copies acknowledged.
fn stored(
    key: &str,
    outcome: KvOutcome,
    replicas: usize,
) -> Result<Json<serde_json::Value>, ApiError> {
    match outcome {
        KvOutcome::Stored { version, acked } => Ok(Json(json!({
            "key": key,
            "version": version.to_text(),
            "replicas_acked": acked,
            "replicas": replicas,
        }))),
        KvOutcome::NotFound => Err(ApiError::not_found(format!("key {key:?} not found"))),
        other => Err(unexpected(other)),
    }
}

pub async fn put(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("the value limit is {} bytes", s.config.max_value),
        )
    };
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => too_large(),
        other => ApiError::bad_request("bad_body", other.to_string()),
    })?;
    if body.len() > s.config.max_value {
        return Err(too_large());
    }
    let outcome = s.node.put(key.clone().into_bytes(), body.to_vec()).await;
    stored(&key, outcome.map_err(kv_error)?, s.node.replicas())
}

#[derive(serde::Deserialize)]
pub struct GetQuery {
    /// `true`: this node's own copy, without routing (inspecting replicas).
    local: Option<bool>,
}

pub async fn get(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let outcome = if q.local == Some(true) {
        match s.node.local_get(key.clone().into_bytes()).await? {
            Some(r) if !r.is_tombstone() => KvOutcome::Found {
                value: r.value.unwrap_or_default(),
                version: r.version,
            },
            _ => KvOutcome::NotFound,
        }
    } else {
        let got = s.node.get(key.clone().into_bytes()).await;
        got.map_err(kv_error)?
    };
    match outcome {
        KvOutcome::Found { value, version } => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&version.to_text()) {
                headers.insert(VERSION_HEADER, v);
            }
            headers.insert(
                "content-type",
                HeaderValue::from_static("application/octet-stream"),
            );
            Ok((StatusCode::OK, headers, value).into_response())
        }
        KvOutcome::NotFound => Err(ApiError::not_found(format!("key {key:?} not found"))),
        other => Err(unexpected(other)),
    }
}

pub async fn delete(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let outcome = s.node.delete(key.clone().into_bytes()).await;
    stored(&key, outcome.map_err(kv_error)?, s.node.replicas())
}
