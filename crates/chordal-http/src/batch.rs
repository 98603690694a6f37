//! `POST /v1/kv:batch`: many gets, puts and deletes in one request. They
//! start together on this node (`KeyValue::run_many`), so the requests for
//! one owner leave in one write; each answers with the status its
//! single-key route would give.

use crate::ApiError;
use crate::params::{expiry_secs, not_found, parse_consistency, stored, ttl_secs, value_within};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chordal_core::{Condition, Expiry, PutOptions, Version};
use chordal_node::{Error, KeyValue, StoreOp};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most operations in one batch.
pub const MAX_BATCH_OPS: usize = 1000;

#[derive(Deserialize)]
pub struct Batch {
    ops: Vec<BatchOp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchOp {
    /// `get`, `put` or `delete`.
    op: String,
    key: String,
    /// A put's value, base64.
    value_b64: Option<String>,
    /// A put's TTL in seconds.
    ttl: Option<u64>,
    /// Create only (a put), like `If-None-Match: *`.
    if_absent: Option<bool>,
    /// Only if the current version is this one, like `If-Match`.
    if_version: Option<String>,
    /// A get's consistency: `one`, `quorum`, `all`.
    consistency: Option<String>,
}

/// What an op asks, or the error its single-key route would answer
/// without reaching the ring.
fn parse_op(s: &AppState, op: BatchOp) -> Result<StoreOp, ApiError> {
    if op.key.is_empty() || op.key.len() > s.config.max_key {
        return Err(ApiError::bad_request(
            "bad_key",
            format!("a key is 1 to {} bytes", s.config.max_key),
        ));
    }
    let key = op.key.into_bytes();
    let condition = match (op.if_absent, op.if_version) {
        (Some(true), Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_condition",
                "give if_absent or if_version, not both",
            ));
        }
        (Some(true), None) => Condition::Absent,
        (_, Some(v)) => Condition::Version(Version::from_text(&v).ok_or_else(|| {
            ApiError::bad_request("bad_version", format!("{v:?} is not a version"))
        })?),
        _ => Condition::Always,
    };
    let expiry = match op.ttl {
        Some(ttl) => Expiry::After(ttl_secs(ttl)?),
        None => Expiry::Never,
    };
    let options = PutOptions {
        expiry,
        condition,
        return_old: false,
    };
    match op.op.as_str() {
        "get" => Ok(StoreOp::Get {
            key,
            consistency: parse_consistency(op.consistency.as_deref())?,
        }),
        "put" => {
            let value = B64
                .decode(op.value_b64.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::bad_request("bad_value", format!("value_b64: {e}")))?;
            if value.len() > s.config.max_value {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "value_too_large",
                    format!("the value limit is {} bytes", s.config.max_value),
                ));
            }
            Ok(StoreOp::Put {
                key,
                value,
                options,
            })
        }
        "delete" => Ok(StoreOp::Delete { key, options }),
        other => Err(ApiError::bad_request(
            "bad_op",
            format!("op is get, put or delete, not {other:?}"),
        )),
    }
}

/// An error as a batch entry.
fn error_entry(key: &str, e: ApiError) -> Value {
    let mut entry = json!({
        "status": e.status.as_u16(),
        "key": key,
        "code": e.code,
        "error": e.message,
    });
    if let Some((name, value)) = e.extra {
        entry[name] = value;
    }
    entry
}

/// The entry of one finished op.
fn entry(
    s: &AppState,
    key: &str,
    get: bool,
    outcome: Result<chordal_core::Outcome, Error>,
) -> Value {
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return error_entry(key, e.into()),
    };
    let result = if get {
        outcome.value().map(|found| match found {
            Some(v) => {
                let mut e = json!({
                    "status": 200,
                    "key": key,
                    "value_b64": B64.encode(&v.value),
                    "version": v.version.to_text(),
                });
                if let Some(t) = v.expires {
                    e["expires"] = json!(expiry_secs(t));
                }
                e
            }
            None => error_entry(key, not_found(key)),
        })
    } else {
        outcome.deleted().map(|written| match written {
            Some(w) => {
                let mut e = stored(key, w, s.node.replicas());
                e["status"] = json!(200);
                e
            }
            None => error_entry(key, not_found(key)),
        })
    };
    result.unwrap_or_else(|e| error_entry(key, Error::Op(e).into()))
}

/// Reads the body as JSON whatever its `Content-Type` says (curl sends
/// form encoding by default).
pub async fn batch(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = value_within(&s, body)?;
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_batch", format!("not a batch: {e}")))?;
    if batch.ops.len() > MAX_BATCH_OPS {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!(
                "at most {MAX_BATCH_OPS} ops per batch, not {}",
                batch.ops.len()
            ),
        ));
    }
    // Ops that cannot be asked get their error in place; the rest start
    // together.
    let mut results: Vec<Option<Value>> = Vec::with_capacity(batch.ops.len());
    let mut asked = Vec::new();
    let mut run = Vec::new();
    for op in batch.ops {
        let key = op.key.clone();
        match parse_op(&s, op) {
            Ok(op) => {
                asked.push((results.len(), key, matches!(op, StoreOp::Get { .. })));
                results.push(None);
                run.push(op);
            }
            Err(e) => results.push(Some(error_entry(&key, e))),
        }
    }
    let outcomes = s.node.run_many(run).await;
    for ((i, key, get), outcome) in asked.into_iter().zip(outcomes) {
        results[i] = Some(entry(&s, &key, get, outcome));
    }
    let results: Vec<Value> = results.into_iter().flatten().collect();
    Ok(Json(json!({ "results": results })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn consistency_names_are_the_documented_ones() {
        use chordal_core::Consistency;
        let parse = crate::params::parse_consistency;
        assert_eq!(parse(None), Ok(Consistency::Owner));
        assert_eq!(parse(Some("one")), Ok(Consistency::Owner));
        assert_eq!(parse(Some("quorum")), Ok(Consistency::Quorum));
        assert_eq!(parse(Some("all")), Ok(Consistency::All));
        assert!(parse(Some("two")).is_err());
    }
}
