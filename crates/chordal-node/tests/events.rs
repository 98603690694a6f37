//! `Node::events()` over real TCP: the exact ranges gained and lost on a
//! join, a graceful leave and a crash, and `Left` at the end.

use chordal_core::{Id, KeyRange};
use chordal_node::local::quick;
use chordal_node::{Node, NodeEvent, NodeEvents};
use std::time::Duration;

fn id(v: u64) -> Id {
    Id::from_u64(v)
}

async fn start(v: u64, seed: Option<&Node>) -> Node {
    start_with(false, v, seed).await
}

/// Like `start`, under authority.
async fn start_deciding(v: u64, seed: Option<&Node>) -> Node {
    start_with(true, v, seed).await
}

async fn start_with(authority: bool, v: u64, seed: Option<&Node>) -> Node {
    let seeds = seed.map(|s| vec![s.addr().to_string()]).unwrap_or_default();
    let builder = quick().core_with(|c| c.authority = authority);
    builder.id(id(v)).seeds(seeds).start().await.unwrap()
}

/// Waits for the first range event of `events`.
async fn next_range_event(events: &mut NodeEvents) -> NodeEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = events.next().await.expect("stream open");
            if matches!(
                e,
                NodeEvent::RangeGained { .. } | NodeEvent::RangeLost { .. }
            ) {
                return e;
            }
        }
    })
    .await
    .expect("a range event within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_move_on_join_leave_and_crash() {
    let a = start(1000, None).await;
    let b = start(2000, Some(&a)).await;
    let c = start(3000, Some(&a)).await;
    // Wait until the three know each other (not a fixed sleep).
    let settled = chordal_node::local::LocalRing {
        nodes: vec![a.clone(), b.clone(), c.clone()],
    };
    settled
        .settle(chordal_node::local::Check::SuccessorLists)
        .await
        .expect("the ring settles");
    let mut on_a = a.events();
    let mut on_b = b.events();

    // A node joins just before B: B loses (1000, 1500].
    let n = start(1500, Some(&a)).await;
    let lost = KeyRange {
        start: id(1000),
        end: id(1500),
    };
    assert_eq!(
        next_range_event(&mut on_b).await,
        NodeEvent::RangeLost {
            vnode: id(2000),
            range: lost
        }
    );
    // It leaves gracefully: B gets it back.
    n.leave().await;
    assert_eq!(
        next_range_event(&mut on_b).await,
        NodeEvent::RangeGained {
            vnode: id(2000),
            range: lost
        }
    );
    // C crashes: A (after C on the ring) takes over (2000, 3000].
    c.abort().await;
    assert_eq!(
        next_range_event(&mut on_a).await,
        NodeEvent::RangeGained {
            vnode: id(1000),
            range: KeyRange {
                start: id(2000),
                end: id(3000)
            }
        }
    );
    // B leaves: its stream says so and ends.
    b.leave().await;
    let mut rest = Vec::new();
    while let Some(e) = on_b.next().await {
        rest.push(e);
    }
    assert_eq!(rest.last(), Some(&NodeEvent::Left));
    a.leave().await;
}

/// Under authority a ring of three takes a joiner and lets it leave
/// again, then shrinks by graceful leaves to none: each leave hands over
/// and goes within seconds, and the last node, with nobody left to take
/// over, leaves at once (it waited out the 30 s bound). (A crash next to
/// a leave in one config is the simulator's to test:
/// `a_leave_beside_a_crash_waits_for_the_takeover_not_for_its_bound`. A
/// term held over two adjacent intervals, which made a leave wait on
/// itself, is covered by a unit test in `authority/holds/tests.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_authority_the_last_nodes_leave_without_waiting_out_the_bound() {
    let a = start_deciding(1000, None).await;
    let b = start_deciding(2000, Some(&a)).await;
    let c = start_deciding(3000, Some(&a)).await;
    let ring = chordal_node::local::LocalRing {
        nodes: vec![a.clone(), b.clone(), c.clone()],
    };
    ring.healed(Duration::from_secs(20))
        .await
        .expect("the ring settles");
    // A node joins just before B and leaves again: B's range grows back
    // by the piece it had lost, held as a second interval.
    let n = start_deciding(1500, Some(&a)).await;
    let grown = chordal_node::local::LocalRing {
        nodes: vec![a.clone(), b.clone(), c.clone(), n.clone()],
    };
    grown
        .healed(Duration::from_secs(20))
        .await
        .expect("the ring settles with the joiner");
    n.leave().await;
    ring.healed(Duration::from_secs(20))
        .await
        .expect("the ring settles without it");
    c.leave().await;
    let started = std::time::Instant::now();
    b.leave().await;
    let b_took = started.elapsed();
    let started = std::time::Instant::now();
    a.leave().await;
    let a_took = started.elapsed();
    // The bound a leave waits for its terms is 30 s.
    assert!(b_took < Duration::from_secs(25), "b took {b_took:?}");
    assert!(a_took < Duration::from_secs(25), "a took {a_took:?}");
}
