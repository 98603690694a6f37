//! Reads that Redis computes from a string value (GETRANGE, GETBIT,
//! BITCOUNT, BITPOS, LCS, OBJECT ENCODING): the value is read from its
//! owner like any GET (one linearizable read), and pure functions answer
//! from it, with Redis's rules for negative and out-of-range indices.

use crate::commands::{failed, not_integer, syntax, wrong_arity};
use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::Kind;
use chordal_core::collection::{CollOp, CollReply};
use chordal_node::KeyValue;

/// The value of `key` (empty if there is none), or the reply to give.
async fn value<K: KeyValue>(kv: &K, key: &[u8]) -> Result<Option<Vec<u8>>, Reply> {
    match kv.get(key.to_vec()).await {
        Ok(v) => Ok(v.map(|v| v.value)),
        Err(e) => Err(failed(e)),
    }
}

fn int(b: &[u8]) -> Result<i64, Reply> {
    chordal_core::parse_integer(b).ok_or_else(not_integer)
}

/// Runs string read `name` (lower case) with `args` (the name left out).
pub async fn run<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Reply {
    match read(kv, name, args).await {
        Ok(r) | Err(r) => r,
    }
}

async fn read<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Result<Reply, Reply> {
    let n = args.len();
    Ok(match (name, n) {
        ("getrange" | "substr", 3) => {
            let (s, e) = (int(&args[1])?, int(&args[2])?);
            let v = value(kv, &args[0]).await?.unwrap_or_default();
            Reply::Bulk(Bytes::copy_from_slice(getrange(&v, s, e)))
        }
        ("getbit", 2) => {
            let offset = bit_offset(&args[1])?;
            let v = value(kv, &args[0]).await?.unwrap_or_default();
            Reply::Integer(i64::from(getbit(&v, offset)))
        }
        ("bitcount", 1 | 3 | 4) => {
            let span = match n {
                1 => None,
                _ => Some((int(&args[1])?, int(&args[2])?, unit(args.get(3))?)),
            };
            let v = value(kv, &args[0]).await?.unwrap_or_default();
            Reply::Integer(bitcount(&v, span))
        }
        ("bitpos", 2..=5) => {
            let bit = match args[1].as_ref() {
                b"0" => 0,
                b"1" => 1,
                _ => return Err(Reply::err("The bit argument must be 1 or 0.")),
            };
            let start = args.get(2).map(|a| int(a)).transpose()?.unwrap_or(0);
            let end = args.get(3).map(|a| int(a)).transpose()?;
            let unit = unit(args.get(4))?;
            match value(kv, &args[0]).await? {
                None => Reply::Integer(if bit == 1 { -1 } else { 0 }),
                Some(v) => Reply::Integer(bitpos(&v, bit, start, end, unit)),
            }
        }
        ("lcs", 2..) => lcs_command(kv, args).await?,
        // MEMORY USAGE key [SAMPLES n]: an estimate of the bytes the
        // key's records take in the store (keys, values and about 64
        // bytes of version and framing each), not of process memory.
        ("memory", 2 | 4) if args[0].eq_ignore_ascii_case(b"usage") => {
            const RECORD: i64 = 64;
            let key = args[1].to_vec();
            let base = key.len() as i64 + RECORD;
            match kv.get(key.clone()).await {
                Ok(Some(v)) => Reply::Integer(base + v.value.len() as i64),
                Ok(None) => Reply::Nil,
                Err(chordal_node::Error::Op(chordal_node::OpError::WrongType)) => {
                    match kv.collection(key.clone(), Kind::Hash, CollOp::Kind).await {
                        Ok(CollReply::Kind(Some((kind, _)))) => {
                            match kv.collection(key, kind, CollOp::Len).await {
                                // Each element: its key (the collection's
                                // and a field of about the same size).
                                Ok(CollReply::Count(n)) => Reply::Integer(base + n * (2 * base)),
                                Ok(_) => Reply::Nil,
                                Err(e) => failed(e),
                            }
                        }
                        Ok(_) => Reply::Nil,
                        Err(e) => failed(e),
                    }
                }
                Err(e) => failed(e),
            }
        }
        ("object", 2) => match args[0].to_ascii_lowercase().as_slice() {
            // Every string is kept as the bytes it was given: no integer
            // or embedded form as in Redis. A collection keeps each
            // element as a record of its own, looked up by key like a
            // hash table's (a sorted set's also in an ordered index, a
            // list's by position): never packed into one value.
            // Nothing is shared between keys: every value has one
            // reference.
            sub @ (b"encoding" | b"refcount") => {
                let op = CollOp::Kind;
                match kv.collection(args[1].to_vec(), Kind::Hash, op).await {
                    Ok(CollReply::Kind(None)) => Reply::Nil,
                    Ok(CollReply::Kind(Some(_))) if sub == b"refcount" => Reply::Integer(1),
                    Ok(CollReply::Kind(Some((kind, _)))) => {
                        Reply::Bulk(Bytes::from_static(match kind {
                            Kind::String => b"raw",
                            Kind::Hash | Kind::Set => b"hashtable",
                            Kind::ZSet => b"skiplist",
                            Kind::List => b"quicklist",
                        }))
                    }
                    Ok(_) => failed(chordal_node::Error::Op(
                        chordal_node::OpError::UnexpectedAnswer,
                    )),
                    Err(e) => failed(e),
                }
            }
            _ => Reply::err(format!(
                "unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&args[0])
            )),
        },
        _ => wrong_arity(name),
    })
}

/// A bit offset: 0 ..= 2^32 - 1, as Redis allows.
pub fn bit_offset(b: &[u8]) -> Result<u64, Reply> {
    match chordal_core::parse_integer(b) {
        Some(o) if (0..1 << 32).contains(&o) => Ok(o as u64),
        _ => Err(Reply::err("bit offset is not an integer or out of range")),
    }
}

fn unit(word: Option<&Bytes>) -> Result<Unit, Reply> {
    match word.map(|w| w.to_ascii_lowercase()) {
        None => Ok(Unit::Byte),
        Some(w) if w == b"byte" => Ok(Unit::Byte),
        Some(w) if w == b"bit" => Ok(Unit::Bit),
        Some(_) => Err(syntax()),
    }
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`.
async fn lcs_command<K: KeyValue>(kv: &K, args: &[Bytes]) -> Result<Reply, Reply> {
    let (mut len, mut idx, mut with_len, mut min) = (false, false, false, 0);
    let mut i = 2;
    while i < args.len() {
        match args[i].to_ascii_lowercase().as_slice() {
            b"len" => len = true,
            b"idx" => idx = true,
            b"withmatchlen" => with_len = true,
            b"minmatchlen" if i + 1 < args.len() => {
                min = int(&args[i + 1])?.max(0) as usize;
                i += 1;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    if len && idx {
        return Err(Reply::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    // Both in one call (one batch inside MULTI).
    let mut both = kv.get_many(vec![args[0].to_vec(), args[1].to_vec()]).await;
    let mut take = || match both.remove(0) {
        Ok(v) => Ok(v.map(|v| v.value).unwrap_or_default()),
        Err(e) => Err(failed(e)),
    };
    let (a, b) = (take()?, take()?);
    let Some((common, runs)) = lcs(&a, &b) else {
        return Err(Reply::err("the strings are too long for LCS"));
    };
    if len {
        return Ok(Reply::Integer(common.len() as i64));
    }
    if !idx {
        return Ok(Reply::Bulk(Bytes::from(common)));
    }
    let pair = |(s, e): (usize, usize)| {
        Reply::Array(vec![Reply::Integer(s as i64), Reply::Integer(e as i64)])
    };
    let matches = runs
        .into_iter()
        .filter(|((s, e), _)| e - s + 1 >= min)
        .map(|(ra, rb)| {
            let mut m = vec![pair(ra), pair(rb)];
            if with_len {
                m.push(Reply::Integer((ra.1 - ra.0 + 1) as i64));
            }
            Reply::Array(m)
        })
        .collect();
    Ok(Reply::Map(vec![
        (Reply::text("matches"), Reply::Array(matches)),
        (Reply::text("len"), Reply::Integer(common.len() as i64)),
    ]))
}

/// Redis's index rule for a range `start..=end` over `len` items (bytes,
/// or bits): negative indices count from the end, then both are clamped
/// into the value. `None` when the range is empty.
pub fn range(len: i64, start: i64, end: i64) -> Option<(i64, i64)> {
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    (start <= end && len > 0).then_some((start, end))
}

/// GETRANGE's bytes of `v` (`SUBSTR` too).
pub fn getrange(v: &[u8], start: i64, end: i64) -> &[u8] {
    // Both negative and backwards: empty, before clamping could make
    // them meet (Redis does the same).
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    match range(v.len() as i64, start, end) {
        Some((s, e)) => &v[s as usize..=e as usize],
        None => &[],
    }
}

/// The bit at `offset` (bit 0 is the most significant bit of byte 0);
/// bits past the value are 0.
pub fn getbit(v: &[u8], offset: u64) -> u8 {
    let byte = (offset / 8) as usize;
    v.get(byte).map_or(0, |b| (b >> (7 - offset % 8)) & 1)
}

/// How BITCOUNT and BITPOS count their range: in bytes (the default) or
/// in bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unit {
    /// Indices name bytes.
    Byte,
    /// Indices name bits.
    Bit,
}

/// The bit indices (absolute, inclusive) that `start..=end` in `unit`
/// covers in `v`; `None` when empty.
fn bit_span(v: &[u8], start: i64, end: i64, unit: Unit) -> Option<(u64, u64)> {
    let len = v.len() as i64;
    match unit {
        Unit::Byte => range(len, start, end).map(|(s, e)| (s as u64 * 8, e as u64 * 8 + 7)),
        Unit::Bit => range(len * 8, start, end).map(|(s, e)| (s as u64, e as u64)),
    }
}

/// BITCOUNT: the bits set in `v`, or in `start..=end` of `unit`.
pub fn bitcount(v: &[u8], span: Option<(i64, i64, Unit)>) -> i64 {
    let Some((first, last)) = (match span {
        None => (!v.is_empty()).then(|| (0, v.len() as u64 * 8 - 1)),
        Some((s, e, unit)) => bit_span(v, s, e, unit),
    }) else {
        return 0;
    };
    let (fb, lb) = ((first / 8) as usize, (last / 8) as usize);
    // Whole bytes in between, counted at once; the two ends bit by bit.
    let mut count: i64 = if lb > fb + 1 {
        v[fb + 1..lb]
            .iter()
            .map(|b| i64::from(b.count_ones() as u8))
            .sum()
    } else {
        0
    };
    let ends = if fb == lb { vec![fb] } else { vec![fb, lb] };
    for byte in ends {
        let lo = first.max(byte as u64 * 8);
        let hi = last.min(byte as u64 * 8 + 7);
        count += (lo..=hi).map(|i| i64::from(getbit(v, i))).sum::<i64>();
    }
    count
}

/// BITPOS: the first bit equal to `bit` in `v` (the whole value, or
/// `start..` / `start..=end` of `unit`), or -1. Looking for a 0 in a value
/// of ones without an end answers the bit just past the value, as Redis
/// does (the value reads as padded with zeros on the right).
pub fn bitpos(v: &[u8], bit: u8, start: i64, end: Option<i64>, unit: Unit) -> i64 {
    let last = match unit {
        Unit::Byte => v.len() as i64 - 1,
        Unit::Bit => v.len() as i64 * 8 - 1,
    };
    let Some((first, last)) = bit_span(v, start, end.unwrap_or(last), unit) else {
        return -1;
    };
    if let Some(i) = (first..=last).find(|&i| getbit(v, i) == bit) {
        return i as i64;
    }
    if bit == 0 && end.is_none() {
        v.len() as i64 * 8
    } else {
        -1
    }
}

/// Most cells of LCS's table (`(a + 1) × (b + 1)`, 4 bytes each): 256 MiB.
pub const MAX_LCS_CELLS: u64 = 64 << 20;

/// The longest common subsequence of `a` and `b`: its bytes, and the
/// matching runs from last to first as `((a_start, a_end), (b_start,
/// b_end))`, inclusive — what LCS and LCS IDX answer. `None` if the table
/// would exceed [`MAX_LCS_CELLS`].
#[allow(clippy::type_complexity)]
pub fn lcs(a: &[u8], b: &[u8]) -> Option<(Vec<u8>, Vec<((usize, usize), (usize, usize))>)> {
    let (n, m) = (a.len(), b.len());
    if (n as u64 + 1) * (m as u64 + 1) > MAX_LCS_CELLS {
        return None;
    }
    let w = m + 1;
    // t[i * w + j]: the LCS length of a[..i] and b[..j].
    let mut t = vec![0u32; (n + 1) * w];
    for i in 1..=n {
        for j in 1..=m {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    // Walk back from the end, gathering the bytes and the runs of
    // consecutive matches (Redis's order: the last run first).
    let mut out = Vec::with_capacity(t[n * w + m] as usize);
    let mut runs: Vec<((usize, usize), (usize, usize))> = Vec::new();
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            out.push(a[i - 1]);
            let (ai, bj) = (i - 1, j - 1);
            match runs.last_mut() {
                // Extends the current run leftwards in both strings.
                Some(((as_, _), (bs, _))) if *as_ == ai + 1 && *bs == bj + 1 => {
                    *as_ = ai;
                    *bs = bj;
                }
                _ => runs.push(((ai, ai), (bj, bj))),
            }
            i -= 1;
            j -= 1;
        } else if t[(i - 1) * w + j] > t[i * w + j - 1] {
            i -= 1;
        } else {
            j -= 1;
        }
    }
    out.reverse();
    Some((out, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_follows_redis() {
        let v = b"Hello World";
        assert_eq!(getrange(v, 0, 4), b"Hello");
        assert_eq!(getrange(v, -3, -1), b"rld");
        assert_eq!(getrange(v, 0, -1), v);
        assert_eq!(getrange(v, 5, 3), b"");
        assert_eq!(getrange(v, -1, -5), b"");
        assert_eq!(getrange(v, 0, -100), b"H");
        assert_eq!(getrange(v, 100, 200), b"");
        assert_eq!(getrange(v, -100, 2), b"Hel");
        assert_eq!(getrange(b"", 0, -1), b"");
    }

    #[test]
    fn bits_are_counted_and_found_as_redis_does() {
        // "foobar": the example of Redis's BITCOUNT page.
        let v = b"foobar";
        assert_eq!(bitcount(v, None), 26);
        assert_eq!(bitcount(v, Some((0, 0, Unit::Byte))), 4);
        assert_eq!(bitcount(v, Some((1, 1, Unit::Byte))), 6);
        assert_eq!(bitcount(v, Some((1, 1, Unit::Bit))), 1);
        assert_eq!(bitcount(v, Some((5, 30, Unit::Bit))), 17);
        assert_eq!(bitcount(v, Some((-1, -2, Unit::Byte))), 0);
        assert_eq!(bitcount(b"", None), 0);
        // BITPOS's page: "\xff\xf0\x00".
        let v = b"\xff\xf0\x00";
        assert_eq!(bitpos(v, 0, 0, None, Unit::Byte), 12);
        let v = b"\x00\xff\xf0";
        assert_eq!(bitpos(v, 1, 0, None, Unit::Byte), 8);
        assert_eq!(bitpos(v, 1, 2, None, Unit::Byte), 16);
        assert_eq!(bitpos(v, 1, 2, Some(-1), Unit::Byte), 16);
        assert_eq!(bitpos(v, 1, 7, Some(15), Unit::Bit), 8);
        assert_eq!(bitpos(v, 1, 7, Some(-3), Unit::Bit), 8);
        assert_eq!(bitpos(b"\x00\x00\x00", 1, 0, None, Unit::Byte), -1);
        // Ones all the way: a 0 is found just past the value, unless an
        // end was given.
        assert_eq!(bitpos(b"\xff\xff", 0, 0, None, Unit::Byte), 16);
        assert_eq!(bitpos(b"\xff\xff", 0, 0, Some(-1), Unit::Byte), -1);
        assert_eq!(bitpos(b"", 0, 0, None, Unit::Byte), -1);
        assert_eq!(getbit(b"\x40", 1), 1);
        assert_eq!(getbit(b"\x40", 0), 0);
        assert_eq!(getbit(b"\x40", 100), 0);
    }

    #[test]
    fn lcs_finds_the_subsequence_and_its_runs() {
        // The example of Redis's LCS page.
        let (s, runs) = lcs(b"ohmytext", b"mynewtext").unwrap();
        assert_eq!(s, b"mytext");
        assert_eq!(runs, vec![((4, 7), (5, 8)), ((2, 3), (0, 1))]);
        assert_eq!(lcs(b"", b"abc").unwrap().0, b"");
        assert_eq!(lcs(b"abc", b"abc").unwrap().1, vec![((0, 2), (0, 2))]);
        let big = vec![b'x'; 20_000];
        assert_eq!(lcs(&big, &big), None, "a table past the bound is refused");
    }

    proptest::proptest! {
        /// The counts agree with counting bit by bit, and BITPOS finds the
        /// first such bit.
        #[test]
        fn counting_and_finding_agree_with_a_bit_by_bit_walk(
            v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            s in -100i64..100, e in -100i64..100, bit in 0u8..2,
        ) {
            let bits = v.len() as i64 * 8;
            let naive = |from: i64, to: i64| (from..=to).filter(|&i| getbit(&v, i as u64) == 1).count() as i64;
            let want = range(bits, s, e).map_or(0, |(a, b)| naive(a, b));
            proptest::prop_assert_eq!(bitcount(&v, Some((s, e, Unit::Bit))), want);
            let found = range(bits, s, e)
                .and_then(|(a, b)| (a..=b).find(|&i| getbit(&v, i as u64) == bit))
                .unwrap_or(-1);
            proptest::prop_assert_eq!(bitpos(&v, bit, s, Some(e), Unit::Bit), found);
        }
    }
}
