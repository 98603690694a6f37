//! The one ring walk: follow successor lists from a starting node, stepping
//! over entries that do not answer, until the walk comes back round. Pure —
//! the caller asks each node (through its own node, or over the wire) and
//! reports the answer — so [`Node::survey_ring`](crate::Node::survey_ring)
//! and the [`Client`](crate::Client)'s membership share it.

use chordal_core::{Id, Neighbors, NodeRef, Target};
use std::collections::BTreeMap;

/// Which node of each successor list is asked next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stride {
    /// The first successor: every member is asked (a survey: each one's
    /// predecessor, successor list and load).
    Every,
    /// The farthest: a list's worth of members learned per answer (a
    /// membership walk, `N / r` requests).
    Far,
}

/// A walk in progress.
#[derive(Debug)]
pub(crate) struct RingWalk {
    stride: Stride,
    limit: usize,
    /// The node to ask now.
    next: Option<Target>,
    /// Where to go if `next` does not answer, best first.
    fallbacks: Vec<NodeRef>,
    /// The answers, in walk order.
    answers: Vec<Neighbors>,
    /// Every node that answered or was named by an answer, by id.
    members: BTreeMap<Id, NodeRef>,
    /// Nodes that did not answer, and the node whose list named them.
    unreachable: Vec<(NodeRef, Option<NodeRef>)>,
}

/// What a finished walk found.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// The answers, in ring order from the start.
    pub answers: Vec<Neighbors>,
    /// Every member answering or named (dead ones named but not asked
    /// included), in id order.
    pub members: Vec<NodeRef>,
    /// Nodes asked that did not answer, with the node that named them.
    pub unreachable: Vec<(NodeRef, Option<NodeRef>)>,
}

impl RingWalk {
    /// A walk from `start` (an address alone will do: the answer names the
    /// node), stopping after `limit` answers (`Every`) or members (`Far`).
    pub fn new(start: Target, stride: Stride, limit: usize) -> RingWalk {
        RingWalk {
            stride,
            limit,
            next: Some(start),
            fallbacks: Vec::new(),
            answers: Vec::new(),
            members: BTreeMap::new(),
            unreachable: Vec::new(),
        }
    }

    /// The node to ask now; `None` once the walk is over.
    pub fn next(&self) -> Option<Target> {
        self.next
    }

    /// The node `next` named answered with `answer` (`None`: it did not).
    pub fn answered(&mut self, answer: Option<Neighbors>) {
        let Some(asked) = self.next.take() else {
            return;
        };
        match answer {
            Some(n) => self.learn(n),
            None => {
                if let Some(id) = asked.id {
                    let named_by = self.answers.last().map(|a| a.node);
                    self.unreachable
                        .push((NodeRef::new(id, asked.addr), named_by));
                }
                self.next = self.pick();
            }
        }
    }

    /// The result.
    pub fn finish(self) -> Walk {
        Walk {
            answers: self.answers,
            members: self.members.into_values().collect(),
            unreachable: self.unreachable,
        }
    }

    fn learn(&mut self, n: Neighbors) {
        let before = self.members.len();
        self.members.insert(n.node.id, n.node);
        if self.stride == Stride::Far {
            for s in &n.successors {
                self.members.insert(s.id, *s);
            }
        }
        let learned = self.members.len() > before;
        self.fallbacks = match self.stride {
            Stride::Every => n.successors.clone(),
            Stride::Far => n.successors.iter().rev().copied().collect(),
        };
        self.answers.push(n);
        let full = match self.stride {
            Stride::Every => self.answers.len() >= self.limit,
            Stride::Far => self.members.len() >= self.limit,
        };
        // A membership walk ends when an answer taught nothing new; both
        // end when they come back round (`pick` finds only visited nodes).
        self.next = if full || !learned { None } else { self.pick() };
    }

    /// The first fallback not asked yet; `None` when the walk is back at a
    /// node it asked (round the ring) or out of candidates. In `Every`
    /// order, the first successor already answered means the ring is
    /// closed.
    fn pick(&mut self) -> Option<Target> {
        while !self.fallbacks.is_empty() {
            let c = self.fallbacks.remove(0);
            let asked = self.answers.iter().any(|a| a.node == c)
                || self.unreachable.iter().any(|(u, _)| *u == c);
            if asked {
                if self.stride == Stride::Every && self.answers.iter().any(|a| a.node == c) {
                    return None;
                }
                continue;
            }
            return Some(c.into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn n(i: u64) -> NodeRef {
        NodeRef::new(
            Id::from_u64(i),
            SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
        )
    }

    /// A ring of `size` nodes 0..size with successor lists of `r`, where
    /// the nodes in `dead` do not answer (the lists still name them): what
    /// the walk asked, and what it found.
    fn run(size: u64, r: usize, dead: &[u64], stride: Stride) -> (Vec<u64>, Walk) {
        let mut walk = RingWalk::new(n(0).into(), stride, 1000);
        let mut asked = Vec::new();
        while let Some(t) = walk.next() {
            let i = t.id.expect("named").0[19] as u64;
            asked.push(i);
            let answer = (!dead.contains(&i)).then(|| Neighbors {
                node: n(i),
                predecessor: Some(n((i + size - 1) % size)),
                successors: (1..=r as u64).map(|k| n((i + k) % size)).collect(),
                keys_stored: 0,
            });
            walk.answered(answer);
        }
        (asked, walk.finish())
    }

    #[test]
    fn a_survey_asks_every_member_once_and_closes_the_ring() {
        let (asked, w) = run(10, 4, &[], Stride::Every);
        assert_eq!(asked, (0..10).collect::<Vec<_>>());
        assert_eq!(w.answers.len(), 10);
        assert_eq!(w.members.len(), 10);
        assert!(w.unreachable.is_empty());
    }

    #[test]
    fn a_membership_walk_asks_about_one_node_per_list() {
        let (asked, w) = run(40, 8, &[], Stride::Far);
        assert_eq!(w.members.len(), 40);
        assert!(asked.len() <= 40 / 8 + 2, "asked {asked:?}");
    }

    #[test]
    fn dead_members_are_stepped_over_and_reported() {
        // Node 3 died; node 2's list still names it first.
        let (asked, w) = run(10, 4, &[3], Stride::Every);
        assert_eq!(asked, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(w.answers.len(), 9);
        assert_eq!(w.unreachable, vec![(n(3), Some(n(2)))]);
        // The farthest entry of a list is dead: the walk steps back to the
        // one before it, and still learns every member.
        let (asked, far) = run(40, 8, &[8, 16], Stride::Far);
        assert_eq!(&asked[..3], &[0, 8, 7]);
        assert_eq!(far.members.len(), 40);
        assert_eq!(far.unreachable[0], (n(8), Some(n(0))));
    }
}
