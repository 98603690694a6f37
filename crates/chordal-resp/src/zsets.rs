//! Sorted sets: each command one collection command
//! (`KeyValue::collection`) decided at the key's owner, which keeps each
//! member as a score record and an order record (see
//! `chordal_core::collection::zset`). BZPOPMIN and BZPOPMAX try again
//! with backoff, as BLPOP does.

use crate::blocking::Blocking;
use crate::collections::{count, on, pop_count, unexpected};
use crate::commands::{int_arg, not_integer, syntax, wrong_arity};
use crate::lists::first_nonempty;
use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::Kind;
use chordal_core::collection::zset::{parse_score, score_key, valid_lex};
use chordal_core::collection::{CollOp, CollReply, ZBy, ZWhen};
use chordal_node::KeyValue;

/// The commands of this file, with whether each writes.
pub const COMMANDS: &[(&str, bool)] = &[
    ("zadd", true),
    ("zincrby", true),
    ("zrem", true),
    ("zpopmin", true),
    ("zpopmax", true),
    ("bzpopmin", true),
    ("bzpopmax", true),
    ("zremrangebyrank", true),
    ("zremrangebyscore", true),
    ("zremrangebylex", true),
    ("zcard", false),
    ("zscore", false),
    ("zmscore", false),
    ("zrange", false),
    ("zrevrange", false),
    ("zrangebyscore", false),
    ("zrevrangebyscore", false),
    ("zrangebylex", false),
    ("zrevrangebylex", false),
    ("zcount", false),
    ("zlexcount", false),
    ("zrank", false),
    ("zrevrank", false),
    ("zrandmember", false),
    ("zscan", false),
];

/// Is `name` a command of this file?
pub fn is_zset_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
}

fn bulk(v: Vec<u8>) -> Reply {
    Reply::Bulk(Bytes::from(v))
}

/// A score (its text from the owner) as a reply: a double in RESP3.
pub(crate) fn score(text: Vec<u8>) -> Reply {
    match parse_score(&text) {
        Some(x) => Reply::Double(x),
        None => bulk(text),
    }
}

async fn on_zset<K: KeyValue>(
    kv: &K,
    key: &Bytes,
    op: CollOp,
    answer: impl FnOnce(CollReply) -> Reply,
) -> Reply {
    on(kv, (key, Kind::ZSet), op, answer).await
}

/// A score bound (`1.5`, `(1.5`, `-inf`, `+inf`): its sortable form and
/// whether it is exclusive.
fn score_bound(b: &[u8]) -> Option<(u64, bool)> {
    let (text, excl) = match b.strip_prefix(b"(") {
        Some(t) => (t, true),
        None => (b, false),
    };
    Some((score_key(parse_score(text)?), excl))
}

/// The by-score range `min`..`max`.
fn by_score(min: &[u8], max: &[u8]) -> Result<ZBy, Reply> {
    match (score_bound(min), score_bound(max)) {
        (Some((min, min_excl)), Some((max, max_excl))) => Ok(ZBy::Score {
            min,
            min_excl,
            max,
            max_excl,
        }),
        _ => Err(Reply::err("min or max is not a float")),
    }
}

/// The by-member range `min`..`max`.
fn by_lex(min: &[u8], max: &[u8]) -> Result<ZBy, Reply> {
    match valid_lex(min, max) {
        true => Ok(ZBy::Lex {
            min: min.to_vec(),
            max: max.to_vec(),
        }),
        false => Err(Reply::err("min or max not valid string range item")),
    }
}

/// Members and scores as a reply: members only, or each followed by its
/// score.
fn members(r: CollReply, with_scores: bool) -> Reply {
    match (r, with_scores) {
        (CollReply::Pairs(p), true) => {
            Reply::Pairs(p.into_iter().map(|(m, s)| (bulk(m), score(s))).collect())
        }
        (CollReply::Pairs(p), false) => Reply::Array(p.into_iter().map(|(m, _)| bulk(m)).collect()),
        _ => unexpected(),
    }
}

/// Runs command `name` (one of [`COMMANDS`]) with `args` through `kv`.
pub async fn run<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Reply {
    let n = args.len();
    match (name, n) {
        ("zadd", 3..) => zadd(kv, args).await,
        ("zincrby", 3) => {
            let Some(by) = parse_score(&args[1]) else {
                return Reply::err("value is not a valid float");
            };
            let op = CollOp::ZAdd {
                pairs: vec![(score_key(by), args[2].to_vec())],
                when: ZWhen::default(),
                ch: false,
                incr: true,
            };
            on_zset(kv, &args[0], op, |r| match r {
                CollReply::Values(mut v) => v.pop().flatten().map_or(Reply::Nil, score),
                _ => unexpected(),
            })
            .await
        }
        ("zrem", 2..) => {
            let op = CollOp::Remove {
                fields: args[1..].iter().map(|a| a.to_vec()).collect(),
            };
            on_zset(kv, &args[0], op, count).await
        }
        ("zcard", 1) => on_zset(kv, &args[0], CollOp::Len, count).await,
        ("zscore" | "zmscore", 2..) if name == "zmscore" || n == 2 => {
            let op = CollOp::Get {
                fields: args[1..].iter().map(|a| a.to_vec()).collect(),
            };
            on_zset(kv, &args[0], op, |r| match r {
                CollReply::Values(v) if name == "zscore" => {
                    v.into_iter().next().flatten().map_or(Reply::Nil, score)
                }
                CollReply::Values(v) => {
                    Reply::Array(v.into_iter().map(|s| s.map_or(Reply::Nil, score)).collect())
                }
                _ => unexpected(),
            })
            .await
        }
        ("zrange", 3..) => zrange(kv, args).await,
        ("zrevrange", 4) if !args[3].eq_ignore_ascii_case(b"withscores") => syntax(),
        ("zrevrange", 3 | 4) => {
            let mut all = vec![args[0].clone(), args[1].clone(), args[2].clone()];
            all.push(Bytes::from_static(b"REV"));
            all.extend(args[3..].iter().cloned());
            zrange(kv, &all).await
        }
        ("zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex", 3..)
            if args[3..].iter().any(|a| {
                a.eq_ignore_ascii_case(b"rev")
                    || a.eq_ignore_ascii_case(b"byscore")
                    || a.eq_ignore_ascii_case(b"bylex")
            }) =>
        {
            syntax()
        }
        ("zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex", 3..) => {
            // The old forms: ZRANGE with BYSCORE / BYLEX (and REV, whose
            // bounds come max first, as here).
            let mut all = vec![args[0].clone(), args[1].clone(), args[2].clone()];
            all.push(Bytes::from_static(if name.ends_with("lex") {
                b"BYLEX"
            } else {
                b"BYSCORE"
            }));
            if name.starts_with("zrev") {
                all.push(Bytes::from_static(b"REV"));
            }
            all.extend(args[3..].iter().cloned());
            zrange(kv, &all).await
        }
        ("zcount" | "zlexcount", 3) => {
            let by = match name {
                "zcount" => by_score(&args[1], &args[2]),
                _ => by_lex(&args[1], &args[2]),
            };
            match by {
                Ok(by) => on_zset(kv, &args[0], CollOp::ZCount { by }, count).await,
                Err(reply) => reply,
            }
        }
        ("zrank" | "zrevrank", 2) => {
            let op = CollOp::ZRank {
                member: args[1].to_vec(),
                rev: name == "zrevrank",
            };
            on_zset(kv, &args[0], op, |r| match r {
                CollReply::Count(-1) => Reply::Nil,
                other => count(other),
            })
            .await
        }
        ("zpopmin" | "zpopmax", 1 | 2) => {
            let many = match pop_count(args.get(1)) {
                Ok(c) => c,
                Err(reply) => return reply,
            };
            let op = CollOp::ZPop {
                max: name == "zpopmax",
                count: many.unwrap_or(1),
            };
            on_zset(kv, &args[0], op, |r| match (many, r) {
                // Without a count: one flat pair, in RESP3 too.
                (None, CollReply::Pairs(p)) => Reply::Array(
                    p.into_iter()
                        .flat_map(|(m, s)| [bulk(m), score(s)])
                        .collect(),
                ),
                (_, r) => members(r, true),
            })
            .await
        }
        ("bzpopmin" | "bzpopmax", 2..) => blocking_pop(kv, name == "bzpopmax", args).await,
        ("zremrangebyrank" | "zremrangebyscore" | "zremrangebylex", 3) => {
            let by = match name {
                "zremrangebyrank" => match (int_arg(&args[1]), int_arg(&args[2])) {
                    (Some(start), Some(stop)) => Ok(ZBy::Rank { start, stop }),
                    _ => return not_integer(),
                },
                "zremrangebyscore" => by_score(&args[1], &args[2]),
                _ => by_lex(&args[1], &args[2]),
            };
            match by {
                Ok(by) => on_zset(kv, &args[0], CollOp::ZRemRange { by }, count).await,
                Err(reply) => reply,
            }
        }
        ("zrandmember", 1..=3) => {
            let count = match args.get(1) {
                None => None,
                Some(c) => match int_arg(c) {
                    Some(c) => Some(c),
                    None => return not_integer(),
                },
            };
            let with_scores = match args.get(2) {
                None => false,
                Some(w) if w.eq_ignore_ascii_case(b"withscores") => true,
                Some(_) => return syntax(),
            };
            on_zset(kv, &args[0], CollOp::All, |r| match r {
                CollReply::Pairs(p) => match count {
                    None => p.into_iter().next().map_or(Reply::Nil, |(m, _)| bulk(m)),
                    Some(c) => {
                        let chosen = crate::collections::pick(&p, c);
                        members(CollReply::Pairs(chosen), with_scores)
                    }
                },
                _ => unexpected(),
            })
            .await
        }
        ("zscan", 2..) => crate::collections::scan(kv, (&args[0], name), &args[1..]).await,
        _ => wrong_arity(name),
    }
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member …].
async fn zadd<K: KeyValue>(kv: &K, args: &[Bytes]) -> Reply {
    let mut when = ZWhen::default();
    let (mut ch, mut incr) = (false, false);
    let mut i = 1;
    while i < args.len() {
        match args[i].to_ascii_lowercase().as_slice() {
            b"nx" => when.nx = true,
            b"xx" => when.xx = true,
            b"gt" => when.gt = true,
            b"lt" => when.lt = true,
            b"ch" => ch = true,
            b"incr" => incr = true,
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return syntax();
    }
    if when.nx && when.xx {
        return Reply::err("XX and NX options at the same time are not compatible");
    }
    if (when.gt && when.lt) || (when.nx && (when.gt || when.lt)) {
        return Reply::err("GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && rest.len() > 2 {
        return Reply::err("INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks(2) {
        let Some(score) = parse_score(&p[0]) else {
            return Reply::err("value is not a valid float");
        };
        pairs.push((score_key(score), p[1].to_vec()));
    }
    let op = CollOp::ZAdd {
        pairs,
        when,
        ch,
        incr,
    };
    on_zset(kv, &args[0], op, |r| match r {
        CollReply::Values(mut v) => v.pop().flatten().map_or(Reply::Nil, score),
        other => count(other),
    })
    .await
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count]
/// [WITHSCORES].
async fn zrange<K: KeyValue>(kv: &K, args: &[Bytes]) -> Reply {
    let (mut by_score_, mut by_lex_, mut rev, mut with_scores) = (false, false, false, false);
    let mut limit = None;
    let mut i = 3;
    while i < args.len() {
        match args[i].to_ascii_lowercase().as_slice() {
            b"byscore" => by_score_ = true,
            b"bylex" => by_lex_ = true,
            b"rev" => rev = true,
            b"withscores" => with_scores = true,
            b"limit" if i + 2 < args.len() => {
                let (Some(offset), Some(count)) = (int_arg(&args[i + 1]), int_arg(&args[i + 2]))
                else {
                    return not_integer();
                };
                // A negative count is every one; a negative offset none.
                let count = if count < 0 { u64::MAX } else { count as u64 };
                limit = Some((offset, count));
                i += 2;
            }
            _ => return syntax(),
        }
        i += 1;
    }
    if by_score_ && by_lex_ {
        return syntax();
    }
    if limit.is_some() && !by_score_ && !by_lex_ {
        return Reply::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if with_scores && by_lex_ {
        return Reply::err("syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    // With REV, BYSCORE and BYLEX bounds come highest first.
    let (lo, hi) = match rev && (by_score_ || by_lex_) {
        true => (&args[2], &args[1]),
        false => (&args[1], &args[2]),
    };
    let by = if by_score_ {
        by_score(lo, hi)
    } else if by_lex_ {
        by_lex(lo, hi)
    } else {
        match (int_arg(lo), int_arg(hi)) {
            (Some(start), Some(stop)) => Ok(ZBy::Rank { start, stop }),
            _ => return not_integer(),
        }
    };
    let by = match by {
        Ok(by) => by,
        Err(reply) => return reply,
    };
    if limit.is_some_and(|(offset, _)| offset < 0) {
        return Reply::Array(Vec::new());
    }
    let op = CollOp::ZRange {
        by,
        rev,
        limit: limit.map(|(o, c)| (o as u64, c)),
    };
    on_zset(kv, &args[0], op, |r| members(r, with_scores)).await
}

/// BZPOPMIN / BZPOPMAX key [key …] timeout: `[key, member, score]` of
/// the first non-empty set; nil once `timeout` seconds (0: for ever) pass.
async fn blocking_pop<K: KeyValue>(kv: &K, max: bool, args: &[Bytes]) -> Reply {
    let (keys, timeout) = args.split_at(args.len() - 1);
    let wait = match Blocking::until(&timeout[0]) {
        Ok(w) => w,
        Err(reply) => return reply,
    };
    let op = CollOp::ZPop { max, count: 1 };
    first_nonempty(kv, keys, (Kind::ZSet, op), Some(&wait), |key, r| match r {
        CollReply::Pairs(mut p) if !p.is_empty() => {
            let (m, s) = p.remove(0);
            Some(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                bulk(m),
                score(s),
            ]))
        }
        CollReply::Pairs(_) => None,
        _ => Some(unexpected()),
    })
    .await
}
