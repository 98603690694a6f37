//! `PUT`, `GET` and `DELETE /v1/kv/{key}`: values with an expiry
//! (`?ttl=`, `X-Chordal-Expires`), conditional writes (`If-None-Match: *`,
//! `If-Match: <version>`) and reads from a quorum (`?consistency=`).

use crate::ApiError;
use crate::params::{
    expiry_secs, key_from_path, not_found, parse_consistency, parse_ttl, parse_version, stored,
    value_within,
};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chordal_core::{Condition, Consistency, Expiry, PutOptions, Time, Versioned};
use chordal_node::KeyValue;

/// The header that carries a value's version on `GET`.
pub const VERSION_HEADER: &str = "x-chordal-version";
/// The header that carries a value's expiry (Unix seconds) on `GET`, and
/// may set one on `PUT`.
pub const EXPIRES_HEADER: &str = "x-chordal-expires";
/// `?ttl=` on a put.
#[derive(serde::Deserialize)]
pub struct PutQuery {
    /// Seconds until the value expires.
    ttl: Option<String>,
}

/// The condition of `If-None-Match: *` / `If-Match: <version>|*`.
fn condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::bad_request("bad_header", format!("{name} is not text")))
            })
            .transpose()
    };
    match (text("if-none-match")?, text("if-match")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "bad_header",
            "give If-None-Match or If-Match, not both",
        )),
        (Some(v), None) if v.trim() == "*" => Ok(Condition::Absent),
        (Some(v), None) => Err(ApiError::bad_request(
            "bad_header",
            format!("If-None-Match supports only \"*\" (create only), not {v:?}"),
        )),
        (None, Some(v)) if v.trim() == "*" => Ok(Condition::Present),
        (None, Some(v)) => Ok(Condition::Version(parse_version(v)?)),
        (None, None) => Ok(Condition::Always),
    }
}

/// The expiry of a put: `?ttl=SECONDS` or `X-Chordal-Expires: <Unix
/// seconds>`, not both.
fn expiry(headers: &HeaderMap, ttl: Option<&str>) -> Result<Expiry, ApiError> {
    let at = headers.get(EXPIRES_HEADER);
    match (ttl, at) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "bad_ttl",
            "give ?ttl= or X-Chordal-Expires, not both",
        )),
        (Some(ttl), None) => Ok(Expiry::After(parse_ttl(ttl)?)),
        (None, Some(at)) => {
            let secs = at.to_str().ok().and_then(|t| t.trim().parse::<u64>().ok());
            match secs {
                Some(s) if s <= u64::MAX / 1_000_000 => {
                    Ok(Expiry::At(Time::from_micros(s * 1_000_000)))
                }
                _ => Err(ApiError::bad_request(
                    "bad_ttl",
                    "X-Chordal-Expires must be Unix seconds",
                )),
            }
        }
        (None, None) => Ok(Expiry::Never),
    }
}

pub async fn put(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let options = PutOptions {
        expiry: expiry(&headers, q.ttl.as_deref())?,
        condition: condition(&headers)?,
        return_old: false,
    };
    let body = value_within(&s, body)?;
    let written = s
        .node
        .put_with(key.clone().into_bytes(), body.to_vec(), options)
        .await?;
    Ok(Json(stored(&key, written, s.node.replicas())))
}

#[derive(serde::Deserialize)]
pub struct GetQuery {
    /// `true`: this node's own copy, without routing (inspecting replicas).
    local: Option<bool>,
    /// `one` (the owner's copy, the default), `quorum`, `all`, or
    /// `local` (the same as `local=true`).
    consistency: Option<String>,
}

pub async fn get(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    let key = key_from_path(key, &s.config)?;
    // `local`: this node's copy as it is — no owner decides, so it works
    // where none may (below a majority of the key's copies, docs/
    // consistency.md), and may be stale.
    let local = q.local == Some(true) || q.consistency.as_deref() == Some("local");
    let consistency = match local {
        true => Consistency::Owner,
        false => parse_consistency(q.consistency.as_deref())?,
    };
    let found = if local {
        let record = s.node.local_get(key.clone().into_bytes()).await?;
        let now = chordal_node::wall_clock();
        record.filter(|r| r.is_live(now)).map(|r| Versioned {
            value: r.value.unwrap_or_default(),
            version: r.version,
            expires: r.expires,
        })
    } else {
        s.node
            .get_with(key.clone().into_bytes(), consistency)
            .await?
    };
    let Some(Versioned {
        value,
        version,
        expires,
    }) = found
    else {
        return Err(not_found(&key));
    };
    let mut headers = HeaderMap::new();
    let text = version.to_text();
    if let Ok(v) = HeaderValue::from_str(&text) {
        headers.insert(VERSION_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{text}\"")) {
        headers.insert("etag", v);
    }
    if let Some(t) = expires {
        headers.insert(EXPIRES_HEADER, HeaderValue::from(expiry_secs(t)));
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
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let condition = condition(&headers)?;
    match s
        .node
        .delete_if(key.clone().into_bytes(), condition)
        .await?
    {
        Some(written) => Ok(Json(stored(&key, written, s.node.replicas()))),
        None => Err(not_found(&key)),
    }
}
