//! The routing state of one virtual node: predecessor, successor list and
//! finger table (Stoica et al., §4.3 and §5.2), with the pure decisions made
//! on it. Nothing here sends a message; [`VNode`](super::VNode) does that.

use crate::{ID_BITS, Id, NodeRef};

/// Predecessor, successor list and fingers of the virtual node `me`.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    me: NodeRef,
    predecessor: Option<NodeRef>,
    /// The next `r` nodes clockwise, nearest first. Never contains `me`;
    /// empty means `me` is its own successor (alone on the ring).
    successors: Vec<NodeRef>,
    /// `fingers[i]` = successor(me + 2^i) as last learned; `None` until known.
    fingers: Vec<Option<NodeRef>>,
    /// Fingers that point before their start (`fingers[i]` closer to us
    /// than `me + 2^i`): none in a consistent table. While there are none,
    /// lookups skip the fingers that must lie beyond the key.
    early_fingers: usize,
    /// Maximum length `r` of `successors`.
    r: usize,
    /// Times a finger changed (for metrics).
    finger_changes: u64,
    /// Times the successor list changed (lets callers skip work when it
    /// did not).
    successor_changes: u64,
    /// The successor list was last set from a list that came back round
    /// to `me`: it names every other node of the ring.
    wraps: bool,
}

impl RoutingTable {
    /// The table of a node alone on its ring.
    pub fn new(me: NodeRef, r: usize) -> RoutingTable {
        RoutingTable {
            me,
            predecessor: None,
            successors: Vec::with_capacity(r),
            fingers: vec![None; ID_BITS],
            early_fingers: 0,
            r: r.max(1),
            wraps: false,
            finger_changes: 0,
            successor_changes: 0,
        }
    }

    /// The virtual node this table belongs to.
    pub fn me(&self) -> NodeRef {
        self.me
    }

    /// The first successor; `me` when alone.
    pub fn successor(&self) -> NodeRef {
        self.successors.first().copied().unwrap_or(self.me)
    }

    /// The successor list, nearest first (empty when alone).
    pub fn successors(&self) -> &[NodeRef] {
        &self.successors
    }

    /// Does the successor list name every other node of the ring? True
    /// when alone, or when the list was last learned from one that came
    /// back round to us (a ring of at most `r + 1` nodes; failures since
    /// only make it smaller). False while a list is still filling.
    pub fn is_complete(&self) -> bool {
        self.successors.is_empty() || self.wraps
    }

    /// The longest the successor list gets (`r`).
    pub fn successor_list_len(&self) -> usize {
        self.r
    }

    /// The successor list as sent to others: starts with `me`'s successor,
    /// or is `[me]` when alone.
    pub fn successors_or_me(&self) -> Vec<NodeRef> {
        if self.successors.is_empty() {
            vec![self.me]
        } else {
            self.successors.clone()
        }
    }

    /// The predecessor, if known.
    pub fn predecessor(&self) -> Option<NodeRef> {
        self.predecessor
    }

    /// Replaces the predecessor; returns the old one.
    pub fn set_predecessor(&mut self, p: Option<NodeRef>) -> Option<NodeRef> {
        let p = p.filter(|p| *p != self.me);
        std::mem::replace(&mut self.predecessor, p)
    }

    /// Finger `i` as last learned.
    pub fn finger(&self, i: usize) -> Option<NodeRef> {
        self.fingers[i]
    }

    /// All 160 finger slots.
    pub fn fingers(&self) -> &[Option<NodeRef>] {
        &self.fingers
    }

    /// `me + 2^i`: the first id finger `i` is responsible for.
    pub fn finger_start(&self, i: usize) -> Id {
        self.me.id.add_pow2(i)
    }

    /// Records `node` as successor(finger_start(i)); `me` clears the slot.
    /// Returns whether the slot changed.
    pub fn set_finger(&mut self, i: usize, node: NodeRef) -> bool {
        let new = (node != self.me).then_some(node);
        let old = std::mem::replace(&mut self.fingers[i], new);
        let changed = old != new;
        if changed {
            self.early_fingers -= old.is_some_and(|f| self.is_early(i, &f)) as usize;
            self.early_fingers += new.is_some_and(|f| self.is_early(i, &f)) as usize;
        }
        self.finger_changes += changed as u64;
        changed
    }

    /// Would `node` in slot `i` lie before the slot's start, `me + 2^i`?
    fn is_early(&self, i: usize, node: &NodeRef) -> bool {
        self.me.id.distance(&node.id).bits() <= i
    }

    /// The finger slots that may hold a node in `(me, key)`, lowest first:
    /// finger `i` lies at least `2^i` past us, so in a consistent table
    /// only the slots below `bits(key - me)` can; otherwise all of them.
    fn fingers_before(&self, key: &Id) -> &[Option<NodeRef>] {
        if self.early_fingers > 0 {
            return &self.fingers;
        }
        &self.fingers[..self.me.id.distance(key).bits()]
    }

    /// How many times a finger changed since the table was made.
    pub fn finger_changes(&self) -> u64 {
        self.finger_changes
    }

    /// Is `key` owned by our successor, i.e. in `(me, successor]`?
    pub fn successor_owns(&self, key: &Id) -> bool {
        key.in_open_closed(&self.me.id, &self.successor().id)
    }

    /// Sets the successor list to `first` followed by `rest` (what `first`
    /// reported as its own successors). Drops `me` and anything after it (the
    /// list wrapped around a small ring), duplicates, and truncates to `r`.
    /// Returns the old first successor.
    pub fn set_successors(&mut self, first: NodeRef, rest: &[NodeRef]) -> NodeRef {
        let old = self.successor();
        let before = std::mem::replace(&mut self.successors, Vec::with_capacity(self.r));
        self.wraps = false;
        for n in std::iter::once(&first).chain(rest) {
            if n.id == self.me.id {
                self.wraps = true;
                break;
            }
            if self.successors.len() == self.r {
                break;
            }
            if !self.successors.iter().any(|s| s.id == n.id) {
                self.successors.push(*n);
            }
        }
        self.successor_changes += (before != self.successors) as u64;
        old
    }

    /// How many times the successor list changed since the table was made.
    pub fn successor_changes(&self) -> u64 {
        self.successor_changes
    }

    /// Puts `node` in front of the successor list (it was found between us
    /// and our successor). Returns the old first successor.
    pub fn push_successor(&mut self, node: NodeRef) -> NodeRef {
        let rest = self.successors.clone();
        self.set_successors(node, &rest)
    }

    /// Forgets every entry for which `dead` is true: predecessor, successors,
    /// fingers. When the whole successor list is gone the closest remaining
    /// finger (or the predecessor) becomes the successor, so that the ring can
    /// heal by stabilization. Returns the removed entries (deduplicated).
    pub fn remove(&mut self, dead: impl Fn(&NodeRef) -> bool) -> Vec<NodeRef> {
        let mut removed = Vec::new();
        let mut note = |n: NodeRef| {
            if !removed.contains(&n) {
                removed.push(n);
            }
        };
        if let Some(p) = self.predecessor.filter(|p| dead(p)) {
            note(p);
            self.predecessor = None;
        }
        let listed = self.successors.len();
        self.successors.retain(|s| {
            let d = dead(s);
            if d {
                note(*s);
            }
            !d
        });
        if self.successors.len() != listed {
            self.successor_changes += 1;
        }
        for i in 0..self.fingers.len() {
            if let Some(f) = self.fingers[i].filter(|f| dead(f)) {
                note(f);
                self.early_fingers -= self.is_early(i, &f) as usize;
                self.fingers[i] = None;
            }
        }
        if self.successors.is_empty() {
            let me = self.me.id;
            let nearest = self
                .fingers
                .iter()
                .flatten()
                .chain(self.predecessor.iter())
                .min_by_key(|n| me.distance(&n.id))
                .copied();
            if let Some(n) = nearest {
                // A guess to heal from: what lies beyond it is unknown.
                self.successors.push(n);
                self.successor_changes += 1;
                self.wraps = false;
            }
        }
        removed
    }

    /// Does the table (successors, fingers or predecessor) hold `node`?
    pub fn contains(&self, node: &NodeRef) -> bool {
        self.entries().any(|n| n == node)
    }

    /// Every distinct node this table knows, except `me`.
    pub fn known_nodes(&self) -> Vec<NodeRef> {
        let mut out: Vec<NodeRef> = Vec::new();
        let all = self
            .successors
            .iter()
            .chain(self.fingers.iter().flatten())
            .chain(self.predecessor.iter());
        for n in all {
            if !out.iter().any(|o| o.id == n.id) {
                out.push(*n);
            }
        }
        out
    }

    /// Every distinct entry of the table (successors, fingers, predecessor),
    /// possibly with repeats; cheap: consecutive equal fingers are skipped.
    fn entries(&self) -> impl Iterator<Item = &NodeRef> {
        let mut last: Option<&NodeRef> = None;
        let fingers = self.fingers.iter().rev().flatten().filter(move |f| {
            let repeat = last.is_some_and(|l| l == *f);
            last = Some(*f);
            !repeat
        });
        self.successors
            .iter()
            .chain(fingers)
            .chain(self.predecessor.iter())
    }

    /// `closest_preceding_node(key)` from the paper (Fig. 5), extended to the
    /// successor list (§5.3) and the predecessor: the known node in the open
    /// interval `(me, key)` nearest to `key`. `None` if no known node lies
    /// there.
    ///
    /// Fingers point ever farther from us (finger `i` is the successor of
    /// `me + 2^i`), so as in the paper the scan goes down from the top
    /// finger and stops at the first one inside `(me, key)`; the successor
    /// list and the predecessor are then compared with it. This runs on
    /// every hop, and the scan usually stops within a couple of fingers
    /// (it starts at the highest finger that can lie before the key).
    pub fn closest_preceding_node(&self, key: &Id) -> Option<NodeRef> {
        let me = self.me.id;
        let limit = me.distance(key);
        // Clockwise distance from us if `n` is in (me, key).
        let inside = |n: &NodeRef| {
            let d = me.distance(&n.id);
            (d != Id::ZERO && d < limit).then_some((d, *n))
        };
        let finger = self
            .fingers_before(key)
            .iter()
            .rev()
            .flatten()
            .find_map(inside);
        let others = self
            .successors
            .iter()
            .chain(self.predecessor.iter())
            .filter_map(inside);
        finger
            .into_iter()
            .chain(others)
            .max_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
    }

    /// Up to `k` known nodes in `(me, key)`, nearest to `key` first: the
    /// candidates to try in turn when a hop fails.
    pub fn closest_preceding_nodes(&self, key: &Id, k: usize) -> Vec<NodeRef> {
        let me = self.me.id;
        let limit = me.distance(key);
        let inside = |n: &NodeRef| {
            let d = me.distance(&n.id);
            (d != Id::ZERO && d < limit).then_some((d, *n))
        };
        let mut candidates: Vec<(Id, NodeRef)> = Vec::with_capacity(k + self.successors.len() + 1);
        // As in `closest_preceding_node`: the best fingers are the first
        // `k` distinct ones inside (me, key) from the top.
        let mut last: Option<Id> = None;
        for f in self.fingers_before(key).iter().rev().flatten() {
            if candidates.len() >= k {
                break;
            }
            if last != Some(f.id) {
                last = Some(f.id);
                candidates.extend(inside(f));
            }
        }
        candidates.extend(
            self.successors
                .iter()
                .chain(self.predecessor.iter())
                .filter_map(inside),
        );
        // Largest clockwise distance from me = nearest before the key.
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        candidates.dedup_by(|a, b| a.1.id == b.1.id);
        candidates.truncate(k);
        candidates.into_iter().map(|(_, n)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    fn node(v: u64) -> NodeRef {
        let addr: SocketAddr = format!("127.0.0.1:{}", 1000 + (v % 60000)).parse().unwrap();
        NodeRef::new(Id::from_u64(v), addr)
    }

    fn any_node() -> impl Strategy<Value = NodeRef> {
        (any::<[u8; 20]>(), 1u16..u16::MAX)
            .prop_map(|(id, port)| NodeRef::new(Id(id), SocketAddr::from(([127, 0, 0, 1], port))))
    }

    proptest! {
        /// Whatever the table holds, the chosen next hop is strictly closer to
        /// the key than we are: routing always makes progress (Theorem 2's premise).
        #[test]
        fn closest_preceding_node_is_strictly_closer(
            me in any_node(),
            others in proptest::collection::vec(any_node(), 0..40),
            fingers in proptest::collection::vec((0usize..ID_BITS, any_node()), 0..40),
            key in any::<[u8; 20]>().prop_map(Id),
        ) {
            let mut t = RoutingTable::new(me, 8);
            if let Some((first, rest)) = others.split_first() {
                t.set_successors(*first, rest);
            }
            for (i, f) in fingers {
                t.set_finger(i, f);
            }
            if let Some(next) = t.closest_preceding_node(&key) {
                prop_assert!(next.id.in_open(&me.id, &key));
                prop_assert!(next.id.distance(&key) < me.id.distance(&key));
                // No successor or predecessor in (me, key) is closer to the
                // key, nor the highest finger there (the paper's scan).
                // Lower fingers are only looked at if that one is outside:
                // in a consistent table they are farther from the key.
                let top_finger = t
                    .fingers()
                    .iter()
                    .rev()
                    .flatten()
                    .find(|f| f.id.in_open(&me.id, &key));
                let pred = t.predecessor();
                let rivals = t.successors().iter().chain(pred.iter()).chain(top_finger);
                for n in rivals {
                    if n.id.in_open(&me.id, &key) {
                        prop_assert!(next.id.distance(&key) <= n.id.distance(&key));
                    }
                }
            } else {
                for n in t.known_nodes() {
                    prop_assert!(!n.id.in_open(&me.id, &key));
                }
            }
        }
    }

    /// `closest_preceding_node` as the paper writes it: every finger from
    /// the top, then the successors and the predecessor.
    fn full_scan(t: &RoutingTable, key: &Id) -> Option<NodeRef> {
        let me = t.me().id;
        let inside = |n: &NodeRef| n.id.in_open(&me, key);
        let finger = t.fingers().iter().rev().flatten().find(|f| inside(f));
        let pred = t.predecessor();
        let others = t
            .successors()
            .iter()
            .chain(pred.iter())
            .filter(|n| inside(n));
        finger
            .into_iter()
            .chain(others)
            .max_by_key(|n| me.distance(&n.id))
            .copied()
    }

    /// `closest_preceding_nodes` over every finger: the first `k` distinct
    /// fingers inside `(me, key)` from the top, the successors and the
    /// predecessor, nearest to the key first.
    fn full_scan_nodes(t: &RoutingTable, key: &Id, k: usize) -> Vec<NodeRef> {
        let me = t.me().id;
        let mut fingers: Vec<NodeRef> = Vec::new();
        let mut last = None;
        for f in t.fingers().iter().rev().flatten() {
            if fingers.len() < k && last != Some(f.id) && f.id.in_open(&me, key) {
                fingers.push(*f);
            }
            last = Some(f.id);
        }
        let pred = t.predecessor();
        let mut all: Vec<NodeRef> = fingers
            .into_iter()
            .chain(t.successors().iter().copied())
            .chain(pred)
            .filter(|n| n.id.in_open(&me, key))
            .collect();
        all.sort_by_key(|n| std::cmp::Reverse(me.distance(&n.id)));
        all.dedup_by(|a, b| a.id == b.id);
        all.truncate(k);
        all
    }

    proptest! {
        /// Skipping the fingers that must lie past the key changes nothing:
        /// on a consistent table (fingers = the ring's true successors), and
        /// after some slots are overwritten with arbitrary nodes (which may
        /// point before their start) or removed again.
        #[test]
        fn finger_skip_matches_the_full_scan(
            ring in proptest::collection::btree_set(any::<[u8; 20]>().prop_map(Id), 2..200),
            overrides in proptest::collection::vec((0usize..ID_BITS, any_node()), 0..4),
            drop_overrides in any::<bool>(),
            keys in proptest::collection::vec(any::<[u8; 20]>().prop_map(Id), 1..40),
        ) {
            let oracle = crate::Oracle::new(ring.iter().copied().collect());
            let at = |id: Id| NodeRef::new(id, SocketAddr::from(([127, 0, 0, 1], 7000)));
            let me = at(oracle.ids()[0]);
            let mut t = RoutingTable::new(me, 4);
            let succs: Vec<NodeRef> = oracle.successors(&me.id, 4).into_iter().map(at).collect();
            t.set_successors(succs[0], &succs[1..]);
            t.set_predecessor(Some(at(oracle.prev(&me.id))));
            for i in 0..ID_BITS {
                t.set_finger(i, at(oracle.successor(&t.finger_start(i))));
            }
            let check = |t: &RoutingTable| -> Result<(), TestCaseError> {
                for key in &keys {
                    prop_assert_eq!(t.closest_preceding_node(key), full_scan(t, key));
                    let ids = |v: Vec<NodeRef>| v.into_iter().map(|n| n.id).collect::<Vec<_>>();
                    prop_assert_eq!(
                        ids(t.closest_preceding_nodes(key, 3)),
                        ids(full_scan_nodes(t, key, 3))
                    );
                }
                Ok(())
            };
            check(&t)?;
            for &(i, n) in &overrides {
                t.set_finger(i, n);
            }
            check(&t)?;
            if drop_overrides {
                let odd: Vec<Id> = overrides.iter().map(|(_, n)| n.id).collect();
                t.remove(|n| odd.contains(&n.id));
                check(&t)?;
                prop_assert_eq!(t.early_fingers, 0);
            }
        }
    }

    #[test]
    fn id_bits_is_the_highest_set_bit_plus_one() {
        assert_eq!(Id::ZERO.bits(), 0);
        assert_eq!(Id::from_u64(1).bits(), 1);
        for i in 0..ID_BITS {
            assert_eq!(Id::pow2(i).bits(), i + 1);
        }
        assert_eq!(Id::MAX.bits(), ID_BITS);
    }

    #[test]
    fn successor_list_stops_at_me_and_dedups() {
        let mut t = RoutingTable::new(node(10), 3);
        t.set_successors(node(20), &[node(30), node(30), node(10), node(40)]);
        assert_eq!(t.successors(), &[node(20), node(30)]);
        t.set_successors(node(20), &[node(30), node(40), node(50), node(60)]);
        assert_eq!(t.successors(), &[node(20), node(30), node(40)]);
    }

    #[test]
    fn alone_owns_everything() {
        let t = RoutingTable::new(node(10), 3);
        assert_eq!(t.successor(), node(10));
        assert!(t.successor_owns(&Id::from_u64(5)));
        assert!(t.successor_owns(&Id::from_u64(10)));
        assert_eq!(t.closest_preceding_node(&Id::from_u64(5)), None);
    }

    #[test]
    fn removing_successors_falls_back_to_fingers() {
        let mut t = RoutingTable::new(node(10), 2);
        t.set_successors(node(20), &[node(30)]);
        t.set_finger(5, node(50));
        t.set_finger(6, node(90));
        t.set_predecessor(Some(node(5)));
        let removed = t.remove(|n| n.id <= Id::from_u64(30));
        assert_eq!(removed, vec![node(5), node(20), node(30)]);
        assert_eq!(t.successor(), node(50));
        assert_eq!(t.predecessor(), None);
    }

    #[test]
    fn set_predecessor_ignores_me() {
        let mut t = RoutingTable::new(node(10), 2);
        t.set_predecessor(Some(node(10)));
        assert_eq!(t.predecessor(), None);
    }
}
