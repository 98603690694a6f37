//! `POST /v1/topics/{topic}` publishes the body; `GET /v1/topics/{topic}`
//! subscribes, as a server-sent-events stream.
//!
//! Each publication is one event. UTF-8 text without carriage returns is
//! sent as is (`data:` lines, the default `message` event); anything else
//! as `event: binary` with the payload in standard base64, so that every
//! byte arrives unchanged; an empty message as `event: empty`. `event: missed` with a count says publications
//! were dropped because this stream fell behind.

use crate::ApiError;
use crate::params::key_from_path;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine as _;
use chordal_node::{Publication, Subscription};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::OwnedSemaphorePermit;

pub async fn publish(
    State(s): State<AppState>,
    topic: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let topic = key_from_path(topic, &s.config)?;
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!("the message limit is {} bytes", s.config.max_value),
        ),
        other => ApiError::bad_request("bad_body", other.to_string()),
    })?;
    let subscribers = s
        .node
        .publish(topic.clone().into_bytes(), body.to_vec())
        .await
        .map_err(|e| ApiError::from(e).too_large_as("message_too_large"))?;
    Ok(Json(json!({"topic": topic, "subscribers": subscribers})))
}

pub async fn subscribe(
    State(s): State<AppState>,
    topic: Result<Path<String>, PathRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let topic = key_from_path(topic, &s.config)?;
    let permit = s.stream_permit()?;
    let sub = s
        .node
        .subscribe(topic.into_bytes())
        .await
        .map_err(|e| ApiError::from(e).too_large_as("message_too_large"))?;
    Ok(Sse::new(events(sub, permit)).keep_alive(KeepAlive::default()))
}

/// The SSE events of `sub`, until the node stops (or the client goes,
/// which drops the stream and with it the subscription).
fn events(
    sub: Subscription,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = (sub, 0u64, permit);
    futures_util::stream::unfold(state, |(mut sub, reported, permit)| async move {
        let p = sub.next().await?;
        let missed = sub.missed();
        let mut out = Vec::with_capacity(2);
        if missed > reported {
            let count = (missed - reported).to_string();
            out.push(Ok(Event::default().event("missed").data(count)));
        }
        out.push(Ok(publication_event(&p)));
        Some((futures_util::stream::iter(out), (sub, missed, permit)))
    })
    .flatten()
}

/// One publication as an SSE event: text as is, anything else base64, an
/// empty message as `event: empty` (an event without data).
fn publication_event(p: &Publication) -> Event {
    if p.payload.is_empty() {
        return Event::default().event("empty");
    }
    match std::str::from_utf8(&p.payload) {
        Ok(text) if !text.contains('\r') => Event::default().data(text),
        _ => Event::default()
            .event("binary")
            .data(base64::engine::general_purpose::STANDARD.encode(&p.payload)),
    }
}
