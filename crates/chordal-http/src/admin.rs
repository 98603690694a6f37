//! Administrative routes (role `admin` under `--api-tokens`): a node's own
//! records of a range, streamed as one moment saw them (what `chordal
//! backup` reads), putting records back
//! with their versions (`chordal restore`), and a graceful leave (`chordal
//! leave`).

use crate::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chordal_core::{Id, Kind, Record, Time, Version};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `GET /v1/admin/records` reads the store in pages of this many records
/// ...
const PAGE_RECORDS: usize = 256;
/// ... or this many bytes of keys and values (a page holds at least one
/// record); two pages wait for a slow reader at most.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most records one `POST /v1/admin/restore` puts back.
pub const MAX_RESTORE_RECORDS: usize = 1000;
/// Largest `POST /v1/admin/restore` body: a page of records, base64.
pub const MAX_RESTORE_BODY: usize = 3 * MAX_PAGE_BYTES;

/// A record as backups carry it: the key and value in base64, the version
/// as text (`X-Chordal-Version`'s form), the expiry in µs of the Unix
/// epoch. `value_b64` is absent for a tombstone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordJson {
    /// The key's bytes, base64.
    pub key_b64: String,
    /// The value's bytes, base64; `None` for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    /// The version, `<hlc>-<vnode id hex>`.
    pub version: String,
    /// The expiry in µs of the Unix epoch; `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_us: Option<u64>,
    /// A collection's header: its kind (`hash`, `set`, `zset`, `list`);
    /// absent for a string (and for every record of older backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl RecordJson {
    /// The record as a backup writes it.
    pub fn of(r: &Record) -> RecordJson {
        RecordJson {
            key_b64: B64.encode(&r.key),
            value_b64: r.value.as_ref().map(|v| B64.encode(v)),
            version: r.version.to_text(),
            expires_us: r.expires.map(Time::as_micros),
            kind: (r.kind != Kind::String).then(|| r.kind.name().to_string()),
        }
    }

    /// The record it stands for, or why not.
    pub fn to_record(&self) -> Result<Record, String> {
        let key = B64
            .decode(&self.key_b64)
            .map_err(|e| format!("key_b64: {e}"))?;
        let value = match &self.value_b64 {
            Some(v) => Some(B64.decode(v).map_err(|e| format!("value_b64: {e}"))?),
            None => None,
        };
        let version = Version::from_text(&self.version)
            .ok_or_else(|| format!("version {:?} is not a version", self.version))?;
        let mut record = Record::new(key, version, value);
        record.expires = self.expires_us.map(Time::from_micros);
        if let Some(name) = &self.kind {
            record.kind = (0..=4)
                .filter_map(Kind::from_code)
                .find(|k| k.name() == name && *k != Kind::String)
                .ok_or_else(|| format!("kind {name:?} is not a collection's"))?;
            if record.value.is_none() {
                return Err("a tombstone has no kind".into());
            }
        }
        Ok(record)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordsQuery {
    /// The range is `(start, end]` on the ring (40 hex digits each); both
    /// or neither (the whole ring).
    start: Option<String>,
    end: Option<String>,
    /// Resume after this record (`cursor` of the last record read).
    after: Option<String>,
}

fn hex_id(s: &str, what: &str) -> Result<Id, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("bad_range", format!("{what} is not 40 hex digits")))
}

/// A resume point as text: the key id in hex, `:`, the key in base64.
pub fn cursor(key_id: &Id, key: &[u8]) -> String {
    format!("{}:{}", key_id.to_hex(), B64.encode(key))
}

fn parse_cursor(s: &str) -> Result<(Id, Vec<u8>), ApiError> {
    let bad = || ApiError::bad_request("bad_cursor", "after is not a record's cursor");
    let (id, key) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        id.parse().map_err(|_| bad())?,
        B64.decode(key).map_err(|_| bad())?,
    ))
}

/// `GET /v1/admin/records`: this node's own copies in a range, streamed
/// as JSON lines in key-id order (tombstones included), all as one moment
/// saw them, then `{"end":{"records":N}}`. A stream without that last line
/// was cut short (the node failed mid-range): resume with `after` from
/// another holder. A backup reads each range from its owner.
pub(crate) async fn records(
    State(s): State<AppState>,
    Query(q): Query<RecordsQuery>,
) -> Result<axum::response::Response, ApiError> {
    let (start, end) = match (&q.start, &q.end) {
        (Some(a), Some(b)) => (hex_id(a, "start")?, hex_id(b, "end")?),
        (None, None) => (s.node.id(), s.node.id()),
        _ => {
            return Err(ApiError::bad_request(
                "bad_range",
                "give both start and end, or neither",
            ));
        }
    };
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let pages = s
        .node
        .stream_records((start, end), after, (PAGE_RECORDS, MAX_PAGE_BYTES));
    let lines =
        futures_util::stream::unfold((pages, 0u64, false), |(mut pages, sent, done)| async move {
            if done {
                return None;
            }
            match pages.recv().await {
                Some(Ok(page)) => {
                    let mut out = Vec::new();
                    for r in &page {
                        serde_json::to_writer(&mut out, &RecordJson::of(r)).ok()?;
                        out.push(b'\n');
                    }
                    let sent = sent + page.len() as u64;
                    Some((Ok(Bytes::from(out)), (pages, sent, false)))
                }
                // The body breaks off: no end line, the reader knows.
                Some(Err(e)) => Some((
                    Err(std::io::Error::other(e.to_string())),
                    (pages, sent, true),
                )),
                None => {
                    let end = json!({"end": {"records": sent}});
                    Some((Ok(Bytes::from(format!("{end}\n"))), (pages, sent, true)))
                }
            }
        });
    Ok(axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(lines))
        .expect("a valid response"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBody {
    records: Vec<RecordJson>,
}

/// `POST /v1/admin/restore` with `{"records":[…]}` (at most
/// [`MAX_RESTORE_RECORDS`]): each record goes back to its key's owner and
/// replicas with its own version, unless the ring holds a newer one.
/// Answers `{"restored":n,"skipped":m,"failed":[{"key_b64","error"}]}`: skipped
/// where the ring holds a newer version.
pub(crate) async fn restore(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a restore body is at most {MAX_RESTORE_BODY} bytes: {e}"),
        )
    })?;
    let body: RestoreBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_json", format!("not a restore body: {e}")))?;
    if body.records.len() > MAX_RESTORE_RECORDS {
        return Err(ApiError::bad_request(
            "too_many_records",
            format!("at most {MAX_RESTORE_RECORDS} records per request"),
        ));
    }
    let mut records = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.iter().enumerate() {
        let record = r
            .to_record()
            .map_err(|e| ApiError::bad_request("bad_record", format!("record {i}: {e}")))?;
        if record.key.is_empty() || record.key.len() > s.config.max_key {
            return Err(ApiError::bad_request(
                "bad_key",
                format!("record {i}: a key is 1 to {} bytes", s.config.max_key),
            ));
        }
        records.push(record);
    }
    let keys: Vec<String> = body.records.into_iter().map(|r| r.key_b64).collect();
    let outcomes = futures_util::future::join_all(
        records
            .into_iter()
            .map(|r| chordal_node::restore(&s.node, r)),
    )
    .await;
    let (mut restored, mut skipped, mut failed) = (0u64, 0u64, Vec::new());
    for (key, outcome) in keys.into_iter().zip(outcomes) {
        match outcome {
            Ok(true) => restored += 1,
            Ok(false) => skipped += 1,
            Err(e) => failed.push(json!({"key_b64": key, "error": e.to_string()})),
        }
    }
    Ok(Json(json!({
        "restored": restored,
        "skipped": skipped,
        "failed": failed,
    })))
}

/// `POST /v1/admin/leave`: the node leaves the ring gracefully (hands its
/// ranges over, as on SIGTERM) and its process stops; 202 at once.
pub(crate) async fn leave(
    State(s): State<AppState>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some(token) = &s.config.leave else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported",
            "this server cannot stop its node",
        ));
    };
    tracing::info!("asked to leave through the API");
    token.cancel();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"leaving": true, "id": s.node.id().to_hex()})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_their_json_form() {
        let node = Id::hash(b"writer");
        let mut r = Record::new(
            b"k\x00\xff".to_vec(),
            Version {
                term: 0,
                hlc: 42,
                node,
            },
            Some(vec![1, 2, 3]),
        );
        r.expires = Some(Time::from_micros(1_700_000_000_000_000));
        assert_eq!(RecordJson::of(&r).to_record(), Ok(r.clone()));
        let tomb = Record::new(
            b"gone".to_vec(),
            Version {
                term: 0,
                hlc: 7,
                node,
            },
            None,
        );
        let j = RecordJson::of(&tomb);
        assert_eq!(j.value_b64, None);
        assert_eq!(j.to_record(), Ok(tomb));
        let mut bad = RecordJson::of(&r);
        bad.version = "yesterday".into();
        assert!(bad.to_record().unwrap_err().contains("version"));
        let c = cursor(&r.key_id, &r.key);
        assert_eq!(parse_cursor(&c).unwrap(), (r.key_id, r.key.clone()));
        assert!(parse_cursor("nonsense").is_err());
    }
}
