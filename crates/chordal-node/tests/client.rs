//! The native client: not a ring member, it caches the ring and talks to
//! owners directly.

use chordal_core::OpError;
use chordal_node::KeyValue;
use chordal_node::local::{Check, LocalRing, quick as config};
use chordal_node::{Client, ClientConfig, Error};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reads_and_writes_through_the_owners() {
    let mut ring = LocalRing::start_settled(5, config(), Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles");
    ring.settle(Check::SuccessorLists)
        .await
        .expect("successor lists fill");
    let client = Client::connect(ClientConfig::new(vec![ring.nodes[2].addr().to_string()]))
        .await
        .unwrap();
    // The cached ring is exactly the members, in id order.
    let ids: Vec<_> = client.ring().iter().map(|n| n.id).collect();
    assert_eq!(ids, ring.oracle().ids().to_vec());

    for k in 0..100 {
        let key = format!("c-{k}").into_bytes();
        assert!(matches!(
            client.put(key.clone(), key.clone()).await,
            Ok(w) if w.acked >= 2
        ));
    }
    for k in 0..100 {
        let key = format!("c-{k}").into_bytes();
        // Written by the client, read by a member, and the other way round.
        assert!(matches!(ring.nodes[k % 5].get(key.clone()).await, Ok(Some(v)) if v.value == key));
        assert!(matches!(client.get(key.clone()).await, Ok(Some(v)) if v.value == key));
    }
    assert_eq!(client.get(b"absent".to_vec()).await, Ok(None));
    assert!(matches!(client.delete(b"c-1".to_vec()).await, Ok(Some(_))));
    assert_eq!(client.get(b"c-1".to_vec()).await, Ok(None));
    assert_eq!(client.delete(b"c-1".to_vec()).await, Ok(None));

    // One value limit at every edge: the client, the library, and the
    // owner itself (a client configured with a larger limit is refused
    // by the owner); nothing is stored.
    let big = vec![1u8; 1024 * 1024 + 1];
    assert_eq!(
        client.put(b"big".to_vec(), big.clone()).await,
        Err(Error::Op(OpError::TooLarge {
            size: big.len() as u64,
            limit: 1024 * 1024
        }))
    );
    assert!(matches!(
        ring.nodes[0].put(b"big".to_vec(), big.clone()).await,
        Err(Error::Op(OpError::TooLarge { .. }))
    ));
    let mut lax = ClientConfig::new(vec![ring.nodes[1].addr().to_string()]);
    lax.max_value = 2 * 1024 * 1024;
    let lax = Client::connect(lax).await.unwrap();
    assert!(matches!(
        lax.put(b"big".to_vec(), big.clone()).await,
        Err(Error::Op(OpError::TooLarge { .. }))
    ));
    assert_eq!(client.get(b"big".to_vec()).await, Ok(None));

    // The client is not a member: walks from the ring do not see it.
    assert_eq!(ring.nodes[0].walk_ring(100).await.unwrap().len(), 5);

    // A member crashes: the client's next operations find the new owners.
    let dead = ring.nodes.remove(3);
    dead.abort().await;
    // Under authority its successor decides for its keys once its lease
    // ran out.
    ring.healed(Duration::from_secs(20))
        .await
        .expect("ring heals, every range with a decider");
    for k in 2..100 {
        let key = format!("c-{k}").into_bytes();
        let got = client.get(key.clone()).await;
        assert!(
            matches!(&got, Ok(Some(v)) if v.value == key),
            "c-{k}: {got:?}"
        );
    }
    ring.leave_all().await;
}

#[tokio::test]
async fn client_reports_unreachable_seeds() {
    let mut nowhere = ClientConfig::new(vec!["127.0.0.1:1".into()]);
    nowhere.timeout = Duration::from_millis(500);
    let err = Client::connect(nowhere).await.err().expect("no ring there");
    assert!(matches!(err, Error::NoSeed(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connects_while_successor_lists_still_name_crashed_nodes() {
    // Without authority: two neighbours crash below, and the ranges whose
    // three copies included both are left below a majority — refused by
    // design until an operator re-forms the ring (docs/consistency.md).
    // This test is about the client's walk past dead successors.
    let plain = config().core_with(|c| c.authority = false);
    let ring = LocalRing::start_settled(6, plain, Duration::from_secs(20))
        .await
        .unwrap()
        .expect("ring settles");
    ring.settle(Check::SuccessorLists)
        .await
        .expect("successor lists fill");
    // Crash every member but the seed's predecessor-side neighbours: the
    // seed's successor list then ends in dead nodes, and the walk must
    // step back over them.
    let seed = &ring.nodes[0];
    let succs: Vec<_> = seed.status().await.unwrap().vnodes[0].successors.clone();
    let victims: Vec<usize> = succs
        .iter()
        .rev()
        .take(2)
        .map(|s| ring.nodes.iter().position(|n| n.ids()[0] == s.id).unwrap())
        .collect();
    for v in &victims {
        ring.nodes[*v].abort().await;
    }
    let client = Client::connect(ClientConfig::new(vec![seed.addr().to_string()]))
        .await
        .expect("connects although the seed's successor list names dead nodes");
    let put = client.put(b"after".to_vec(), b"crash".to_vec()).await;
    assert!(put.is_ok(), "{put:?}");
    assert!(matches!(client.get(b"after".to_vec()).await, Ok(Some(v)) if v.value == b"crash"));
}
