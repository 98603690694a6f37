//! # chordal-dhtapi: the VoidPhone DHT API on a Chordal node
//!
//! The DHT module interface of the course's specification: other modules of a peer
//! connect over TCP and send `DHT PUT` (650) and `DHT GET` (651); a GET
//! is answered `DHT SUCCESS` (652) with the value or `DHT FAILURE` (653).
//! [`serve`] runs it on the node's `--dht-api` address. Several requests
//! may travel on one connection; each is served as it arrives (answers may
//! come in any order, each in one write; a GET reads after the PUTs sent
//! before it on its connection), a PUT is never answered, and a
//! malformed message closes its connection (counted in
//! `chordal_errors_total{kind="dht_api_malformed"}`) while the node goes on.
//!
//! It has no authentication of its own: a node whose HTTP API demands
//! tokens refuses to serve it unless told `--dht-api-insecure`
//! (docs/security.md). Connections are bounded per listener and per
//! source address; one that starts no message for
//! [`DhtApiConfig::idle_timeout`], or takes longer than
//! [`DhtApiConfig::message_timeout`] to send one, is closed.
//!
//! Keys are Chordal keys of exactly 32 bytes — the same data as the HTTP
//! API's `/v1/kv/{key}` for such keys. A PUT's ttl (seconds) expires the
//! value (0: never); its replication is a hint: the ring keeps its `R`
//! copies whatever is asked.

#![warn(missing_docs)]

pub mod message;

use chordal_core::{Expiry, PutOptions};
use chordal_node::accept::{ConnLimits, Gate};
use chordal_node::{KeyValue, Node};
use message::{HEADER_LEN, Request};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::timeout;
use tracing::debug;

/// Settings of the DHT API endpoint.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DhtApiConfig {
    /// Connections served at once, in all and from one address; more are
    /// closed at once.
    pub limits: ConnLimits,
    /// Requests of one connection being served at once; the connection
    /// is not read further until one finishes.
    pub max_in_flight: usize,
    /// A connection that starts no message for this long (and has no
    /// request running) is closed.
    pub idle_timeout: Duration,
    /// A message must arrive whole within this long of its first byte.
    pub message_timeout: Duration,
}

impl Default for DhtApiConfig {
    fn default() -> Self {
        DhtApiConfig {
            limits: ConnLimits::default(),
            max_in_flight: 64,
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves the DHT API for `node` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    node: Node,
    config: DhtApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gate = Gate::new(config.limits);
    node.wire_stats().add_listener("dht_api", gate.clone());
    // The protocol has no message for "too busy": a refused module sees
    // its connection closed at once.
    chordal_node::accept::serve_connections(listener, gate, b"", shutdown, move |socket, _| {
        connection(socket, node.clone(), config.clone())
    })
    .await
}

/// One client connection: reads messages until the client leaves or sends
/// a malformed one; GET answers go out through one writer task.
async fn connection(socket: TcpStream, node: Node, config: DhtApiConfig) {
    let _ = socket.set_nodelay(true);
    let (mut read, mut write) = socket.into_split();
    let (answers, mut outgoing) = mpsc::channel::<Vec<u8>>(config.max_in_flight);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            // Each answer in one write.
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    // PUTs of this connection still running, in order.
    let mut puts: Vec<watch::Receiver<bool>> = Vec::new();
    loop {
        let mut head = [0u8; HEADER_LEN];
        // Requests finish within the node's timeouts (seconds), far
        // below the idle timeout: an answer still on its way is not lost.
        match timeout(config.idle_timeout, read.read_u8()).await {
            Ok(Ok(first)) => head[0] = first,
            Ok(Err(_)) => break,
            Err(_) => {
                timed_out(&node, "idle");
                break;
            }
        }
        let started = tokio::time::Instant::now() + config.message_timeout;
        match tokio::time::timeout_at(started, read.read_exact(&mut head[1..])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                timed_out(&node, "header");
                break;
            }
        }
        let (size, kind) = match message::header(head) {
            Ok(h) => h,
            Err(e) => {
                malformed(&node, &e);
                break;
            }
        };
        let mut body = vec![0u8; size as usize - HEADER_LEN];
        match tokio::time::timeout_at(started, read.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                // Truncated: the client went away mid-message.
                malformed(&node, &"truncated message");
                break;
            }
            Err(_) => {
                timed_out(&node, "body");
                break;
            }
        }
        let request = match message::request(kind, &body) {
            Ok(r) => r,
            Err(e) => {
                malformed(&node, &e);
                break;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        // A GET reads after the PUTs sent before it on this connection
        // (a client that stores then reads sees its write); otherwise
        // requests run at once and answers go out as they are ready.
        puts.retain(|done| !*done.borrow());
        let (earlier, finished) = match request {
            Request::Put { .. } => {
                let (tx, rx) = watch::channel(false);
                puts.push(rx);
                (Vec::new(), Some(tx))
            }
            Request::Get { .. } => (puts.clone(), None),
        };
        let (node, answers) = (node.clone(), answers.clone());
        tokio::spawn(async move {
            for mut put in earlier {
                let _ = put.wait_for(|done| *done).await;
            }
            if let Some(answer) = serve_one(&node, request).await {
                let _ = answers.send(answer).await;
            }
            if let Some(tx) = finished {
                let _ = tx.send(true);
            }
            drop(permit);
        });
    }
    // Answers of requests still running go out before the writer ends.
    drop(answers);
    let _ = writer.await;
}

fn timed_out(node: &Node, waiting_for: &str) {
    node.wire_stats()
        .client_timeouts
        .fetch_add(1, Ordering::Relaxed);
    debug!(waiting_for, "DHT API connection timed out");
}

fn malformed(node: &Node, why: &dyn std::fmt::Display) {
    node.wire_stats()
        .dht_api_malformed
        .fetch_add(1, Ordering::Relaxed);
    debug!(%why, "DHT API connection closed");
}

/// Serves one request; the answer to send, if any.
async fn serve_one(node: &Node, request: Request) -> Option<Vec<u8>> {
    match request {
        Request::Put {
            ttl, key, value, ..
        } => {
            let expiry = match ttl {
                0 => Expiry::Never,
                s => Expiry::After(Duration::from_secs(s as u64)),
            };
            let options = PutOptions {
                expiry,
                ..PutOptions::default()
            };
            if let Err(e) = node.put_with(key.to_vec(), value, options).await {
                // The API has no answer to a PUT, failed or not.
                debug!(error = %e, "DHT PUT failed");
            }
            None
        }
        Request::Get { key } => {
            let found = node.get(key.to_vec()).await;
            let value = match &found {
                Ok(Some(v)) => Some(v.value.as_slice()),
                _ => None,
            };
            Some(message::answer(&key, value))
        }
    }
}
