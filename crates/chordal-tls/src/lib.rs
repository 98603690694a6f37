//! # chordal-tls: the cluster's certificates
//!
//! A ring run on a real network trusts one **cluster CA**: [`init`] makes
//! it, [`issue`] signs a member's or a client's certificate with it
//! (`chordal ca init`, `chordal ca issue`). Two facts come from a
//! certificate, never from what a peer claims:
//!
//! - **The node id** is SHA-1 of the certificate's SubjectPublicKeyInfo
//!   (DER), [`node_id`]: a node cannot choose its place on the ring (the
//!   placement attack), because it cannot choose a key pair whose hash
//!   lands where it wants without trying ~2^k keys per k bits of aim.
//! - **The role**, [`role_of`], from the extended key usage: a
//!   [`Role::Member`] certificate may serve TLS (server auth) and connect
//!   (client auth) — it joins and carries ring and replica traffic; a
//!   [`Role::Client`] certificate may only connect — store and messaging
//!   operations, nothing that changes the ring.
//!
//! Private keys are written once, to files only their owner can read
//! (0600), and never printed.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let ca = dir.path().join("ca");
//! chordal_tls::init(&ca).unwrap();
//! let issued = chordal_tls::issue(&ca, &dir.path().join("n1"), chordal_tls::Role::Member, &["127.0.0.1".into()]).unwrap();
//! let cert = std::fs::read(dir.path().join("n1").join(chordal_tls::NODE_CERT)).unwrap();
//! let der = chordal_tls::pem_to_der(&cert).unwrap();
//! assert_eq!(chordal_tls::node_id(&der).unwrap(), issued.id);
//! ```

#![warn(missing_docs)]

mod ca;
mod config;
mod files;
mod identity;

pub use ca::{
    CA_CERT, CA_KEY, CERT_DAYS, CaFiles, IssueOptions, Issued, NODE_CERT, NODE_KEY, init, issue,
    issue_with,
};
pub use config::{
    PEER_NAME, PeerIdentity, TlsFiles, https_client_config, peer_identity, peer_name,
};
pub use identity::{Role, expires_at, node_id, pem_to_der, role_of};

use std::path::PathBuf;

/// Makes ring the process's default rustls crypto provider; later calls
/// (and a provider already installed) change nothing.
///
/// Call it first thing in a process that builds `reqwest` clients: the
/// workspace's reqwest speaks rustls without a built-in provider (its
/// built-in one would be aws-lc, which the project avoids), and a client
/// built with no provider installed panics. The `chordal` binary, the
/// examples and the tests that use reqwest call it.
pub fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a certificate could not be made, read or trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// `init` found a CA already there: a CA is never overwritten (every
    /// certificate it signed would stop being trusted).
    #[error("{0} already exists: a cluster CA is never overwritten")]
    Exists(PathBuf),
    /// Generating or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// The bytes are not a certificate we can use.
    #[error("not a usable certificate: {0}")]
    BadCertificate(String),
    /// A TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// A subject alternative name that is neither a DNS name nor an IP
    /// address.
    #[error("bad subject alternative name {0:?}")]
    BadName(String),
}
