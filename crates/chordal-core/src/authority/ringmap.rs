//! A map from the points of the ring to values, kept as ring intervals:
//! what the promise table of every process is made of.
//!
//! The ring is cut at a few points; each cut `c` owns the segment from
//! the cut before it (exclusive) to `c` (inclusive), wrapping round, the
//! way a Chord node owns `(predecessor, self]`. One cut alone owns the
//! whole ring; no cut at all means no point has a value.

use crate::{Id, KeyRange};
use std::collections::BTreeMap;

/// Values over ring intervals `(start, end]`; `None` marks points without
/// a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingMap<V> {
    /// Cut → the value of the segment that ends at it.
    cuts: BTreeMap<Id, Option<V>>,
}

impl<V> Default for RingMap<V> {
    fn default() -> Self {
        RingMap {
            cuts: BTreeMap::new(),
        }
    }
}

impl<V: Clone + PartialEq> RingMap<V> {
    /// The value at point `x`.
    pub fn get(&self, x: &Id) -> Option<&V> {
        self.segment_of(x).and_then(|c| self.cuts[&c].as_ref())
    }

    /// Gives every point of `range` (`start == end`: the whole ring) the
    /// value `v` (`None`: no value).
    pub fn set(&mut self, range: KeyRange, v: Option<V>) {
        if range.start == range.end {
            self.cuts.clear();
            if v.is_some() {
                self.cuts.insert(range.end, v);
            }
            return;
        }
        self.cut(range.start);
        self.cut(range.end);
        let inside: Vec<Id> = self.cuts_in(&range).collect();
        for c in inside {
            self.cuts.insert(c, v.clone());
        }
        self.merge();
    }

    /// Changes, with `f`, the value of every point of `range` that has one
    /// (cutting the map at the range's ends first).
    pub fn update(&mut self, range: KeyRange, mut f: impl FnMut(&mut V)) {
        if self.cuts.is_empty() {
            return;
        }
        if range.start != range.end {
            self.cut(range.start);
            self.cut(range.end);
        }
        let inside: Vec<Id> = self.cuts_in(&range).collect();
        for c in inside {
            if let Some(Some(v)) = self.cuts.get_mut(&c) {
                f(v);
            }
        }
        self.merge();
    }

    /// The pieces of `range` (`start == end`: the whole ring) with their
    /// values, in ring order from `range.start`; points without a value
    /// come as `None`. The pieces cover `range` exactly.
    pub fn pieces(&self, range: KeyRange) -> Vec<(KeyRange, Option<&V>)> {
        let Some(first) = self.segment_of(&range.start.wrapping_add(&Id::from_u64(1))) else {
            return vec![(range, None)];
        };
        // Walk the cuts from the segment holding the first point of the
        // range, clockwise, until one at or past the range's end.
        let whole = range.start == range.end;
        let mut out = Vec::new();
        let mut from = range.start;
        let cuts: Vec<&Id> = self
            .cuts
            .range(first..)
            .chain(self.cuts.range(..first))
            .map(|(c, _)| c)
            .collect();
        for c in cuts {
            let reaches_end = !whole && !c.in_open(&from, &range.end);
            let to = if reaches_end { range.end } else { *c };
            out.push((
                KeyRange {
                    start: from,
                    end: to,
                },
                self.cuts[c].as_ref(),
            ));
            if reaches_end {
                return out;
            }
            from = *c;
        }
        if from != range.end || out.is_empty() {
            // Past the last cut: back in the first cut's segment.
            let first_value = self.cuts[&first].as_ref();
            out.push((
                KeyRange {
                    start: from,
                    end: range.end,
                },
                first_value,
            ));
        }
        out
    }

    /// Every value and its pieces, for saving.
    pub fn entries(&self) -> Vec<(KeyRange, &V)> {
        let all = KeyRange {
            start: Id::ZERO,
            end: Id::ZERO,
        };
        self.pieces(all)
            .into_iter()
            .filter_map(|(r, v)| v.map(|v| (r, v)))
            .collect()
    }

    /// The cut whose segment holds `x`.
    fn segment_of(&self, x: &Id) -> Option<Id> {
        self.cuts
            .range(x..)
            .next()
            .or_else(|| self.cuts.iter().next())
            .map(|(c, _)| *c)
    }

    /// Makes `x` a cut, keeping every point's value.
    fn cut(&mut self, x: Id) {
        match self.segment_of(&x) {
            None => {
                self.cuts.insert(x, None);
            }
            Some(c) if c == x => {}
            Some(c) => {
                let v = self.cuts[&c].clone();
                self.cuts.insert(x, v);
            }
        }
    }

    /// The cuts in `(range.start, range.end]` (all of them for the whole ring).
    fn cuts_in<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = Id> + 'a {
        self.cuts
            .keys()
            .filter(move |c| c.in_open_closed(&range.start, &range.end))
            .copied()
    }

    /// Removes cuts between two segments of equal value, and a map of
    /// nothing but `None`.
    fn merge(&mut self) {
        if self.cuts.values().all(Option::is_none) {
            self.cuts.clear();
            return;
        }
        let keys: Vec<Id> = self.cuts.keys().copied().collect();
        for (i, c) in keys.iter().enumerate() {
            if self.cuts.len() < 2 {
                break;
            }
            let next = keys[(i + 1) % keys.len()];
            if next != *c && self.cuts.get(&next) == self.cuts.get(c) {
                // `(prev, c]` and `(c, next]` agree: one segment `(prev, next]`.
                self.cuts.remove(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(x: u64) -> Id {
        Id::from_u64(x)
    }

    fn range(a: u64, b: u64) -> KeyRange {
        KeyRange {
            start: id(a),
            end: id(b),
        }
    }

    #[test]
    fn a_range_set_shows_in_its_points_only() {
        let mut m = RingMap::default();
        m.set(range(10, 20), Some(1));
        assert_eq!(m.get(&id(10)), None);
        assert_eq!(m.get(&id(11)), Some(&1));
        assert_eq!(m.get(&id(20)), Some(&1));
        assert_eq!(m.get(&id(21)), None);
        m.set(range(15, 5), Some(2)); // wraps
        assert_eq!(m.get(&id(12)), Some(&1));
        assert_eq!(m.get(&id(16)), Some(&2));
        assert_eq!(m.get(&Id::MAX), Some(&2));
        assert_eq!(m.get(&id(3)), Some(&2));
        assert_eq!(m.get(&id(7)), None);
        m.set(range(0, 0), Some(3));
        assert_eq!(m.cuts.len(), 1);
        assert_eq!(m.get(&id(7)), Some(&3));
    }

    /// Points that sit at and next to every cut the tests make.
    fn probe_points() -> Vec<Id> {
        let mut p: Vec<Id> = (0..24).map(id).collect();
        p.push(Id::MAX);
        p.push(Id::MAX.wrapping_sub(&id(1)));
        p
    }

    #[derive(Clone, Debug)]
    enum Step {
        Set(u64, u64, Option<u8>),
        Bump(u64, u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..20, 0u64..20, proptest::option::of(0u8..4))
                .prop_map(|(a, b, v)| Step::Set(a, b, v)),
            (0u64..20, 0u64..20).prop_map(|(a, b)| Step::Bump(a, b)),
        ]
    }

    proptest! {
        /// The map agrees with a brute-force model (a value per probe
        /// point), and its pieces cover any range exactly, in order.
        #[test]
        fn matches_a_point_by_point_model(steps in proptest::collection::vec(step(), 1..30), q in (0u64..20, 0u64..20)) {
            let points = probe_points();
            let mut model: Vec<Option<u8>> = vec![None; points.len()];
            let mut m: RingMap<u8> = RingMap::default();
            for s in steps {
                match s {
                    Step::Set(a, b, v) => {
                        m.set(range(a, b), v);
                        for (i, p) in points.iter().enumerate() {
                            if p.in_open_closed(&id(a), &id(b)) { model[i] = v; }
                        }
                    }
                    Step::Bump(a, b) => {
                        m.update(range(a, b), |v| *v = v.wrapping_add(1) % 4);
                        for (i, p) in points.iter().enumerate() {
                            if p.in_open_closed(&id(a), &id(b)) && let Some(v) = &mut model[i] {
                                *v = v.wrapping_add(1) % 4;
                            }
                        }
                    }
                }
                for (i, p) in points.iter().enumerate() {
                    prop_assert_eq!(m.get(p).copied(), model[i], "point {:?}", p);
                }
            }
            let r = range(q.0, q.1);
            let pieces = m.pieces(r);
            prop_assert_eq!(pieces[0].0.start, r.start);
            prop_assert_eq!(pieces[pieces.len() - 1].0.end, r.end);
            for w in pieces.windows(2) {
                prop_assert_eq!(w[0].0.end, w[1].0.start);
            }
            for (piece, v) in &pieces {
                for p in &points {
                    if piece.contains(p) && r.contains(p) {
                        prop_assert_eq!(m.get(p), *v);
                    }
                }
            }
        }
    }
}
