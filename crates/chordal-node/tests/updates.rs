//! Read-modify-write at the owner, over loopback: increments from many
//! clients on different nodes all count; create-only writes have exactly
//! one winner; batches answer in order; expired values are gone from the
//! replicas' answers too.

use chordal_node::local::{Check, LocalRing, quick};
use chordal_node::{Condition, Consistency, Error, Expiry, KeyValue, OpError, PutOptions};
use std::time::Duration;

async fn ring(n: usize) -> LocalRing {
    let ring = LocalRing::start(n, quick()).await.expect("ring");
    ring.wait_for(
        Check::SuccessorLists,
        Duration::from_millis(20),
        Duration::from_secs(20),
    )
    .await
    .expect("successor lists settle");
    ring
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_incrementers_on_five_nodes_lose_no_increment() {
    let ring = ring(5).await;
    let mut tasks = Vec::new();
    for client in 0..8 {
        let node = ring.nodes[client % 5].clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(500);
            for _ in 0..500 {
                // Overloaded is the only answer that may be retried: it
                // means nothing was done.
                loop {
                    match node.incr_by(b"counter".to_vec(), 1).await {
                        Ok(n) => {
                            seen.push(n);
                            break;
                        }
                        Err(Error::Op(OpError::Overloaded)) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("increment failed: {e}"),
                    }
                }
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    // Every increment got its own value: none read the same count.
    all.sort();
    let repeated = all.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(repeated, 0, "increments that read the same count");
    assert_eq!(
        (all.len(), all.first(), all.last()),
        (4000, Some(&1), Some(&4000))
    );
    for node in &ring.nodes {
        let v = node
            .get_with(b"counter".to_vec(), Consistency::All)
            .await
            .unwrap()
            .expect("the counter");
        assert_eq!(v.value, b"4000");
    }
    // Appends and non-integers.
    let n = &ring.nodes[1];
    assert_eq!(n.append(b"log".to_vec(), b"ab".to_vec()).await.unwrap(), 2);
    assert_eq!(n.append(b"log".to_vec(), b"cd".to_vec()).await.unwrap(), 4);
    let err = n.incr_by(b"log".to_vec(), 1).await.unwrap_err();
    assert!(matches!(err, Error::Op(OpError::NotAnInteger)), "{err}");
    n.put(b"max".to_vec(), i64::MAX.to_string().into_bytes())
        .await
        .unwrap();
    let err = n.incr_by(b"max".to_vec(), 1).await.unwrap_err();
    assert!(matches!(err, Error::Op(OpError::Overflow)), "{err}");
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_racing_create_only_writes_exactly_one_wins() {
    let ring = ring(4).await;
    let create = PutOptions {
        condition: Condition::Absent,
        ..PutOptions::default()
    };
    let mut tasks = Vec::new();
    for i in 0..16 {
        let node = ring.nodes[i % 4].clone();
        tasks.push(tokio::spawn(async move {
            let value = format!("writer-{i}").into_bytes();
            node.put_with(b"leader".to_vec(), value, create).await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => winners.push(i),
            Err(Error::Op(OpError::PreconditionFailed { current })) => {
                assert!(current.is_some(), "a refusal names the winner's version")
            }
            Err(e) => panic!("writer {i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let v = ring.nodes[3]
        .get(b"leader".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.value, format!("writer-{}", winners[0]).into_bytes());
    ring.leave_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_in_order_and_expired_values_are_gone_everywhere() {
    let ring = ring(3).await;
    let n = &ring.nodes[0];
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
        .map(|i| (format!("b{i}").into_bytes(), format!("v{i}").into_bytes()))
        .collect();
    for r in n.put_many(pairs).await {
        r.expect("stored");
    }
    let mut keys: Vec<Vec<u8>> = (0..200).map(|i| format!("b{i}").into_bytes()).collect();
    keys.push(b"nope".to_vec());
    let got = ring.nodes[2].get_many(keys).await;
    for (i, r) in got.iter().enumerate().take(200) {
        let v = r.as_ref().unwrap().as_ref().expect("found");
        assert_eq!(v.value, format!("v{i}").into_bytes());
    }
    assert!(got[200].as_ref().unwrap().is_none());

    let short = PutOptions {
        expiry: Expiry::After(Duration::from_millis(300)),
        ..PutOptions::default()
    };
    n.put_with(b"brief".to_vec(), b"x".to_vec(), short)
        .await
        .unwrap();
    let v = ring.nodes[1].get(b"brief".to_vec()).await.unwrap().unwrap();
    assert!(v.expires.is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    for node in &ring.nodes {
        let read = node
            .get_with(b"brief".to_vec(), Consistency::All)
            .await
            .unwrap();
        assert!(read.is_none(), "expired, yet read from {}", node.addr());
        // Its copy is still stored (dead, like a tombstone) until collected.
        let _ = node.local_get(b"brief".to_vec()).await.unwrap();
    }
    // A new expiry, then none.
    n.put(b"kept".to_vec(), b"y".to_vec()).await.unwrap();
    assert!(
        !n.expire(b"kept".to_vec(), Expiry::Never).await.unwrap(),
        "no expiry to clear"
    );
    let later = Expiry::After(Duration::from_secs(60));
    assert!(n.expire(b"kept".to_vec(), later).await.unwrap());
    assert!(n.expire(b"kept".to_vec(), Expiry::Never).await.unwrap());
    assert!(!n.expire(b"absent".to_vec(), later).await.unwrap());
    let v = n.get(b"kept".to_vec()).await.unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.expires), (&b"y"[..], None));
    ring.leave_all().await;
}
