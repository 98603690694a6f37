//! How many processes the ring has, estimated from a node's own state
//! (ring-size monitoring, as the DHT library with async I/O does it), without asking anyone.
//!
//! A vnode's successor list covers the arc from it to its last successor.
//! With identifiers spread uniformly, the arc `f` (a fraction of the
//! ring) to the `k`-th successor is a sum of `k` gaps, and `(k - 1) / f`
//! estimates the vnodes of the ring without bias (for `k` = 8 one vnode's
//! figure is within about −45 % / +75 % nine times in ten); averaging over
//! every vnode of the process (each has its own list) steadies it. A list that came back round to its owner
//! (`RoutingTable::is_complete`) names every node: then the count is exact.

use super::RoutingTable;
use std::collections::BTreeSet;

/// The estimated number of processes of the ring, from the routing tables
/// of this process's vnodes; `None` while no vnode has a successor list
/// (alone, or not joined: a lone process is 1).
pub fn ring_size(tables: &[&RoutingTable], vnodes_per_process: usize) -> Option<f64> {
    if tables.is_empty() {
        return None;
    }
    if tables.iter().all(|t| t.successors().is_empty()) {
        return Some(1.0);
    }
    // A list that wraps, or is not full, names everyone: count the
    // distinct processes.
    let names_everyone = |t: &&&RoutingTable| {
        !t.successors().is_empty()
            && (t.is_complete() || t.successors().len() < t.successor_list_len())
    };
    if let Some(t) = tables.iter().find(names_everyone) {
        let mut addrs: BTreeSet<_> = t.successors().iter().map(|n| n.addr).collect();
        addrs.insert(t.me().addr);
        return Some(addrs.len() as f64);
    }
    let mut vnode_counts = Vec::new();
    for t in tables {
        let (Some(last), k) = (t.successors().last(), t.successors().len()) else {
            continue;
        };
        let arc = fraction(&t.me().id.distance(&last.id));
        if arc > 0.0 {
            // One successor gives no unbiased figure: count it as k.
            vnode_counts.push((k.max(2) - 1) as f64 / arc);
        }
    }
    if vnode_counts.is_empty() {
        return None;
    }
    let vnodes = vnode_counts.iter().sum::<f64>() / vnode_counts.len() as f64;
    Some((vnodes / vnodes_per_process.max(1) as f64).max(1.0))
}

/// A distance as a fraction of the whole ring (from its top 64 bits: ample
/// precision for an estimate).
fn fraction(d: &crate::Id) -> f64 {
    d.high_u64() as f64 / 2f64.powi(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Id, NodeRef, Rng};

    fn node(id: Id, port: u16) -> NodeRef {
        NodeRef::new(id, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The table of `ring[i]` with the next `r` nodes as its successors.
    fn table(ring: &[NodeRef], i: usize, r: usize) -> RoutingTable {
        let mut t = RoutingTable::new(ring[i], r);
        let succs: Vec<NodeRef> = (1..=r).map(|j| ring[(i + j) % ring.len()]).collect();
        t.set_successors(succs[0], &succs[1..]);
        t
    }

    fn random_ring(n: usize, seed: u64) -> Vec<NodeRef> {
        let mut rng = Rng::new(seed);
        let mut ids: Vec<Id> = (0..n)
            .map(|_| Id::hash(&rng.next_u64().to_be_bytes()))
            .collect();
        ids.sort();
        ids.iter()
            .enumerate()
            .map(|(i, id)| node(*id, 1000 + i as u16))
            .collect()
    }

    #[test]
    fn successor_lists_estimate_large_rings_within_a_factor() {
        for n in [50, 500, 5000] {
            let ring = random_ring(n, n as u64);
            // One vnode per process: the median estimate over many nodes
            // is close.
            let mut estimates: Vec<f64> = (0..ring.len())
                .step_by((n / 50).max(1))
                .map(|i| {
                    let t = table(&ring, i, 8);
                    ring_size(&[&t], 1).unwrap()
                })
                .collect();
            estimates.sort_by(f64::total_cmp);
            let median = estimates[estimates.len() / 2];
            assert!(
                (0.7 * n as f64..=1.4 * n as f64).contains(&median),
                "n {n}: median estimate {median}"
            );
            // One node's figure is noisy (eight gaps): nine in ten within
            // a factor of 2.5 (the gamma distribution says 0.55 to 1.76).
            let m = estimates.len();
            let (lo, hi) = (estimates[m / 20], estimates[m - 1 - m / 20]);
            assert!(
                lo > n as f64 / 2.5 && hi < n as f64 * 2.5,
                "n {n}: 5th to 95th percentile {lo} to {hi}"
            );
        }
    }

    #[test]
    fn a_list_that_wraps_counts_exactly_and_a_lone_node_is_one() {
        let ring = random_ring(4, 7);
        // The list came back round to its owner: everyone is named.
        let mut t = RoutingTable::new(ring[0], 8);
        t.set_successors(ring[1], &[ring[2], ring[3], ring[0]]);
        assert!(t.is_complete());
        assert_eq!(ring_size(&[&t], 1), Some(4.0));
        let alone = RoutingTable::new(ring[0], 8);
        assert_eq!(ring_size(&[&alone], 1), Some(1.0));
        assert_eq!(ring_size(&[], 1), None);
    }
}
