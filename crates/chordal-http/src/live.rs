//! `GET /` (the dashboard page) and `GET /v1/events` (this node's place on
//! the ring as it changes, as server-sent events the dashboard listens
//! to).

use crate::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Html;
use axum::response::sse::{Event, KeepAlive, Sse};
use chordal_core::NodeRef;
use chordal_node::NodeEvent;
use futures_util::Stream;
use serde_json::{Value, json};
use std::convert::Infallible;

/// The dashboard: one self-contained page (HTML, CSS, JS, SVG drawn by
/// the script), embedded in the binary.
pub async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

fn node(n: &NodeRef) -> Value {
    json!({"id": n.id.to_hex(), "addr": n.addr.to_string()})
}

/// One event as (SSE event name, JSON data).
fn describe(e: &NodeEvent) -> (&'static str, Value) {
    match e {
        NodeEvent::Joined { vnode, successor } => (
            "joined",
            json!({"vnode": vnode.to_hex(), "successor": node(successor)}),
        ),
        NodeEvent::Left => ("left", json!({})),
        NodeEvent::PredecessorChanged { vnode, old, new } => (
            "predecessor_changed",
            json!({"vnode": vnode.to_hex(), "old": old.as_ref().map(node), "new": new.as_ref().map(node)}),
        ),
        NodeEvent::SuccessorChanged { vnode, old, new } => (
            "successor_changed",
            json!({"vnode": vnode.to_hex(), "old": node(old), "new": node(new)}),
        ),
        NodeEvent::RangeGained { vnode, range } => (
            "range_gained",
            json!({"vnode": vnode.to_hex(), "start": range.start.to_hex(), "end": range.end.to_hex()}),
        ),
        NodeEvent::RangeLost { vnode, range } => (
            "range_lost",
            json!({"vnode": vnode.to_hex(), "start": range.start.to_hex(), "end": range.end.to_hex()}),
        ),
        NodeEvent::PeerGone { vnode, peer } => (
            "peer_gone",
            json!({"vnode": vnode.to_hex(), "peer": node(peer)}),
        ),
        NodeEvent::Missed(n) => ("missed", json!({"count": n})),
        #[allow(unreachable_patterns)]
        _ => ("other", json!({})),
    }
}

/// `GET /v1/events`: one SSE event per [`NodeEvent`] of this node, named
/// by its kind (`successor_changed`, `peer_gone`, …) with JSON data.
pub async fn events(
    State(s): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = s.stream_permit()?;
    let events = s.node.events();
    let stream =
        futures_util::stream::unfold((events, permit), |(mut events, permit)| async move {
            let e = events.next().await?;
            let (name, data) = describe(&e);
            let event = Event::default().event(name).data(data.to_string());
            Some((Ok(event), (events, permit)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
