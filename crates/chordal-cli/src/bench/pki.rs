//! `--tls` for the benchmarks: a throw-away cluster CA with a member
//! certificate per node and one client certificate, and the counters
//! that show connection reuse (handshakes) and a handshake's cost.

use anyhow::{Context, Result};
use chordal_node::Node;
use chordal_tls::Role;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Certificates in a temporary directory, removed when dropped.
pub struct BenchPki {
    dir: tempfile::TempDir,
}

impl BenchPki {
    /// A new CA.
    pub fn new() -> Result<BenchPki> {
        let dir = tempfile::tempdir()?;
        chordal_tls::init(&dir.path().join("ca")).context("making a CA")?;
        Ok(BenchPki { dir })
    }

    fn issue(&self, name: &str, role: Role) -> Result<PathBuf> {
        let out = self.dir.path().join(name);
        chordal_tls::issue(
            &self.dir.path().join("ca"),
            &out,
            role,
            &["127.0.0.1".into()],
        )
        .with_context(|| format!("issuing {name}"))?;
        Ok(out)
    }

    /// Member certificates for `n` nodes.
    pub fn members(&self, n: usize) -> Result<Vec<PathBuf>> {
        (0..n)
            .map(|i| self.issue(&format!("member-{i}"), Role::Member))
            .collect()
    }

    /// A client certificate.
    pub fn client(&self) -> Result<PathBuf> {
        self.issue("client", Role::Client)
    }

    /// The CA certificate (for HTTPS clients).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca").join(chordal_tls::CA_CERT)
    }
}

/// Connections established so far in the ring, each counted once (both
/// ends count it): with TLS, the handshakes done.
pub fn handshakes(nodes: &[Node]) -> u64 {
    let ends: u64 = nodes
        .iter()
        .map(|n| {
            n.wire_stats()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    ends / 2
}

/// Median and 99th percentile of `rounds` fresh handshakes (TCP connect,
/// TLS if `tls_dir`, Hello) with the node at `addr`.
pub async fn handshake_time(
    addr: SocketAddr,
    tls_dir: Option<&std::path::Path>,
    rounds: usize,
) -> Result<(Duration, Duration)> {
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        took.push(
            chordal_node::probe(addr, "chordal", tls_dir, Duration::from_secs(5))
                .await
                .context("handshake probe")?,
        );
    }
    took.sort();
    Ok((
        super::stats::percentile(&took, 0.5),
        super::stats::percentile(&took, 0.99),
    ))
}
