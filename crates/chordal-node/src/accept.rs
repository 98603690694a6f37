//! Accepting client connections for a front end (HTTP, RESP, the DHT API,
//! the gateway): bounded per listener and per source address, refused at
//! once when over a bound, and stopping when asked.
//!
//! A connection over a bound is accepted and closed straight away (after
//! the front end's one-line refusal, if it has one) rather than left in
//! the kernel's backlog: a client then learns at once that it was turned
//! away, and the backlog never fills with connections nobody will serve,
//! which would keep out real clients too. The per-source bound is what
//! keeps one host that opens thousands of idle or slow connections from
//! taking every place.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// How many client connections a listener serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once on the listener.
    pub max_connections: usize,
    /// Connections served at once from one source address (one IP).
    pub max_per_source: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            max_per_source: 128,
        }
    }
}

/// The counts behind one listener's [`ConnLimits`]; shared by its accept
/// loop and the [`Admitted`] tickets of its connections.
#[derive(Debug)]
pub struct Gate {
    limits: ConnLimits,
    open: Mutex<Open>,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The listener serves `max_connections` already.
    #[error("too many connections")]
    Full,
    /// This source address holds `max_per_source` already.
    #[error("too many connections from this address")]
    SourceFull,
}

/// One admitted connection's place: given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    gate: Arc<Gate>,
    source: IpAddr,
}

impl Gate {
    /// A gate with nothing admitted yet.
    pub fn new(limits: ConnLimits) -> Arc<Gate> {
        Arc::new(Gate {
            limits: ConnLimits {
                max_connections: limits.max_connections.max(1),
                max_per_source: limits.max_per_source.max(1),
            },
            open: Mutex::new(Open::default()),
            refused: AtomicU64::new(0),
        })
    }

    /// Takes a place for a connection from `source`, or says why there is
    /// none (and counts the refusal).
    pub fn admit(self: &Arc<Gate>, source: IpAddr) -> Result<Admitted, Refused> {
        let mut open = self.open.lock().expect("gate lock");
        let from_source = open.by_source.get(&source).copied().unwrap_or(0);
        let refused = if open.total >= self.limits.max_connections {
            Some(Refused::Full)
        } else if from_source >= self.limits.max_per_source {
            Some(Refused::SourceFull)
        } else {
            None
        };
        if let Some(why) = refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(why);
        }
        open.total += 1;
        *open.by_source.entry(source).or_insert(0) += 1;
        Ok(Admitted {
            gate: self.clone(),
            source,
        })
    }

    /// Connections admitted and not yet closed.
    pub fn open(&self) -> usize {
        self.open.lock().expect("gate lock").total
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The bounds this gate keeps.
    pub fn limits(&self) -> ConnLimits {
        self.limits
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().expect("gate lock");
        open.total -= 1;
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// Waits for the next connection on `listener` that `gate` admits.
/// Connections over a bound are closed at once, after `refusal` is
/// written to them (best effort, within a second, in their own task).
/// Accept errors (out of file descriptors and the like) are logged and
/// retried after a pause.
pub async fn next_admitted(
    listener: &TcpListener,
    gate: &Arc<Gate>,
    refusal: &'static [u8],
) -> (TcpStream, SocketAddr, Admitted) {
    loop {
        let (socket, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match gate.admit(remote.ip()) {
            Ok(admitted) => return (socket, remote, admitted),
            Err(why) => {
                debug!(%remote, %why, "connection refused");
                refuse(socket, refusal);
            }
        }
    }
}

/// Closes `socket` after writing `refusal` to it (if not empty), without
/// waiting for either.
fn refuse(mut socket: TcpStream, refusal: &'static [u8]) {
    if refusal.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(refusal)).await;
    });
}

/// Accepts connections on `listener` and runs `serve` for each admitted
/// one in its own task until `shutdown` completes; see [`next_admitted`]
/// for those over `gate`'s bounds.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    gate: Arc<Gate>,
    refusal: &'static [u8],
    shutdown: impl Future<Output = ()>,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (socket, remote, admitted) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            next = next_admitted(&listener, &gate, refusal) => next,
        };
        let connection = serve(socket, remote);
        tokio::spawn(async move {
            connection.await;
            drop(admitted);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_listener_and_per_source_and_given_back() {
        let gate = Gate::new(ConnLimits {
            max_connections: 3,
            max_per_source: 2,
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refused::SourceFull);
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refused::Full);
        assert_eq!((gate.open(), gate.refused()), (3, 2));
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refused::Full);
    }

    #[tokio::test]
    async fn a_connection_over_the_bound_is_answered_and_closed_at_once() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Gate::new(ConnLimits {
            max_connections: 10,
            max_per_source: 1,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_connections(
            listener,
            gate.clone(),
            b"-ERR full\r\n",
            async {
                let _ = stopped.await;
            },
            |mut socket, _| async move {
                // Held open until the client goes.
                let _ = socket.read(&mut [0u8; 1]).await;
            },
        ));
        let _held = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut answer))
            .await
            .expect("refused at once, not left waiting")
            .unwrap();
        assert_eq!(answer, b"-ERR full\r\n");
        assert_eq!(gate.refused(), 1);
        // Another source address still gets in.
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let _third = other.connect(addr).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while gate.open() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!((gate.open(), gate.refused()), (2, 1));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
