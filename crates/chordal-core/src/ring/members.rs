//! The full membership table of one-hop routing (Gupta, Liskov &
//! Rodrigues, NSDI 2004; D1HT, Monnerat & Amorim): every virtual node of
//! the ring by id, so that a request goes straight to its key's owner
//! instead of through O(log N) Chord hops.
//!
//! The table is a hint, never the authority. The owner it names still
//! checks the key against its own range and answers `WrongOwner` when the
//! table was stale, and the coordinator then falls back to a Chord lookup:
//! a wrong entry costs one extra round trip, never a wrong answer.
//!
//! Besides the vnodes, the table orders the *processes* on a ring of their
//! own (by SHA-1 of the peer address): the dissemination ring of
//! [`super::edra`], where each process is one member however many vnodes
//! it hosts.

use crate::{Id, NodeRef};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Bytes one entry of either B-tree (vnodes, processes) costs, as
/// reported: id, address (and count) plus the B-tree's own overhead.
/// Measured: a simulator of N one-vnode processes grows by ~174 bytes per
/// table entry (N² of them), the two entries' 160 and the rest of the
/// simulation.
const BYTES_PER_ENTRY: usize = 80;

/// A summary of a table that two processes compare before one copies the
/// other's: equal digests mean (almost surely) equal tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Digest {
    /// Entries in the table.
    pub count: u64,
    /// The XOR of every entry's id.
    pub xor: Id,
}

/// Slices of the id space (by the ids' top six bits) that table copies
/// compare one by one, so that a copy carries only the slices that differ.
pub const SLICES: usize = 64;

/// The slice of the id space `id` falls in (`0..SLICES`).
pub fn slice_of(id: &Id) -> usize {
    (id.0[0] >> 2) as usize
}

/// Every vnode this process knows of, and the processes hosting them.
#[derive(Clone, Debug)]
pub struct Members {
    nodes: BTreeMap<Id, SocketAddr>,
    /// The dissemination ring: process position → address, and how many
    /// of `nodes` that process hosts. (No map from address to position:
    /// the position is recomputed on the rare insert or removal, which
    /// keeps the table at two B-tree entries per process.)
    processes: BTreeMap<Id, (SocketAddr, u32)>,
    /// The XOR of every id in `nodes` (see [`Digest`]).
    xor: Id,
    /// Most entries the table holds; more are refused (and routed by Chord).
    max: usize,
    /// Entries refused because the table was full.
    refused: u64,
}

/// A process's position on the dissemination ring.
pub fn process_position(addr: &SocketAddr) -> Id {
    Id::hash(addr.to_string().as_bytes())
}

impl Members {
    /// An empty table of at most `max` entries.
    pub fn new(max: usize) -> Members {
        Members {
            nodes: BTreeMap::new(),
            processes: BTreeMap::new(),
            xor: Id::ZERO,
            max: max.max(1),
            refused: 0,
        }
    }

    /// Vnodes in the table.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Processes in the table.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// What the table's memory is estimated at, in bytes.
    pub fn bytes(&self) -> usize {
        (self.nodes.len() + self.processes.len()) * BYTES_PER_ENTRY
    }

    /// The most entries the table takes.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Entries refused so far because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Is `node` in the table (same id, same address)?
    pub fn contains(&self, node: &NodeRef) -> bool {
        self.nodes.get(&node.id) == Some(&node.addr)
    }

    /// Adds `node` (or moves its id to a new address). Returns whether
    /// the table changed; `false` too when the table is full.
    pub fn insert(&mut self, node: NodeRef) -> bool {
        match self.nodes.get(&node.id) {
            Some(addr) if *addr == node.addr => return false,
            Some(_) => {
                self.remove(&node.id);
            }
            None if self.nodes.len() >= self.max => {
                self.refused += 1;
                return false;
            }
            None => {}
        }
        self.nodes.insert(node.id, node.addr);
        self.xor = self.xor.xor(&node.id);
        let entry = self
            .processes
            .entry(process_position(&node.addr))
            .or_insert((node.addr, 0));
        entry.1 += 1;
        true
    }

    /// Removes the vnode `id`, whatever its address. Returns whether it
    /// was there.
    pub fn remove(&mut self, id: &Id) -> bool {
        let Some(addr) = self.nodes.remove(id) else {
            return false;
        };
        self.xor = self.xor.xor(id);
        let pos = process_position(&addr);
        if let Some(entry) = self.processes.get_mut(&pos) {
            entry.1 -= 1;
            if entry.1 == 0 {
                self.processes.remove(&pos);
            }
        }
        true
    }

    /// Removes `node` if the table has it at that address.
    pub fn remove_node(&mut self, node: &NodeRef) -> bool {
        self.contains(node) && self.remove(&node.id)
    }

    /// The vnode the table says owns `key`: the first at or after it,
    /// clockwise (`key ∈ (predecessor, node]`).
    pub fn successor(&self, key: &Id) -> Option<NodeRef> {
        self.nodes
            .range(*key..)
            .next()
            .or_else(|| self.nodes.iter().next())
            .map(|(id, addr)| NodeRef::new(*id, *addr))
    }

    /// Up to `max` entries strictly between `a` and `b`, clockwise from
    /// `a` (none when `a == b`).
    pub fn between(&self, a: &Id, b: &Id, max: usize) -> Vec<NodeRef> {
        use std::ops::Bound::{Excluded, Unbounded};
        if a == b {
            return Vec::new();
        }
        let node = |(id, addr): (&Id, &SocketAddr)| NodeRef::new(*id, *addr);
        if a < b {
            self.nodes
                .range((Excluded(*a), Excluded(*b)))
                .take(max)
                .map(node)
                .collect()
        } else {
            self.nodes
                .range((Excluded(*a), Unbounded))
                .chain(self.nodes.range(..*b))
                .take(max)
                .map(node)
                .collect()
        }
    }

    /// Up to `max` entries with ids after `after` (from the lowest id when
    /// `None`) in the slices whose bits are set in `mask` (bit `i`: slice
    /// `i`, see [`slice_of`]; `u64::MAX` every slice), in id order, and
    /// whether more follow.
    pub fn page_in(&self, after: Option<Id>, max: usize, mask: u64) -> (Vec<NodeRef>, bool) {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        let mut it = self
            .nodes
            .range((start, Unbounded))
            .filter(|(id, _)| mask & (1 << slice_of(id)) != 0);
        let page: Vec<NodeRef> = it
            .by_ref()
            .take(max)
            .map(|(id, addr)| NodeRef::new(*id, *addr))
            .collect();
        (page, it.next().is_some())
    }

    /// The digest of each slice of the id space, `SLICES` of them.
    pub fn slice_digests(&self) -> Vec<Digest> {
        let mut slices = vec![Digest::default(); SLICES];
        for id in self.nodes.keys() {
            let d = &mut slices[slice_of(id)];
            d.count += 1;
            d.xor = d.xor.xor(id);
        }
        slices
    }

    /// The mask of the slices where `theirs` (another table's
    /// [`Members::slice_digests`]) differs from ours; every slice when
    /// `theirs` is not a full set.
    pub fn differing_slices(&self, theirs: &[Digest]) -> u64 {
        if theirs.len() != SLICES {
            return u64::MAX;
        }
        self.slice_digests()
            .iter()
            .zip(theirs)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// The table's digest.
    pub fn digest(&self) -> Digest {
        Digest {
            count: self.nodes.len() as u64,
            xor: self.xor,
        }
    }

    /// The processes strictly between `me` and ring position `until`,
    /// clockwise from `me` (every other process when `until` is `me`'s own
    /// position), split for dissemination (EDRA's `succ(p, 2^l)`): the
    /// 1st, 2nd, 4th, 8th, … of them, each with the position up to which
    /// it passes the events on — the next one's, the last one `until`.
    pub fn dissemination_targets(&self, me: &SocketAddr, until: &Id) -> Vec<(SocketAddr, Id)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let pos = process_position(me);
        let stretch: Vec<(Id, SocketAddr)> = self
            .processes
            .range((Excluded(pos), Unbounded))
            .chain(self.processes.range(..pos))
            .map(|(p, (a, _))| (*p, *a))
            .take_while(|(p, _)| p.in_open(&pos, until))
            .filter(|(_, a)| a != me)
            .collect();
        let mut starts = Vec::new();
        let mut i = 0usize;
        while i < stretch.len() {
            starts.push(i);
            i = 2 * i + 1;
        }
        starts
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let end = starts.get(k + 1).map_or(*until, |&j| stretch[j].0);
                (stretch[i].1, end)
            })
            .collect()
    }

    /// The first process after `addr` whose position is before `until`
    /// (clockwise), other than `me`: who covers `addr`'s stretch when it
    /// does not answer.
    pub fn next_process_before(
        &self,
        addr: &SocketAddr,
        until: &Id,
        me: &SocketAddr,
    ) -> Option<SocketAddr> {
        use std::ops::Bound::{Excluded, Unbounded};
        let pos = process_position(addr);
        self.processes
            .range((Excluded(pos), Unbounded))
            .chain(self.processes.range(..pos))
            .take_while(|(p, _)| p.in_open(&pos, until))
            .map(|(_, (a, _))| *a)
            .find(|a| a != me && a != addr)
    }

    /// Every entry, in id order (for copying a table after a pull).
    pub fn iter(&self) -> impl Iterator<Item = NodeRef> + '_ {
        self.nodes.iter().map(|(id, addr)| NodeRef::new(*id, *addr))
    }

    /// Empties the table.
    pub fn clear(&mut self) {
        let refused = self.refused;
        *self = Members::new(self.max);
        self.refused = refused;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn node(i: u64, port: u16) -> NodeRef {
        NodeRef::new(Id::from_u64(i), addr(port))
    }

    #[test]
    fn successor_wraps_around() {
        let mut m = Members::new(100);
        for (i, p) in [(10, 1), (20, 2), (30, 3)] {
            assert!(m.insert(node(i, p)));
        }
        assert_eq!(m.successor(&Id::from_u64(15)), Some(node(20, 2)));
        assert_eq!(m.successor(&Id::from_u64(20)), Some(node(20, 2)));
        assert_eq!(m.successor(&Id::from_u64(31)), Some(node(10, 1)));
    }

    #[test]
    fn processes_are_counted_once_and_leave_with_their_last_vnode() {
        let mut m = Members::new(100);
        m.insert(node(1, 7));
        m.insert(node(2, 7));
        m.insert(node(3, 8));
        assert_eq!((m.len(), m.process_count()), (3, 2));
        assert!(m.remove(&Id::from_u64(1)));
        assert_eq!(m.process_count(), 2);
        assert!(m.remove(&Id::from_u64(2)));
        assert_eq!((m.len(), m.process_count()), (1, 1));
        // An id seen at a new address moves there.
        assert!(m.insert(node(3, 9)));
        assert_eq!((m.len(), m.process_count()), (1, 1));
        assert!(!m.remove_node(&node(3, 8)));
    }

    #[test]
    fn digest_is_order_independent_and_tracks_removals() {
        let mut a = Members::new(100);
        let mut b = Members::new(100);
        for i in 0..50 {
            a.insert(node(i * 7 + 1, 1000 + i as u16));
        }
        for i in (0..50).rev() {
            b.insert(node(i * 7 + 1, 1000 + i as u16));
        }
        assert_eq!(a.digest(), b.digest());
        b.remove(&Id::from_u64(8));
        assert_ne!(a.digest(), b.digest());
        b.insert(node(8, 1001));
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn between_is_open_and_wraps() {
        let mut m = Members::new(100);
        for i in [10, 20, 30, 40] {
            m.insert(node(i, i as u16));
        }
        let ids = |v: Vec<NodeRef>| v.iter().map(|n| n.id).collect::<Vec<_>>();
        let id = Id::from_u64;
        assert_eq!(ids(m.between(&id(10), &id(40), 9)), [id(20), id(30)]);
        assert_eq!(ids(m.between(&id(35), &id(15), 9)), [id(40), id(10)]);
        assert_eq!(ids(m.between(&id(10), &id(40), 1)), [id(20)]);
        assert!(m.between(&id(20), &id(20), 9).is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_entries() {
        let mut m = Members::new(2);
        assert!(m.insert(node(1, 1)));
        assert!(m.insert(node(2, 2)));
        assert!(!m.insert(node(3, 3)));
        assert_eq!((m.len(), m.refused()), (2, 1));
    }

    #[test]
    fn pages_cover_the_table_once() {
        let mut m = Members::new(1000);
        for i in 0..95 {
            m.insert(node(i, 2000 + i as u16));
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, more) = m.page_in(after, 10, u64::MAX);
            after = page.last().map(|n| n.id);
            seen.extend(page);
            if !more {
                break;
            }
        }
        assert_eq!(seen, m.iter().collect::<Vec<_>>());
    }

    #[test]
    fn slices_that_differ_are_the_only_ones_copied() {
        let mut a = Members::new(10_000);
        for i in 0..2000u64 {
            a.insert(NodeRef::new(Id::hash(&i.to_be_bytes()), addr(i as u16)));
        }
        let mut b = a.clone();
        assert_eq!(a.differing_slices(&b.slice_digests()), 0);
        // b lacks one node and has one a lacks: two slices differ (or one).
        let gone = Id::hash(&7u64.to_be_bytes());
        let new = NodeRef::new(Id::hash(b"new"), addr(9999));
        b.remove(&gone);
        b.insert(new);
        let mask = a.differing_slices(&b.slice_digests());
        let want = (1u64 << slice_of(&gone)) | (1u64 << slice_of(&new.id));
        assert_eq!(mask, want);
        // a's pages for b carry exactly the entries of those slices.
        let (page, more) = a.page_in(None, 10_000, mask);
        assert!(!more);
        assert!(page.iter().any(|n| n.id == gone));
        assert!(page.iter().all(|n| mask & (1 << slice_of(&n.id)) != 0));
        let in_slices = a
            .iter()
            .filter(|n| mask & (1 << slice_of(&n.id)) != 0)
            .count();
        assert_eq!(page.len(), in_slices);
        assert!(
            page.len() < 2000 / 16,
            "{} of 2000 entries copied",
            page.len()
        );
        // Without slice digests (an old peer), everything.
        assert_eq!(a.differing_slices(&[]), u64::MAX);
    }

    #[test]
    fn targets_split_the_stretch_in_powers_of_two() {
        let mut m = Members::new(1000);
        let addrs: Vec<SocketAddr> = (0..13)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], 3000 + p)))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            m.insert(NodeRef::new(Id::from_u64(i as u64), *a));
        }
        let mut ring = addrs.clone();
        ring.sort_by_key(process_position);
        let me = ring[5];
        let at = |k: usize| ring[(5 + k) % 13];
        let pos = |a: SocketAddr| process_position(&a);
        // The whole ring: 12 others, split at the 1st, 2nd, 4th and 8th.
        let t = m.dissemination_targets(&me, &pos(me));
        let want = vec![
            (at(1), pos(at(2))),
            (at(2), pos(at(4))),
            (at(4), pos(at(8))),
            (at(8), pos(me)),
        ];
        assert_eq!(t, want);
        // A stretch of three (the 8th's: 9th, 10th, 11th, 12th after us,
        // seen from the 8th).
        let t = m.dissemination_targets(&at(8), &pos(me));
        assert_eq!(
            t,
            vec![
                (at(9), pos(at(10))),
                (at(10), pos(at(12))),
                (at(12), pos(me))
            ]
        );
        // The last of a stretch covers nothing further.
        assert!(m.dissemination_targets(&at(12), &pos(me)).is_empty());
        // Who stands in for a silent target: the next one inside its stretch.
        assert_eq!(m.next_process_before(&at(4), &pos(at(8)), &me), Some(at(5)));
        assert_eq!(m.next_process_before(&at(7), &pos(at(8)), &me), None);
    }
}
