//! How a blocking command (BLPOP, BRPOP, BLMPOP, BLMOVE, BRPOPLPUSH,
//! BZPOPMIN/MAX, BZMPOP) waits: not by polling, but by watching its keys
//! at their owners ([`KeyValue::watch`]), which answer the moment a write
//! to one of them is acknowledged.
//!
//! The order that loses no wake-up: read each key's version first
//! ([`Blocking::versions`]), then try the command; if every key was
//! empty, watch them all from those versions ([`Blocking::changed`]). A
//! push between the version read and the try is newer than the version,
//! so the watch answers at once and the command tries again.

use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::Version;
use chordal_node::KeyValue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Most keys one blocking command watches at once (each is one watch
/// held at its owner); Redis accepts more, Chordal refuses them.
pub(crate) const MAX_BLOCKING_KEYS: usize = 64;

tokio::task_local! {
    /// Set while EXEC runs a transaction's commands: a blocking command
    /// there does not wait (Redis's rule: it answers as its non-blocking
    /// form would), since nothing can change its keys mid-transaction.
    pub(crate) static IN_TRANSACTION: bool;
    /// Cancelled when the command's client closes its connection: a
    /// blocked command then stops waiting (its answer has nowhere to go).
    pub(crate) static CLIENT_GONE: tokio_util::sync::CancellationToken;
}

/// Clients of this process blocked right now (INFO's `blocked_clients`).
static BLOCKED: AtomicUsize = AtomicUsize::new(0);

/// Clients of this process's RESP servers waiting in a blocking command.
pub(crate) fn blocked_clients() -> usize {
    BLOCKED.load(Ordering::Relaxed)
}

/// Counts one blocked client while it lives (dropped with the command's
/// future, also when its client goes away).
struct Blocked;

impl Blocked {
    fn new() -> Blocked {
        BLOCKED.fetch_add(1, Ordering::Relaxed);
        Blocked
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        BLOCKED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A blocking command's deadline.
pub(crate) struct Blocking {
    /// `None`: wait for ever (a timeout of 0).
    deadline: Option<Instant>,
    /// `false` inside a transaction: try once, never wait.
    waits: bool,
}

/// Each key's version when read (`None`: no record).
pub(crate) type Seen = Vec<Option<Version>>;

impl Blocking {
    /// Waits until `timeout` (seconds as text; 0: for ever) passes, or
    /// the error Redis gives for a bad one.
    pub(crate) fn until(timeout: &[u8]) -> Result<Blocking, Reply> {
        let timeout = match std::str::from_utf8(timeout)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
        {
            Some(t) if t >= 0.0 && t.is_finite() => t,
            Some(_) => return Err(Reply::err("timeout is negative")),
            None => return Err(Reply::err("timeout is not a float or out of range")),
        };
        let deadline =
            (timeout > 0.0).then(|| Instant::now() + Duration::from_secs_f64(timeout.min(1e9)));
        let waits = !IN_TRANSACTION.try_with(|t| *t).unwrap_or(false);
        Ok(Blocking { deadline, waits })
    }

    /// Each of `keys`' version now, read at its owner: call before a try.
    /// A key whose owner cannot say counts as unknown (the watch after an
    /// empty try then answers at once, and the command tries again).
    /// Nothing is read inside a transaction.
    pub(crate) async fn versions<K: KeyValue>(&self, kv: &K, keys: &[Bytes]) -> Seen {
        if !self.waits {
            return Vec::new();
        }
        let reads = keys.iter().map(|k| kv.watch(k.to_vec(), None, false));
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .map(|r| match r {
                Ok((version, _)) => version,
                Err(_) => Some(Version::default()),
            })
            .collect()
    }

    /// After a try found every key empty: waits until one of `keys` is
    /// written past `seen` (`true`: try again), or the deadline passes
    /// (`false`: answer nil).
    pub(crate) async fn changed<K: KeyValue>(&self, kv: &K, keys: &[Bytes], seen: &Seen) -> bool {
        if !self.waits {
            return false;
        }
        let _blocked = Blocked::new();
        let gone = CLIENT_GONE.try_with(|t| t.clone()).unwrap_or_default();
        tokio::select! {
            changed = self.watch(kv, keys, seen) => changed,
            () = gone.cancelled() => false,
        }
    }

    /// [`Blocking::changed`]'s watches, until a change or the deadline.
    async fn watch<K: KeyValue>(&self, kv: &K, keys: &[Bytes], seen: &Seen) -> bool {
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let watches = keys.iter().zip(seen).map(|(k, v)| {
                let after = Some(v.unwrap_or_default());
                Box::pin(kv.watch(k.to_vec(), after, false))
            });
            let first = futures_util::future::select_all(watches);
            let (answer, _, _) = match self.deadline {
                Some(d) => match tokio::time::timeout_at(d, first).await {
                    Ok(a) => a,
                    Err(_) => return false,
                },
                None => first.await,
            };
            match answer {
                Ok((Some(_), _)) => return true,
                // Nothing in the owner's time: watch again.
                Ok((None, _)) => {}
                Err(_) => {
                    // The owner cannot say now (a term catching up, a
                    // node lost): a short pause, then try the command.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return true;
                }
            }
        }
    }
}
