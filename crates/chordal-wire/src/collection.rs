//! Collection commands and their answers (`Operation::Collection`,
//! `OpResult::Collection`) on the wire: `KvRequest` op 15 and `KvReply`
//! status 25 (see `proto/chordal.proto`).

use crate::{WireError, pb};
use chordal_core::collection::{CollOp, CollReply, ZBy, ZWhen};
use chordal_core::{Kind, Time};

/// Most fields one command names (a frame bounds the bytes; this the
/// count, so that a tiny frame cannot ask for a huge allocation).
pub const MAX_FIELDS: usize = 1 << 16;

/// Writes `kind` and `op` into `out` (its `op` set to 15 by the caller).
pub(crate) fn op_to_pb(kind: Kind, op: &CollOp, out: &mut pb::KvRequest) {
    out.kind = u32::from(kind.code());
    (out.change, out.args, out.amount) = match op {
        CollOp::Put { pairs, only_new } => (
            0,
            pairs
                .iter()
                .flat_map(|(f, v)| [f.clone(), v.clone()])
                .collect(),
            i64::from(*only_new),
        ),
        CollOp::Remove { fields } => (1, fields.clone(), 0),
        CollOp::Get { fields } => (2, fields.clone(), 0),
        CollOp::All => (3, Vec::new(), 0),
        CollOp::Len => (4, Vec::new(), 0),
        CollOp::Incr { field, by, float } => {
            (5, vec![field.clone(), by.clone()], i64::from(*float))
        }
        CollOp::Pop { count } => (6, Vec::new(), i64::from(*count)),
        CollOp::Kind => (7, Vec::new(), 0),
        CollOp::Push {
            values,
            left,
            only_existing,
        } => {
            out.flags = u32::from(*left) | (u32::from(*only_existing) << 1);
            (8, values.clone(), 0)
        }
        CollOp::PopEnd { left, count } => {
            out.flags = u32::from(*left);
            (9, Vec::new(), i64::from(*count))
        }
        CollOp::Range { start, stop } => (10, two(*start, *stop), 0),
        CollOp::SetAt { index, value } => (11, vec![value.clone()], *index),
        CollOp::Trim { start, stop } => (12, two(*start, *stop), 0),
        CollOp::RemoveValue { count, value } => (13, vec![value.clone()], *count),
        CollOp::Insert {
            before,
            pivot,
            value,
        } => {
            out.flags = u32::from(*before);
            (14, vec![pivot.clone(), value.clone()], 0)
        }
        CollOp::ZAdd {
            pairs,
            when,
            ch,
            incr,
        } => {
            out.flags = [when.nx, when.xx, when.gt, when.lt, *ch, *incr]
                .iter()
                .enumerate()
                .map(|(i, b)| u32::from(*b) << i)
                .sum();
            let args = pairs
                .iter()
                .flat_map(|(s, m)| [s.to_be_bytes().to_vec(), m.clone()])
                .collect();
            (15, args, 0)
        }
        CollOp::ZRange { by, rev, limit } => {
            out.flags = u32::from(*rev) | (u32::from(limit.is_some()) << 1);
            let mut args = by_to_args(by);
            if let Some((offset, count)) = limit {
                args.extend(two(*offset as i64, *count as i64));
            }
            (16, args, 0)
        }
        CollOp::ZCount { by } => (17, by_to_args(by), 0),
        CollOp::ZRank { member, rev } => {
            out.flags = u32::from(*rev);
            (18, vec![member.clone()], 0)
        }
        CollOp::ZPop { max, count } => {
            out.flags = u32::from(*max);
            (19, Vec::new(), i64::from(*count))
        }
        CollOp::ZRemRange { by } => (20, by_to_args(by), 0),
        CollOp::Move {
            to,
            from_left,
            to_left,
        } => {
            out.flags = u32::from(*from_left) | (u32::from(*to_left) << 1);
            (21, vec![to.clone()], 0)
        }
    };
}

/// A sorted-set range as arguments: a tag (`r`, `s`, `l`) then its
/// bounds.
fn by_to_args(by: &ZBy) -> Vec<Vec<u8>> {
    match by {
        ZBy::Rank { start, stop } => {
            let mut a = vec![b"r".to_vec()];
            a.extend(two(*start, *stop));
            a
        }
        ZBy::Score {
            min,
            min_excl,
            max,
            max_excl,
        } => {
            let mut a = vec![b"s".to_vec()];
            a.extend(two(*min as i64, *max as i64));
            a.push(vec![u8::from(*min_excl) | (u8::from(*max_excl) << 1)]);
            a
        }
        ZBy::Lex { min, max } => vec![b"l".to_vec(), min.clone(), max.clone()],
    }
}

/// The range [`by_to_args`] wrote, and the arguments after it.
fn by_from_args(args: &[Vec<u8>]) -> Result<(ZBy, &[Vec<u8>]), WireError> {
    let bad = WireError::Invalid("sorted-set range");
    match args.first().map(Vec::as_slice) {
        Some(b"r") if args.len() >= 3 => {
            let (start, stop) = two_of(&args[1..3])?;
            Ok((ZBy::Rank { start, stop }, &args[3..]))
        }
        Some(b"s") if args.len() >= 4 => {
            let (min, max) = two_of(&args[1..3])?;
            let excl = match args[3].as_slice() {
                [e] if *e < 4 => *e,
                _ => return Err(bad),
            };
            let by = ZBy::Score {
                min: min as u64,
                min_excl: excl & 1 != 0,
                max: max as u64,
                max_excl: excl & 2 != 0,
            };
            Ok((by, &args[4..]))
        }
        Some(b"l") if args.len() >= 3 => {
            let by = ZBy::Lex {
                min: args[1].clone(),
                max: args[2].clone(),
            };
            Ok((by, &args[3..]))
        }
        _ => Err(bad),
    }
}

/// Two numbers as two 8-byte arguments.
fn two(a: i64, b: i64) -> Vec<Vec<u8>> {
    vec![a.to_be_bytes().to_vec(), b.to_be_bytes().to_vec()]
}

/// The two numbers of [`two`].
fn two_of(args: &[Vec<u8>]) -> Result<(i64, i64), WireError> {
    let n = |b: &Vec<u8>| {
        <[u8; 8]>::try_from(b.as_slice())
            .map(i64::from_be_bytes)
            .map_err(|_| WireError::Invalid("collection position"))
    };
    match args {
        [a, b] => Ok((n(a)?, n(b)?)),
        _ => Err(WireError::Invalid("collection positions")),
    }
}

/// The kind and command of a `KvRequest` of op 15.
pub(crate) fn op_from_pb(k: &pb::KvRequest) -> Result<(Kind, CollOp), WireError> {
    let kind = u8::try_from(k.kind)
        .ok()
        .and_then(Kind::from_code)
        .ok_or(WireError::Invalid("collection kind"))?;
    if k.args.len() > MAX_FIELDS {
        return Err(WireError::Invalid("collection fields"));
    }
    let flag = || match k.amount {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(WireError::Invalid("collection flag")),
    };
    let op = match k.change {
        0 if k.args.len().is_multiple_of(2) => CollOp::Put {
            pairs: k
                .args
                .chunks_exact(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            only_new: flag()?,
        },
        1 => CollOp::Remove {
            fields: k.args.clone(),
        },
        2 => CollOp::Get {
            fields: k.args.clone(),
        },
        3 => CollOp::All,
        4 => CollOp::Len,
        5 if k.args.len() == 2 => CollOp::Incr {
            field: k.args[0].clone(),
            by: k.args[1].clone(),
            float: flag()?,
        },
        6 => CollOp::Pop {
            count: u32::try_from(k.amount).map_err(|_| WireError::Invalid("pop count"))?,
        },
        7 => CollOp::Kind,
        8 if k.flags < 4 => CollOp::Push {
            values: k.args.clone(),
            left: k.flags & 1 != 0,
            only_existing: k.flags & 2 != 0,
        },
        9 if k.flags < 2 => CollOp::PopEnd {
            left: k.flags == 1,
            count: u32::try_from(k.amount).map_err(|_| WireError::Invalid("pop count"))?,
        },
        10 => {
            let (start, stop) = two_of(&k.args)?;
            CollOp::Range { start, stop }
        }
        11 if k.args.len() == 1 => CollOp::SetAt {
            index: k.amount,
            value: k.args[0].clone(),
        },
        12 => {
            let (start, stop) = two_of(&k.args)?;
            CollOp::Trim { start, stop }
        }
        13 if k.args.len() == 1 => CollOp::RemoveValue {
            count: k.amount,
            value: k.args[0].clone(),
        },
        14 if k.args.len() == 2 && k.flags < 2 => CollOp::Insert {
            before: k.flags == 1,
            pivot: k.args[0].clone(),
            value: k.args[1].clone(),
        },
        15 if k.args.len().is_multiple_of(2) && k.flags < 64 => {
            let f = |i: u32| k.flags & (1 << i) != 0;
            CollOp::ZAdd {
                pairs: k
                    .args
                    .chunks_exact(2)
                    .map(|p| {
                        <[u8; 8]>::try_from(p[0].as_slice())
                            .map(|s| (u64::from_be_bytes(s), p[1].clone()))
                            .map_err(|_| WireError::Invalid("score"))
                    })
                    .collect::<Result<_, _>>()?,
                when: ZWhen {
                    nx: f(0),
                    xx: f(1),
                    gt: f(2),
                    lt: f(3),
                },
                ch: f(4),
                incr: f(5),
            }
        }
        16 if k.flags < 4 => {
            let (by, rest) = by_from_args(&k.args)?;
            let limit = match (k.flags & 2 != 0, rest.is_empty()) {
                (false, true) => None,
                (true, false) => {
                    let (offset, count) = two_of(rest)?;
                    Some((offset as u64, count as u64))
                }
                _ => return Err(WireError::Invalid("sorted-set limit")),
            };
            CollOp::ZRange {
                by,
                rev: k.flags & 1 != 0,
                limit,
            }
        }
        17 => match by_from_args(&k.args)? {
            (by, []) => CollOp::ZCount { by },
            _ => return Err(WireError::Invalid("sorted-set range")),
        },
        18 if k.args.len() == 1 && k.flags < 2 => CollOp::ZRank {
            member: k.args[0].clone(),
            rev: k.flags == 1,
        },
        19 if k.flags < 2 => CollOp::ZPop {
            max: k.flags == 1,
            count: u32::try_from(k.amount).map_err(|_| WireError::Invalid("pop count"))?,
        },
        20 => match by_from_args(&k.args)? {
            (by, []) => CollOp::ZRemRange { by },
            _ => return Err(WireError::Invalid("sorted-set range")),
        },
        21 if k.args.len() == 1 && k.flags < 4 => CollOp::Move {
            to: k.args[0].clone(),
            from_left: k.flags & 1 != 0,
            to_left: k.flags & 2 != 0,
        },
        _ => return Err(WireError::Invalid("collection command")),
    };
    Ok((kind, op))
}

/// Writes `reply` into `out` (status 25).
pub(crate) fn reply_to_pb(reply: &CollReply, out: &mut pb::KvReply) {
    out.status = 25;
    match reply {
        CollReply::Count(n) => (out.shape, out.number) = (0, *n),
        CollReply::Values(values) => {
            out.shape = 1;
            out.value = values.iter().map(|v| u8::from(v.is_some())).collect();
            out.items = values
                .iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect();
        }
        CollReply::Pairs(pairs) => {
            out.shape = 2;
            out.items = pairs
                .iter()
                .flat_map(|(f, v)| [f.clone(), v.clone()])
                .collect();
        }
        CollReply::Number(text) => (out.shape, out.value) = (3, text.clone()),
        CollReply::Items(items) => (out.shape, out.items) = (5, items.clone()),
        CollReply::Error(text) => (out.shape, out.value) = (6, text.clone().into_bytes()),
        CollReply::Kind(kind) => {
            out.shape = 4;
            out.number = kind.map_or(-1, |(k, _)| i64::from(k.code()));
            out.expires = kind.and_then(|(_, t)| t).map(Time::as_micros);
        }
    }
}

/// The answer of a `KvReply` of status 25.
pub(crate) fn reply_from_pb(r: &pb::KvReply) -> Result<CollReply, WireError> {
    if r.items.len() > 2 * MAX_FIELDS {
        return Err(WireError::Invalid("collection items"));
    }
    Ok(match r.shape {
        0 => CollReply::Count(r.number),
        1 if r.value.len() == r.items.len() => CollReply::Values(
            r.items
                .iter()
                .zip(&r.value)
                .map(|(item, present)| match present {
                    0 => Ok(None),
                    1 => Ok(Some(item.clone())),
                    _ => Err(WireError::Invalid("collection value mask")),
                })
                .collect::<Result<_, _>>()?,
        ),
        2 if r.items.len().is_multiple_of(2) => CollReply::Pairs(
            r.items
                .chunks_exact(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        ),
        3 => CollReply::Number(r.value.clone()),
        4 => CollReply::Kind(match r.number {
            -1 => None,
            n => Some((
                u8::try_from(n)
                    .ok()
                    .and_then(Kind::from_code)
                    .ok_or(WireError::Invalid("kind"))?,
                r.expires.map(Time::from_micros),
            )),
        }),
        5 => CollReply::Items(r.items.clone()),
        6 => CollReply::Error(
            String::from_utf8(r.value.clone())
                .map_err(|_| WireError::Invalid("collection error"))?,
        ),
        _ => return Err(WireError::Invalid("collection answer")),
    })
}
