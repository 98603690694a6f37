//! Mutual TLS on the peer protocol, in one process over loopback: a ring
//! of members of one CA forms and serves; clients with a client
//! certificate use it; strangers — another CA, no TLS, a client
//! certificate posing as a member, a member claiming ids its certificate
//! does not give, an expired certificate, a client sending ring traffic,
//! garbage — are kept out, are counted, and change nothing.

use chordal_core::{Envelope, Id, Message, NodeRef, Record, Target, Version};
use chordal_node::KeyValue;
use chordal_node::local::{LocalRing, quick};
use chordal_node::{Client, ClientConfig, Node, StartError};
use chordal_tls::{IssueOptions, Role, TlsFiles};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::*;

async fn members_see(ring: &LocalRing) -> Vec<Id> {
    let mut ids: Vec<Id> = ring.nodes.iter().flat_map(|n| n.ids().to_vec()).collect();
    ids.sort();
    ids
}

/// Every vnode's successor list holds only ring members.
async fn only_members_in_successor_lists(ring: &LocalRing) {
    let members = members_see(ring).await;
    for node in &ring.nodes {
        for v in node.status().await.unwrap().vnodes {
            for s in v.successors {
                assert!(members.contains(&s.id), "a stranger {} got in", s.id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_ring_forms_with_certificate_ids_and_keeps_strangers_out() {
    let pki = Pki::new();
    let (ring, issued) = tls_ring(&pki, 4).await;
    // Ids are the certificates' (SHA-1 of the public key info).
    for (node, id) in ring.nodes.iter().zip(&issued) {
        assert_eq!(node.ids()[0], *id);
    }
    for i in 0..50u32 {
        let key = format!("k{i}").into_bytes();
        let w = ring.nodes[(i % 4) as usize]
            .put(key.clone(), vec![i as u8; 100])
            .await
            .unwrap();
        assert!(w.acked >= 2);
    }
    let seed = ring.nodes[0].addr().to_string();

    // A member of another CA: refused at the TLS handshake.
    let (foreign, _) = pki.issue("other-ca", "foreign", Role::Member);
    let refused = ring_builder(&foreign).join(seed.clone()).start().await;
    assert!(refused.is_err(), "a foreign CA's member joined");
    assert!(counted(&ring.nodes[0], "tls_handshake").await >= 1);

    // A node without TLS: its preamble is not a TLS ClientHello.
    let before = errors(&ring.nodes[0], "tls_handshake").await;
    let plain = quick()
        .join(seed.clone())
        .join_timeout(Duration::from_secs(3))
        .start()
        .await;
    assert!(plain.is_err(), "a plain node joined a TLS ring");
    assert!(errors(&ring.nodes[0], "tls_handshake").await > before);

    // A client certificate cannot start a node at all...
    let (client_dir, _) = pki.issue("ca", "client", Role::Client);
    match ring_builder(&client_dir).join(seed.clone()).start().await {
        Err(StartError::Tls(msg)) => assert!(msg.contains("client certificate"), "{msg}"),
        other => panic!("a client certificate started a node: {:?}", other.err()),
    }
    // ...and posing as a member on the wire is refused.
    let client_id = chordal_tls::TlsFiles::load(&client_dir)
        .unwrap()
        .identity()
        .id;
    let posing = raw_tls(&ring.nodes[0], &client_dir, member_hello(vec![client_id])).await;
    closed_by_node(posing).await;
    assert!(counted(&ring.nodes[0], "tls_client_role").await >= 1);

    // A member claiming an id its certificate does not give (the
    // placement attack: choosing where on the ring to sit).
    let (liar, _) = pki.issue("ca", "liar", Role::Member);
    let chosen = Id::hash(b"just before the key I want");
    let lying = raw_tls(&ring.nodes[1], &liar, member_hello(vec![chosen])).await;
    closed_by_node(lying).await;
    assert!(counted(&ring.nodes[1], "tls_wrong_id").await >= 1);

    // An expired certificate of the right CA.
    let expired_dir = pki.root.join("expired");
    let day = Duration::from_secs(86_400);
    let options = IssueOptions {
        not_before: SystemTime::now() - 3 * day,
        not_after: SystemTime::now() - day,
        renew: false,
    };
    chordal_tls::issue_with(
        &pki.root.join("ca"),
        &expired_dir,
        Role::Member,
        &[],
        &options,
    )
    .unwrap();
    let before = errors(&ring.nodes[0], "tls_handshake").await;
    let expired = ring_builder(&expired_dir).join(seed.clone()).start().await;
    assert!(expired.is_err(), "an expired certificate joined");
    assert!(errors(&ring.nodes[0], "tls_handshake").await > before);

    // Garbage and a stranger's TLS ClientHello on the peer port.
    let mut garbage = TcpStream::connect(ring.nodes[2].addr()).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    garbage.write_all(&vec![0xAB; 10_000]).await.unwrap();
    closed_by_node(garbage).await;
    let stranger = tokio_rustls::TlsConnector::from(Arc::new(
        tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
        .with_no_client_auth(),
    ));
    let tcp = TcpStream::connect(ring.nodes[2].addr()).await.unwrap();
    assert!(
        stranger
            .connect(chordal_tls::peer_name(), tcp)
            .await
            .is_err(),
        "a stranger completed a TLS handshake"
    );

    // The ring still holds exactly its members and serves every key.
    only_members_in_successor_lists(&ring).await;
    for i in 0..50u32 {
        let key = format!("k{i}").into_bytes();
        let got = ring.nodes[((i + 1) % 4) as usize]
            .get(key)
            .await
            .unwrap()
            .expect("acknowledged write readable");
        assert_eq!(got.value, vec![i as u8; 100]);
    }
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_client_certificates_use_the_store_but_not_the_ring() {
    let pki = Pki::new();
    let (ring, _) = tls_ring(&pki, 3).await;
    let seeds = vec![ring.nodes[0].addr().to_string()];

    let (client_dir, _) = pki.issue("ca", "app", Role::Client);
    let mut config = ClientConfig::new(seeds.clone());
    config.tls_dir = Some(client_dir.clone());
    let client = Client::connect(config).await.unwrap();
    assert_eq!(client.ring().len(), 3);
    for i in 0..30u32 {
        let key = format!("c{i}").into_bytes();
        client
            .put(key.clone(), format!("v{i}").into_bytes())
            .await
            .unwrap();
        let got = client.get(key).await.unwrap().unwrap();
        assert_eq!(got.value, format!("v{i}").into_bytes());
    }

    // Without TLS, or with another CA's certificate: no way in.
    assert!(
        Client::connect(ClientConfig::new(seeds.clone()))
            .await
            .is_err()
    );
    let (foreign, _) = pki.issue("other-ca", "foreign-app", Role::Client);
    let mut config = ClientConfig::new(seeds.clone());
    config.tls_dir = Some(foreign);
    assert!(Client::connect(config).await.is_err());

    // A client that sends ring or replica traffic: refused, dropped, and
    // nothing it sent took effect.
    let target = &ring.nodes[0];
    let owner_of_victim = {
        let located = target.locate(b"c0").await.unwrap();
        located.owner
    };
    let owner = ring
        .nodes
        .iter()
        .find(|n| n.ids().contains(&owner_of_victim.id))
        .unwrap();
    let before = errors(owner, "tls_client_role").await;
    let mut s = raw_tls(
        owner,
        &client_dir,
        chordal_wire::Hello {
            cluster: "chordal".into(),
            addr: None,
            api: None,
            ids: vec![],
            service: None,
            resp: None,
        },
    )
    .await;
    // Read the node's preamble and Hello first.
    let mut pre = [0u8; chordal_wire::PREAMBLE_LEN + 4];
    s.read_exact(&mut pre).await.unwrap();
    let len = u32::from_be_bytes(pre[chordal_wire::PREAMBLE_LEN..].try_into().unwrap());
    let mut hello = vec![0u8; len as usize];
    s.read_exact(&mut hello).await.unwrap();
    // A Replicate overwriting "c0" with a version far in the future.
    let forged = Record::new(
        b"c0".to_vec(),
        Version {
            term: 0,
            hlc: u64::MAX / 2,
            node: Id::hash(b"forger"),
        },
        Some(b"forged".to_vec()),
    );
    let local = s.get_ref().0.local_addr().unwrap();
    let env = Envelope {
        from: NodeRef::new(Id::hash(b"forger"), local),
        to: Target {
            addr: owner.addr(),
            id: Some(owner_of_victim.id),
        },
        msg: Message::Replicate {
            req: 1,
            records: vec![forged],
            fence: 0,
        },
    };
    let mut frame = bytes::BytesMut::new();
    chordal_wire::encode_frame(&env, &mut frame);
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
    closed_by_node(s).await;
    assert!(errors(owner, "tls_client_role").await > before);
    let got = client.get(b"c0".to_vec()).await.unwrap().unwrap();
    assert_eq!(
        got.value,
        b"v0".to_vec(),
        "the forged replica write took effect"
    );
    ring.leave_all().await;
}

/// The expiry of the certificate a node presents to a new connection.
async fn presented_expiry(node: &Node, client_dir: &Path) -> SystemTime {
    let files = TlsFiles::load(client_dir).unwrap();
    let connector = tokio_rustls::TlsConnector::from(files.client_config().unwrap());
    let tcp = TcpStream::connect(node.addr()).await.unwrap();
    let tls = connector
        .connect(chordal_tls::peer_name(), tcp)
        .await
        .unwrap();
    let cert = &tls.get_ref().1.peer_certificates().unwrap()[0];
    chordal_tls::expires_at(cert).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_used_without_a_restart_and_keeps_the_id() {
    let pki = Pki::new();
    let ca = pki.root.join("ca");
    let dir = pki.root.join("renewing");
    let first =
        chordal_tls::issue_with(&ca, &dir, Role::Member, &[], &IssueOptions::days(1)).unwrap();
    let node = quick()
        .tls_dir(&dir)
        .tls_reload(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    assert_eq!(node.ids()[0], first.id);
    let (client_dir, _) = pki.issue("ca", "probe", Role::Client);
    let before = presented_expiry(&node, &client_dir).await;
    // mtime granularity: make sure the renewed file looks changed.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut renew = IssueOptions::days(30);
    renew.renew = true;
    let renewed = chordal_tls::issue_with(&ca, &dir, Role::Member, &[], &renew).unwrap();
    assert_eq!(renewed.id, first.id, "renewing keeps the key, hence the id");
    let mut after = before;
    for _ in 0..100 {
        after = presented_expiry(&node, &client_dir).await;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let day = Duration::from_secs(86_400);
    assert!(
        after >= before + 28 * day,
        "the renewed certificate was not picked up"
    );
    // A certificate with another key is not taken (it would move the node).
    tokio::time::sleep(Duration::from_millis(20)).await;
    chordal_tls::issue_with(&ca, &dir, Role::Member, &[], &IssueOptions::days(90)).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = presented_expiry(&node, &client_dir).await;
    assert!(
        still < before + 60 * day,
        "a certificate with another id was loaded"
    );
    node.leave().await;
}

/// Does every node of `ring` see `id` in a successor list (`want`), or
/// none (`!want`)?
async fn seen_by_all(ring: &LocalRing, id: Id, want: bool) -> bool {
    let mut all = true;
    for n in &ring.nodes {
        let sees = n
            .status()
            .await
            .unwrap()
            .vnodes
            .iter()
            .any(|v| v.successors.iter().any(|s| s.id == id));
        all &= sees == want;
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_certificate_expires_drops_out_of_the_ring() {
    let pki = Pki::new();
    let (ring, _) = tls_ring(&pki, 3).await;
    let short = pki.root.join("short-lived");
    let options = IssueOptions {
        not_before: SystemTime::now() - Duration::from_secs(60),
        not_after: SystemTime::now() + Duration::from_secs(6),
        renew: false,
    };
    chordal_tls::issue_with(&pki.root.join("ca"), &short, Role::Member, &[], &options).unwrap();
    let leaving = ring_builder(&short)
        .join(ring.nodes[0].addr().to_string())
        .start()
        .await
        .expect("joins while its certificate is valid");
    let gone = leaving.ids()[0];
    let mut joined = false;
    for _ in 0..100 {
        if seen_by_all(&ring, gone, true).await {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(joined, "the short-lived member never joined");
    // Past its expiry, the others close its connections, refuse new ones
    // and stabilize around it.
    let mut out = false;
    for _ in 0..400 {
        if SystemTime::now() > options.not_after && seen_by_all(&ring, gone, false).await {
            out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !out {
        for n in &ring.nodes {
            let st = n.status().await.unwrap();
            let v = &st.vnodes[0];
            eprintln!(
                "after the wait, node {} pred {:?} succ {:?} conns {}",
                v.me.id.short(),
                v.predecessor.map(|p| p.id.short()),
                v.successors
                    .iter()
                    .map(|s| s.id.short())
                    .collect::<Vec<_>>(),
                st.connections
            );
        }
        let st = leaving.status().await.unwrap();
        eprintln!(
            "after the wait, the expired node {} succ {:?} conns {}",
            gone.short(),
            st.vnodes[0]
                .successors
                .iter()
                .map(|s| s.id.short())
                .collect::<Vec<_>>(),
            st.connections
        );
    }
    assert!(
        out,
        "a member with an expired certificate stayed in the ring"
    );
    assert!(
        errors(&ring.nodes[0], "tls_handshake").await
            + errors(&ring.nodes[1], "tls_handshake").await
            + errors(&ring.nodes[2], "tls_handshake").await
            > 0
    );
    leaving.abort().await;
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replication_and_handoff_over_tls_lose_nothing() {
    // 60 MiB written to a TLS ring (each value to R = 3 processes), then a
    // member leaves gracefully (handing its ranges over) and a new one
    // joins (taking ranges over): every byte of every acknowledged write
    // comes back. Large frames fill sockets, so the outbox's TLS writer
    // waits, flushes and resumes many times.
    let pki = Pki::new();
    let (mut ring, _) = tls_ring(&pki, 4).await;
    let value = |i: u32| -> Vec<u8> {
        let mut v = vec![(i % 251) as u8; 256 * 1024];
        v[..4].copy_from_slice(&i.to_be_bytes());
        v
    };
    let keys = 240u32;
    for i in 0..keys {
        let w = ring.nodes[(i % 4) as usize]
            .put(format!("bulk-{i}").into_bytes(), value(i))
            .await
            .unwrap();
        assert!(w.acked >= 2, "write {i} acknowledged by {}", w.acked);
    }
    let leaving = ring.nodes.remove(1);
    let report = leaving.leave().await;
    let (dir, _) = pki.issue("ca", "newcomer", Role::Member);
    ring.nodes.push(
        ring_builder(&dir)
            .join(ring.nodes[0].addr().to_string())
            .start()
            .await
            .unwrap(),
    );
    for i in 0..keys {
        let got = ring.nodes[(i % 4) as usize]
            .get(format!("bulk-{i}").into_bytes())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("bulk-{i} lost (leave report: {report:?})"));
        assert!(got.value == value(i), "bulk-{i} damaged");
    }
    ring.leave_all().await;
}
