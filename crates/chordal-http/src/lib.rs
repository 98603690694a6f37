//! # chordal-http: the HTTP/JSON API of a node
//!
//! [`router`] exposes a running [`chordal_node::Node`] as described in
//! `docs/http-api.md` (SPEC's HTTP table): health, routing state, ring
//! walk, key location, `PUT`/`GET`/`DELETE` of keys, and pub/sub
//! (`POST` to publish, `GET` a server-sent-events stream to subscribe). It holds no protocol logic: every answer comes
//! from the node handle. Errors are `{"error": "...", "code": "..."}` with
//! a fitting 4xx/5xx status.

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
mod routes;
pub mod serve;
mod topics;
mod watch;

pub use auth::{Tokens, TokensError};
pub use error::ApiError;
pub use json::{DownJson, LocateJson, NodeJson, NodeStatusJson, RingJson, RingNodeJson};
pub use kv::{EXPIRES_HEADER, VERSION_HEADER};
pub use routes::{ApiConfig, router, serve};
