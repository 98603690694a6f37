//! # chordal-http: the HTTP/JSON API of a node
//!
//! [`router`] exposes a running [`chordal_node::Node`] as described in
//! `docs/http-api.md` (SPEC's HTTP table): health, routing state, ring
//! walk, key location, and `PUT`/`GET`/`DELETE` of keys. It holds no protocol logic: every answer comes
//! from the node handle. Errors are `{"error": "...", "code": "..."}` with
//! a fitting 4xx/5xx status.

mod error;
mod json;
mod kv;
mod routes;

pub use error::ApiError;
pub use json::{LocateJson, NodeJson, NodeStatusJson, RingJson, RingNodeJson};
pub use kv::VERSION_HEADER;
pub use routes::{ApiConfig, router, serve};
