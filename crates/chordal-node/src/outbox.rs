//! The write side of a peer connection: bounded byte queues shared by the
//! driver and the connection's writer task.
//!
//! Two lanes: **urgent** frames (authority control — prepares, renewals
//! and their answers: a lease depends on their latency, see
//! `Message::is_urgent`) go ahead of the **bulk** of everything else, at
//! the next boundary between pushes (each push is whole frames, so the
//! byte stream stays a sequence of whole frames). Without it a renewal
//! waited behind megabytes of replica and transfer frames, past the
//! lease, and writes failed on a healthy but busy ring.
//!
//! The driver writes straight to the socket when nothing is queued (no task
//! wake-up on the common path: one `write` per peer per batch of messages);
//! whatever the socket does not take is left queued for the writer task,
//! which waits until the socket is writable. Both write only while holding
//! the queues' lock, so bytes never interleave.
//!
//! Under TLS the bytes must be encrypted by the one task that owns the
//! stream's write half: the driver only queues ([`Outbox::push`] without
//! `attach`), and [`Outbox::drain_into`] writes what accumulated since its
//! last write — urgent bytes first, bulk in slices of at most
//! [`TLS_SLICE`] — one task wake-up per batch.

use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Urgent bytes an outbox holds at most, besides its bulk `limit`: urgent
/// frames are small, and must not be refused because bulk filled up.
pub const URGENT_LIMIT: usize = 4 * 1024 * 1024;

/// Most bulk bytes one TLS write takes before urgent bytes may go next.
pub const TLS_SLICE: usize = 256 * 1024;

/// Bytes waiting for one peer connection.
#[derive(Debug)]
pub struct Outbox {
    /// The socket, once connected (frames may be queued before).
    half: OnceLock<OwnedWriteHalf>,
    queues: Mutex<Queues>,
    /// Wakes the writer task when a queue gains bytes.
    notify: Notify,
    /// Most bulk bytes queued; beyond, new bulk frames are refused.
    limit: usize,
    /// A write failed: the connection is broken.
    broken: AtomicBool,
}

/// Which queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Urgent,
    Bulk,
}

/// The two lanes, and which one is in the middle of a push.
#[derive(Debug, Default)]
struct Queues {
    urgent: Queue,
    bulk: Queue,
    /// The lane whose first push is partly written: it must be finished
    /// before the other lane may write (a frame cut in two otherwise).
    writing: Option<Lane>,
}

/// One lane's bytes, with the lengths of the pushes they came in (their
/// ends are frame boundaries).
#[derive(Debug, Default)]
struct Queue {
    buf: BytesMut,
    pushes: VecDeque<usize>,
}

impl Queue {
    fn add(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pushes.push_back(bytes.len());
    }

    /// `n` bytes of the front were written; true if that ended inside a
    /// push.
    fn advance(&mut self, mut n: usize) -> bool {
        self.buf.advance(n);
        while n > 0 {
            let first = self.pushes.front_mut().expect("bytes without a push");
            if n < *first {
                *first -= n;
                return true;
            }
            n -= *first;
            self.pushes.pop_front();
        }
        false
    }

    /// The front pushes, whole, up to about `max` bytes (at least one).
    fn take(&mut self, max: usize) -> BytesMut {
        let mut n = 0;
        while let Some(&len) = self.pushes.front() {
            if n > 0 && n + len > max {
                break;
            }
            n += len;
            self.pushes.pop_front();
        }
        self.buf.split_to(n)
    }
}

impl Queues {
    fn queue(&mut self, lane: Lane) -> &mut Queue {
        match lane {
            Lane::Urgent => &mut self.urgent,
            Lane::Bulk => &mut self.bulk,
        }
    }

    fn is_empty(&self) -> bool {
        self.urgent.buf.is_empty() && self.bulk.buf.is_empty()
    }

    /// The lane to write from next — one cut mid-push, else urgent first
    /// — and how many of its bytes to offer the socket: all of them, or
    /// only to the end of its first push while the other lane waits (so
    /// that the other may go next).
    fn next(&self) -> Option<(Lane, usize)> {
        let lane = match self.writing {
            Some(lane) => lane,
            None if !self.urgent.buf.is_empty() => Lane::Urgent,
            None if !self.bulk.buf.is_empty() => Lane::Bulk,
            None => return None,
        };
        let (this, other) = match lane {
            Lane::Urgent => (&self.urgent, &self.bulk),
            Lane::Bulk => (&self.bulk, &self.urgent),
        };
        let n = match other.buf.is_empty() {
            true => this.buf.len(),
            false => this.pushes.front().copied().unwrap_or(0),
        };
        Some((lane, n))
    }

    /// `n` bytes of `lane` went to the socket.
    fn written(&mut self, lane: Lane, n: usize) {
        let cut = self.queue(lane).advance(n);
        self.writing = cut.then_some(lane);
    }
}

impl Outbox {
    /// An empty outbox holding at most `limit` bulk bytes (and
    /// [`URGENT_LIMIT`] urgent ones).
    pub fn new(limit: usize) -> Outbox {
        Outbox {
            half: OnceLock::new(),
            queues: Mutex::new(Queues::default()),
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

    /// Queues `bytes` (whole frames) in the bulk lane and writes what the
    /// socket takes right now. Returns false, dropping the bytes, if the
    /// lane is full or the connection broken.
    pub fn push(&self, bytes: &[u8]) -> bool {
        self.push_to(bytes, Lane::Bulk)
    }

    /// [`Outbox::push`] for urgent frames: they go ahead of the bulk
    /// queued before them (at the next frame boundary).
    pub fn push_urgent(&self, bytes: &[u8]) -> bool {
        self.push_to(bytes, Lane::Urgent)
    }

    fn push_to(&self, bytes: &[u8], lane: Lane) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        let mut q = self.queues.lock().expect("outbox lock");
        let limit = match lane {
            Lane::Urgent => URGENT_LIMIT,
            Lane::Bulk => self.limit,
        };
        if q.queue(lane).buf.len() + bytes.len() > limit {
            return false;
        }
        if q.is_empty()
            && let Some(half) = self.half.get()
        {
            match half.try_write(bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(n) => {
                    q.queue(lane).add(&bytes[n..]);
                    q.writing = Some(lane);
                    drop(q);
                    self.notify.notify_one();
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.broken.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
        q.queue(lane).add(bytes);
        drop(q);
        self.notify.notify_one();
        true
    }

    /// The writer task of a connection whose writes must go through
    /// `writer` (a TLS stream's write half; `attach` is never called):
    /// whenever bytes are queued, takes the urgent ones and a slice of
    /// bulk and writes them in one go. On `shutdown`, flushes what is
    /// queued and returns. While a batch is being written the queues may
    /// fill again, so at most their limits plus a slice are held.
    pub async fn drain_into<W: AsyncWrite + Unpin>(
        &self,
        mut writer: W,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        loop {
            let batch = {
                let mut q = self.queues.lock().expect("outbox lock");
                let mut batch = q.urgent.take(usize::MAX);
                if batch.len() < TLS_SLICE {
                    batch.unsplit(q.bulk.take(TLS_SLICE - batch.len()));
                }
                (!batch.is_empty()).then_some(batch)
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

    /// The writer task: writes the queues whenever they have bytes and
    /// the socket can take them, urgent first at each push boundary. On
    /// `shutdown`, flushes what is queued and returns. Call after
    /// `attach`.
    pub async fn drain(&self, shutdown: CancellationToken) -> io::Result<()> {
        let Some(half) = self.half.get() else {
            return Ok(());
        };
        loop {
            let empty = self.queues.lock().expect("outbox lock").is_empty();
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
            let mut q = self.queues.lock().expect("outbox lock");
            let Some((lane, n)) = q.next() else {
                continue;
            };
            match half.try_write(&q.queue(lane).buf[..n]) {
                Ok(n) => q.written(lane, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.broken.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(q: &mut Queues, lane: Lane, pushes: &[&[u8]]) {
        for p in pushes {
            q.queue(lane).add(p);
        }
    }

    /// What a socket taking `per_write` bytes a time receives.
    fn write_all(
        q: &mut Queues,
        per_write: usize,
        mut between: impl FnMut(&mut Queues),
    ) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((lane, offer)) = q.next() {
            let buf = &q.queue(lane).buf[..offer];
            let n = per_write.min(buf.len());
            out.extend_from_slice(&buf[..n]);
            q.written(lane, n);
            between(q);
        }
        out
    }

    #[test]
    fn urgent_bytes_go_ahead_of_bulk_only_at_a_push_boundary() {
        let mut q = Queues::default();
        frames(&mut q, Lane::Bulk, &[b"AAAA", b"BBBB"]);
        let mut once = true;
        // Urgent bytes arrive after the first 2 bytes went out: they wait
        // for the rest of AAAA, then go before BBBB.
        let out = write_all(&mut q, 2, |q| {
            if std::mem::take(&mut once) {
                q.queue(Lane::Urgent).add(b"uu");
            }
        });
        assert_eq!(out, b"AAAAuuBBBB");
    }

    #[test]
    fn a_partly_written_urgent_push_is_finished_before_bulk() {
        let mut q = Queues::default();
        frames(&mut q, Lane::Urgent, &[b"uuu"]);
        frames(&mut q, Lane::Bulk, &[b"BB"]);
        assert_eq!(write_all(&mut q, 2, |_| {}), b"uuuBB");
        assert!(q.is_empty() && q.writing.is_none());
    }

    #[test]
    fn a_tls_slice_takes_whole_pushes() {
        let mut q = Queue::default();
        q.add(&[1; 100]);
        q.add(&[2; 100]);
        q.add(&[3; 100]);
        assert_eq!(q.take(150).len(), 100, "one push, not a cut one");
        assert_eq!(q.take(10).len(), 100, "at least one push");
        assert_eq!(q.take(1_000).len(), 100);
        assert!(q.buf.is_empty() && q.pushes.is_empty());
    }

    #[tokio::test]
    async fn over_a_socket_urgent_frames_pass_queued_bulk() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (_, half) = client.unwrap().into_split();
        let (mut server, _) = accepted.unwrap();
        let outbox = std::sync::Arc::new(Outbox::new(64 * 1024 * 1024));
        outbox.attach(half);
        // Far more bulk than the socket buffers hold, then one urgent push.
        let chunk = vec![b'b'; 64 * 1024];
        for _ in 0..1024 {
            assert!(outbox.push(&chunk));
        }
        assert!(outbox.push_urgent(b"URGENT"));
        let close = CancellationToken::new();
        let writer = tokio::spawn({
            let (outbox, close) = (outbox.clone(), close.clone());
            async move { outbox.drain(close).await }
        });
        // Read until the urgent bytes show up: long before the bulk ends,
        // and never inside a bulk push.
        use tokio::io::AsyncReadExt;
        let (mut seen, mut tail) = (0, Vec::new());
        let mut buf = vec![0; 64 * 1024];
        let at = loop {
            let n = server.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the urgent bytes");
            // The last few bytes of the read before, and this read.
            let start = seen - tail.len();
            tail.extend_from_slice(&buf[..n]);
            seen += n;
            if let Some(at) = tail.windows(6).position(|w| w == b"URGENT") {
                break start + at;
            }
            tail.drain(..tail.len().saturating_sub(5));
        };
        assert_eq!(at % chunk.len(), 0, "cut a bulk push");
        assert!(
            at < 512 * chunk.len(),
            "waited behind most of the bulk: {at}"
        );
        // The reader goes: the writer's flush fails and it ends.
        drop(server);
        close.cancel();
        assert!(writer.await.unwrap().is_err());
    }
}
