//! The write side of a peer connection: a bounded byte buffer shared by the
//! driver and the connection's writer task.
//!
//! The driver writes straight to the socket when nothing is queued (no task
//! wake-up on the common path: one `write` per peer per batch of messages);
//! whatever the socket does not take is left in the buffer for the writer
//! task, which waits until the socket is writable. Both write only while
//! holding the buffer's lock, so bytes never interleave.
//!
//! Under TLS the bytes must be encrypted by the one task that owns the
//! stream's write half: the driver only queues ([`Outbox::push`] without
//! `attach`), and [`Outbox::drain_into`] writes whatever accumulated since
//! its last write as one TLS write — one task wake-up per batch.

use bytes::{Buf, BytesMut};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Bytes waiting for one peer connection.
#[derive(Debug)]
pub struct Outbox {
    /// The socket, once connected (frames may be queued before).
    half: OnceLock<OwnedWriteHalf>,
    buf: Mutex<BytesMut>,
    /// Wakes the writer task when the buffer gains bytes.
    notify: Notify,
    /// Most bytes queued; beyond, new frames are refused.
    limit: usize,
    /// A write failed: the connection is broken.
    broken: AtomicBool,
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes.
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            half: OnceLock::new(),
            buf: Mutex::new(BytesMut::new()),
            notify: Notify::new(),
            limit,
            broken: AtomicBool::new(false),
        }
    }

    /// The connection is established: writes may start.
    pub fn attach(&self, half: OwnedWriteHalf) {
        let _ = self.half.set(half);
        self.notify.notify_one();
    }

    /// Queues `bytes` (whole frames) and writes what the socket takes right
    /// now. Returns false, dropping the bytes, if the outbox is full or the
    /// connection broken.
    pub fn push(&self, bytes: &[u8]) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        let mut buf = self.buf.lock().expect("outbox lock");
        if buf.len() + bytes.len() > self.limit {
            return false;
        }
        let mut rest = bytes;
        if buf.is_empty()
            && let Some(half) = self.half.get()
        {
            match half.try_write(bytes) {
                Ok(n) => rest = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.broken.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
        if rest.is_empty() {
            return true;
        }
        buf.extend_from_slice(rest);
        drop(buf);
        self.notify.notify_one();
        true
    }

    /// The writer task of a connection whose writes must go through
    /// `writer` (a TLS stream's write half; `attach` is never called):
    /// whenever bytes are queued, takes them all and writes them in one
    /// go. On `shutdown`, flushes what is queued and returns. While a
    /// batch is being written the next one may grow to `limit` again, so
    /// at most twice `limit` bytes are held.
    pub async fn drain_into<W: AsyncWrite + Unpin>(
        &self,
        mut writer: W,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        loop {
            let batch = {
                let mut buf = self.buf.lock().expect("outbox lock");
                (!buf.is_empty()).then(|| buf.split())
            };
            let Some(batch) = batch else {
                if shutdown.is_cancelled() {
                    let _ = writer.shutdown().await;
                    return Ok(());
                }
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            };
            let written = async {
                writer.write_all(&batch).await?;
                writer.flush().await
            };
            if let Err(e) = written.await {
                self.broken.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }

    /// The writer task: drains the buffer whenever it has bytes and the
    /// socket can take them. On `shutdown`, flushes what is queued and
    /// returns. Call after `attach`.
    pub async fn drain(&self, shutdown: CancellationToken) -> io::Result<()> {
        let Some(half) = self.half.get() else {
            return Ok(());
        };
        loop {
            let empty = self.buf.lock().expect("outbox lock").is_empty();
            if empty {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.notify.notified() => continue,
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            half.writable().await?;
            let mut buf = self.buf.lock().expect("outbox lock");
            match half.try_write(&buf) {
                Ok(n) => buf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.broken.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }
}
