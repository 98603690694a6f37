//! Deciding a list's commands. A list's elements sit at consecutive
//! positions `head..tail` (the header's), each a record at
//! [`index_key`]: a push writes one record and the header, a pop reads
//! and deletes the records at one end, LRANGE reads exactly the
//! positions asked for. Commands that change the middle (LREM, LINSERT)
//! rewrite the elements after the change, as Redis's own O(N) does.

use super::decide::{CollDecision, Found};
use super::key::index_key;
use super::{CollOp, CollReply, Header};
use crate::batch::Contents;
use crate::{Kind, OpResult, Record, Version};
use std::collections::BTreeMap;

/// The values of the positions read (from the command's range), by
/// absolute position.
fn values_at(found: &Found<'_>, all: &[Record]) -> BTreeMap<i64, Vec<u8>> {
    all.iter()
        .filter(|r| found.alive(r))
        .filter_map(|r| {
            let at = r.key.len().checked_sub(8)?;
            let n = u64::from_be_bytes(r.key[at..].try_into().ok()?) ^ (1 << 63);
            Some((n as i64, r.value.clone().unwrap_or_default()))
        })
        .collect()
}

/// Decides list command `op` on `found` (a list, or nothing), given the
/// element records of the command's range (`all`), writing at `version`.
pub(super) fn decide(
    found: &Found<'_>,
    op: CollOp,
    (elements, all): (&BTreeMap<Vec<u8>, Option<Record>>, &[Record]),
    (version, max_value): (Version, usize),
) -> CollDecision {
    if let CollOp::Move {
        to,
        from_left,
        to_left,
    } = op
    {
        return move_one(
            found,
            (&to, elements.get(&to).cloned().flatten()),
            (from_left, to_left),
            all,
            version,
        );
    }
    let key = found.key;
    let reply = |r: CollReply| OpResult::Collection(r);
    let put = |writes: &mut BTreeMap<Vec<u8>, Contents>, at: i64, v: Option<Vec<u8>>| {
        writes.insert(index_key(key, at), (v, None, Kind::String));
    };
    let Some(h) = found.header else {
        // No list: reads find nothing, writes that need one do nothing.
        let answer = match op {
            CollOp::Len | CollOp::Trim { .. } | CollOp::RemoveValue { .. } => CollReply::Count(0),
            CollOp::Insert { .. } => CollReply::Count(0),
            CollOp::Push {
                only_existing: true,
                ..
            } => CollReply::Count(0),
            CollOp::PopEnd { .. } | CollOp::Range { .. } => CollReply::Items(Vec::new()),
            CollOp::SetAt { .. } => CollReply::Error("no such key".into()),
            CollOp::Push { values, left, .. } => {
                return push(found, Header::new(version), values, left, max_value);
            }
            _ => return CollDecision::answer(OpResult::WrongType),
        };
        return CollDecision::answer(reply(answer));
    };
    let values = values_at(found, all);
    // Every position the range covers must have been read.
    let complete = |from: i64, to: i64| (from..=to).all(|i| values.contains_key(&i));
    match op {
        CollOp::Len => CollDecision::answer(reply(CollReply::Count(h.len()))),
        CollOp::Push { values, left, .. } => push(found, h, values, left, max_value),
        CollOp::Range { start, stop } => {
            let items = match h.positions(start, stop) {
                None => Vec::new(),
                Some((a, b)) if complete(a, b) => {
                    values.range(a..=b).map(|(_, v)| v.clone()).collect()
                }
                Some(_) => return CollDecision::answer(OpResult::StoreFailed),
            };
            CollDecision::answer(reply(CollReply::Items(items)))
        }
        CollOp::PopEnd { left, count } => {
            let n = (count as i64).min(h.len());
            let (a, b) = match left {
                true => (h.head, h.head + n - 1),
                false => (h.tail - n, h.tail - 1),
            };
            if !complete(a, b) {
                return CollDecision::answer(OpResult::StoreFailed);
            }
            let mut writes = BTreeMap::new();
            let mut popped: Vec<Vec<u8>> = Vec::with_capacity(n as usize);
            for i in a..=b {
                put(&mut writes, i, None);
                popped.push(values[&i].clone());
            }
            let mut next = h;
            if left {
                next.head += n;
            } else {
                next.tail -= n;
                popped.reverse();
            }
            let (k, c) = found.header_set(next);
            writes.insert(k, c);
            CollDecision {
                answer: reply(CollReply::Items(popped)),
                writes,
            }
        }
        CollOp::SetAt { index, value } => {
            let Some((at, _)) = h.positions(index, index) else {
                return CollDecision::answer(reply(CollReply::Error("index out of range".into())));
            };
            let mut writes = BTreeMap::new();
            put(&mut writes, at, Some(value));
            CollDecision {
                answer: reply(CollReply::Count(1)),
                writes,
            }
        }
        CollOp::Trim { start, stop } => {
            let keep = h.positions(start, stop);
            let mut writes = BTreeMap::new();
            for i in h.head..h.tail {
                if keep.is_none_or(|(a, b)| i < a || i > b) {
                    put(&mut writes, i, None);
                }
            }
            let mut next = h;
            (next.head, next.tail) = keep.map_or((0, 0), |(a, b)| (a, b + 1));
            if !writes.is_empty() {
                let (k, c) = found.header_set(next);
                writes.insert(k, c);
            }
            CollDecision {
                answer: reply(CollReply::Count(0)),
                writes,
            }
        }
        CollOp::RemoveValue { count, value } => {
            if !complete(h.head, h.tail - 1) {
                return CollDecision::answer(OpResult::StoreFailed);
            }
            let order: Vec<i64> = match count < 0 {
                true => (h.head..h.tail).rev().collect(),
                false => (h.head..h.tail).collect(),
            };
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let gone: Vec<i64> = order
                .into_iter()
                .filter(|i| values[i] == value)
                .take(limit)
                .collect();
            if gone.is_empty() {
                return CollDecision::answer(reply(CollReply::Count(0)));
            }
            let first = *gone.iter().min().expect("not empty");
            let kept: Vec<&Vec<u8>> = (first..h.tail)
                .filter(|i| !gone.contains(i))
                .map(|i| &values[&i])
                .collect();
            let mut writes = BTreeMap::new();
            rewrite(&mut writes, key, (first, h.tail), &kept);
            let mut next = h;
            next.tail = first + kept.len() as i64;
            let (k, c) = found.header_set(next);
            writes.insert(k, c);
            CollDecision {
                answer: reply(CollReply::Count(gone.len() as i64)),
                writes,
            }
        }
        CollOp::Insert {
            before,
            pivot,
            value,
        } => {
            if !complete(h.head, h.tail - 1) {
                return CollDecision::answer(OpResult::StoreFailed);
            }
            let Some(p) = (h.head..h.tail).find(|i| values[i] == pivot) else {
                return CollDecision::answer(reply(CollReply::Count(-1)));
            };
            let at = if before { p } else { p + 1 };
            let mut moved: Vec<&Vec<u8>> = vec![&value];
            moved.extend((at..h.tail).map(|i| &values[&i]));
            let mut writes = BTreeMap::new();
            rewrite(&mut writes, key, (at, h.tail + 1), &moved);
            let mut next = h;
            next.tail += 1;
            let (k, c) = found.header_set(next);
            writes.insert(k, c);
            CollDecision {
                answer: reply(CollReply::Count(next.len())),
                writes,
            }
        }
        _ => CollDecision::answer(OpResult::WrongType),
    }
}

/// LMOVE: pops one end of `found` (a list, or nothing) and pushes the
/// value onto list `to` (whose newest record is `dst`; the same list if
/// `to` is `found`'s key), writing every record in one step.
fn move_one(
    found: &Found<'_>,
    (to, dst): (&[u8], Option<Record>),
    (from_left, to_left): (bool, bool),
    all: &[Record],
    version: Version,
) -> CollDecision {
    let reply = |r: CollReply| OpResult::Collection(r);
    let Some(h) = found.header else {
        return CollDecision::answer(reply(CollReply::Items(Vec::new())));
    };
    let at = if from_left { h.head } else { h.tail - 1 };
    let Some(value) = values_at(found, all).remove(&at) else {
        return CollDecision::answer(OpResult::StoreFailed);
    };
    let mut src = h;
    if from_left {
        src.head += 1;
    } else {
        src.tail -= 1;
    }
    let mut writes = BTreeMap::new();
    writes.insert(index_key(found.key, at), (None, None, Kind::String));
    // The destination as it is after the pop.
    let same = to == found.key;
    let dst_found = Found {
        key: to,
        kind: Kind::List,
        header: match same {
            true => Some(src),
            false => match dst.as_ref().filter(|r| r.is_live(found.now)) {
                None => None,
                Some(r) if r.kind != Kind::List => {
                    return CollDecision::answer(OpResult::WrongType);
                }
                Some(r) => match r.value.as_deref().and_then(Header::decode) {
                    Some(h) => Some(h),
                    None => return CollDecision::answer(OpResult::StoreFailed),
                },
            },
        },
        expires: match same {
            true => found.expires,
            false => dst.as_ref().and_then(|r| r.expires),
        },
        prefix: Vec::new(),
        now: found.now,
    };
    if !same {
        let (k, c) = found.header_set(src);
        writes.insert(k, c);
    }
    let pushed = push(
        &dst_found,
        dst_found.header.unwrap_or_else(|| Header::new(version)),
        vec![value.clone()],
        to_left,
        usize::MAX,
    );
    writes.extend(pushed.writes);
    CollDecision {
        answer: reply(CollReply::Items(vec![value])),
        writes,
    }
}

/// Pushes `values` one after the other onto list `h` (new if `found`
/// has none): one record each, and the header.
fn push(
    found: &Found<'_>,
    mut h: Header,
    values: Vec<Vec<u8>>,
    left: bool,
    max_value: usize,
) -> CollDecision {
    if let Some(v) = values.iter().find(|v| v.len() > max_value) {
        return CollDecision::answer(OpResult::TooLarge {
            size: v.len() as u32,
            limit: max_value as u32,
        });
    }
    let mut writes = BTreeMap::new();
    for v in values {
        let at = if left {
            h.head -= 1;
            h.head
        } else {
            h.tail += 1;
            h.tail - 1
        };
        writes.insert(index_key(found.key, at), (Some(v), None, Kind::String));
    }
    let (k, c) = found.header_set(h);
    writes.insert(k, c);
    CollDecision {
        answer: OpResult::Collection(CollReply::Count(h.len())),
        writes,
    }
}

/// Writes `values` at positions `from..` and deletes the positions after
/// them up to `to` (exclusive).
fn rewrite(
    writes: &mut BTreeMap<Vec<u8>, Contents>,
    key: &[u8],
    (from, to): (i64, i64),
    values: &[&Vec<u8>],
) {
    for i in from..to {
        let v = values.get((i - from) as usize).map(|v| (*v).clone());
        writes.insert(index_key(key, i), (v, None, Kind::String));
    }
}
