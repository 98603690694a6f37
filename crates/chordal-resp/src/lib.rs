//! # chordal-resp: the Redis protocol on a Chordal node
//!
//! [`serve`] answers RESP2 and RESP3 clients (`redis-cli`,
//! `redis-benchmark`, any Redis client library) on the node's `--resp`
//! address. Every node coordinates: a command's keys are Chordal keys,
//! found on the ring like those of the HTTP API — the same data. Strings
//! only (GET, SET with its options, INCR, APPEND, EXPIRE, …), pub/sub on
//! Chordal's topics, AUTH with the API tokens; docs/protocols.md lists
//! every command and what differs from Redis.
//!
//! Requests are decoded by the `redis-protocol` crate (inline commands
//! aside: see [`codec`]); a pipeline's data commands run concurrently and
//! are answered in order.

#![warn(missing_docs)]

pub mod codec;
mod commands;
pub mod reply;
mod session;

use chordal_http::Tokens;
use chordal_node::Node;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::net::TcpListener;

/// The Redis version the server says it speaks (HELLO, INFO): the command
/// set and replies follow Redis 7.0's.
pub const REDIS_VERSION: &str = "7.0.0";

/// Settings of the RESP endpoint.
#[derive(Debug)]
#[non_exhaustive]
pub struct RespConfig {
    /// Largest value (the node's limit): a longer bulk string is refused.
    pub max_value: usize,
    /// Largest request, all its strings together (MSET of many values).
    pub max_request: usize,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Commands of one pipeline running at once; the connection is not
    /// read further until one finishes.
    pub max_pipeline: usize,
    /// API tokens (`--api-tokens`): then AUTH is needed, with a `read`
    /// token for reads and a `write` one for writes.
    pub tokens: Option<Arc<Tokens>>,
    /// Connections open now (INFO).
    pub connections: AtomicUsize,
}

impl Default for RespConfig {
    fn default() -> Self {
        let max_value = chordal_core::Config::default().max_value;
        RespConfig {
            max_value,
            max_request: 4 * max_value + 64 * 1024,
            max_connections: 1024,
            max_pipeline: 256,
            tokens: None,
            connections: AtomicUsize::new(0),
        }
    }
}

/// Serves the Redis protocol for `node` on `listener` until `shutdown`
/// completes.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    config: RespConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let ids = Arc::new(AtomicU64::new(1));
    let ctx = commands::Ctx { node };
    let max = config.max_connections;
    chordal_node::accept::serve_connections(listener, max, shutdown, move |socket| {
        let (ctx, config) = (ctx.clone(), config.clone());
        let id = ids.fetch_add(1, Ordering::Relaxed);
        async move {
            config.connections.fetch_add(1, Ordering::Relaxed);
            session::serve(socket, ctx, config.clone(), id).await;
            config.connections.fetch_sub(1, Ordering::Relaxed);
        }
    })
    .await
}
