//! What a request says, read and checked the same way by every handler
//! that takes it: a key in the path, a TTL, a version, a read's
//! consistency, a value within the limit; and the JSON shapes a stored
//! write and a missing key answer with (single routes and batches alike).

use crate::ApiError;
use crate::state::{ApiConfig, AppState};
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use chordal_core::{Consistency, Time, Version, Written};
use serde_json::json;
use std::time::Duration;

/// Longest TTL accepted: about 136 years.
const MAX_TTL_SECS: u64 = u32::MAX as u64;

/// The JSON answer of a stored put or delete.
/// `replicas` is the target R, beside the copies acknowledged.
pub(crate) fn stored(key: &str, written: Written, replicas: usize) -> serde_json::Value {
    json!({
        "key": key,
        "version": written.version.to_text(),
        "replicas_acked": written.acked,
        "replicas": replicas,
    })
}

pub(crate) fn not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("key {key:?} not found"))
}

/// An expiry as Unix seconds (rounded up: the value is gone by then).
pub(crate) fn expiry_secs(t: Time) -> u64 {
    t.as_micros().div_ceil(1_000_000)
}

/// A TTL in whole seconds, 1 ..= `MAX_TTL_SECS`, as text (`?ttl=`).
pub(crate) fn parse_ttl(text: &str) -> Result<Duration, ApiError> {
    text.parse::<u64>()
        .ok()
        .and_then(ttl_within)
        .ok_or_else(|| bad_ttl(text))
}

/// A TTL of `secs` seconds, if within 1 ..= `MAX_TTL_SECS`.
fn ttl_within(secs: u64) -> Option<Duration> {
    (1..=MAX_TTL_SECS)
        .contains(&secs)
        .then(|| Duration::from_secs(secs))
}

/// A TTL as a batch op gives it (a JSON number).
pub(crate) fn ttl_secs(secs: u64) -> Result<Duration, ApiError> {
    ttl_within(secs).ok_or_else(|| bad_ttl(&secs.to_string()))
}

fn bad_ttl(given: &str) -> ApiError {
    ApiError::bad_request(
        "bad_ttl",
        format!("ttl must be whole seconds from 1 to {MAX_TTL_SECS}, not {given:?}"),
    )
}

/// A version as `GET` gives it (`X-Chordal-Version`, or the `ETag` with
/// its quotes).
pub(crate) fn parse_version(text: &str) -> Result<Version, ApiError> {
    let bare = text.trim().trim_matches('"');
    Version::from_text(bare).ok_or_else(|| {
        ApiError::bad_request(
            "bad_version",
            format!("{text:?} is not a version (as X-Chordal-Version gives it)"),
        )
    })
}

/// A put body, checked against the value limit (413 beyond it).
pub(crate) fn value_within(
    s: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
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
    Ok(body)
}

/// `?consistency=`.
pub(crate) fn parse_consistency(text: Option<&str>) -> Result<Consistency, ApiError> {
    match text {
        None | Some("one") => Ok(Consistency::Owner),
        Some("quorum") => Ok(Consistency::Quorum),
        Some("all") => Ok(Consistency::All),
        Some(other) => Err(ApiError::bad_request(
            "bad_consistency",
            format!("consistency is one, quorum or all (or local, on a single GET), not {other:?}"),
        )),
    }
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
