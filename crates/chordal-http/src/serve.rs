//! Serving an axum router over HTTP/1.1 or HTTPS with every connection
//! bounded: how many are open (per listener and per source address), how
//! long a TLS handshake may take, how long a request's header may take to
//! arrive, and how long a kept-alive connection may sit idle. Used by the
//! node's API and by the gateway.
//!
//! hyper's `header_read_timeout` runs from the moment the connection
//! waits for a request's header to the header's end, so it closes both a
//! client that sends its header a byte at a time (slowloris) and a
//! kept-alive connection that sends nothing more. A connection over a
//! bound is answered `503` (plain HTTP) or closed before the handshake
//! (HTTPS: a handshake costs more than the refusal saves), at once.

use axum::Router;
use chordal_node::accept::{Gate, next_admitted};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The time bounds of one HTTP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// A TLS client must finish its handshake within this long.
    pub handshake: Duration,
    /// A request's header must arrive whole within this long of the
    /// connection waiting for it; also the keep-alive idle timeout.
    pub header_read: Duration,
    /// After shutdown is asked, connections still busy (a live stream, a
    /// long request) get this long before they are dropped.
    pub drain: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            drain: Duration::from_secs(5),
        }
    }
}

/// Called for each connection closed by a timeout (to count it).
pub type OnTimeout = Arc<dyn Fn() + Send + Sync>;

/// What a plain-HTTP client over the bounds reads.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 52\r\n\r\n{\"error\":\"too many connections\",\"code\":\"overloaded\"}";

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`
/// completes, admitting connections through `gate`; then lets the open
/// ones finish within `timeouts.drain`.
pub async fn serve_router(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    gate: Arc<Gate>,
    timeouts: HttpTimeouts,
    on_timeout: OnTimeout,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let refusal: &'static [u8] = if acceptor.is_some() { b"" } else { FULL };
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, remote, admitted) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so that the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            next = next_admitted(&listener, &gate, refusal) => next,
        };
        let _ = socket.set_nodelay(true);
        let (router, stop, on_timeout) = (router.clone(), stop.clone(), on_timeout.clone());
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _admitted = admitted;
            match acceptor {
                None => connection(socket, router, timeouts, stop, &on_timeout).await,
                Some(acceptor) => {
                    match tokio::time::timeout(timeouts.handshake, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => connection(tls, router, timeouts, stop, &on_timeout).await,
                        Ok(Err(e)) => debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            on_timeout();
                            debug!(%remote, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    stop.cancel();
    let drained = tokio::time::timeout(timeouts.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            left = connections.len(),
            "connections still open at shutdown dropped"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves HTTP/1.1 on one connection until the client closes it, a
/// timeout closes it, or `stop` asks it to finish its request and close.
async fn connection<IO>(
    io: IO,
    router: Router,
    timeouts: HttpTimeouts,
    stop: CancellationToken,
    on_timeout: &OnTimeout,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    let service = TowerToHyperService::new(router);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                if e.is_timeout() {
                    on_timeout();
                }
                debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
