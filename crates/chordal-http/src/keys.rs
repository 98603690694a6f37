//! `GET /v1/keys`: the ring's keys, a page at a time, with the cursor
//! RESP's SCAN uses (`chordal_node::scan_cursor`): any node continues a
//! walk another began, and a key present for the whole walk is returned.

use crate::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chordal_node::{glob, scan_cursor};
use serde::Deserialize;
use serde_json::json;

/// Most keys asked for in one page.
pub const MAX_COUNT: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysQuery {
    /// Where the walk goes on: `0` (or absent) starts it; each answer
    /// gives the next one, `0` once the walk is over.
    cursor: Option<String>,
    /// About how many keys to read (default 100, at most 10,000); keys
    /// `match` leaves out count too.
    count: Option<usize>,
    /// Only keys matching this glob (`*`, `?`, `[a-z]`, `\x`).
    #[serde(rename = "match")]
    pattern: Option<String>,
}

/// `GET /v1/keys?cursor=&count=&match=`: `{"cursor":"…","keys":[…]}` —
/// keys that are UTF-8 as strings, any others base64 in `keys_b64`.
pub(crate) async fn keys(
    State(s): State<AppState>,
    Query(q): Query<KeysQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cursor = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "bad_cursor",
                "cursor is a number a page answered (0 starts)",
            )
        })?,
    };
    let count = q.count.unwrap_or(100);
    if count == 0 || count > MAX_COUNT {
        return Err(ApiError::bad_request(
            "bad_count",
            format!("count is 1 to {MAX_COUNT}"),
        ));
    }
    let (next, found) = scan_cursor(&s.node, cursor, count).await?;
    let mut text = Vec::new();
    let mut binary = Vec::new();
    for key in found {
        if q.pattern
            .as_ref()
            .is_some_and(|p| !glob::matches(p.as_bytes(), &key))
        {
            continue;
        }
        match String::from_utf8(key) {
            Ok(k) => text.push(k),
            Err(e) => binary.push(B64.encode(e.as_bytes())),
        }
    }
    let mut out = json!({"cursor": next.to_string(), "keys": text});
    if !binary.is_empty() {
        out["keys_b64"] = json!(binary);
    }
    Ok(Json(out))
}
