//! Deciding a collection command against what its owner read: the
//! header, the elements the command names, and (for a command reading
//! every element) the collection's element records. Pure: the owner
//! (`store/batch.rs`) holds, reads and writes; this says what to write
//! and what to answer.

use super::key::{Family, element_key, family_prefix, field_of};
use super::{CollOp, CollReply, Header};
use crate::batch::Contents;
use crate::write::{format_float, parse_float, parse_integer};
use crate::{Kind, OpResult, Record, Time, Version};
use std::collections::BTreeMap;

/// What the owner does with a collection command.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CollDecision {
    /// The answer (once `writes` are on the write quorum, if any).
    pub answer: OpResult,
    /// The records to write, by key: header and elements.
    pub writes: BTreeMap<Vec<u8>, Contents>,
}

impl CollDecision {
    pub(super) fn answer(answer: OpResult) -> CollDecision {
        CollDecision {
            answer,
            writes: BTreeMap::new(),
        }
    }
}

/// The collection as the command found it.
pub(super) struct Found<'a> {
    pub key: &'a [u8],
    pub kind: Kind,
    /// `None`: no live collection at the key (a new one is born with
    /// the write's version).
    pub header: Option<Header>,
    /// The header's expiry (kept by writes).
    pub expires: Option<Time>,
    pub prefix: Vec<u8>,
    pub now: Time,
}

impl Found<'_> {
    /// The header write that makes it `h` (a list's count is its
    /// length); the collection's delete when it holds nothing.
    pub fn header_set(&self, mut h: Header) -> (Vec<u8>, Contents) {
        if self.kind == Kind::List {
            h.count = h.len().max(0) as u64;
        }
        let contents = match h.count {
            0 => (None, None, Kind::String),
            _ => (Some(h.encode()), self.expires, self.kind),
        };
        (self.key.to_vec(), contents)
    }

    /// Is `r`, an element record, alive in this collection?
    pub fn alive(&self, r: &Record) -> bool {
        self.header
            .is_some_and(|h| r.is_live(self.now) && r.version >= h.born)
    }

    /// The live value of element `field`, from the records read.
    fn value<'r>(
        &self,
        elements: &'r BTreeMap<Vec<u8>, Option<Record>>,
        field: &[u8],
    ) -> Option<&'r [u8]> {
        let k = element_key(self.key, Family::Member, field);
        let r = elements.get(&k)?.as_ref()?;
        self.alive(r)
            .then(|| r.value.as_deref().unwrap_or_default())
    }

    /// The header write after the elements changed by `delta`, made at
    /// `version`; the collection's delete when none are left.
    fn header_write(&self, delta: i64, version: Version) -> (Vec<u8>, Contents) {
        let mut h = self.header.unwrap_or_else(|| Header::new(version));
        h.count = (h.count as i64 + delta).max(0) as u64;
        self.header_set(h)
    }
}

/// Decides `op` on the collection of `kind` at `key`, at `now`, against
/// `header` (the key's newest record), `elements` (the records of the
/// element keys [`CollOp::element_keys`] names) and, for a command that
/// reads every element, `all` (the collection's element records, in key
/// order). Writes are made at `version`; no value may pass `max_value`.
///
/// Every command that writes rewrites the header too (unchanged when the
/// count is), so that the header's version is the collection's newest:
/// WATCH in a transaction and the owner's watches see a field
/// overwritten, not only one added.
pub fn decide(
    key: &[u8],
    kind: Kind,
    op: CollOp,
    header: Option<&Record>,
    elements: &BTreeMap<Vec<u8>, Option<Record>>,
    all: &[Record],
    limits: (Time, Version, usize),
) -> CollDecision {
    let mut d = decide_elements(key, kind, op, header, elements, all, limits);
    if !d.writes.is_empty()
        && !d.writes.contains_key(key)
        && let Some(h) = header.filter(|r| r.is_live(limits.0))
    {
        d.writes
            .insert(key.to_vec(), (h.value.clone(), h.expires, h.kind));
    }
    d
}

/// [`decide`], but for the header write of a command whose count did not
/// change.
fn decide_elements(
    key: &[u8],
    kind: Kind,
    op: CollOp,
    header: Option<&Record>,
    elements: &BTreeMap<Vec<u8>, Option<Record>>,
    all: &[Record],
    (now, version, max_value): (Time, Version, usize),
) -> CollDecision {
    let live = header.filter(|r| r.is_live(now));
    if let CollOp::Kind = op {
        let kind = live.map(|r| (r.kind, r.expires));
        return CollDecision::answer(OpResult::Collection(CollReply::Kind(kind)));
    }
    if kind == Kind::String {
        // Not a collection's kind: nothing to create or read.
        return CollDecision::answer(OpResult::WrongType);
    }
    let header = match live {
        None => None,
        Some(r) if r.kind != kind => return CollDecision::answer(OpResult::WrongType),
        Some(r) => match r.value.as_deref().and_then(Header::decode) {
            Some(h) => Some(h),
            None => return CollDecision::answer(OpResult::StoreFailed),
        },
    };
    let found = Found {
        key,
        kind,
        header,
        expires: live.and_then(|r| r.expires),
        prefix: family_prefix(key, Family::Member),
        now,
    };
    let reply = |r: CollReply| OpResult::Collection(r);
    match kind {
        Kind::List => {
            return super::list::decide(&found, op, (elements, all), (version, max_value));
        }
        Kind::ZSet => return super::zset::decide(&found, op, elements, all, version),
        _ => {}
    }
    match op {
        CollOp::Kind => unreachable!("answered above"),
        CollOp::Len => CollDecision::answer(reply(CollReply::Count(
            header.map_or(0, |h| h.count as i64),
        ))),
        CollOp::Get { fields } => {
            let values = fields
                .iter()
                .map(|f| found.value(elements, f).map(<[u8]>::to_vec))
                .collect();
            CollDecision::answer(reply(CollReply::Values(values)))
        }
        CollOp::All => {
            let pairs = all
                .iter()
                .filter(|r| found.alive(r))
                .filter_map(|r| {
                    let f = field_of(&r.key, &found.prefix)?;
                    Some((f.to_vec(), r.value.clone().unwrap_or_default()))
                })
                .collect();
            CollDecision::answer(reply(CollReply::Pairs(pairs)))
        }
        CollOp::Put { pairs, only_new } => {
            // A later pair of the same field wins.
            let mut last: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
            for (f, v) in &pairs {
                if v.len() > max_value {
                    return CollDecision::answer(OpResult::TooLarge {
                        size: v.len() as u32,
                        limit: max_value as u32,
                    });
                }
                last.insert(f, v);
            }
            let mut writes = BTreeMap::new();
            let mut added = 0i64;
            for (f, v) in last {
                let present = found.value(elements, f).is_some();
                if present && only_new {
                    continue;
                }
                added += i64::from(!present);
                let k = element_key(key, Family::Member, f);
                writes.insert(k, (Some(v.to_vec()), None, Kind::String));
            }
            if added > 0 {
                let (k, c) = found.header_write(added, version);
                writes.insert(k, c);
            }
            CollDecision {
                answer: reply(CollReply::Count(added)),
                writes,
            }
        }
        CollOp::Remove { fields } => {
            let mut writes = BTreeMap::new();
            for f in &fields {
                if found.value(elements, f).is_some() {
                    let k = element_key(key, Family::Member, f);
                    writes.insert(k, (None, None, Kind::String));
                }
            }
            let removed = writes.len() as i64;
            if removed > 0 {
                let (k, c) = found.header_write(-removed, version);
                writes.insert(k, c);
            }
            CollDecision {
                answer: reply(CollReply::Count(removed)),
                writes,
            }
        }
        CollOp::Pop { count } => {
            let mut writes = BTreeMap::new();
            let mut popped = Vec::new();
            for r in all.iter().filter(|r| found.alive(r)) {
                if popped.len() >= count as usize {
                    break;
                }
                let Some(f) = field_of(&r.key, &found.prefix) else {
                    continue;
                };
                popped.push((f.to_vec(), r.value.clone().unwrap_or_default()));
                writes.insert(r.key.clone(), (None, None, Kind::String));
            }
            if !popped.is_empty() {
                let (k, c) = found.header_write(-(popped.len() as i64), version);
                writes.insert(k, c);
            }
            CollDecision {
                answer: reply(CollReply::Pairs(popped)),
                writes,
            }
        }
        CollOp::Incr { field, by, float } => {
            let current = found.value(elements, &field);
            let (text, answer) = if float {
                let Some(now_value) = current.map_or(Some(0.0), parse_float) else {
                    return CollDecision::answer(OpResult::NotAFloat);
                };
                let Some(by) = parse_float(&by) else {
                    return CollDecision::answer(OpResult::NotAFloat);
                };
                let next = now_value + by;
                if !next.is_finite() {
                    return CollDecision::answer(OpResult::Overflow);
                }
                let text = format_float(next).into_bytes();
                (text.clone(), CollReply::Number(text))
            } else {
                let Some(now_value) = current.map_or(Some(0), parse_integer) else {
                    return CollDecision::answer(OpResult::NotAnInteger);
                };
                let Some(by) = parse_integer(&by) else {
                    return CollDecision::answer(OpResult::NotAnInteger);
                };
                let Some(next) = now_value.checked_add(by) else {
                    return CollDecision::answer(OpResult::Overflow);
                };
                (next.to_string().into_bytes(), CollReply::Count(next))
            };
            let mut writes = BTreeMap::new();
            let k = element_key(key, Family::Member, &field);
            writes.insert(k, (Some(text), None, Kind::String));
            if current.is_none() {
                let (k, c) = found.header_write(1, version);
                writes.insert(k, c);
            }
            CollDecision {
                answer: reply(answer),
                writes,
            }
        }
        // A list's commands on a hash or a set.
        _ => CollDecision::answer(OpResult::WrongType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    const NOW: Time = Time::from_micros(1_000);

    fn v(hlc: u64) -> Version {
        Version::at(hlc, Id::from_u64(1))
    }

    /// A tiny owner: the records of one collection, and a clock.
    #[derive(Default)]
    struct Owner {
        records: BTreeMap<Vec<u8>, Record>,
        hlc: u64,
    }

    impl Owner {
        fn run(&mut self, kind: Kind, op: CollOp) -> OpResult {
            self.hlc += 1;
            let key = b"c".to_vec();
            let elements = op
                .element_keys(&key, kind)
                .into_iter()
                .map(|k| {
                    let r = self.records.get(&k).cloned();
                    (k, r)
                })
                .collect();
            let prefix = family_prefix(&key, Family::Member);
            let all: Vec<Record> = self
                .records
                .values()
                .filter(|r| r.key.starts_with(&prefix))
                .cloned()
                .collect();
            let header = self.records.get(&key).cloned();
            let d = decide(
                &key,
                kind,
                op,
                header.as_ref(),
                &elements,
                &all,
                (NOW, v(self.hlc), 16),
            );
            for (k, (value, expires, kind)) in d.writes {
                let r = Record::new(k.clone(), v(self.hlc), value)
                    .expiring(expires)
                    .of_kind(kind);
                self.records.insert(k, r);
            }
            d.answer
        }
    }

    fn count(n: i64) -> OpResult {
        OpResult::Collection(CollReply::Count(n))
    }

    fn put(pairs: &[(&str, &str)]) -> CollOp {
        CollOp::Put {
            pairs: pairs
                .iter()
                .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            only_new: false,
        }
    }

    fn fields(fs: &[&str]) -> Vec<Vec<u8>> {
        fs.iter().map(|f| f.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_hash_counts_what_it_adds_and_removes() {
        let mut o = Owner::default();
        assert_eq!(
            o.run(Kind::Hash, put(&[("a", "1"), ("b", "2"), ("a", "3")])),
            count(2)
        );
        assert_eq!(o.run(Kind::Hash, put(&[("a", "4")])), count(0));
        assert_eq!(o.run(Kind::Hash, CollOp::Len), count(2));
        let got = o.run(
            Kind::Hash,
            CollOp::Get {
                fields: fields(&["a", "x"]),
            },
        );
        assert_eq!(
            got,
            OpResult::Collection(CollReply::Values(vec![Some(b"4".to_vec()), None]))
        );
        let removed = o.run(
            Kind::Hash,
            CollOp::Remove {
                fields: fields(&["a", "x", "a"]),
            },
        );
        assert_eq!(removed, count(1));
        // The last element takes the collection with it.
        let removed = o.run(
            Kind::Hash,
            CollOp::Remove {
                fields: fields(&["b"]),
            },
        );
        assert_eq!(removed, count(1));
        assert!(o.records[b"c".as_slice()].value.is_none());
        assert_eq!(
            o.run(Kind::Hash, CollOp::Kind),
            OpResult::Collection(CollReply::Kind(None))
        );
    }

    #[test]
    fn elements_of_a_deleted_collection_stay_dead() {
        let mut o = Owner::default();
        o.run(Kind::Set, put(&[("x", ""), ("y", "")]));
        // DEL: one tombstone on the header, the elements left as they are.
        o.hlc += 1;
        let t = Record::new(b"c".to_vec(), v(o.hlc), None);
        o.records.insert(b"c".to_vec(), t);
        assert_eq!(o.run(Kind::Set, put(&[("z", "")])), count(1));
        assert_eq!(
            o.run(Kind::Set, CollOp::All),
            OpResult::Collection(CollReply::Pairs(vec![(b"z".to_vec(), Vec::new())]))
        );
        assert_eq!(o.run(Kind::Set, CollOp::Len), count(1));
    }

    #[test]
    fn the_wrong_kind_is_refused_and_strings_are_not_collections() {
        let mut o = Owner::default();
        o.run(Kind::Set, put(&[("x", "")]));
        assert_eq!(o.run(Kind::Hash, CollOp::Len), OpResult::WrongType);
        let s = Record::new(b"c".to_vec(), v(100), Some(b"str".to_vec()));
        o.records.insert(b"c".to_vec(), s);
        assert_eq!(o.run(Kind::Set, CollOp::Len), OpResult::WrongType);
        assert_eq!(
            o.run(Kind::Set, CollOp::Kind),
            OpResult::Collection(CollReply::Kind(Some((Kind::String, None))))
        );
    }

    #[test]
    fn increments_and_pops() {
        let mut o = Owner::default();
        let incr = |by: &str, float| CollOp::Incr {
            field: b"n".to_vec(),
            by: by.as_bytes().to_vec(),
            float,
        };
        assert_eq!(o.run(Kind::Hash, incr("5", false)), count(5));
        assert_eq!(o.run(Kind::Hash, incr("-7", false)), count(-2));
        assert_eq!(
            o.run(Kind::Hash, incr("0.5", true)),
            OpResult::Collection(CollReply::Number(b"-1.5".to_vec()))
        );
        assert_eq!(o.run(Kind::Hash, incr("x", false)), OpResult::NotAnInteger);
        assert_eq!(o.run(Kind::Hash, CollOp::Len), count(1));
        o.run(Kind::Set, CollOp::Len); // wrong kind: nothing written
        let mut s = Owner::default();
        s.run(Kind::Set, put(&[("a", ""), ("b", ""), ("c", "")]));
        let popped = s.run(Kind::Set, CollOp::Pop { count: 2 });
        assert_eq!(
            popped,
            OpResult::Collection(CollReply::Pairs(vec![
                (b"a".to_vec(), Vec::new()),
                (b"b".to_vec(), Vec::new())
            ]))
        );
        assert_eq!(s.run(Kind::Set, CollOp::Len), count(1));
        // Too large a value is refused whole.
        let big = "x".repeat(17);
        assert!(matches!(
            s.run(Kind::Set, put(&[("d", &big)])),
            OpResult::TooLarge { .. }
        ));
        assert_eq!(s.run(Kind::Set, CollOp::Len), count(1));
    }
}
