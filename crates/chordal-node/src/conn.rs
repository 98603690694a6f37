//! One TCP connection to a peer: handshake, then a reader and a coalescing
//! writer. Connections only move frames; they never decide anything.

use crate::driver::Inbound;
use bytes::Bytes;
use chordal_wire::{Hello, PREAMBLE_LEN, WireError, check_preamble, decode_envelope, decode_hello};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// Most frames written in one batch before a flush.
const WRITE_BATCH: usize = 64;

/// Counters shared by every connection of a node.
#[derive(Debug, Default)]
pub struct WireStats {
    /// Frames received and decoded.
    pub frames_in: AtomicU64,
    /// Frames handed to the socket.
    pub frames_out: AtomicU64,
    /// Connections refused at the handshake (magic, version, cluster, timeout).
    pub bad_handshakes: AtomicU64,
    /// Connections closed for a malformed frame.
    pub bad_frames: AtomicU64,
    /// Outgoing messages dropped because a peer's queue was full.
    pub dropped_out: AtomicU64,
    /// Connections accepted and established.
    pub connections: AtomicU64,
}

/// What every connection task needs to know.
#[derive(Clone)]
pub struct ConnContext {
    /// Our peer address (the `to` of every received envelope).
    pub local: SocketAddr,
    /// Our Hello, encoded.
    pub hello: Bytes,
    /// Our cluster name, to check theirs.
    pub cluster: String,
    pub max_frame: usize,
    pub handshake_timeout: Duration,
    /// A connection with no incoming frame for this long is closed.
    pub idle_timeout: Duration,
    pub inbound: mpsc::Sender<Inbound>,
    pub shutdown: CancellationToken,
    pub stats: Arc<WireStats>,
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
    let exchange = async {
        let mut out = Vec::with_capacity(PREAMBLE_LEN + 4 + ctx.hello.len());
        out.extend_from_slice(&chordal_wire::preamble());
        out.extend_from_slice(&(ctx.hello.len() as u32).to_be_bytes());
        out.extend_from_slice(&ctx.hello);
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
        Ok(decode_hello(&body, &ctx.cluster)?)
    };
    match tokio::time::timeout(ctx.handshake_timeout, exchange).await {
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

/// Runs an established connection until it fails, goes idle, or the node
/// shuts down. Reading and writing run as separate tasks so that two peers
/// writing to each other can never block each other. Frames from `outgoing`
/// are written in batches; received frames go to the driver. If `outgoing`
/// closes (the pool dropped us) the connection keeps reading.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    outgoing: mpsc::Receiver<Bytes>,
    ctx: ConnContext,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let writer = tokio::spawn(write_loop(w, outgoing, ctx.clone()));
    let result = read_loop(r, peer, &ctx).await;
    if ctx.shutdown.is_cancelled() {
        // Let the writer flush a leave's farewells.
        let _ = writer.await;
    } else {
        writer.abort();
    }
    result
}

async fn write_loop(
    w: tokio::net::tcp::OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Bytes>,
    ctx: ConnContext,
) -> std::io::Result<()> {
    let mut writer = FramedWrite::new(w, chordal_wire::frame_codec(ctx.max_frame));
    loop {
        tokio::select! {
            biased;
            frame = outgoing.recv() => {
                let Some(frame) = frame else {
                    return Ok(()); // the pool dropped us; the reader goes on
                };
                writer.feed(frame).await?;
                let mut n = 1;
                while n < WRITE_BATCH {
                    match outgoing.try_recv() {
                        Ok(frame) => {
                            writer.feed(frame).await?;
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                SinkExt::<Bytes>::flush(&mut writer).await?;
                ctx.stats.frames_out.fetch_add(n as u64, Ordering::Relaxed);
            }
            _ = ctx.shutdown.cancelled() => {
                while let Ok(frame) = outgoing.try_recv() {
                    writer.feed(frame).await?;
                }
                SinkExt::<Bytes>::flush(&mut writer).await?;
                return Ok(());
            }
        }
    }
}

async fn read_loop(
    r: tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    ctx: &ConnContext,
) -> std::io::Result<()> {
    let mut reader = FramedRead::new(r, chordal_wire::frame_codec(ctx.max_frame));
    loop {
        let next = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            next = tokio::time::timeout(ctx.idle_timeout, reader.next()) => next,
        };
        let frame = match next {
            Err(_) => return Ok(()), // idle: close; it reconnects on demand
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => {
                ctx.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            Ok(Some(Ok(frame))) => frame,
        };
        match decode_envelope(&frame, ctx.local) {
            Ok(env) if env.from.addr == peer => {
                ctx.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                if ctx.inbound.send(Inbound::Message(env)).await.is_err() {
                    return Ok(()); // the driver is gone
                }
            }
            _ => {
                // A frame that does not decode or lies about its sender:
                // this peer is broken; drop the connection.
                ctx.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "malformed envelope",
                ));
            }
        }
    }
}
