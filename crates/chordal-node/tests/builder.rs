//! `Node::builder()`: create, join, locate, leave.

use chordal_core::Id;
use chordal_core::OpError;
use chordal_node::{Error, Node};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_creates_joins_locates_and_leaves() {
    let every = Duration::from_millis(100);
    let first = Node::builder()
        .maintenance_interval(every)
        .start()
        .await
        .unwrap();
    let second = Node::builder()
        .join(first.addr().to_string())
        .maintenance_interval(every)
        .vnodes(3)
        .max_message(10)
        .start()
        .await
        .unwrap();
    assert_eq!(second.id(), second.ids()[0]);
    assert_eq!(second.ids().len(), 3);
    // Both agree on every key's owner once the ring settles, and the owner
    // is one of the four ids.
    let ids: Vec<Id> = first.ids().iter().chain(second.ids()).copied().collect();
    let settled = async {
        loop {
            let mut agree = true;
            for k in 0..20u8 {
                let a = first.locate(&[k]).await.unwrap().owner.id;
                let b = second.locate(&[k]).await.unwrap().owner.id;
                agree &= a == b && ids.contains(&a);
            }
            if agree {
                break;
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("owners agree");
    // Settings reach the node.
    assert_eq!(
        second.send(b"k".to_vec(), vec![0; 11]).await,
        Err(Error::Op(OpError::TooLarge {
            size: 11,
            limit: 10
        }))
    );
    second.leave().await;
    first.leave().await;
}
