//! `chordal gateway`: the highly available front end (see
//! `chordal-gateway`). Prints `{"gateway": "ip:port"}` once serving.

use anyhow::{Context, Result};
use chordal_gateway::{ClientKey, Gateway, GatewayConfig};
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Args, Clone, Debug)]
pub struct GatewayArgs {
    /// HTTP address clients connect to (port 0 picks a free port).
    #[arg(long, env = "CHORDAL_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Peer addresses of ring members, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "CHORDAL_JOIN", value_delimiter = ',', required = true)]
    join: Vec<String>,
    /// Where a request names its client: header:NAME, cookie:NAME or
    /// path:N (the N-th path segment).
    #[arg(long, env = "CHORDAL_CLIENT_KEY", default_value = "header:X-Client-Id")]
    client_key: ClientKey,
    /// Service instances tried per request (the owner's and the next
    /// replica holders'); match the ring's --replicas.
    #[arg(long, env = "CHORDAL_REPLICAS", default_value_t = 3)]
    replicas: usize,
    /// A service not answering within this many ms counts as failed.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Bounded loads: keep every node under C times the mean number of
    /// clients (C > 1, e.g. 1.25); clients then may be served beside a
    /// node that does not own their key.
    #[arg(long)]
    bounded_load: Option<f64>,
    /// Cluster name of the ring.
    #[arg(long, env = "CHORDAL_CLUSTER", default_value = "chordal")]
    cluster: String,
    /// Mutual TLS to the ring with the client certificate in DIR
    /// (`chordal ca issue --role client --out DIR`).
    #[arg(long, env = "CHORDAL_TLS_DIR")]
    tls_dir: Option<std::path::PathBuf>,
    /// CA certificates (PEM) that https:// services must chain to
    /// (default: the host's trusted roots).
    #[arg(long, env = "CHORDAL_CACERT")]
    cacert: Option<std::path::PathBuf>,
}

pub async fn run(args: GatewayArgs) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut config = GatewayConfig::new(args.join.clone(), args.client_key);
    config.cluster = args.cluster;
    config.replicas = args.replicas.max(1);
    config.request_timeout = Duration::from_millis(args.request_timeout_ms);
    config.bounded_load = args.bounded_load;
    config.tls_dir = args.tls_dir;
    config.service_ca = args.cacert;
    let gateway = Gateway::start(config)
        .await
        .with_context(|| format!("reaching the ring through {}", args.join.join(",")))?;
    println!("{}", serde_json::json!({"gateway": addr.to_string()}));
    chordal_gateway::serve(listener, gateway, crate::member::shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}
