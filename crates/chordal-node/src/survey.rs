//! A walk around the ring and what it shows wrong: what `/v1/ring` and
//! `chordal ring` report.

use crate::RingMember;
use chordal_core::{NodeRef, replica_set_where};
use std::collections::BTreeSet;

/// What a walk by successor pointers found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingSurvey {
    /// The live members, in ring order from the walker.
    pub members: Vec<RingMember>,
    /// Nodes that did not answer: (the node, the member whose successor
    /// list named it).
    pub unreachable: Vec<(NodeRef, NodeRef)>,
}

impl RingSurvey {
    /// Problems seen, in words: a successor that does not point back, an
    /// unreachable node, a key range whose owner would place fewer than
    /// `replicas` copies (its successor list names too few live
    /// processes). Empty for a healthy ring.
    pub fn problems(&self, replicas: usize) -> Vec<String> {
        let mut out = Vec::new();
        let n = self.members.len();
        for (i, m) in self.members.iter().enumerate() {
            if n < 2 {
                break;
            }
            let next = &self.members[(i + 1) % n];
            if next.predecessor != Some(m.node) {
                let theirs = next
                    .predecessor
                    .map(|p| short(&p))
                    .unwrap_or_else(|| "none".into());
                out.push(format!(
                    "successor does not point back: the successor of {} is {}, whose predecessor is {}",
                    short(&m.node),
                    short(&next.node),
                    theirs
                ));
            }
        }
        for (dead, named_by) in &self.unreachable {
            out.push(format!(
                "node {} unreachable (still in the successor list of {})",
                short(dead),
                short(named_by)
            ));
        }
        let live: BTreeSet<_> = self.members.iter().map(|m| m.node.addr).collect();
        let want = replicas.max(1);
        if live.len() < want {
            out.push(format!(
                "only {} live process(es): every key range has {} of {want} copies",
                live.len(),
                live.len()
            ));
            return out;
        }
        for m in &self.members {
            let placed =
                replica_set_where(&m.node, &m.successors, want, |s| live.contains(&s.addr));
            if placed.len() + 1 < want {
                let from = m
                    .predecessor
                    .map(|p| short(&p))
                    .unwrap_or_else(|| "?".into());
                out.push(format!(
                    "key range ({from}, {}] has {} of {want} copies: its owner's successor list names too few live processes",
                    short(&m.node),
                    placed.len() + 1
                ));
            }
        }
        out
    }
}

/// A node as problems name it: its id's first 8 hex digits and address.
fn short(n: &NodeRef) -> String {
    format!("{}@{}", &n.id.to_hex()[..8], n.addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chordal_core::Id;

    fn node(i: u16) -> NodeRef {
        NodeRef::new(
            Id::from_u64(i as u64 * 1000),
            ([127, 0, 0, 1], 7000 + i).into(),
        )
    }

    /// A correct ring of `n` members, successor lists of 3.
    fn ring(n: u16) -> RingSurvey {
        let members = (0..n)
            .map(|i| RingMember {
                node: node(i),
                api: None,
                service: None,
                keys_stored: 0,
                predecessor: Some(node((i + n - 1) % n)),
                successors: (1..=3).map(|k| node((i + k) % n)).collect(),
            })
            .collect();
        RingSurvey {
            members,
            unreachable: Vec::new(),
        }
    }

    #[test]
    fn a_correct_ring_has_no_problems() {
        assert!(ring(5).problems(3).is_empty());
    }

    #[test]
    fn each_kind_of_problem_is_reported() {
        let mut r = ring(5);
        r.members[2].predecessor = Some(node(0));
        let p = r.problems(3);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("does not point back"), "{p:?}");

        let mut r = ring(5);
        r.unreachable.push((node(9), node(4)));
        assert!(r.problems(3)[0].contains("unreachable"));

        // Member 1's list names only itself and dead nodes.
        let mut r = ring(5);
        r.members[1].successors = vec![node(1), node(9)];
        let p = r.problems(3);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("has 1 of 3 copies"), "{p:?}");

        assert!(ring(2).problems(3)[0].contains("only 2 live process(es)"));
    }
}
