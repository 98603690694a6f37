//! What every handler shares: the API's settings ([`ApiConfig`]) and the
//! state axum hands each handler ([`AppState`]). At the bottom of the
//! crate: handlers import it, it imports no handler.

use crate::ApiError;
use axum::http::StatusCode;
use chordal_node::Node;

/// API settings: `ApiConfig::default()`, then change what differs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Longest key accepted, in bytes.
    pub max_key: usize,
    /// Most nodes a ring walk visits.
    pub max_ring: usize,
    /// Largest value (or published message) accepted, in bytes.
    pub max_value: usize,
    /// Most streams (`GET /v1/topics/...`, `/v1/watch/...`, `/v1/events`) served at once.
    pub max_streams: usize,
    /// Bearer tokens the API demands (`--api-tokens`); `None`: open.
    pub tokens: Option<std::sync::Arc<crate::auth::Tokens>>,
    /// Serve HTTPS with this configuration (`--api-tls`:
    /// `chordal_tls::TlsFiles::api_server_config`); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Connections served at once, in all and from one address.
    pub limits: chordal_node::accept::ConnLimits,
    /// Handshake, header-read (and keep-alive idle) timeouts.
    pub timeouts: crate::serve::HttpTimeouts,
    /// Cancelled by `POST /v1/admin/leave`: whoever runs the node then
    /// makes it leave and stops its process. `None`: the route answers 501.
    pub leave: Option<tokio_util::sync::CancellationToken>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_key: chordal_core::Config::default().max_key,
            max_ring: 100_000,
            // The same limits as the core's, which checks them too.
            max_value: chordal_core::Config::default().max_value,
            max_streams: 4096,
            tokens: None,
            tls: None,
            limits: chordal_node::accept::ConnLimits {
                max_connections: 4096,
                max_per_source: 256,
            },
            timeouts: crate::serve::HttpTimeouts::default(),
            leave: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub node: Node,
    pub config: ApiConfig,
    /// One permit per stream served (subscriptions, watches, events).
    pub streams: std::sync::Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// A permit for one more stream, held while it lives; 503
    /// `too_many_streams` past `max_streams`.
    pub fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "this node already serves {} streams",
                    self.config.max_streams
                ),
            )
        })
    }
}
