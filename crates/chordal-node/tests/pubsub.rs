//! Pub/sub over real TCP: an in-process ring of nodes subscribing and
//! publishing; the topic's owner killed; slow and dropped streams.

use chordal_core::Id;
use chordal_node::local::{LocalRing, quick as config};
use chordal_node::{Error, NodeBuilder, Subscription};
use std::time::Duration;

async fn ring(n: usize, config: NodeBuilder) -> LocalRing {
    LocalRing::start_settled(n, config, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles")
}

fn owner_index(ring: &LocalRing, key: &[u8]) -> usize {
    let owner = ring.oracle().successor(&Id::of_key(key));
    ring.nodes.iter().position(|n| n.ids()[0] == owner).unwrap()
}

/// The next `n` payloads of `sub` as text (fails after 10 s of silence).
async fn take(sub: &mut Subscription, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let p = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} arrived: {out:?}", out.len()))
            .expect("node running");
        out.push(String::from_utf8(p.payload).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_gets_every_publication_in_publisher_order() {
    let ring = ring(5, config()).await;
    let mut subs = Vec::new();
    for n in &ring.nodes {
        subs.push(n.subscribe(b"room".to_vec()).await.unwrap());
    }
    // Every node publishes 40 messages, all calls in flight at once: they
    // must still arrive in call order.
    let mut tasks = Vec::new();
    for (i, n) in ring.nodes.iter().enumerate() {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            let calls = (0..40).map(|k| n.publish(b"room".to_vec(), format!("{i}:{k}").into()));
            for r in futures_util::future::join_all(calls).await {
                assert_eq!(r, Ok(5));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (at, sub) in subs.iter_mut().enumerate() {
        let got = take(sub, 200).await;
        for i in 0..5 {
            let from_i: Vec<&String> = got
                .iter()
                .filter(|m| m.starts_with(&format!("{i}:")))
                .collect();
            let want: Vec<String> = (0..40).map(|k| format!("{i}:{k}")).collect();
            assert_eq!(from_i, want.iter().collect::<Vec<_>>(), "at node {at}");
        }
        assert_eq!(sub.missed(), 0);
    }
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_the_kill_of_the_topic_owner() {
    let ring = ring(6, config()).await;
    let topic = b"alerts".to_vec();
    let owner = owner_index(&ring, &topic);
    let mut subs = Vec::new();
    for (i, n) in ring.nodes.iter().enumerate() {
        if i != owner {
            subs.push(n.subscribe(topic.clone()).await.unwrap());
        }
    }
    let publisher = &ring.nodes[(owner + 1) % 6];
    assert_eq!(
        publisher.publish(topic.clone(), b"before".to_vec()).await,
        Ok(5)
    );
    ring.nodes[owner].abort().await;
    // Right away: the publish finds the next owner, which already knows
    // every subscriber (the old owner pushed them when they came).
    assert_eq!(
        publisher.publish(topic.clone(), b"after".to_vec()).await,
        Ok(5)
    );
    for sub in &mut subs {
        assert_eq!(take(sub, 2).await, ["before", "after"]);
    }
    let live = LocalRing {
        nodes: ring
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != owner)
            .map(|(_, n)| n.clone())
            .collect(),
    };
    live.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_streams_lose_the_excess_and_dropped_streams_unsubscribe() {
    let ring = ring(3, config().subscription_buffer(4).max_message(100)).await;
    let topic = b"firehose".to_vec();
    let mut slow = ring.nodes[1].subscribe(topic.clone()).await.unwrap();
    let gone = ring.nodes[2].subscribe(topic.clone()).await.unwrap();
    drop(gone);
    for k in 0..20 {
        ring.nodes[0]
            .publish(topic.clone(), format!("{k}").into())
            .await
            .unwrap();
    }
    // The slow reader (reading nothing yet) keeps the first four, loses
    // the rest, and says so.
    let lost = async {
        while slow.missed() < 16 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("16 missed");
    assert_eq!(take(&mut slow, 4).await, ["0", "1", "2", "3"]);
    assert_eq!(slow.missed(), 16);
    // Node 2 has no stream left: it stops renewing, and the owner
    // forgets it (unsubscribed at once or lapsed).
    let forgotten = async {
        while ring.nodes[0].publish(topic.clone(), b"x".to_vec()).await != Ok(1) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), forgotten)
        .await
        .expect("node 2 unsubscribed");
    // Oversize: refused before it leaves.
    assert_eq!(
        ring.nodes[0].publish(topic.clone(), vec![0; 101]).await,
        Err(Error::Op(chordal_core::OpError::TooLarge {
            size: 101,
            limit: 100
        }))
    );
    ring.leave_all().await;
}
