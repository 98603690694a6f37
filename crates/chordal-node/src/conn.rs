//! Establishing peer connections: the listener, outbound connects, the
//! handshake (TLS first under `--tls-dir`, see [`crate::tls`], then the
//! preamble and Hello). Once a connection passes its handshake its write
//! half goes to an [`Outbox`] and its read half, as a stream of frames, to
//! the driver, which reads every connection itself (one task wake-up per
//! message).

use crate::outbox::Outbox;
use crate::tls::{Halves, PeerStream, PeerTls, Reader, Refusal, Standing, TlsSlot, admit};
use bytes::{Bytes, BytesMut};
use chordal_wire::{Hello, PREAMBLE_LEN, WireError, check_preamble, decode_hello};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    /// TLS handshakes that failed: a certificate not of the cluster CA,
    /// expired or missing, or no TLS at all.
    pub tls_refused: AtomicU64,
    /// Peers whose Hello claimed ids their certificate does not give.
    pub wrong_ids: AtomicU64,
    /// Client certificates that tried to act as a member, and client
    /// connections that sent member-only messages.
    pub client_role: AtomicU64,
    /// Application messages refused because the application's inbox was
    /// full.
    pub app_refused: AtomicU64,
    /// Redis-protocol connections closed for a malformed request
    /// (`chordal-resp`).
    pub resp_malformed: AtomicU64,
    /// VoidPhone DHT API connections closed for a malformed message.
    pub dht_api_malformed: AtomicU64,
    /// Members whose Hello claimed a peer address where our own dial met
    /// another certificate's ids.
    pub addr_impostors: AtomicU64,
    /// Frames not sent because the certificate at their destination does
    /// not hold the vnode they were for.
    pub not_there: AtomicU64,
    /// Client connections (RESP, the DHT API, HTTP) closed because they
    /// did not authenticate, finish a request, or send one in time.
    pub client_timeouts: AtomicU64,
    /// The client listeners' gates by listener name (`http`, `resp`,
    /// `dht_api`): connections open and refused, for the metrics.
    pub listeners: std::sync::Mutex<Vec<(&'static str, std::sync::Arc<crate::accept::Gate>)>>,
}

impl WireStats {
    /// Counts client listener `name`'s connections through `gate` in the
    /// metrics (`chordal_client_connections{listener}`).
    pub fn add_listener(&self, name: &'static str, gate: std::sync::Arc<crate::accept::Gate>) {
        self.listeners
            .lock()
            .expect("listeners lock")
            .push((name, gate));
    }
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
    /// Our TLS material (`--tls-dir`); `None` speaks plain TCP.
    pub tls: Option<TlsSlot>,
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
    pub resp: Option<SocketAddr>,
    pub conn_id: u64,
    pub outbox: Arc<Outbox>,
    pub reader: BoxStream<'static, ReadItem>,
    /// Cancel to close the connection.
    pub close: CancellationToken,
    /// We opened it (else the peer did).
    pub outbound: bool,
    /// What the peer may send.
    pub standing: Standing,
    /// When the peer's certificate expires (TLS only): the driver closes
    /// the connection then.
    pub expires: Option<std::time::SystemTime>,
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
    #[error(
        "peer closed the connection during the handshake (TLS on one side only, or it refused us)"
    )]
    Closed,
    /// The TLS handshake failed (foreign, expired or missing certificate,
    /// or no TLS on the other side).
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    /// The Hello says what the certificate does not allow.
    #[error("{0}")]
    Refused(#[from] Refusal),
}

impl HandshakeError {
    /// Counts the failure in `stats`.
    fn count(&self, stats: &WireStats) {
        let counter = match self {
            HandshakeError::Tls(_) => &stats.tls_refused,
            HandshakeError::Refused(Refusal::WrongIds) => &stats.wrong_ids,
            HandshakeError::Refused(Refusal::ClientRole) => &stats.client_role,
            _ => &stats.bad_handshakes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection through its handshake: the stream, the peer's Hello and
/// what it may do.
pub(crate) struct Opened {
    pub stream: PeerStream,
    pub hello: Hello,
    pub standing: Standing,
}

/// Dials `addr` and handshakes (TLS under `tls`, then our `hello`
/// against `cluster`), all within `timeout` plus `connect_timeout` for
/// the TCP connect. The peer must be a ring member, advertising `addr`
/// itself if `exact` (a node dialling a peer it learnt of; a client may
/// dial a seed by another of its addresses).
pub(crate) async fn open(
    addr: SocketAddr,
    exact: bool,
    tls: Option<&PeerTls>,
    hello: &[u8],
    cluster: &str,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Opened, HandshakeError> {
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    let handshake = async {
        let mut stream = PeerStream::dial(tcp, tls)
            .await
            .map_err(HandshakeError::Tls)?;
        let theirs = exchange_hello(&mut stream, hello, cluster).await?;
        if exact && theirs.addr != Some(addr) {
            return Err(WireError::Invalid("advertised address").into());
        }
        let standing = admit(&theirs, stream.identity())?;
        if standing == Standing::Client {
            return Err(Refusal::ClientRole.into());
        }
        Ok(Opened {
            stream,
            hello: theirs,
            standing,
        })
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// Handshakes an accepted connection (TLS under `tls`, then the Hello),
/// within `timeout`.
async fn open_inbound(tcp: TcpStream, ctx: &ConnContext) -> Result<Opened, HandshakeError> {
    let handshake = async {
        let tls = ctx.tls.as_ref().map(TlsSlot::current);
        let mut stream = PeerStream::accept(tcp, tls.as_deref())
            .await
            .map_err(HandshakeError::Tls)?;
        let hello = exchange_hello(&mut stream, &ctx.hello, &ctx.cluster).await?;
        let standing = admit(&hello, stream.identity())?;
        Ok(Opened {
            stream,
            hello,
            standing,
        })
    };
    tokio::time::timeout(ctx.handshake_timeout, handshake)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// Splits a handshaken stream: writes go through `outbox` (the returned
/// future is its writer task, to be spawned; it ends when `close` is
/// cancelled or a write fails), reads come from the returned reader.
pub(crate) fn wire_up(
    stream: PeerStream,
    outbox: &Arc<Outbox>,
    close: CancellationToken,
) -> (Reader, impl Future<Output = ()> + Send + 'static) {
    let outbox = outbox.clone();
    match stream.split() {
        Halves::Plain(reader, half) => {
            outbox.attach(half);
            let writer = async move {
                if let Err(e) = outbox.drain(close).await {
                    debug!(error = %e, "write failed");
                }
            };
            (reader, futures_util::future::Either::Left(writer))
        }
        Halves::Tls(reader, half) => {
            let writer = async move {
                if let Err(e) = outbox.drain_into(half, close).await {
                    debug!(error = %e, "write failed");
                }
            };
            (reader, futures_util::future::Either::Right(writer))
        }
    }
}

/// The Hello exchange: our preamble and encoded `hello` out, theirs in
/// and checked against `cluster`. The caller bounds it in time.
pub async fn exchange_hello<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hello: &[u8],
    cluster: &str,
) -> Result<Hello, HandshakeError> {
    {
        let mut out = Vec::with_capacity(PREAMBLE_LEN + 4 + hello.len());
        out.extend_from_slice(&chordal_wire::preamble());
        out.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        out.extend_from_slice(hello);
        stream.write_all(&out).await?;
        stream.flush().await?;
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
    }
}

fn closed(e: std::io::Error) -> HandshakeError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        HandshakeError::Closed
    } else {
        HandshakeError::Io(e)
    }
}

/// Hands a handshaken connection to an `outbox` (spawning its writer
/// task) and turns its read side into a frame stream for the driver.
fn establish(
    opened: Opened,
    addr: SocketAddr,
    conn_id: u64,
    outbox: Arc<Outbox>,
    outbound: bool,
    ctx: &ConnContext,
) -> Established {
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    let close = ctx.shutdown.child_token();
    let expires = opened.stream.identity().map(|i| i.expires);
    let (r, writer) = wire_up(opened.stream, &outbox, close.clone());
    ctx.tasks.spawn(writer);
    let frames = FramedRead::new(r, chordal_wire::frame_codec(ctx.max_frame));
    let reader = frames
        .map(move |f| (addr, conn_id, Some(f)))
        .chain(stream::once(async move { (addr, conn_id, None) }))
        .take_until(close.clone().cancelled_owned())
        .boxed();
    Established {
        addr,
        api: opened.hello.api,
        service: opened.hello.service,
        resp: opened.hello.resp,
        conn_id,
        outbox,
        reader,
        close,
        outbound,
        standing: opened.standing,
        expires,
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
async fn accept(stream: TcpStream, remote: SocketAddr, conn_id: u64, ctx: &ConnContext) {
    let opened = match open_inbound(stream, ctx).await {
        Ok(o) => o,
        Err(e) => {
            e.count(&ctx.stats);
            if matches!(
                e,
                HandshakeError::Wire(WireError::Versions { .. } | WireError::Version(_))
            ) {
                // Another release that cannot talk to this one: an upgrade
                // that skipped a release, worth an operator's eye.
                warn!(%remote, error = %e, "peer refused");
            } else {
                debug!(%remote, error = %e, "handshake refused");
            }
            return;
        }
    };
    // A client (not a ring member) advertises no address: it is known by
    // its socket address, and its envelopes must come from that address.
    let addr = opened.hello.addr.unwrap_or(remote);
    let outbox = Arc::new(Outbox::new(ctx.peer_buffer));
    let est = establish(opened, addr, conn_id, outbox, false, ctx);
    let _ = ctx.inbound.send(Inbound::Established(est)).await;
}

/// Opens an outbound connection to `addr` for `outbox` and hands it to
/// the driver.
pub fn spawn_connect(addr: SocketAddr, conn_id: u64, outbox: Arc<Outbox>, ctx: ConnContext) {
    let tasks = ctx.tasks.clone();
    tasks.spawn(async move {
        let tls = ctx.tls.as_ref().map(TlsSlot::current);
        let attempt = open(
            addr,
            true,
            tls.as_deref(),
            &ctx.hello,
            &ctx.cluster,
            ctx.connect_timeout,
            ctx.handshake_timeout,
        );
        let msg = match attempt.await {
            Ok(opened) => {
                Inbound::Established(establish(opened, addr, conn_id, outbox, true, &ctx))
            }
            Err(e) => {
                if matches!(e, HandshakeError::Io(_) | HandshakeError::Timeout) {
                    debug!(peer = %addr, error = %e, "connect failed");
                } else {
                    // A peer that speaks but will not be trusted (or
                    // trust us) is a misconfiguration worth seeing:
                    // another CA, an expired certificate, TLS on one side
                    // only, another cluster. Backoff bounds the repeats.
                    e.count(&ctx.stats);
                    warn!(peer = %addr, error = %e, "peer refused");
                }
                Inbound::ConnectFailed { addr, conn_id }
            }
        };
        let _ = ctx.inbound.send(msg).await;
    });
}

/// Opens one connection to the node at `addr`, completes the handshake
/// (TLS with the certificate in `tls_dir`, if given, then the Hello, as a
/// client) and closes it; returns how long the handshake took, TCP
/// connect included. For benchmarks and reachability probes.
pub async fn probe(
    addr: SocketAddr,
    cluster: &str,
    tls_dir: Option<&std::path::Path>,
    timeout: Duration,
) -> Result<Duration, crate::Error> {
    let tls = match tls_dir {
        Some(dir) => Some(PeerTls::load(dir).map_err(|e| crate::Error::Tls(e.to_string()))?),
        None => None,
    };
    let hello = chordal_wire::encode_hello(&Hello {
        cluster: cluster.to_string(),
        addr: None,
        api: None,
        ids: Vec::new(),
        service: None,
        resp: None,
    });
    let start = tokio::time::Instant::now();
    let opened = open(addr, false, tls.as_ref(), &hello, cluster, timeout, timeout)
        .await
        .map_err(|e| crate::Error::Connect(addr, e.to_string()))?;
    let took = start.elapsed();
    drop(opened);
    Ok(took)
}
