//! `PUT`, `GET` and `DELETE /v1/kv/{key}`.

use crate::ApiError;
use crate::routes::{AppState, key_from_path};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chordal_core::{Versioned, Written};
use serde_json::json;

/// The header that carries a value's version on `GET`.
pub const VERSION_HEADER: &str = "x-chordal-version";

/// The JSON answer of a stored put or delete.
/// `replicas` is the target R, beside the copies acknowledged.
fn stored(key: &str, written: Written, replicas: usize) -> Json<serde_json::Value> {
    Json(json!({
        "key": key,
        "version": written.version.to_text(),
        "replicas_acked": written.acked,
        "replicas": replicas,
    }))
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("key {key:?} not found"))
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
    let written = s.node.put(key.clone().into_bytes(), body.to_vec()).await?;
    Ok(stored(&key, written, s.node.replicas()))
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
    let found = if q.local == Some(true) {
        let record = s.node.local_get(key.clone().into_bytes()).await?;
        record.filter(|r| !r.is_tombstone()).map(|r| Versioned {
            value: r.value.unwrap_or_default(),
            version: r.version,
        })
    } else {
        s.node.get(key.clone().into_bytes()).await?
    };
    let Some(Versioned { value, version }) = found else {
        return Err(not_found(&key));
    };
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

pub async fn delete(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    match s.node.delete(key.clone().into_bytes()).await? {
        Some(written) => Ok(stored(&key, written, s.node.replicas())),
        None => Err(not_found(&key)),
    }
}
