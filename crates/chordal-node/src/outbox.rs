//! The write side of a peer connection: a bounded byte buffer shared by the
//! driver and the connection's writer task.
//!
//! The driver writes straight to the socket when nothing is queued (no task
//! wake-up on the common path: one `write` per peer per batch of messages);
//! whatever the socket does not take is left in the buffer for the writer
//! task, which waits until the socket is writable. Both write only while
//! holding the buffer's lock, so bytes never interleave.

use bytes::{Buf, BytesMut};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
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
