//! Application messages over real TCP: an in-process ring of nodes, each
//! with an application reading its inbox.

use chordal_core::{Id, OpError};
use chordal_node::KeyValue;
use chordal_node::local::{LocalRing, quick as config};
use chordal_node::{Error, Node, NodeBuilder};
use std::time::Duration;
use tokio::sync::mpsc;

async fn ring(n: usize, config: NodeBuilder) -> LocalRing {
    LocalRing::start_settled(n, config, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles")
}

/// Runs an application on `node` that reports (node index, key) of every
/// message and answers requests with "<index>:<payload>".
fn serve(node: &Node, index: usize, seen: mpsc::UnboundedSender<(usize, Vec<u8>)>) {
    let mut inbox = node.messages().expect("first call takes the inbox");
    assert!(node.messages().is_none());
    tokio::spawn(async move {
        while let Some(msg) = inbox.next().await {
            let _ = seen.send((index, msg.key.clone().unwrap_or_default()));
            let mut answer = format!("{index}:").into_bytes();
            answer.extend_from_slice(&msg.payload);
            msg.reply(answer);
        }
    });
}

fn owner_index(ring: &LocalRing, key: &[u8]) -> usize {
    let owner = ring.oracle().successor(&Id::of_key(key));
    ring.nodes.iter().position(|n| n.ids()[0] == owner).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_request_reach_the_owner_from_every_node() {
    let ring = ring(6, config()).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    for (i, n) in ring.nodes.iter().enumerate() {
        serve(n, i, seen_tx.clone());
    }
    for (from, node) in ring.nodes.iter().enumerate() {
        for k in 0..10 {
            let key = format!("msg-{from}-{k}").into_bytes();
            let owner = owner_index(&ring, &key);
            node.send(key.clone(), b"hi".to_vec()).await.unwrap();
            assert_eq!(seen.recv().await.unwrap(), (owner, key.clone()));
            let answer = node.request(key.clone(), b"ping".to_vec()).await.unwrap();
            assert_eq!(answer, format!("{owner}:ping").into_bytes());
            assert_eq!(seen.recv().await.unwrap(), (owner, key));
        }
    }
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_unheard_stalled_and_full_inboxes_are_refused() {
    let ring = ring(3, config().app_inbox(2).max_message(1000)).await;
    let key = b"some-key".to_vec();
    let owner = &ring.nodes[owner_index(&ring, &key)];
    let sender = &ring.nodes[(owner_index(&ring, &key) + 1) % 3];
    // Too big: refused before it leaves.
    assert_eq!(
        sender.send(key.clone(), vec![0; 1001]).await,
        Err(Error::Op(OpError::TooLarge {
            size: 1001,
            limit: 1000
        }))
    );
    // Nobody listens on the owner yet.
    assert_eq!(
        sender.send(key.clone(), b"x".to_vec()).await,
        Err(Error::Op(OpError::Refused))
    );
    // An application that takes the inbox but never reads it: two fit,
    // the third is refused at once (back-pressure), the node keeps serving.
    let stalled = owner.messages().unwrap();
    for _ in 0..2 {
        sender.send(key.clone(), b"x".to_vec()).await.unwrap();
    }
    assert_eq!(
        sender.send(key.clone(), b"x".to_vec()).await,
        Err(Error::Op(OpError::Refused))
    );
    assert!(sender.put(key.clone(), b"v".to_vec()).await.is_ok());
    // Requests nobody answers are refused, not hung.
    drop(stalled);
    assert_eq!(
        sender.request(key.clone(), b"q".to_vec()).await,
        Err(Error::Op(OpError::Refused))
    );
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_application_costs_its_messages_not_the_node() {
    let ring = ring(3, config()).await;
    let key = b"panic-key".to_vec();
    let owner_at = owner_index(&ring, &key);
    let sender = &ring.nodes[(owner_at + 1) % 3];
    let mut inbox = ring.nodes[owner_at].messages().unwrap();
    let app = tokio::spawn(async move {
        let _msg = inbox.next().await;
        // Unwinds as a panic does, without the panic hook: printing a
        // backtrace (RUST_BACKTRACE) can take longer than the request's
        // timeout on a loaded machine, and is not what this test is about.
        std::panic::resume_unwind(Box::new("application bug"));
    });
    // The request that meets the bug is refused (its responder is dropped
    // while the task unwinds) ...
    assert_eq!(
        sender.request(key.clone(), b"boom".to_vec()).await,
        Err(Error::Op(OpError::Refused))
    );
    assert!(app.await.unwrap_err().is_panic());
    // ... later messages are refused at once (nobody reads the inbox) ...
    assert_eq!(
        sender.send(key.clone(), b"again".to_vec()).await,
        Err(Error::Op(OpError::Refused))
    );
    // ... and the node goes on serving everything else.
    sender.put(key.clone(), b"v".to_vec()).await.unwrap();
    assert!(matches!(sender.get(key.clone()).await, Ok(Some(_))));
    let other = ring.nodes[owner_at].locate(b"x").await;
    assert!(other.is_ok());
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_and_request_to_reach_that_node() {
    let ring = ring(4, config()).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    for (i, n) in ring.nodes.iter().enumerate() {
        serve(n, i, seen_tx.clone());
    }
    for to in 0..4 {
        let target = ring.nodes[to].me();
        ring.nodes[0].send_to(target, b"hi".to_vec()).await.unwrap();
        // No key: it was for the node itself.
        assert_eq!(seen.recv().await.unwrap(), (to, Vec::new()));
        let answer = ring.nodes[1]
            .request_to(target, b"q".to_vec())
            .await
            .unwrap();
        assert_eq!(answer, format!("{to}:q").into_bytes());
        seen.recv().await.unwrap();
    }
    ring.leave_all().await;
}
