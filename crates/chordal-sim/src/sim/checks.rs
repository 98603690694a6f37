//! What the ring should look like, and how far it is from that: the
//! oracle of true successors and the errors counted against it.

use super::*;

impl Sim {
    /// The live node whose (first) vnode owns `key` now, by the oracle.
    /// Panics if none does.
    pub fn owner_of(&self, key: &[u8]) -> usize {
        let id = self.oracle().successor(&Id::of_key(key));
        (0..self.nodes.len())
            .find(|i| self.nodes[*i].alive && self.nodes[*i].node.vnodes()[0].me().id == id)
            .expect("the owner is a live node")
    }

    /// Does node `i`'s store hold a record (a value or a tombstone) for `key`?
    pub fn holds(&self, i: usize, key: &[u8]) -> bool {
        let id = Id::of_key(key);
        matches!(self.nodes[i].store.get(&id, key), Ok(Some(_)))
    }

    /// The live nodes whose stores hold a record for `key`.
    pub fn holders(&self, key: &[u8]) -> Vec<usize> {
        self.alive()
            .into_iter()
            .filter(|i| self.holds(*i, key))
            .collect()
    }

    /// The true ring of live virtual nodes.
    pub fn oracle(&self) -> Oracle {
        Oracle::new(
            self.nodes
                .iter()
                .filter(|n| n.alive)
                .flat_map(|n| n.node.vnodes().iter().map(|v| v.me().id))
                .collect(),
        )
    }

    /// The true ring of live virtual nodes that have finished joining: who
    /// should own each key right now. (A node still joining owns nothing
    /// yet; [`Sim::oracle`] already counts it.)
    pub fn joined_oracle(&self) -> Oracle {
        Oracle::new(
            self.nodes
                .iter()
                .filter(|n| n.alive)
                .flat_map(|n| n.node.vnodes().iter())
                .filter(|v| v.is_joined())
                .map(|v| v.me().id)
                .collect(),
        )
    }

    /// Does every live virtual node have the true successor (and, if
    /// `with_predecessors`, the true predecessor)? Returns the number wrong.
    pub fn ring_errors(&self, with_predecessors: bool) -> usize {
        let oracle = self.oracle();
        let mut wrong = 0;
        for n in self.nodes.iter().filter(|n| n.alive) {
            for v in n.node.vnodes() {
                let id = v.me().id;
                let ok_succ = v.is_joined() && v.table().successor().id == oracle.next(&id);
                let ok_pred = !with_predecessors
                    || v.table().predecessor().map(|p| p.id) == Some(oracle.prev(&id))
                    || (oracle.len() == 1 && v.table().predecessor().is_none());
                if !(ok_succ && ok_pred) {
                    wrong += 1;
                }
            }
        }
        wrong
    }

    /// One line per live virtual node whose neighbours are wrong: what it
    /// has and what the truth is. For failure messages.
    pub fn describe_errors(&self, limit: usize) -> String {
        let oracle = self.oracle();
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
            for v in n.node.vnodes() {
                let id = v.me().id;
                let succ = v.table().successor().id;
                let pred = v.table().predecessor().map(|p| p.id);
                if succ != oracle.next(&id) || pred != Some(oracle.prev(&id)) {
                    out.push_str(&format!(
                        "node {i} {:?} {:?}: succ {:?} (true {:?}) pred {:?} (true {:?}) list {:?}\n",
                        id,
                        v.phase(),
                        succ,
                        oracle.next(&id),
                        pred,
                        oracle.prev(&id),
                        v.table().successors().iter().map(|s| s.id).collect::<Vec<_>>()
                    ));
                    if out.lines().count() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Number of finger slots (over all live virtual nodes) that differ from
    /// the truth.
    pub fn finger_errors(&self) -> usize {
        let oracle = self.oracle();
        let mut wrong = 0;
        for n in self.nodes.iter().filter(|n| n.alive) {
            for v in n.node.vnodes() {
                for i in 0..chordal_core::ID_BITS {
                    let truth = oracle.successor(&v.table().finger_start(i));
                    let have = v.table().finger(i).map(|f| f.id).unwrap_or(v.me().id);
                    if have != truth {
                        wrong += 1;
                    }
                }
            }
        }
        wrong
    }
}
