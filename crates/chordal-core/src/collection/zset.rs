//! Sorted sets. Each member is two records: its score at a `Score`
//! element key (so ZSCORE and ZADD read one record), and an `Order`
//! record whose key is the score (8 bytes that sort as the numbers do)
//! followed by the member, so that a range by score reads just that run
//! of keys and a range by rank reads from the lowest up to it. ZADD of a
//! new score writes the member's record, the new order record and the
//! old one's delete, in one atomic apply.
//!
//! What costs more than Redis's skip list: a rank (ZRANK, a range by
//! rank, ZPOPMAX) reads every order record before it, so it is O(rank)
//! rather than O(log N); by-member (lex) ranges read the whole set.

use super::decide::{CollDecision, Found};
use super::key::{Family, element_key, family_prefix};
use super::{CollOp, CollReply, Header, MAX_READ_ELEMENTS, Range, ZBy};
use crate::batch::Contents;
use crate::{Kind, OpResult, Record, Version};
use std::collections::BTreeMap;

/// A score as 8 bytes whose unsigned order is the numbers' (`-0` is `0`).
pub fn score_key(score: f64) -> u64 {
    let bits = (if score == 0.0 { 0.0 } else { score }).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The score [`score_key`] made `key`.
pub fn score_of(key: u64) -> f64 {
    let bits = if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    };
    f64::from_bits(bits)
}

/// A score as Redis reads one: a decimal number, `inf`, `+inf` or `-inf`
/// (any case); never NaN.
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(text).ok()?;
    let n = match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ if t.is_empty() || t.contains(char::is_whitespace) => return None,
        _ => t.parse::<f64>().ok()?,
    };
    (!n.is_nan()).then_some(n)
}

/// A score as the commands answer it.
pub fn score_text(key: u64) -> Vec<u8> {
    format_score(score_of(key)).into_bytes()
}

/// A score as Redis writes one (C's `%.17g`): 17 significant digits,
/// trailing zeros dropped, an exponent below 1e-4 and from 1e17 on
/// (`0.10000000000000001`, `1.5`, `1e+20`, `inf`).
pub fn format_score(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    // 17 significant digits: d.dddddddddddddddde±x.
    let sci = format!("{x:.16e}");
    let (mantissa, exp) = sci.split_once('e').expect("an exponent");
    let exp: i32 = exp.parse().expect("a number");
    let trim = |t: &str| -> String {
        match t.contains('.') {
            true => t.trim_end_matches('0').trim_end_matches('.').to_string(),
            false => t.to_string(),
        }
    };
    if !(-4..17).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa), exp.abs());
    }
    trim(&format!("{x:.*}", (16 - exp) as usize))
}

/// The order record's key of `member` at score `score` (sortable).
fn order_key(key: &[u8], score: u64, member: &[u8]) -> Vec<u8> {
    let mut field = score.to_be_bytes().to_vec();
    field.extend_from_slice(member);
    element_key(key, Family::Order, &field)
}

/// A member's score as its `Score` record holds it.
fn score_in(r: &Record) -> Option<u64> {
    let v = r.value.as_deref()?;
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// A lex bound in Redis's syntax: `(lowest, inclusive)` or `None` for
/// `-`/`+`; `Err` if malformed.
fn lex_bound(b: &[u8]) -> Result<Option<(&[u8], bool)>, ()> {
    match b.first() {
        Some(b'-' | b'+') if b.len() == 1 => Ok(None),
        Some(b'[') => Ok(Some((&b[1..], true))),
        Some(b'(') => Ok(Some((&b[1..], false))),
        _ => Err(()),
    }
}

/// Is member `m` within lex bounds `min`..`max`?
fn in_lex(m: &[u8], min: &[u8], max: &[u8]) -> bool {
    let above = match (min, lex_bound(min)) {
        (b"+", _) => false,
        (_, Ok(None)) => true,
        (_, Ok(Some((b, incl)))) => m > b || (incl && m == b),
        (_, Err(())) => false,
    };
    let below = match (max, lex_bound(max)) {
        (b"-", _) => false,
        (_, Ok(None)) => true,
        (_, Ok(Some((b, incl)))) => m < b || (incl && m == b),
        (_, Err(())) => false,
    };
    above && below
}

/// Are `min` and `max` well-formed lex bounds?
pub fn valid_lex(min: &[u8], max: &[u8]) -> bool {
    lex_bound(min).is_ok() && lex_bound(max).is_ok()
}

/// Does `score` lie within a by-score range's bounds?
fn in_scores(score: u64, by: &ZBy) -> bool {
    match *by {
        ZBy::Score {
            min,
            min_excl,
            max,
            max_excl,
        } => {
            (score > min || (!min_excl && score == min))
                && (score < max || (!max_excl && score == max))
        }
        _ => true,
    }
}

/// Ranks `start..=stop` (negative from the end) of a set of `len`,
/// clamped; from the highest when `rev`, as forward ranks.
fn ranks(len: i64, start: i64, stop: i64, rev: bool) -> Option<(i64, i64)> {
    let at = |i: i64| if i < 0 { len.saturating_add(i) } else { i };
    let (a, b) = (at(start).max(0), at(stop).min(len - 1));
    if a > b || a >= len {
        return None;
    }
    Some(if rev {
        (len - 1 - b, len - 1 - a)
    } else {
        (a, b)
    })
}

/// The run of order records `op` reads (see `CollOp::range`).
pub(super) fn range(
    op: &CollOp,
    key: &[u8],
    h: &Header,
    elements: &BTreeMap<Vec<u8>, Option<Record>>,
) -> Option<Range> {
    let len = h.count as i64;
    let run = |family: Family, after: Option<Vec<u8>>, to: Option<Vec<u8>>, limit: usize| {
        let prefix = family_prefix(key, family);
        Range {
            after: after.unwrap_or_else(|| prefix[..prefix.len() - 1].to_vec()),
            prefix,
            to,
            limit: limit.min(MAX_READ_ELEMENTS + 1),
        }
    };
    let every = run(Family::Order, None, None, MAX_READ_ELEMENTS + 1);
    let by_range = |by: &ZBy, rev: bool| match *by {
        ZBy::Rank { start, stop } => {
            let (_, last) = ranks(len, start, stop, rev)?;
            Some(run(Family::Order, None, None, last as usize + 1))
        }
        ZBy::Score { min, max, .. } => {
            let prefix = family_prefix(key, Family::Order);
            let mut after = prefix.clone();
            after.extend_from_slice(&min.saturating_sub(1).to_be_bytes());
            let mut to = prefix;
            to.extend_from_slice(&max.saturating_add(1).to_be_bytes());
            Some(run(
                Family::Order,
                Some(after),
                Some(to),
                MAX_READ_ELEMENTS + 1,
            ))
        }
        ZBy::Lex { .. } => Some(every.clone()),
    };
    match op {
        CollOp::All => Some(run(Family::Score, None, None, MAX_READ_ELEMENTS + 1)),
        CollOp::ZRange { by, rev, .. } => by_range(by, *rev),
        CollOp::ZCount { by } | CollOp::ZRemRange { by } => by_range(by, false),
        CollOp::ZPop { max: false, count } => Some(run(Family::Order, None, None, *count as usize)),
        CollOp::ZPop { max: true, .. } => Some(every),
        CollOp::ZRank { member, .. } => {
            let r = elements
                .get(&element_key(key, Family::Score, member))?
                .as_ref()?;
            let score = score_in(r)?;
            Some(run(
                Family::Order,
                None,
                Some(order_key(key, score, member)),
                MAX_READ_ELEMENTS + 1,
            ))
        }
        _ => None,
    }
}

/// The members the order records read hold, alive, in score order.
fn ordered(found: &Found<'_>, all: &[Record], prefix: &[u8]) -> Vec<(u64, Vec<u8>)> {
    all.iter()
        .filter(|r| found.alive(r))
        .filter_map(|r| {
            let f = r.key.strip_prefix(prefix)?;
            let score = u64::from_be_bytes(f.get(..8)?.try_into().ok()?);
            Some((score, f[8..].to_vec()))
        })
        .collect()
}

/// The members of `by` among `members` (in score order), from the
/// highest if `rev`.
fn select(members: Vec<(u64, Vec<u8>)>, len: i64, by: &ZBy, rev: bool) -> Vec<(u64, Vec<u8>)> {
    let mut chosen: Vec<(u64, Vec<u8>)> = match by {
        ZBy::Rank { start, stop } => match ranks(len, *start, *stop, rev) {
            Some((a, b)) => members
                .into_iter()
                .skip(a as usize)
                .take((b - a + 1) as usize)
                .collect(),
            None => Vec::new(),
        },
        ZBy::Score { .. } => members
            .into_iter()
            .filter(|(s, _)| in_scores(*s, by))
            .collect(),
        ZBy::Lex { min, max } => members
            .into_iter()
            .filter(|(_, m)| in_lex(m, min, max))
            .collect(),
    };
    if rev {
        chosen.reverse();
    }
    chosen
}

/// Decides sorted-set command `op` on `found` (a sorted set, or
/// nothing), given the named `elements` and the records of its run
/// (`all`), writing at `version`.
pub(super) fn decide(
    found: &Found<'_>,
    op: CollOp,
    elements: &BTreeMap<Vec<u8>, Option<Record>>,
    all: &[Record],
    version: Version,
) -> CollDecision {
    let key = found.key;
    let reply = |r: CollReply| OpResult::Collection(r);
    let h = found.header.unwrap_or_else(|| Header::new(version));
    let len = found.header.map_or(0, |h| h.count as i64);
    let order_prefix = family_prefix(key, Family::Order);
    let current = |member: &[u8]| {
        let r = elements
            .get(&element_key(key, Family::Score, member))?
            .as_ref()?;
        found.alive(r).then(|| score_in(r)).flatten()
    };
    // A member's records written: its score and order (or their deletes).
    let set = |writes: &mut BTreeMap<Vec<u8>, Contents>,
               member: &[u8],
               old: Option<u64>,
               new: Option<u64>| {
        if let Some(old) = old {
            writes.insert(order_key(key, old, member), (None, None, Kind::String));
        }
        let value = new.map(|s| s.to_be_bytes().to_vec());
        writes.insert(
            element_key(key, Family::Score, member),
            (value, None, Kind::String),
        );
        if let Some(new) = new {
            writes.insert(
                order_key(key, new, member),
                (Some(Vec::new()), None, Kind::String),
            );
        }
    };
    let with_header = |mut writes: BTreeMap<Vec<u8>, Contents>, delta: i64| {
        let mut next = h;
        next.count = (len + delta).max(0) as u64;
        if !writes.is_empty() {
            let (k, c) = found.header_set(next);
            writes.insert(k, c);
        }
        writes
    };
    let pairs = |chosen: Vec<(u64, Vec<u8>)>| {
        CollReply::Pairs(
            chosen
                .into_iter()
                .map(|(s, m)| (m, score_text(s)))
                .collect(),
        )
    };
    match op {
        CollOp::Len => CollDecision::answer(reply(CollReply::Count(len))),
        CollOp::Get { fields } => CollDecision::answer(reply(CollReply::Values(
            fields.iter().map(|m| current(m).map(score_text)).collect(),
        ))),
        CollOp::All => {
            let prefix = family_prefix(key, Family::Score);
            let members = all
                .iter()
                .filter(|r| found.alive(r))
                .filter_map(|r| {
                    Some((
                        score_in(r)?,
                        r.key.strip_prefix(prefix.as_slice())?.to_vec(),
                    ))
                })
                .collect();
            CollDecision::answer(reply(pairs(members)))
        }
        CollOp::ZAdd {
            pairs: wanted,
            when,
            ch,
            incr,
        } => {
            let mut writes = BTreeMap::new();
            let (mut added, mut changed) = (0i64, 0i64);
            let mut scores: BTreeMap<&[u8], Option<u64>> = BTreeMap::new();
            let mut answer = None;
            for (score, member) in &wanted {
                let old = *scores.entry(member).or_insert_with(|| current(member));
                let new = match (incr, old) {
                    (true, Some(o)) => {
                        let sum = score_of(o) + score_of(*score);
                        if sum.is_nan() {
                            return CollDecision::answer(reply(CollReply::Error(
                                "resulting score is not a number (NaN)".into(),
                            )));
                        }
                        score_key(sum)
                    }
                    _ => *score,
                };
                let allowed = match old {
                    None => !when.xx,
                    Some(o) => {
                        !when.nx
                            && (!when.gt || score_of(new) > score_of(o))
                            && (!when.lt || score_of(new) < score_of(o))
                    }
                };
                if !allowed {
                    continue;
                }
                answer = Some(new);
                if old == Some(new) {
                    continue;
                }
                match old {
                    None => added += 1,
                    Some(_) => changed += 1,
                }
                scores.insert(member, Some(new));
                set(&mut writes, member, old, Some(new));
            }
            let result = match incr {
                true => CollReply::Values(vec![answer.map(score_text)]),
                false => CollReply::Count(added + if ch { changed } else { 0 }),
            };
            CollDecision {
                answer: reply(result),
                writes: with_header(writes, added),
            }
        }
        CollOp::Remove { fields } => {
            let mut writes = BTreeMap::new();
            let mut removed = 0;
            for m in &fields {
                if let Some(old) = current(m)
                    && !writes.contains_key(&element_key(key, Family::Score, m))
                {
                    set(&mut writes, m, Some(old), None);
                    removed += 1;
                }
            }
            CollDecision {
                answer: reply(CollReply::Count(removed)),
                writes: with_header(writes, -removed),
            }
        }
        CollOp::ZRange { by, rev, limit } => {
            let mut chosen = select(ordered(found, all, &order_prefix), len, &by, rev);
            if let Some((offset, count)) = limit {
                chosen = chosen
                    .into_iter()
                    .skip(offset as usize)
                    .take(count as usize)
                    .collect();
            }
            CollDecision::answer(reply(pairs(chosen)))
        }
        CollOp::ZCount { by } => {
            let n = select(ordered(found, all, &order_prefix), len, &by, false).len();
            CollDecision::answer(reply(CollReply::Count(n as i64)))
        }
        CollOp::ZRank { member, rev } => {
            let rank = match current(&member) {
                None => -1,
                Some(_) => {
                    let before = ordered(found, all, &order_prefix).len() as i64 - 1;
                    if rev { len - 1 - before } else { before }
                }
            };
            CollDecision::answer(reply(CollReply::Count(rank)))
        }
        CollOp::ZPop { max, count } => {
            let mut members = ordered(found, all, &order_prefix);
            if max {
                members.reverse();
            }
            members.truncate(count as usize);
            let mut writes = BTreeMap::new();
            for (s, m) in &members {
                set(&mut writes, m, Some(*s), None);
            }
            let n = members.len() as i64;
            CollDecision {
                answer: reply(pairs(members)),
                writes: with_header(writes, -n),
            }
        }
        CollOp::ZRemRange { by } => {
            let gone = select(ordered(found, all, &order_prefix), len, &by, false);
            let mut writes = BTreeMap::new();
            for (s, m) in &gone {
                set(&mut writes, m, Some(*s), None);
            }
            let n = gone.len() as i64;
            CollDecision {
                answer: reply(CollReply::Count(n)),
                writes: with_header(writes, -n),
            }
        }
        _ => CollDecision::answer(OpResult::WrongType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn score_keys_sort_as_scores(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            let (ka, kb) = (score_key(a), score_key(b));
            prop_assert_eq!(a < b, ka < kb);
            prop_assert_eq!(score_of(ka), if a == 0.0 { 0.0 } else { a });
        }
    }

    #[test]
    fn scores_are_written_as_c_s_17g() {
        for (x, text) in [
            (1.5, "1.5"),
            (10.0, "10"),
            (0.1, "0.10000000000000001"),
            (0.9496490950461706, "0.94964909504617057"),
            (1e20, "1e+20"),
            (1.25e-5, "1.2500000000000001e-05"),
            (-2.0, "-2"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0001, "0.0001"),
            (123456789012345678.0, "1.2345678901234568e+17"),
        ] {
            assert_eq!(format_score(x), text, "{x}");
        }
    }

    #[test]
    fn bounds_read_as_redis_reads_them() {
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"nan"), None);
        assert_eq!(parse_score(b""), None);
        assert!(in_lex(b"b", b"[b", b"(c"));
        assert!(!in_lex(b"c", b"[b", b"(c"));
        assert!(in_lex(b"a", b"-", b"+"));
        assert!(!valid_lex(b"b", b"+"));
        assert_eq!(ranks(5, 0, -1, false), Some((0, 4)));
        assert_eq!(ranks(5, 0, 1, true), Some((3, 4)));
        assert_eq!(ranks(5, 3, 1, false), None);
    }
}
