//! TLS configurations for mutual authentication on the peer protocol:
//! both sides present a certificate signed by the cluster CA, TLS 1.3
//! only, ring as the crypto provider. After the handshake,
//! [`peer_identity`] says who the other side is — its node id and role,
//! read from its certificate, never from what it claims.

use crate::{CA_CERT, NODE_CERT, NODE_KEY, Role, TlsError, expires_at, node_id, role_of};
use chordal_core::Id;
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// The name every member certificate carries and every connection asks
/// for: peers are reached by address, and trusted for their CA and id, not
/// for a host name.
pub const PEER_NAME: &str = "chordal";

/// Who the other side of a verified connection is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerIdentity {
    /// The node id its certificate gives (SHA-1 of its public key info).
    pub id: Id,
    /// What its certificate allows.
    pub role: Role,
    /// When its certificate expires: a connection is closed then (TLS
    /// checks validity only at the handshake).
    pub expires: std::time::SystemTime,
}

impl PeerIdentity {
    /// The identity a certificate (DER) gives.
    pub fn of(cert_der: &[u8]) -> Result<PeerIdentity, TlsError> {
        Ok(PeerIdentity {
            id: node_id(cert_der)?,
            role: role_of(cert_der)?,
            expires: expires_at(cert_der)?,
        })
    }
}

/// A node's or a client's TLS material, loaded from a directory written
/// by `chordal ca issue` (`ca.crt`, `node.crt`, `node.key`). `ca.crt` may
/// hold several CA certificates (all are trusted): how a ring moves to a
/// new CA without a restart of every node at once.
#[derive(Debug)]
pub struct TlsFiles {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: PeerIdentity,
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::BadCertificate(format!("{}: {e}", path.display()))
}

impl TlsFiles {
    /// Loads `dir/ca.crt`, `dir/node.crt` and `dir/node.key`.
    pub fn load(dir: &Path) -> Result<TlsFiles, TlsError> {
        let ca_path = dir.join(CA_CERT);
        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca_path)
            .map_err(|e| load_error(&ca_path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| load_error(&ca_path, e))?;
        if ca.is_empty() {
            return Err(load_error(&ca_path, "no certificate"));
        }
        let cert_path = dir.join(NODE_CERT);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .map_err(|e| load_error(&cert_path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| load_error(&cert_path, e))?;
        let first = chain
            .first()
            .ok_or_else(|| load_error(&cert_path, "no certificate"))?;
        let identity = PeerIdentity::of(first)?;
        let key_path = dir.join(NODE_KEY);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| load_error(&key_path, e))?;
        Ok(TlsFiles {
            ca,
            chain,
            key,
            identity,
        })
    }

    /// The id and role our own certificate gives us.
    pub fn identity(&self) -> PeerIdentity {
        self.identity
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::Tls(e.to_string()))?;
        }
        Ok(Arc::new(roots))
    }

    /// For accepting connections: we present our certificate and demand
    /// one signed by the cluster CA (a member's or a client's).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| TlsError::Tls(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Tls(e.to_string()))?;
        // No session resumption: a resumed session skips the certificate
        // check, so a peer whose certificate expired (or was not renewed)
        // could come back on an old ticket. Peer connections are pooled;
        // a full handshake per connection costs little.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }

    /// For connecting: we demand a member's certificate signed by the
    /// cluster CA (valid for [`PEER_NAME`]) and present ours.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| TlsError::Tls(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Tls(e.to_string()))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Tls(e.to_string()))?;
        // See `server_config`: every connection checks the certificates.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}

impl TlsFiles {
    /// For the HTTPS API (`--api-tls`): we present our certificate (its
    /// subject alternative names are the host names and addresses clients
    /// may use) and ask for none — the API authenticates with tokens.
    /// TLS 1.2 and 1.3; ALPN offers HTTP/1.1 only, the protocol the API
    /// serves (a client that would pick HTTP/2 falls back to it).
    pub fn api_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// For HTTPS clients (the CLI's `--cacert`, the gateway's `https`
/// services): trusts the certificates in the PEM file `ca` (the cluster's
/// `ca.crt`, or any CA) and nothing else. No client certificate.
pub fn https_client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| load_error(ca, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| load_error(ca, e))?;
    if certs.is_empty() {
        return Err(load_error(ca, "no certificate"));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| load_error(ca, e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name a connection asks for ([`PEER_NAME`]).
pub fn peer_name() -> ServerName<'static> {
    ServerName::try_from(PEER_NAME).expect("a valid DNS name")
}

/// Who the other side is, from the certificates a finished handshake
/// verified (`peer_certificates()` of the connection).
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Result<PeerIdentity, TlsError> {
    let first = certs
        .and_then(|c| c.first())
        .ok_or_else(|| TlsError::BadCertificate("the peer presented no certificate".into()))?;
    PeerIdentity::of(first)
}
