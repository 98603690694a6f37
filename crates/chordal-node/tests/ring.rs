//! Real nodes over loopback TCP in one process.

use chordal_core::{Id, LookupMode};
use chordal_node::{Node, NodeConfig};
use std::time::Duration;

fn config() -> NodeConfig {
    NodeConfig {
        core: chordal_core::Config::default().with_maintenance_interval(Duration::from_millis(100)),
        ..NodeConfig::default()
    }
}

async fn start_ring(n: usize) -> Vec<Node> {
    let first = Node::start(config()).await.expect("first node");
    let mut nodes = vec![first];
    for _ in 1..n {
        let seed = nodes[0].addr().to_string();
        let node = Node::start(NodeConfig {
            seeds: vec![seed],
            ..config()
        })
        .await
        .expect("join");
        nodes.push(node);
    }
    nodes
}

/// The true successor of every id, from the sorted list of live ids.
fn oracle(nodes: &[Node]) -> Vec<Id> {
    let mut ids: Vec<Id> = nodes.iter().map(|n| n.ids()[0]).collect();
    ids.sort();
    ids
}

fn successor_of(sorted: &[Id], key: &Id) -> Id {
    let i = sorted.partition_point(|id| id < key);
    sorted[i % sorted.len()]
}

async fn converged(nodes: &[Node]) -> bool {
    let sorted = oracle(nodes);
    for n in nodes {
        let s = n.status().await.unwrap();
        let v = &s.vnodes[0];
        let me = v.me.id;
        let next = sorted[(sorted.partition_point(|id| *id <= me)) % sorted.len()];
        let prev =
            sorted[(sorted.partition_point(|id| *id < me) + sorted.len() - 1) % sorted.len()];
        if v.successors[0].id != next || v.predecessor.map(|p| p.id) != Some(prev) {
            return false;
        }
    }
    true
}

async fn wait_converged(nodes: &[Node], limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !converged(nodes).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ring did not converge within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_agree_with_the_oracle() {
    let nodes = start_ring(8).await;
    wait_converged(&nodes, Duration::from_secs(20)).await;
    let sorted = oracle(&nodes);
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..20 {
            let key = Id::hash(format!("key-{i}-{k}").as_bytes());
            for mode in [LookupMode::Recursive, LookupMode::Iterative] {
                let r = n.lookup(key, mode).await.expect("lookup");
                assert_eq!(
                    r.owner.id,
                    successor_of(&sorted, &key),
                    "{mode:?} from node {i}"
                );
            }
        }
    }
    let walk = nodes[3].walk_ring(100).await.unwrap();
    assert_eq!(walk.len(), 8);
    // In ring order, starting at node 3.
    let start = sorted
        .iter()
        .position(|id| *id == nodes[3].ids()[0])
        .unwrap();
    for (k, m) in walk.iter().enumerate() {
        assert_eq!(m.node.id, sorted[(start + k) % 8]);
    }
    for n in &nodes {
        n.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_tells_neighbours_and_ring_heals() {
    let mut nodes = start_ring(5).await;
    wait_converged(&nodes, Duration::from_secs(20)).await;
    let gone = nodes.remove(2);
    gone.leave().await;
    // The leave message repairs both neighbours without waiting for timeouts.
    wait_converged(&nodes, Duration::from_secs(5)).await;
    for n in &nodes {
        n.leave().await;
    }
}
