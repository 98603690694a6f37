//! # chordal-gateway: highly available request routing (the highly available request-processing model)
//!
//! An unmodified service runs beside every ring node (`chordal node
//! --service URL`). The gateway hashes each request's client name
//! ([`ClientKey`]: a header, a cookie or a path segment) to a ring id and
//! forwards the request to the service beside the node owning that id —
//! the same node for every request of that client, while the ring does
//! not change. If that service cannot be reached or does not answer in
//! time, the gateway marks it suspect and sends the request to the
//! service beside the next replica holder (the successor that takes over
//! the node's keys, hence the client's state kept in Chordal's store), so
//! a client sees at most a retried request while fewer than `R` nodes are
//! down. Responses carry `X-Chordal-Node: <serving node id>`; the
//! service's own answers, errors included, pass through unchanged.
//!
//! The gateway is not a ring member: it walks the ring with the native
//! [`chordal_node::Client`] (each node's Hello names its service) and
//! refreshes that view every second and after a failure. Any number of
//! gateways can run; they agree on routing because they read the same
//! ring. Put several behind one DNS name (several A records, or SRV
//! records with priorities and weights) so that none is a single point of
//! failure — see `docs/gateway.md`.
//!
//! Trust: with `tls_dir` (a `client` certificate of the cluster CA) the
//! gateway speaks mutual TLS to the ring; services may be `https://` URLs,
//! checked against `service_ca` (a PEM file) or, without one, the host's
//! trusted roots.
//!
//! Retried requests: a request whose body is small enough to keep
//! (`retry_body_limit`, 1 MiB; bodies without a length are streamed and
//! not retried) may reach a second instance after the first failed — or
//! after the first processed it but did not answer in time. Services see
//! `X-Chordal-Attempt: 2` then; make such requests idempotent (the demo
//! service keys them by `X-Request-Id`).

#![warn(missing_docs)]

mod key;
mod load;
mod proxy;
mod view;

pub use key::{BadClientKey, ClientKey};
pub use load::Assignments;
pub use proxy::ATTEMPT_HEADER;
pub use view::{Member, RingView};

use axum::Router;
use axum::body::Body;
use chordal_http::serve::HttpTimeouts;
use chordal_node::accept::{ConnLimits, Gate};
use chordal_node::{Client, ClientConfig, Error};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The TLS configuration for `https` services: roots from `ca`, or the
/// host's.
fn service_tls(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, Error> {
    let tls_error = |e: String| Error::Tls(e);
    if let Some(ca) = ca {
        let config = chordal_tls::https_client_config(ca).map_err(|e| tls_error(e.to_string()))?;
        return Ok((*config).clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates leave fewer roots, not an error:
    // plain-http services still work, and https ones fail with a clear
    // certificate error.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The response header naming the node whose service answered.
pub const NODE_HEADER: &str = "x-chordal-node";

/// How a gateway reaches the ring and treats requests:
/// [`GatewayConfig::new`], then change the fields that differ.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Peer addresses of ring members (`host:port`).
    pub seeds: Vec<String>,
    /// The ring's cluster name.
    pub cluster: String,
    /// Where each request names its client.
    pub client_key: ClientKey,
    /// Instances tried per request: the owner's and the next `replicas -
    /// 1` holders' (match the ring's `R`).
    pub replicas: usize,
    /// A service that has not started answering within this time counts
    /// as failed (the request goes to the next instance).
    pub request_timeout: Duration,
    /// Connecting to a service instance gives up after this long.
    pub connect_timeout: Duration,
    /// Request bodies up to this size are kept, so they can be sent again
    /// to the next instance.
    pub retry_body_limit: usize,
    /// A failed instance is tried last for this long.
    pub suspect_for: Duration,
    /// How often the ring view is walked again.
    pub refresh_every: Duration,
    /// Bounded loads: `Some(c)` (c > 1) keeps every process under `c`
    /// times the mean number of clients this gateway placed, at the cost
    /// of sending some clients to a node that does not own their key.
    pub bounded_load: Option<f64>,
    /// Requests forwarded at once; more get `503 overloaded` at once.
    pub max_in_flight: usize,
    /// Mutual TLS to the ring with the certificate in this directory
    /// (`chordal ca issue --role client`); `None`: plain TCP.
    pub tls_dir: Option<std::path::PathBuf>,
    /// CA certificates (PEM) that `https` services must chain to; `None`:
    /// the host's trusted roots.
    pub service_ca: Option<std::path::PathBuf>,
}

impl GatewayConfig {
    /// Defaults for a ring reached through `seeds`, clients named by `key`.
    pub fn new(seeds: Vec<String>, client_key: ClientKey) -> GatewayConfig {
        GatewayConfig {
            seeds,
            cluster: "chordal".into(),
            client_key,
            replicas: 3,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(500),
            retry_body_limit: 1024 * 1024,
            suspect_for: Duration::from_secs(2),
            refresh_every: Duration::from_secs(1),
            bounded_load: None,
            max_in_flight: 4096,
            tls_dir: None,
            service_ca: None,
        }
    }
}

/// A running gateway: its ring view and its pooled HTTP client.
pub struct Gateway {
    pub(crate) config: GatewayConfig,
    pub(crate) view: Arc<RingView>,
    pub(crate) http: HttpClient<HttpsConnector<HttpConnector>, Body>,
    /// Wakes the refresher early (after a failure).
    refresh: Arc<Notify>,
    /// Client placements, with bounded loads on.
    pub(crate) assignments: Option<std::sync::Mutex<Assignments>>,
    /// One permit per request being forwarded.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    /// Connects to the ring and starts refreshing its view.
    pub async fn start(config: GatewayConfig) -> Result<Arc<Gateway>, Error> {
        let mut reach = ClientConfig::new(config.seeds.clone());
        reach.cluster = config.cluster.clone();
        reach.tls_dir = config.tls_dir.clone();
        let client = Client::connect(reach).await?;
        let view = Arc::new(RingView::new(client, config.suspect_for).await?);
        view.spawn_refresher(config.refresh_every);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        // The scheme is ours to choose per service URL.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(service_tls(config.service_ca.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let refresh = Arc::new(Notify::new());
        // Early refreshes after failures, at most one at a time.
        let (weak, wake) = (Arc::downgrade(&view), refresh.clone());
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                let Some(view) = weak.upgrade() else { break };
                let _ = view.refresh().await;
            }
        });
        let assignments = config
            .bounded_load
            .map(|c| std::sync::Mutex::new(Assignments::new(c, Duration::from_secs(600))));
        let in_flight = Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1)));
        Ok(Arc::new(Gateway {
            in_flight,
            config,
            view,
            http,
            refresh,
            assignments,
        }))
    }

    /// The ring as this gateway sees it.
    pub fn view(&self) -> &RingView {
        &self.view
    }

    /// Clients placed per process (with bounded loads on).
    pub fn loads(&self) -> Option<std::collections::HashMap<std::net::SocketAddr, usize>> {
        let a = self.assignments.as_ref()?;
        Some(a.lock().expect("assignments").loads().clone())
    }

    /// Asks for a ring walk now (coalesced with one in progress).
    pub(crate) fn refresh_soon(&self) {
        self.refresh.notify_one();
    }
}

/// The gateway as an axum router: every method and path is forwarded.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new().fallback(proxy::forward).with_state(gateway)
}

/// Client connections the gateway serves at once: in all, and from one
/// address (a host that opens thousands of idle or slow connections takes
/// only its share).
pub const CONN_LIMITS: ConnLimits = ConnLimits {
    max_connections: 4096,
    max_per_source: 256,
};

/// Serves `gateway` on `listener` until `shutdown` completes, with the
/// connection bounds of [`CONN_LIMITS`] and the node API's timeouts (a
/// request's header within 30 s, idle keep-alive connections closed after
/// as long).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    chordal_http::serve::serve_router(
        listener,
        None,
        router(gateway),
        Gate::new(CONN_LIMITS),
        HttpTimeouts::default(),
        Arc::new(|| {}),
        shutdown,
    )
    .await
}
