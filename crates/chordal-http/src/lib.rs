//! # chordal-http: the HTTP/JSON API of a node
//!
//! [`router`] exposes a running [`chordal_node::Node`] as described in
//! `docs/http-api.md`: health, routing state, ring walk, key location,
//! `PUT`/`GET`/`DELETE` of keys, and pub/sub (`POST` to publish, `GET` a
//! server-sent-events stream to subscribe). It holds no protocol logic:
//! every answer comes from the node handle. Errors are `{"error": "...",
//! "code": "..."}` with a fitting 4xx/5xx status.
//!
//! Where things are: `routes.rs` is the route table (path and method →
//! handler); each family of routes has its file (`kv.rs`, `batch.rs`,
//! `keys.rs`, `ring.rs`, `topics.rs`, `watch.rs`, `live.rs` for the
//! dashboard and events, `admin.rs`); `params.rs` reads what requests say
//! and `state.rs` holds what handlers share — both at the bottom, importing
//! no handler.

#![warn(missing_docs)]

pub mod admin;
pub mod auth;
mod batch;
mod error;
mod json;
mod keys;
mod kv;
mod live;
mod openapi;
mod params;
mod ring;
mod routes;
pub mod serve;
mod state;
mod topics;
mod watch;

pub use auth::{Tokens, TokensError};
pub use error::ApiError;
pub use json::{DownJson, LocateJson, NodeJson, NodeStatusJson, RingJson, RingNodeJson};
pub use kv::{EXPIRES_HEADER, VERSION_HEADER};
pub use routes::{router, serve};
pub use state::ApiConfig;
