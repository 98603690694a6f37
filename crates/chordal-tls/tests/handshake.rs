//! Mutual TLS between cluster certificates over an in-memory pipe: members
//! and clients of one CA get through and learn each other's id and role
//! from the certificates; a foreign CA's certificate, or a client's
//! certificate trying to serve, is refused at the handshake.

use chordal_tls::{PeerIdentity, Role, TlsFiles, issue, peer_identity, peer_name};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn files(ca: &Path, out: &Path, role: Role) -> TlsFiles {
    issue(ca, out, role, &[]).unwrap();
    TlsFiles::load(out).unwrap()
}

/// Runs a handshake, `server` accepting and `client` connecting, and one
/// exchange of bytes. Each side's view of the other, or its error.
async fn connect(
    server: &TlsFiles,
    client: &TlsFiles,
) -> (Result<PeerIdentity, String>, Result<PeerIdentity, String>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server.server_config().unwrap());
    let connector = TlsConnector::from(client.client_config().unwrap());
    let serve = async move {
        let mut tls = acceptor.accept(a).await.map_err(|e| e.to_string())?;
        let who = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong!").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(who)
    };
    let dial = async move {
        let mut tls = connector
            .connect(peer_name(), b)
            .await
            .map_err(|e| e.to_string())?;
        let who = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        tls.write_all(b"ping!").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"pong!");
        Ok::<_, String>(who)
    };
    tokio::join!(serve, dial)
}

#[tokio::test]
async fn members_and_clients_of_one_ca_learn_each_others_id_and_role() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    chordal_tls::init(&ca).unwrap();
    let a = files(&ca, &tmp.path().join("a"), Role::Member);
    let b = files(&ca, &tmp.path().join("b"), Role::Member);
    let c = files(&ca, &tmp.path().join("c"), Role::Client);
    assert_eq!(a.identity().role, Role::Member);
    assert_eq!(c.identity().role, Role::Client);

    let (server_sees, client_sees) = connect(&a, &b).await;
    assert_eq!(server_sees.unwrap(), b.identity());
    assert_eq!(client_sees.unwrap(), a.identity());

    // A client connects to a member: the member knows it is a client.
    let (server_sees, client_sees) = connect(&a, &c).await;
    assert_eq!(
        server_sees.unwrap(),
        PeerIdentity {
            id: c.identity().id,
            role: Role::Client,
            expires: c.identity().expires,
        }
    );
    assert_eq!(client_sees.unwrap(), a.identity());
}

#[tokio::test]
async fn foreign_certificates_and_clients_posing_as_servers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    chordal_tls::init(&ours).unwrap();
    chordal_tls::init(&theirs).unwrap();
    let member = files(&ours, &tmp.path().join("m"), Role::Member);
    let foreign = files(&theirs, &tmp.path().join("f"), Role::Member);
    let client = files(&ours, &tmp.path().join("c"), Role::Client);

    // A foreign member connecting, and one accepting: refused both ways.
    let (server, client_side) = connect(&member, &foreign).await;
    assert!(
        server.is_err() && client_side.is_err(),
        "{server:?} {client_side:?}"
    );
    let (server, client_side) = connect(&foreign, &member).await;
    assert!(
        server.is_err() && client_side.is_err(),
        "{server:?} {client_side:?}"
    );
    // A client's certificate cannot serve: members refuse to talk to it
    // as a server.
    let (server, client_side) = connect(&client, &member).await;
    assert!(
        client_side.is_err(),
        "a client certificate served: {server:?}"
    );
}

#[tokio::test]
async fn a_ca_bundle_trusts_both_cas_while_a_ring_moves_to_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    chordal_tls::init(&old).unwrap();
    chordal_tls::init(&new).unwrap();
    let bundle = [
        std::fs::read(old.join(chordal_tls::CA_CERT)).unwrap(),
        std::fs::read(new.join(chordal_tls::CA_CERT)).unwrap(),
    ]
    .concat();
    // A member still on the old CA and one already on the new, both
    // trusting the bundle: they talk.
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    issue(&old, &a_dir, Role::Member, &[]).unwrap();
    issue(&new, &b_dir, Role::Member, &[]).unwrap();
    for dir in [&a_dir, &b_dir] {
        std::fs::write(dir.join(chordal_tls::CA_CERT), &bundle).unwrap();
    }
    let (a, b) = (
        TlsFiles::load(&a_dir).unwrap(),
        TlsFiles::load(&b_dir).unwrap(),
    );
    let (server, client) = connect(&a, &b).await;
    assert_eq!(server.unwrap(), b.identity());
    assert_eq!(client.unwrap(), a.identity());
    // A member that trusts only the new CA refuses the old one's.
    let c = files(&new, &tmp.path().join("c"), Role::Member);
    let (server, _) = connect(&c, &a).await;
    assert!(server.is_err(), "the old CA was trusted without the bundle");
    // Moving `a` to the new CA with --renew: same key and id, the bundle
    // kept, and now even the new-CA-only member accepts it.
    let mut renew = chordal_tls::IssueOptions::days(30);
    renew.renew = true;
    let moved = chordal_tls::issue_with(&new, &a_dir, Role::Member, &[], &renew).unwrap();
    assert_eq!(moved.id, a.identity().id);
    assert_eq!(
        std::fs::read(a_dir.join(chordal_tls::CA_CERT)).unwrap(),
        bundle
    );
    let a = TlsFiles::load(&a_dir).unwrap();
    let (server, client) = connect(&c, &a).await;
    assert_eq!(server.unwrap().id, a.identity().id);
    assert!(client.is_ok());
}

#[tokio::test]
async fn every_peer_connection_checks_certificates_afresh() {
    // A resumed TLS session skips the certificate check: a peer whose
    // certificate expired could come back on an old ticket. Both
    // configurations refuse resumption, so a second connection between the
    // same two members is a full handshake again.
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    chordal_tls::init(&ca).unwrap();
    let a = files(&ca, &tmp.path().join("a"), Role::Member);
    let b = files(&ca, &tmp.path().join("b"), Role::Member);
    let acceptor = TlsAcceptor::from(a.server_config().unwrap());
    let connector = TlsConnector::from(b.client_config().unwrap());
    for _ in 0..2 {
        let (x, y) = tokio::io::duplex(64 * 1024);
        let acceptor = acceptor.clone();
        let serve = tokio::spawn(async move {
            let mut tls = acceptor.accept(x).await.unwrap();
            let mut buf = [0u8; 1];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(b"!").await.unwrap();
            tls.flush().await.unwrap();
            tls.get_ref().1.handshake_kind()
        });
        let mut tls = connector.connect(peer_name(), y).await.unwrap();
        tls.write_all(b"?").await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = [0u8; 1];
        tls.read_exact(&mut buf).await.unwrap();
        let kind = tls.get_ref().1.handshake_kind();
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
        assert_eq!(serve.await.unwrap(), Some(rustls::HandshakeKind::Full));
    }
}
