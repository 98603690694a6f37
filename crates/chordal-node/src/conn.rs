//! Establishing peer connections: the listener, outbound connects, the
//! handshake. Once a connection passes its handshake its write half goes to
//! an [`Outbox`] and its read half, as a stream of frames, to the driver,
//! which reads every connection itself (one task wake-up per message).

use crate::outbox::Outbox;
use bytes::{Bytes, BytesMut};
use chordal_wire::{Hello, PREAMBLE_LEN, WireError, check_preamble, decode_hello};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Counters shared by every connection of a node.
#[derive(Debug, Default)]
pub struct WireStats {
    /// Frames received and decoded.
    pub frames_in: AtomicU64,
    /// Frames handed to connections.
    pub frames_out: AtomicU64,
    /// Connections refused at the handshake (magic, version, cluster, timeout).
    pub bad_handshakes: AtomicU64,
    /// Connections closed for a malformed frame.
    pub bad_frames: AtomicU64,
    /// Outgoing frames dropped because a peer's outbox was full.
    pub dropped_out: AtomicU64,
    /// Connections that passed the handshake.
    pub connections: AtomicU64,
    /// Application messages refused because the application's inbox was
    /// full.
    pub app_refused: AtomicU64,
}

/// What every connection task needs to know.
#[derive(Clone)]
pub struct ConnContext {
    /// Our Hello, encoded.
    pub hello: Bytes,
    /// Our cluster name, to check theirs.
    pub cluster: String,
    pub max_frame: usize,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    /// Bytes an outbox holds at most.
    pub peer_buffer: usize,
    pub max_connections: usize,
    pub inbound: mpsc::Sender<Inbound>,
    /// Cancelled when the node stops; each connection has a child token.
    pub shutdown: CancellationToken,
    /// Every task of the node's network, so that a leave can wait for them.
    pub tasks: TaskTracker,
    pub stats: Arc<WireStats>,
}

/// One item of a connection's read side: `(peer, conn_id, frame)`, where
/// `None` means the connection ended.
pub type ReadItem = (SocketAddr, u64, Option<std::io::Result<BytesMut>>);

/// A connection that passed its handshake, handed to the driver.
pub struct Established {
    /// The peer's advertised address.
    pub addr: SocketAddr,
    pub api: Option<SocketAddr>,
    pub service: Option<String>,
    pub conn_id: u64,
    pub outbox: Arc<Outbox>,
    pub reader: BoxStream<'static, ReadItem>,
    /// Cancel to close the connection.
    pub close: CancellationToken,
    /// We opened it (else the peer did).
    pub outbound: bool,
}

/// What connection tasks tell the driver.
pub enum Inbound {
    Established(Established),
    /// An outbound connect or its handshake failed.
    ConnectFailed {
        addr: SocketAddr,
        conn_id: u64,
    },
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("handshake timed out")]
    Timeout,
    #[error("peer closed during handshake")]
    Closed,
}

/// Sends our preamble and Hello, reads and checks theirs.
pub async fn handshake(stream: &mut TcpStream, ctx: &ConnContext) -> Result<Hello, HandshakeError> {
    exchange_hello(stream, &ctx.hello, &ctx.cluster, ctx.handshake_timeout).await
}

/// The handshake itself: our preamble and encoded `hello` out, theirs in
/// and checked against `cluster`, all within `timeout`.
pub async fn exchange_hello(
    stream: &mut TcpStream,
    hello: &[u8],
    cluster: &str,
    timeout: Duration,
) -> Result<Hello, HandshakeError> {
    let exchange = async {
        let mut out = Vec::with_capacity(PREAMBLE_LEN + 4 + hello.len());
        out.extend_from_slice(&chordal_wire::preamble());
        out.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        out.extend_from_slice(hello);
        stream.write_all(&out).await?;
        let mut pre = [0u8; PREAMBLE_LEN];
        stream.read_exact(&mut pre).await.map_err(closed)?;
        check_preamble(&pre)?;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.map_err(closed)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > chordal_wire::MAX_HELLO {
            return Err(WireError::Invalid("hello size").into());
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(closed)?;
        Ok(decode_hello(&body, cluster)?)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(HandshakeError::Timeout),
    }
}

fn closed(e: std::io::Error) -> HandshakeError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        HandshakeError::Closed
    } else {
        HandshakeError::Io(e)
    }
}

/// Splits an established stream: the write half into `outbox` (with a
/// task that finishes writes the socket could not take at once), the read
/// half into a frame stream for the driver.
fn establish(
    stream: TcpStream,
    hello: &Hello,
    addr: SocketAddr,
    conn_id: u64,
    outbox: Arc<Outbox>,
    outbound: bool,
    ctx: &ConnContext,
) -> Established {
    let _ = stream.set_nodelay(true);
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (r, w) = stream.into_split();
    outbox.attach(w);
    let close = ctx.shutdown.child_token();
    let drain_box = outbox.clone();
    let drain_close = close.clone();
    ctx.tasks.spawn(async move {
        if let Err(e) = drain_box.drain(drain_close).await {
            debug!(error = %e, "write failed");
        }
    });
    let frames = FramedRead::new(r, chordal_wire::frame_codec(ctx.max_frame));
    let reader = frames
        .map(move |f| (addr, conn_id, Some(f)))
        .chain(stream::once(async move { (addr, conn_id, None) }))
        .take_until(close.clone().cancelled_owned())
        .boxed();
    Established {
        addr,
        api: hello.api,
        service: hello.service.clone(),
        conn_id,
        outbox,
        reader,
        close,
        outbound,
    }
}

/// Accepts peer connections until shutdown, at most `max_connections` at
/// once; each is handshaken in its own task.
pub fn spawn_listener(listener: TcpListener, ctx: ConnContext) {
    let limit = Arc::new(Semaphore::new(ctx.max_connections));
    let next_id = Arc::new(AtomicU64::new(1 << 32));
    let tasks = ctx.tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off a little, keep serving.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                debug!(%remote, "too many connections; refusing");
                continue;
            };
            let ctx = ctx.clone();
            let conn_id = next_id.fetch_add(1, Ordering::Relaxed);
            ctx.tasks.clone().spawn(async move {
                accept(stream, remote, conn_id, &ctx).await;
                // The permit is held until the connection is handed over;
                // the driver bounds established connections itself.
                drop(permit);
            });
        }
    });
}

/// Handshakes one inbound connection and hands it to the driver.
async fn accept(mut stream: TcpStream, remote: SocketAddr, conn_id: u64, ctx: &ConnContext) {
    let hello = match handshake(&mut stream, ctx).await {
        Ok(h) => h,
        Err(e) => {
            ctx.stats.bad_handshakes.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, error = %e, "handshake refused");
            return;
        }
    };
    // A client (not a ring member) advertises no address: it is known by
    // its socket address, and its envelopes must come from that address.
    let addr = hello.addr.unwrap_or(remote);
    let outbox = Arc::new(Outbox::new(ctx.peer_buffer));
    let est = establish(stream, &hello, addr, conn_id, outbox, false, ctx);
    let _ = ctx.inbound.send(Inbound::Established(est)).await;
}

/// Opens an outbound connection to `addr` for `outbox` and hands it to
/// the driver.
pub fn spawn_connect(addr: SocketAddr, conn_id: u64, outbox: Arc<Outbox>, ctx: ConnContext) {
    let tasks = ctx.tasks.clone();
    tasks.spawn(async move {
        let attempt = async {
            let mut stream = tokio::time::timeout(ctx.connect_timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| HandshakeError::Timeout)??;
            let hello = handshake(&mut stream, &ctx).await?;
            if hello.addr != Some(addr) {
                return Err(WireError::Invalid("advertised address").into());
            }
            Ok::<_, HandshakeError>((stream, hello))
        };
        let msg = match attempt.await {
            Ok((stream, hello)) => {
                Inbound::Established(establish(stream, &hello, addr, conn_id, outbox, true, &ctx))
            }
            Err(e) => {
                debug!(peer = %addr, error = %e, "connect failed");
                Inbound::ConnectFailed { addr, conn_id }
            }
        };
        let _ = ctx.inbound.send(msg).await;
    });
}
