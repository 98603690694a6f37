//! The cluster CA end to end: what `init` and `issue` write, the id and the
//! role an issued certificate gives, and that it chains to its CA only.

use chordal_core::Id;
use chordal_tls::{
    CA_CERT, CA_KEY, NODE_CERT, NODE_KEY, Role, TlsError, node_id, pem_to_der, role_of,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn cert_der(dir: &Path) -> Vec<u8> {
    pem_to_der(&std::fs::read(dir.join(NODE_CERT)).unwrap()).unwrap()
}

/// Does `cert` carry a valid signature by the CA certificate in `ca_dir`?
fn signed_by(cert: &[u8], ca_dir: &Path) -> bool {
    let ca = pem_to_der(&std::fs::read(ca_dir.join(CA_CERT)).unwrap()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(cert).unwrap();
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

#[test]
fn issued_certificates_give_the_id_of_their_key_and_their_role() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let files = chordal_tls::init(&ca).unwrap();
    assert_eq!(mode(&files.key), 0o600, "the CA key is its owner's only");
    assert_eq!(mode(&files.cert), 0o644);

    let member = chordal_tls::issue(
        &ca,
        &tmp.path().join("m"),
        Role::Member,
        &["127.0.0.1".into(), "node-1.example".into()],
    )
    .unwrap();
    let client = chordal_tls::issue(&ca, &tmp.path().join("c"), Role::Client, &[]).unwrap();
    for (issued, role) in [(&member, Role::Member), (&client, Role::Client)] {
        let dir = &issued.dir;
        assert_eq!(mode(&dir.join(NODE_KEY)), 0o600);
        assert_eq!(
            std::fs::read(dir.join(CA_CERT)).unwrap(),
            std::fs::read(&files.cert).unwrap()
        );
        let der = cert_der(dir);
        // The id from the certificate is SHA-1 of the public key info the
        // private key gives: computed the other way round here.
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join(NODE_KEY)).unwrap())
            .unwrap();
        assert_eq!(
            node_id(&der).unwrap(),
            Id::hash(&rcgen::PublicKeyData::subject_public_key_info(&key))
        );
        assert_eq!(
            issued.id,
            Id::hash(&rcgen::PublicKeyData::subject_public_key_info(&key))
        );
        assert_eq!(role_of(&der).unwrap(), role);
        assert_eq!(issued.role, role);
        assert!(signed_by(&der, &ca), "chains to its CA");
    }
    assert_ne!(member.id, client.id, "a new key pair each time");
}

#[test]
fn a_certificate_from_another_ca_does_not_chain_to_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    chordal_tls::init(&ours).unwrap();
    chordal_tls::init(&theirs).unwrap();
    let foreign = chordal_tls::issue(&theirs, &tmp.path().join("f"), Role::Member, &[]).unwrap();
    let der = cert_der(&foreign.dir);
    assert!(signed_by(&der, &theirs));
    assert!(!signed_by(&der, &ours));
}

#[test]
fn a_ca_is_never_overwritten_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    chordal_tls::init(&ca).unwrap();
    let key = std::fs::read(ca.join(CA_KEY)).unwrap();
    assert!(matches!(chordal_tls::init(&ca), Err(TlsError::Exists(_))));
    assert_eq!(
        std::fs::read(ca.join(CA_KEY)).unwrap(),
        key,
        "the key is untouched"
    );
    let out = tmp.path().join("n");
    let bad = chordal_tls::issue(&ca, &out, Role::Member, &["not a name!".into()]);
    assert!(matches!(bad, Err(TlsError::BadName(_))), "{bad:?}");
    assert!(
        !out.join(NODE_KEY).exists(),
        "nothing written for a refused request"
    );
    // Without a CA there is nothing to sign with.
    let none = chordal_tls::issue(&tmp.path().join("nowhere"), &out, Role::Client, &[]);
    assert!(matches!(none, Err(TlsError::Io { .. })));
}

#[test]
fn garbage_is_not_a_certificate() {
    assert!(matches!(
        node_id(b"\x30\x03\x02\x01\x00"),
        Err(TlsError::BadCertificate(_))
    ));
    assert!(matches!(
        role_of(&[0xff; 64]),
        Err(TlsError::BadCertificate(_))
    ));
    assert!(pem_to_der(b"-----BEGIN CERTIFICATE-----\nnot base64\n").is_err());
}
