//! The ground truth for tests and benchmarks: the ring as it really is,
//! computed from the sorted list of live ids.

use crate::Id;

/// Sorted ids of the live virtual nodes; answers `successor(id)` exactly.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    ids: Vec<Id>,
}

impl Oracle {
    /// The ring made of `ids` (any order, duplicates removed).
    pub fn new(mut ids: Vec<Id>) -> Oracle {
        ids.sort();
        ids.dedup();
        Oracle { ids }
    }

    /// Number of virtual nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Is the ring empty?
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// All ids in ring order from 0.
    pub fn ids(&self) -> &[Id] {
        &self.ids
    }

    /// The first node clockwise whose id is >= `key`.
    pub fn successor(&self, key: &Id) -> Id {
        let i = self.ids.partition_point(|id| id < key);
        self.ids[i % self.ids.len()]
    }

    /// The node right after `node` (which must be on the ring).
    pub fn next(&self, node: &Id) -> Id {
        let i = self.ids.partition_point(|id| id <= node);
        self.ids[i % self.ids.len()]
    }

    /// The node right before `node`.
    pub fn prev(&self, node: &Id) -> Id {
        let i = self.ids.partition_point(|id| id < node);
        self.ids[(i + self.ids.len() - 1) % self.ids.len()]
    }

    /// The `k` nodes after `node`, nearest first (fewer on a small ring).
    pub fn successors(&self, node: &Id, k: usize) -> Vec<Id> {
        let mut out = Vec::with_capacity(k);
        let mut cur = *node;
        for _ in 0..k.min(self.ids.len().saturating_sub(1)) {
            cur = self.next(&cur);
            out.push(cur);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_wraps() {
        let o = Oracle::new(vec![Id::from_u64(30), Id::from_u64(10), Id::from_u64(20)]);
        assert_eq!(o.successor(&Id::from_u64(5)), Id::from_u64(10));
        assert_eq!(o.successor(&Id::from_u64(10)), Id::from_u64(10));
        assert_eq!(o.successor(&Id::from_u64(11)), Id::from_u64(20));
        assert_eq!(o.successor(&Id::from_u64(31)), Id::from_u64(10));
        assert_eq!(o.next(&Id::from_u64(30)), Id::from_u64(10));
        assert_eq!(o.prev(&Id::from_u64(10)), Id::from_u64(30));
        assert_eq!(
            o.successors(&Id::from_u64(10), 5),
            vec![Id::from_u64(20), Id::from_u64(30)]
        );
    }
}
