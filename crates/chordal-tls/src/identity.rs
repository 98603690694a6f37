//! What a certificate says about its holder: the node id and the role.

use crate::TlsError;
use chordal_core::Id;

/// What a certificate's holder may do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A ring member: joins, stabilizes, stores replicas, hands off.
    Member,
    /// A client (the native `Client`, a gateway, an application): store
    /// and messaging operations only.
    Client,
}

impl Role {
    /// `member` or `client`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Client => "client",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "member" => Ok(Role::Member),
            "client" => Ok(Role::Client),
            other => Err(format!("role must be member or client, not {other:?}")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, TlsError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(TlsError::BadCertificate(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

/// The node id a certificate gives its holder: SHA-1 of its
/// SubjectPublicKeyInfo, DER-encoded as in the certificate.
pub fn node_id(cert_der: &[u8]) -> Result<Id, TlsError> {
    let cert = parse(cert_der)?;
    Ok(Id::hash(cert.tbs_certificate.subject_pki.raw))
}

/// When a certificate stops being valid (its `notAfter`).
pub fn expires_at(cert_der: &[u8]) -> Result<std::time::SystemTime, TlsError> {
    let cert = parse(cert_der)?;
    let secs = cert.validity().not_after.timestamp();
    let secs =
        u64::try_from(secs).map_err(|_| TlsError::BadCertificate("expired before 1970".into()))?;
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The role a certificate gives its holder, from its extended key usage:
/// server authentication means a member; client authentication alone, a
/// client. Anything else is refused.
pub fn role_of(cert_der: &[u8]) -> Result<Role, TlsError> {
    let cert = parse(cert_der)?;
    let eku = cert
        .extended_key_usage()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?
        .ok_or_else(|| TlsError::BadCertificate("no extended key usage".into()))?;
    match (eku.value.server_auth, eku.value.client_auth) {
        (true, true) => Ok(Role::Member),
        (false, true) => Ok(Role::Client),
        _ => Err(TlsError::BadCertificate(
            "neither a member's nor a client's key usage".into(),
        )),
    }
}

/// The DER bytes of the first certificate in a PEM file.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, TlsError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    Ok(p.contents)
}
