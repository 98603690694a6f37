//! # chordal-resp: the Redis protocol on a Chordal node
//!
//! [`serve`] answers RESP2 and RESP3 clients (`redis-cli`,
//! `redis-benchmark`, any Redis client library) on the node's `--resp`
//! address. Every node coordinates: a command's keys are Chordal keys,
//! found on the ring like those of the HTTP API — the same data. Strings
//! only (GET, SET with its options, INCR, APPEND, SETRANGE, bit and range
//! reads in `strings.rs`, EXPIRE with its conditions, …), the keyspace
//! (SCAN, KEYS, DBSIZE, FLUSHALL in `keyspace.rs`, walking the ring with
//! `chordal_node::scan_cursor`), pub/sub on Chordal's topics, AUTH with
//! the API tokens; docs/client-protocols.md lists every command and what differs
//! from Redis.
//!
//! Requests are decoded by the `redis-protocol` crate (inline commands
//! aside: see [`codec`]); a pipeline's data commands run concurrently and
//! are answered in order.
//!
//! Bounded before anything else: connections per listener and per source
//! address ([`RespConfig::limits`]), a few KiB per request until AUTH
//! ([`codec::Limits::before_auth`]), [`RespConfig::auth_timeout`] to
//! authenticate and [`RespConfig::idle_timeout`] between commands. Over
//! TLS when [`RespConfig::tls`] is set. MULTI/EXEC/WATCH run a
//! transaction as one batch at the owner of its keys (`multi.rs`); MSETNX,
//! RENAME and COPY likewise (`together.rs`).

#![warn(missing_docs)]

mod blocking;
pub mod cluster;
pub mod codec;
mod collections;
mod commands;
mod keyspace;
mod lists;
mod multi;
mod order;
pub mod reply;
mod server;
mod session;
mod strings;
mod together;
mod zcombine;
mod zsets;

use chordal_node::Node;
use chordal_node::accept::{ConnLimits, Gate};
use chordal_node::tokens::Tokens;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::debug;

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
    /// Connections served at once, in all and from one address; more are
    /// answered `-ERR max number of clients reached` and closed.
    pub limits: ConnLimits,
    /// Commands of one pipeline running at once; the connection is not
    /// read further until one finishes.
    pub max_pipeline: usize,
    /// API tokens (`--api-tokens`): then AUTH is needed, with a `read`
    /// token for reads and a `write` one for writes.
    pub tokens: Option<Arc<Tokens>>,
    /// Serve RESP over TLS with this configuration (`--resp-tls`, and
    /// whenever the API is HTTPS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client must have finished its TLS handshake and (with tokens)
    /// authenticated this long after connecting, or it is closed.
    pub auth_timeout: Duration,
    /// A connection that sends no complete command for this long, and is
    /// neither subscribed nor waiting for a reply, is closed.
    pub idle_timeout: Duration,
    /// Connections open now (INFO).
    pub connections: AtomicUsize,
}

impl Default for RespConfig {
    fn default() -> Self {
        let max_value = chordal_core::Config::default().max_value;
        RespConfig {
            max_value,
            max_request: 4 * max_value + 64 * 1024,
            limits: ConnLimits::default(),
            max_pipeline: 256,
            tokens: None,
            tls: None,
            auth_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            connections: AtomicUsize::new(0),
        }
    }
}

/// What a client over the connection bounds reads before it is closed.
const FULL: &[u8] = b"-ERR max number of clients reached\r\n";

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
    let gate = Gate::new(config.limits);
    node.wire_stats().add_listener("resp", gate.clone());
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let ctx = commands::Ctx { node };
    chordal_node::accept::serve_connections(listener, gate, FULL, shutdown, move |socket, _| {
        let (ctx, config, tls) = (ctx.clone(), config.clone(), tls.clone());
        let id = ids.fetch_add(1, Ordering::Relaxed);
        async move {
            config.connections.fetch_add(1, Ordering::Relaxed);
            let _ = socket.set_nodelay(true);
            match tls {
                None => {
                    let (read, write) = socket.into_split();
                    session::serve(read, write, ctx, config.clone(), id).await;
                }
                Some(acceptor) => {
                    // The handshake counts against the time to authenticate.
                    match tokio::time::timeout(config.auth_timeout, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let (read, write) = tokio::io::split(stream);
                            session::serve(read, write, ctx, config.clone(), id).await;
                        }
                        Ok(Err(e)) => debug!(error = %e, "RESP TLS handshake failed"),
                        Err(_) => {
                            ctx.node
                                .wire_stats()
                                .client_timeouts
                                .fetch_add(1, Ordering::Relaxed);
                            debug!("RESP TLS handshake timed out");
                        }
                    }
                }
            }
            config.connections.fetch_sub(1, Ordering::Relaxed);
        }
    })
    .await
}
