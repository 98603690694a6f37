//! counter — the demo service for `chordal gateway` (see
//! `chordal_examples::counter` and docs/gateway.md).
//!
//! ```sh
//! chordal node --listen 127.0.0.1:7001 --api 127.0.0.1:8001 --service http://127.0.0.1:9001
//! cargo run -p chordal-examples --bin counter -- --listen 127.0.0.1:9001 --node 127.0.0.1:8001
//! ```
//! Prints `{"service": "ip:port"}` once serving.

use anyhow::{Context, Result};
use chordal_examples::counter::{App, router};
use clap::Parser;
use std::net::SocketAddr;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "counter", about = "Demo service for chordal gateway")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// HTTP API address of the Chordal node beside this instance.
    #[arg(long, default_value = "127.0.0.1:8000")]
    node: SocketAddr,
    /// Name reported in `served_by` (default: the listen address).
    #[arg(long)]
    name: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let app = App::new(args.node, args.name.unwrap_or_else(|| addr.to_string()));
    println!("{}", serde_json::json!({"service": addr.to_string()}));
    axum::serve(listener, router(app)).await?;
    Ok(())
}
