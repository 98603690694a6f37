//! Where a key lives and where its copies go: the one statement of the
//! rule, used by the core, the HTTP API's `locate`, the ring survey and
//! the gateway (DESIGN §5).
//!
//! A key belongs to its successor, the first node whose id is at or after
//! the key's id going clockwise. Its `R - 1` further copies go to the next
//! nodes of the owner's successor list that run on distinct processes
//! other than the owner's: two virtual nodes of one process are one
//! failure, not two copies.

use crate::{Id, NodeRef};

/// The replica holders of `owner`'s keys besides the owner: the first
/// `r - 1` nodes of `successors` (the owner's successor list, nearest
/// first) on distinct processes other than the owner's.
pub fn replica_set<'a>(
    owner: &NodeRef,
    successors: impl IntoIterator<Item = &'a NodeRef>,
    r: usize,
) -> Vec<NodeRef> {
    replica_set_where(owner, successors, r, |_| true)
}

/// [`replica_set`] over the successors for which `usable` holds (live
/// ones, those with a service, …).
pub fn replica_set_where<'a>(
    owner: &NodeRef,
    successors: impl IntoIterator<Item = &'a NodeRef>,
    r: usize,
    usable: impl Fn(&NodeRef) -> bool,
) -> Vec<NodeRef> {
    let mut out: Vec<NodeRef> = Vec::new();
    for n in successors {
        if out.len() + 1 >= r {
            break;
        }
        if n.addr != owner.addr && usable(n) && !out.iter().any(|o| o.addr == n.addr) {
            out.push(*n);
        }
    }
    out
}

/// The index in `sorted` (members in ascending order of `id_of`, not
/// empty) of the successor of `key`: the first member with id at or after
/// it, wrapping to the first. For a client's or a gateway's view of the
/// ring; a member of the ring itself asks its routing table.
pub fn successor_index<T>(sorted: &[T], key: &Id, id_of: impl Fn(&T) -> Id) -> usize {
    let i = sorted.partition_point(|n| id_of(n) < *key);
    if i == sorted.len() { 0 } else { i }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn node(id: u64, port: u16) -> NodeRef {
        NodeRef::new(Id::from_u64(id), SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn replicas_skip_the_owners_process_and_repeats() {
        let owner = node(10, 1);
        // 20 is another vnode of the owner's process, 40 of 30's.
        let succs = [
            node(20, 1),
            node(30, 2),
            node(40, 2),
            node(50, 3),
            node(60, 4),
        ];
        let set = replica_set(&owner, &succs, 3);
        assert_eq!(set, vec![node(30, 2), node(50, 3)]);
        assert_eq!(replica_set(&owner, &succs, 1), vec![]);
        // Too few processes: as many as there are.
        assert_eq!(replica_set(&owner, &succs[..3], 3), vec![node(30, 2)]);
    }

    #[test]
    fn replicas_where_skips_unusable_nodes() {
        let owner = node(10, 1);
        let succs = [node(30, 2), node(50, 3), node(60, 4)];
        let set = replica_set_where(&owner, &succs, 3, |n| n.addr.port() != 3);
        assert_eq!(set, vec![node(30, 2), node(60, 4)]);
    }

    #[test]
    fn successor_wraps_around_the_ring() {
        let sorted = [node(10, 1), node(20, 2), node(30, 3)];
        let at = |k| successor_index(&sorted, &Id::from_u64(k), |n| n.id);
        assert_eq!([at(5), at(10), at(11), at(30), at(31)], [0, 0, 1, 2, 0]);
    }
}
