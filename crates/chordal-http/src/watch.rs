//! `GET /v1/watch/{key}`: each new version of a key — or, with
//! `?group=true`, of every key of its hash tag's group — as server-sent
//! events, resumable from a version (`?from=<version>`, or the
//! `Last-Event-ID` header an `EventSource` sends when it reconnects).
//!
//! The stream is a loop of [`KeyValue::watch`] at the key's owner, each
//! from the version of the change before, so every event is newer than
//! the one before it whichever node owns the key meanwhile, and no change
//! acknowledged after the version watched from is skipped (a key written
//! several times between two events shows its newest state: a watch
//! reports states, as etcd's compacted history does). Each change is one
//! `change` event whose `id:` is its version:
//!
//! ```text
//! id: 7.1733560000000000-aff0…
//! event: change
//! data: {"version":"7.1733…","records":[{"key":"user:1","type":"string","value":"hi"}]}
//! ```
//!
//! A record's `type` is `string` (with `value`, or `value_base64` when
//! the bytes are not UTF-8 text), `deleted`, or a collection's kind
//! (`hash`, `set`, `zset`, `list`: it changed; read it with its
//! commands); `expires` is the expiry in Unix seconds. Without `from`, a
//! key's stream starts with its current record (if it has one); a
//! group's with the next change. An owner that cannot answer now (a
//! term catching up, overload, a lost node) is asked again, with a
//! growing pause; a refusal that will not change (an element key, a key
//! too long) ends the stream with an `error` event.

use crate::ApiError;
use crate::params::key_from_path;
use crate::state::AppState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine as _;
use chordal_core::{Kind, OpError, Record, Version};
use chordal_node::{Error, KeyValue, Node};
use futures_util::Stream;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// `?from=` and `?group=` on a watch.
#[derive(serde::Deserialize)]
pub struct WatchQuery {
    /// Start after this version (as `X-Chordal-Version` or an event's
    /// `id` gives it).
    from: Option<String>,
    /// Watch every key of the key's hash tag group.
    group: Option<bool>,
}

/// Longest pause between two tries at an owner that could not answer.
const MAX_PAUSE: Duration = Duration::from_secs(2);

pub async fn watch(
    State(s): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    Query(q): Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let key = key_from_path(key, &s.config)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or(q.from);
    let after = match resume {
        Some(text) => Some(Version::from_text(text.trim()).ok_or_else(|| {
            ApiError::bad_request(
                "bad_version",
                format!("{text:?} is not a version (as an event's id gives it)"),
            )
        })?),
        None => None,
    };
    let permit = s.stream_permit()?;
    let watching = Watching {
        node: s.node,
        key: key.into_bytes(),
        group: q.group.unwrap_or(false),
        after,
        ended: false,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(watching, |mut w| async move {
        let event = w.next().await?;
        Some((Ok(event), w))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One stream's state.
struct Watching {
    node: Node,
    key: Vec<u8>,
    group: bool,
    after: Option<Version>,
    /// An error event was sent: the stream is over.
    ended: bool,
    /// Held while the stream lives (bounds the streams served).
    _permit: OwnedSemaphorePermit,
}

impl Watching {
    /// The next event: the next change, or the error that ends the stream
    /// (`None` after it, or when the node stops).
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let mut pause = Duration::from_millis(20);
        loop {
            let key = self.key.clone();
            match self.node.watch(key, self.after, self.group).await {
                Ok((Some(version), records)) => {
                    self.after = Some(version);
                    return Some(change_event(version, &records));
                }
                Ok((None, _)) => {
                    // Nothing newer yet, or (a key watched from nothing)
                    // no record: any write from now on is newer.
                    self.after.get_or_insert_with(Version::default);
                }
                Err(Error::Stopped) => return None,
                Err(Error::Op(e)) if e.nothing_done() || e == OpError::Timeout => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(e) => {
                    self.ended = true;
                    let error = ApiError::from(e);
                    let body = json!({"error": error.code, "message": error.message});
                    return Some(Event::default().event("error").data(body.to_string()));
                }
            }
        }
    }
}

/// One change as its SSE event (see the module docs).
fn change_event(version: Version, records: &[Record]) -> Event {
    let text = version.to_text();
    let records: Vec<serde_json::Value> = records.iter().map(record_json).collect();
    let body = json!({"version": text, "records": records});
    Event::default()
        .id(text)
        .event("change")
        .data(body.to_string())
}

fn record_json(r: &Record) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("key".into(), json!(String::from_utf8_lossy(&r.key)));
    let kind = match (&r.value, r.kind) {
        (None, _) => "deleted",
        (Some(v), Kind::String) => {
            match std::str::from_utf8(v) {
                Ok(text) => out.insert("value".into(), json!(text)),
                Err(_) => out.insert(
                    "value_base64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                ),
            };
            "string"
        }
        (Some(_), kind) => kind.name(),
    };
    out.insert("type".into(), json!(kind));
    if let Some(t) = r.expires.filter(|_| r.value.is_some()) {
        out.insert("expires".into(), json!(crate::params::expiry_secs(t)));
    }
    serde_json::Value::Object(out)
}
