//! The cluster CA: made once, then signing members' and clients'
//! certificates.

use crate::files::{create_dir, read, write};
use crate::{Role, TlsError, node_id};
use chordal_core::Id;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use time::{Duration, OffsetDateTime};

/// The CA's certificate in a CA directory, and beside every issued one.
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key (0600).
pub const CA_KEY: &str = "ca.key";
/// An issued certificate.
pub const NODE_CERT: &str = "node.crt";
/// An issued certificate's private key (0600).
pub const NODE_KEY: &str = "node.key";

/// How long the CA is valid.
const CA_DAYS: i64 = 3650;
/// How long an issued certificate is valid by default.
pub const CERT_DAYS: u32 = 365;
/// Validity starts this far back, for clocks a little behind.
const SKEW: Duration = Duration::hours(1);

/// Where `init` put the CA.
#[derive(Clone, Debug)]
pub struct CaFiles {
    /// The CA certificate (public; give it to every node and client).
    pub cert: PathBuf,
    /// The CA key (0600; keep it off the nodes).
    pub key: PathBuf,
}

/// How [`issue_with`] makes a certificate.
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// Valid from (an hour back from now by default, for clocks a little
    /// behind).
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
    /// Sign the key already in `out/node.key` instead of a new one: the
    /// renewed certificate gives the same node id (a short-lived
    /// certificate is renewed without moving the node on the ring). An
    /// `out/ca.crt` that already contains the signing CA is kept (it may
    /// be a bundle of several CAs).
    pub renew: bool,
}

impl IssueOptions {
    /// Valid from now for `days` days, a new key.
    pub fn days(days: u32) -> IssueOptions {
        let now = SystemTime::now();
        IssueOptions {
            not_before: now - std::time::Duration::from_secs(SKEW.whole_seconds() as u64),
            not_after: now + std::time::Duration::from_secs(u64::from(days) * 86_400),
            renew: false,
        }
    }
}

/// What `issue` made.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The node id the certificate gives (SHA-1 of its public key info).
    pub id: Id,
    /// The role it gives.
    pub role: Role,
    /// The directory holding `ca.crt`, `node.crt` and `node.key`.
    pub dir: PathBuf,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "chordal");
    name.push(DnType::CommonName, "chordal cluster CA");
    params.distinguished_name = name;
    // It signs end certificates only, no intermediate CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - SKEW;
    params.not_after = now + Duration::days(CA_DAYS);
    params
}

/// Makes a new cluster CA in `dir` (created if missing): `ca.crt` and
/// `ca.key` (0600). Refuses if either is there already.
pub fn init(dir: &Path) -> Result<CaFiles, TlsError> {
    create_dir(dir)?;
    let files = CaFiles {
        cert: dir.join(CA_CERT),
        key: dir.join(CA_KEY),
    };
    for f in [&files.cert, &files.key] {
        if f.exists() {
            return Err(TlsError::Exists(f.clone()));
        }
    }
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(files)
}

/// Signs a new key pair's certificate with the CA in `ca_dir`, for `role`,
/// valid for the DNS names and IP addresses in `names` (may be empty: peers
/// check the CA and the id, not host names). Writes `out/ca.crt`,
/// `out/node.crt` and `out/node.key` (0600), replacing what was there.
pub fn issue(ca_dir: &Path, out: &Path, role: Role, names: &[String]) -> Result<Issued, TlsError> {
    issue_with(ca_dir, out, role, names, &IssueOptions::days(CERT_DAYS))
}

/// [`issue`] with a chosen validity, or renewing the key already in `out`.
pub fn issue_with(
    ca_dir: &Path,
    out: &Path,
    role: Role,
    names: &[String],
    options: &IssueOptions,
) -> Result<Issued, TlsError> {
    let ca_cert = read(&ca_dir.join(CA_CERT))?;
    let ca_key = read(&ca_dir.join(CA_KEY))?;
    let ca_cert = String::from_utf8(ca_cert)
        .map_err(|_| TlsError::BadCertificate(format!("{CA_CERT} is not PEM")))?;
    let ca_key = String::from_utf8(ca_key)
        .map_err(|_| TlsError::BadCertificate(format!("{CA_KEY} is not PEM")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, KeyPair::from_pem(&ca_key)?)?;

    for n in names {
        let dns_ok = !n.is_empty()
            && n.len() <= 253
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*'));
        if n.parse::<std::net::IpAddr>().is_err() && !dns_ok {
            return Err(TlsError::BadName(n.clone()));
        }
    }
    // Members serve the peer protocol under the one name every connection
    // asks for (`PEER_NAME`), besides the names given.
    let mut all = names.to_vec();
    if role == Role::Member && !all.iter().any(|n| n == crate::PEER_NAME) {
        all.push(crate::PEER_NAME.to_string());
    }
    let mut params = CertificateParams::new(all).map_err(|_| TlsError::BadName(names.join(",")))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "chordal");
    name.push(DnType::CommonName, format!("chordal {role}"));
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match role {
        Role::Member => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    params.not_before = OffsetDateTime::from(options.not_before);
    params.not_after = OffsetDateTime::from(options.not_after);
    let key = if options.renew {
        let pem = read(&out.join(NODE_KEY))?;
        let pem = String::from_utf8(pem)
            .map_err(|_| TlsError::BadCertificate(format!("{NODE_KEY} is not PEM")))?;
        KeyPair::from_pem(&pem)?
    } else {
        KeyPair::generate()?
    };
    let cert = params.signed_by(&key, &issuer)?;
    let id = node_id(cert.der())?;

    create_dir(out)?;
    write(&out.join(NODE_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write(&out.join(NODE_CERT), cert.pem().as_bytes(), 0o644)?;
    // A renewal keeps a CA bundle that already trusts this CA (a ring
    // moving to a new CA trusts both until the move is done).
    let bundle_kept = options.renew
        && std::fs::read_to_string(out.join(CA_CERT))
            .is_ok_and(|have| have.contains(ca_cert.trim()));
    if !bundle_kept {
        write(&out.join(CA_CERT), ca_cert.as_bytes(), 0o644)?;
    }
    Ok(Issued {
        id,
        role,
        dir: out.to_path_buf(),
    })
}
