//! A certified member that lies (docs/security.md, "Membership claims"),
//! in one process over
//! loopback with real TLS: it claims another member's address, announces
//! a live node's departure, invents nodes or moves a live one to its own
//! address, floods the membership with invented entries and leaves, or
//! claims more virtual nodes than the ring gives. Each lie is refused or
//! disproved by asking the node it names, counted, and changes nothing:
//! every table keeps exactly the ring's members, and the store goes on.

mod common;

use chordal_core::{Envelope, Id, MemberEvent, Message, NodeRef, Target};
use chordal_node::KeyValue;
use chordal_node::Node;
use chordal_node::local::LocalRing;
use chordal_tls::Role;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A TLS ring of `n` members, each declaring API address 127.0.0.1:(19000+i)
/// (nothing listens there: only what nodes say about each other matters).
async fn ring_with_apis(pki: &Pki, n: usize) -> LocalRing {
    let (ring, _) = tls_ring_with(pki, n, |b, i| b.api(api_of(i))).await;
    // Every table holds every member before anyone lies.
    let all = every_vnode(&ring);
    for node in &ring.nodes {
        eventually(|| async { node.membership_entries().await.unwrap() == all }).await;
    }
    ring
}

fn api_of(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 19000 + i as u16))
}

/// The ring's vnodes, in id order.
fn every_vnode(ring: &LocalRing) -> Vec<NodeRef> {
    let mut all: Vec<NodeRef> = ring
        .nodes
        .iter()
        .flat_map(|n| n.ids().iter().map(|id| NodeRef::new(*id, n.addr())))
        .collect();
    all.sort_by_key(|n| n.id);
    all
}

/// Waits up to 10 s for `f` to hold.
async fn eventually<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) {
    for _ in 0..500 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the condition did not come true within 10 s");
}

/// One counter of `chordal_membership_claims_total`.
async fn claims(node: &Node, result: &str) -> u64 {
    let needle = format!("chordal_membership_claims_total{{result=\"{result}\"}} ");
    node.metrics()
        .await
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Writes `msg` as coming from `from` to `to` on a raw connection.
async fn send<S: tokio::io::AsyncWrite + Unpin>(
    conn: &mut S,
    from: NodeRef,
    to: &Node,
    msg: Message,
) {
    let env = Envelope {
        from,
        to: Target {
            addr: to.addr(),
            id: None,
        },
        msg,
    };
    let mut frame = bytes::BytesMut::new();
    chordal_wire::encode_frame(&env, &mut frame);
    conn.write_all(&frame).await.unwrap();
    conn.flush().await.unwrap();
}

fn events(by: SocketAddr, list: impl IntoIterator<Item = (NodeRef, bool)>) -> Message {
    Message::MemberEvents {
        req: 1,
        until: Id::hash(b"the whole ring"),
        events: list
            .into_iter()
            .map(|(node, joined)| MemberEvent { node, joined, by })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_claiming_another_members_address_is_refused_and_its_api_never_shown() {
    let pki = Pki::new();
    let ring = ring_with_apis(&pki, 3).await;
    let (a, b) = (&ring.nodes[0], &ring.nodes[1]);
    assert_eq!(a.api_of(b.addr()).await.unwrap(), Some(api_of(1)));
    // Row D: a certified member says it is at b's peer address, with an
    // API of its own.
    let (dir, id) = pki.issue("ca", "impostor", Role::Member);
    let evil_api: SocketAddr = "127.0.0.1:6666".parse().unwrap();
    let hello = chordal_wire::Hello {
        cluster: "chordal".into(),
        addr: Some(b.addr()),
        api: Some(evil_api),
        ids: chordal_core::Node::vnode_ids_from(id, 1),
        service: None,
        resp: None,
    };
    let mut conn = raw_tls(a, &dir, hello).await;
    // It may even send a frame as if from b's address.
    let forged_from = NodeRef::new(id, b.addr());
    send(&mut conn, forged_from, a, Message::Ping { req: 7 }).await;
    assert!(counted(a, "tls_wrong_addr").await >= 1);
    closed_by_node(conn).await;
    assert_eq!(a.api_of(b.addr()).await.unwrap(), Some(api_of(1)));
    // Nor did the forged sender get into the table.
    let table = a.membership_entries().await.unwrap();
    assert!(!table.iter().any(|n| n.id == id), "{table:?}");
    assert_eq!(table, every_vnode(&ring));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_membership_events_are_disproved_by_the_nodes_they_name_and_a_flood_leaves_no_trace()
{
    let pki = Pki::new();
    let ring = ring_with_apis(&pki, 4).await;
    let (a, b, m) = (&ring.nodes[0], &ring.nodes[1], &ring.nodes[3]);
    let all = every_vnode(&ring);
    // m is a real member; the attacker holds its certificate and speaks
    // for it on a connection of its own.
    let m_ref = NodeRef::new(m.ids()[0], m.addr());
    let hello = chordal_wire::Hello {
        cluster: "chordal".into(),
        addr: Some(m.addr()),
        api: Some(api_of(3)),
        ids: m.ids().to_vec(),
        service: None,
        resp: None,
    };
    let mut conn = raw_tls(a, &pki.root.join("member-3"), hello).await;
    let b_ref = NodeRef::new(b.ids()[0], b.addr());
    let invented = NodeRef::new(Id::hash(b"chosen position"), m.addr());
    let b_moved = NodeRef::new(b.ids()[0], m.addr());
    // Row E: "b left" (b is live), "a node joined" at a position of the
    // attacker's choosing; row F: b's id moved to the attacker's address.
    let lies = [(b_ref, false), (invented, true), (b_moved, true)];
    send(&mut conn, m_ref, a, events(m.addr(), lies)).await;
    eventually(|| async { claims(a, "false").await >= 3 }).await;
    for node in &ring.nodes {
        assert_eq!(node.membership_entries().await.unwrap(), all);
    }
    // Row F: 300,000 invented entries in 5 s, then the attacker leaves.
    let checked_before = claims(a, "checked").await;
    let mut sent = 0u32;
    while sent < 300_000 {
        let batch = (0..2048u32).map(|i| {
            let id = Id::hash(&(sent + i).to_be_bytes());
            (NodeRef::new(id, m.addr()), true)
        });
        send(&mut conn, m_ref, a, events(m.addr(), batch)).await;
        sent += 2048;
    }
    drop(conn);
    // At most one sender's share was checked (pinged); the rest dropped
    // unchecked. (The last frames may be lost with the connection.)
    eventually(|| async { claims(a, "dropped").await >= 200_000 }).await;
    assert!(claims(a, "checked").await <= checked_before + 1024 + 16);
    // Nothing invented stays, anywhere, and the store works through a.
    eventually(|| async {
        for node in &ring.nodes {
            if node.membership_entries().await.unwrap() != all {
                return false;
            }
        }
        true
    })
    .await;
    for i in 0..20 {
        let key = format!("after-the-flood-{i}");
        a.put(key.clone().into_bytes(), b"value".to_vec())
            .await
            .unwrap();
        let got = b.get(key.into_bytes()).await.unwrap().expect("stored");
        assert_eq!(got.value, b"value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_claiming_more_virtual_nodes_than_the_ring_gives_is_refused() {
    let pki = Pki::new();
    let ring = ring_with_apis(&pki, 3).await;
    let a = &ring.nodes[0];
    // Row G: a certificate allows 64 derived ids; the ring runs one each.
    let (dir, id) = pki.issue("ca", "greedy", Role::Member);
    let greedy = chordal_core::Node::vnode_ids_from(id, 64);
    let before = errors(a, "tls_wrong_id").await;
    let conn = raw_tls(a, &dir, member_hello(greedy)).await;
    closed_by_node(conn).await;
    assert!(errors(a, "tls_wrong_id").await > before);
    let table = a.membership_entries().await.unwrap();
    assert_eq!(table, every_vnode(&ring));
}
