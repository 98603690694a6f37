//! Hashes and sets: each command one collection command
//! (`KeyValue::collection`) decided at the key's owner, which keeps every
//! field or member as a record of its own (see `chordal_core::collection`).
//!
//! Commands over several sets (SINTER, SUNION, SDIFF and their STORE and
//! CARD forms, SMOVE) read each set at its owner: when the keys share a
//! hash tag they share an owner, but the reads are separate commands, not
//! one snapshot, and the STORE forms write after they read.

use crate::commands::{failed, int_arg, not_integer, syntax, wrong_arity};
use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::Kind;
use chordal_core::collection::{CollOp, CollReply, MAX_READ_BYTES, MAX_READ_ELEMENTS};
use chordal_node::{Error, KeyValue, OpError};

/// The commands of this file, with whether each writes.
pub const COMMANDS: &[(&str, bool)] = &[
    ("hset", true),
    ("hmset", true),
    ("hsetnx", true),
    ("hdel", true),
    ("hincrby", true),
    ("hincrbyfloat", true),
    ("hget", false),
    ("hmget", false),
    ("hexists", false),
    ("hstrlen", false),
    ("hlen", false),
    ("hgetall", false),
    ("hkeys", false),
    ("hvals", false),
    ("hrandfield", false),
    ("hscan", false),
    ("sadd", true),
    ("srem", true),
    ("spop", true),
    ("smove", true),
    ("sinterstore", true),
    ("sunionstore", true),
    ("sdiffstore", true),
    ("scard", false),
    ("sismember", false),
    ("smismember", false),
    ("smembers", false),
    ("srandmember", false),
    ("sscan", false),
    ("sinter", false),
    ("sunion", false),
    ("sdiff", false),
    ("sintercard", false),
];

/// Is `name` a command of this file, of `lists.rs` or of `zsets.rs`?
pub fn is_collection_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
        || crate::lists::is_list_command(name)
        || crate::zsets::is_zset_command(name)
        || crate::zcombine::is_zcombine_command(name)
}

/// The keys command `name` touches (`args` without the name).
pub fn keys_of<'a>(name: &str, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    if crate::lists::is_list_command(name) || name.starts_with("bzpop") {
        return crate::lists::keys_of(name, args);
    }
    if crate::zcombine::is_zcombine_command(name) {
        return crate::zcombine::keys_of(name, args);
    }
    match name {
        "sinter" | "sunion" | "sdiff" | "sinterstore" | "sunionstore" | "sdiffstore" => {
            args.iter().collect()
        }
        "smove" => args.iter().take(2).collect(),
        "sintercard" => {
            let n = args.first().and_then(|a| int_arg(a)).unwrap_or(0).max(0) as usize;
            args.iter().skip(1).take(n).collect()
        }
        _ => args.first().into_iter().collect(),
    }
}

/// What a collection command answers when it fails.
pub(crate) fn collection_failed(e: Error) -> Reply {
    match e {
        Error::Op(OpError::WrongType) => wrong_type(),
        Error::Op(OpError::TooLarge { .. }) => Reply::err(format!(
            "the collection is too large to read whole (more than {MAX_READ_ELEMENTS} elements or {MAX_READ_BYTES} bytes)"
        )),
        other => failed(other),
    }
}

/// Redis's `WRONGTYPE` error.
pub(crate) fn wrong_type() -> Reply {
    Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
}

fn bulk(v: Vec<u8>) -> Reply {
    Reply::Bulk(Bytes::from(v))
}

/// Runs `op` on the `kind` collection at `key` and makes the reply with
/// `answer`.
pub(crate) async fn on<K: KeyValue>(
    kv: &K,
    (key, kind): (&Bytes, Kind),
    op: CollOp,
    answer: impl FnOnce(CollReply) -> Reply,
) -> Reply {
    match kv.collection(key.to_vec(), kind, op).await {
        Ok(CollReply::Error(e)) => Reply::err(e),
        Ok(r) => answer(r),
        Err(e) => collection_failed(e),
    }
}

pub(crate) fn count(r: CollReply) -> Reply {
    match r {
        CollReply::Count(n) => Reply::Integer(n),
        _ => unexpected(),
    }
}

pub(crate) fn unexpected() -> Reply {
    failed(Error::Op(OpError::UnexpectedAnswer))
}

fn fields(args: &[Bytes]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

/// The values of a `Get`, each made a reply by `each`.
fn values(r: CollReply, each: impl Fn(Option<Vec<u8>>) -> Reply) -> Reply {
    match r {
        CollReply::Values(v) => Reply::Array(v.into_iter().map(each).collect()),
        _ => unexpected(),
    }
}

/// The one value of a `Get` of one field.
fn value(r: CollReply) -> Option<Option<Vec<u8>>> {
    match r {
        CollReply::Values(mut v) if v.len() == 1 => v.pop(),
        _ => None,
    }
}

fn pairs(r: CollReply) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    match r {
        CollReply::Pairs(p) => Some(p),
        _ => None,
    }
}

/// Runs command `name` (one of [`COMMANDS`] or of `lists.rs`) with
/// `args` through `kv`.
///
/// Long on purpose: one arm per command, the table of what each asks of
/// the ring and how its answer reads.
pub async fn run<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Reply {
    if crate::lists::is_list_command(name) {
        return crate::lists::run(kv, name, args).await;
    }
    if crate::zsets::is_zset_command(name) {
        return crate::zsets::run(kv, name, args).await;
    }
    if crate::zcombine::is_zcombine_command(name) {
        return crate::zcombine::run(kv, name, args).await;
    }
    let n = args.len();
    let hash = |i: usize| (&args[i], Kind::Hash);
    let set = |i: usize| (&args[i], Kind::Set);
    match (name, n) {
        ("hset" | "hmset", _) if n >= 3 && !n.is_multiple_of(2) => {
            let op = CollOp::Put {
                pairs: args[1..]
                    .chunks(2)
                    .map(|p| (p[0].to_vec(), p[1].to_vec()))
                    .collect(),
                only_new: false,
            };
            on(kv, hash(0), op, |r| match name {
                "hmset" => Reply::ok(),
                _ => count(r),
            })
            .await
        }
        ("hsetnx", 3) => {
            let op = CollOp::Put {
                pairs: vec![(args[1].to_vec(), args[2].to_vec())],
                only_new: true,
            };
            on(kv, hash(0), op, count).await
        }
        ("hdel", 2..) => {
            let op = CollOp::Remove {
                fields: fields(&args[1..]),
            };
            on(kv, hash(0), op, count).await
        }
        ("hget" | "hexists" | "hstrlen", 2) => {
            let op = CollOp::Get {
                fields: vec![args[1].to_vec()],
            };
            on(kv, hash(0), op, |r| match (name, value(r)) {
                (_, None) => unexpected(),
                ("hget", Some(v)) => v.map_or(Reply::Nil, bulk),
                ("hexists", Some(v)) => Reply::Integer(i64::from(v.is_some())),
                (_, Some(v)) => Reply::Integer(v.map_or(0, |v| v.len() as i64)),
            })
            .await
        }
        ("hmget", 2..) => {
            let op = CollOp::Get {
                fields: fields(&args[1..]),
            };
            on(kv, hash(0), op, |r| {
                values(r, |v| v.map_or(Reply::Nil, bulk))
            })
            .await
        }
        ("hlen", 1) => on(kv, hash(0), CollOp::Len, count).await,
        ("hgetall" | "hkeys" | "hvals", 1) => {
            on(kv, hash(0), CollOp::All, |r| match pairs(r) {
                None => unexpected(),
                Some(p) => match name {
                    "hgetall" => {
                        Reply::Map(p.into_iter().map(|(f, v)| (bulk(f), bulk(v))).collect())
                    }
                    "hkeys" => Reply::Array(p.into_iter().map(|(f, _)| bulk(f)).collect()),
                    _ => Reply::Array(p.into_iter().map(|(_, v)| bulk(v)).collect()),
                },
            })
            .await
        }
        ("hincrby", 3) => {
            if int_arg(&args[2]).is_none() {
                return not_integer();
            }
            let op = CollOp::Incr {
                field: args[1].to_vec(),
                by: args[2].to_vec(),
                float: false,
            };
            match kv.collection(args[0].to_vec(), Kind::Hash, op).await {
                Ok(r) => count(r),
                Err(Error::Op(OpError::NotAnInteger)) => Reply::err("hash value is not an integer"),
                Err(e) => collection_failed(e),
            }
        }
        ("hincrbyfloat", 3) => {
            if chordal_core::parse_float(&args[2]).is_none() {
                let infinite = chordal_core::collection::zset::parse_score(&args[2]).is_some();
                return Reply::err(match infinite {
                    true => "value is NaN or Infinity",
                    false => "value is not a valid float",
                });
            }
            let op = CollOp::Incr {
                field: args[1].to_vec(),
                by: args[2].to_vec(),
                float: true,
            };
            match kv.collection(args[0].to_vec(), Kind::Hash, op).await {
                Ok(CollReply::Number(v)) => bulk(v),
                Ok(_) => unexpected(),
                Err(Error::Op(OpError::NotAFloat)) => Reply::err("hash value is not a float"),
                Err(e) => collection_failed(e),
            }
        }
        ("hrandfield", 1..=3) => random_fields(kv, hash(0), &args[1..]).await,
        ("hscan" | "sscan", 2..) => scan(kv, (&args[0], name), &args[1..]).await,
        ("sadd", 2..) => {
            let op = CollOp::Put {
                pairs: args[1..].iter().map(|m| (m.to_vec(), Vec::new())).collect(),
                only_new: false,
            };
            on(kv, set(0), op, count).await
        }
        ("srem", 2..) => {
            let op = CollOp::Remove {
                fields: fields(&args[1..]),
            };
            on(kv, set(0), op, count).await
        }
        ("scard", 1) => on(kv, set(0), CollOp::Len, count).await,
        ("sismember", 2) => {
            let op = CollOp::Get {
                fields: vec![args[1].to_vec()],
            };
            on(kv, set(0), op, |r| match value(r) {
                Some(v) => Reply::Integer(i64::from(v.is_some())),
                None => unexpected(),
            })
            .await
        }
        ("smismember", 2..) => {
            let op = CollOp::Get {
                fields: fields(&args[1..]),
            };
            on(kv, set(0), op, |r| {
                values(r, |v| Reply::Integer(i64::from(v.is_some())))
            })
            .await
        }
        ("smembers", 1) => match members(kv, &args[0]).await {
            Ok(m) => Reply::Array(m.into_iter().map(bulk).collect()),
            Err(reply) => reply,
        },
        ("spop", 1 | 2) => {
            let count = match pop_count(args.get(1)) {
                Ok(c) => c,
                Err(reply) => return reply,
            };
            let op = CollOp::Pop {
                count: count.unwrap_or(1),
            };
            on(kv, set(0), op, |r| match (pairs(r), count) {
                (None, _) => unexpected(),
                (Some(p), None) => p.into_iter().next().map_or(Reply::Nil, |(m, _)| bulk(m)),
                (Some(p), Some(_)) => Reply::Array(p.into_iter().map(|(m, _)| bulk(m)).collect()),
            })
            .await
        }
        ("srandmember", 1 | 2) => random_members(kv, &args[0], args.get(1)).await,
        ("sinter" | "sunion" | "sdiff", 1..) => match combine(kv, name, args).await {
            Ok(m) => Reply::Array(m.into_iter().map(bulk).collect()),
            Err(reply) => reply,
        },
        ("sintercard", 2..) => {
            let Some(numkeys) = int_arg(&args[0]).filter(|k| *k > 0) else {
                return Reply::err("numkeys should be greater than 0");
            };
            let numkeys = numkeys as usize;
            if args.len() < 1 + numkeys {
                return Reply::err("Number of keys can't be greater than number of args");
            }
            let mut limit = 0usize;
            let rest = &args[1 + numkeys..];
            match rest {
                [] => {}
                [w, l] if w.eq_ignore_ascii_case(b"limit") => match int_arg(l) {
                    Some(l) if l >= 0 => limit = l as usize,
                    _ => return Reply::err("LIMIT can't be negative"),
                },
                _ => return syntax(),
            }
            match combine(kv, "sinter", &args[1..1 + numkeys]).await {
                Ok(m) => Reply::Integer(match limit {
                    0 => m.len(),
                    l => m.len().min(l),
                } as i64),
                Err(reply) => reply,
            }
        }
        ("sinterstore" | "sunionstore" | "sdiffstore", 2..) => {
            let how = name.trim_end_matches("store");
            let m = match combine(kv, how, &args[1..]).await {
                Ok(m) => m,
                Err(reply) => return reply,
            };
            store_set(kv, &args[0], m).await
        }
        ("smove", 3) => {
            // Checked first: moving into a key of another kind fails
            // before anything is removed.
            let kind = match kv
                .collection(args[1].to_vec(), Kind::Set, CollOp::Kind)
                .await
            {
                Ok(CollReply::Kind(k)) => k.map(|(k, _)| k),
                Ok(_) => return unexpected(),
                Err(e) => return collection_failed(e),
            };
            if kind.is_some_and(|k| k != Kind::Set) {
                return wrong_type();
            }
            let op = CollOp::Remove {
                fields: vec![args[2].to_vec()],
            };
            match kv.collection(args[0].to_vec(), Kind::Set, op).await {
                Ok(CollReply::Count(0)) => Reply::Integer(0),
                Ok(CollReply::Count(_)) => {
                    let op = CollOp::Put {
                        pairs: vec![(args[2].to_vec(), Vec::new())],
                        only_new: false,
                    };
                    on(kv, set(1), op, |_| Reply::Integer(1)).await
                }
                Ok(_) => unexpected(),
                Err(e) => collection_failed(e),
            }
        }
        _ => wrong_arity(name),
    }
}

/// A pop's optional count: `None` if absent, else a non-negative
/// number (or Redis's error).
pub(crate) fn pop_count(arg: Option<&Bytes>) -> Result<Option<u32>, Reply> {
    match arg {
        None => Ok(None),
        Some(c) => match int_arg(c) {
            Some(c) if c >= 0 => Ok(Some(c.min(u32::MAX as i64) as u32)),
            _ => Err(Reply::err("value is out of range, must be positive")),
        },
    }
}

/// Every member of the set at `key`.
async fn members<K: KeyValue>(kv: &K, key: &Bytes) -> Result<Vec<Vec<u8>>, Reply> {
    match kv.collection(key.to_vec(), Kind::Set, CollOp::All).await {
        Ok(CollReply::Pairs(p)) => Ok(p.into_iter().map(|(m, _)| m).collect()),
        Ok(_) => Err(unexpected()),
        Err(e) => Err(collection_failed(e)),
    }
}

/// SINTER / SUNION / SDIFF of the sets at `keys`, each read at its owner.
async fn combine<K: KeyValue>(kv: &K, how: &str, keys: &[Bytes]) -> Result<Vec<Vec<u8>>, Reply> {
    use std::collections::BTreeSet;
    let mut out: Option<BTreeSet<Vec<u8>>> = None;
    for key in keys {
        let m: BTreeSet<Vec<u8>> = members(kv, key).await?.into_iter().collect();
        out = Some(match (out, how) {
            (None, _) => m,
            (Some(acc), "sinter") => acc.intersection(&m).cloned().collect(),
            (Some(acc), "sunion") => acc.union(&m).cloned().collect(),
            (Some(acc), _) => acc.difference(&m).cloned().collect(),
        });
    }
    Ok(out.unwrap_or_default().into_iter().collect())
}

/// Makes the set at `key` hold `members` (deleting it if there are
/// none); answers their count.
async fn store_set<K: KeyValue>(kv: &K, key: &Bytes, members: Vec<Vec<u8>>) -> Reply {
    let n = members.len() as i64;
    if let Err(e) = kv.delete(key.to_vec()).await {
        return failed(e);
    }
    if members.is_empty() {
        return Reply::Integer(0);
    }
    let op = CollOp::Put {
        pairs: members.into_iter().map(|m| (m, Vec::new())).collect(),
        only_new: false,
    };
    on(kv, (key, Kind::Set), op, |_| Reply::Integer(n)).await
}

/// Picks `count` of `items` (`count` < 0: with repeats, as Redis's
/// negative counts), starting at a place chosen by the clock.
pub(crate) fn pick<T: Clone>(items: &[T], count: i64) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let seed = chordal_node::wall_clock().as_micros() as usize;
    if count >= 0 {
        let n = (count as usize).min(items.len());
        return (0..n)
            .map(|i| items[(seed + i) % items.len()].clone())
            .collect();
    }
    let n = count.unsigned_abs().min(1 << 20) as usize;
    (0..n)
        .map(|i| items[(seed.wrapping_mul(31).wrapping_add(i * 7919)) % items.len()].clone())
        .collect()
}

/// HRANDFIELD key [count [WITHVALUES]].
async fn random_fields<K: KeyValue>(kv: &K, at: (&Bytes, Kind), opts: &[Bytes]) -> Reply {
    let count = match opts.first() {
        None => None,
        Some(c) => match int_arg(c) {
            Some(c) => Some(c),
            None => return not_integer(),
        },
    };
    let with_values = match opts.get(1) {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"withvalues") => true,
        Some(_) => return syntax(),
    };
    on(kv, at, CollOp::All, |r| {
        let Some(p) = pairs(r) else {
            return unexpected();
        };
        match count {
            None => pick(&p, 1)
                .into_iter()
                .next()
                .map_or(Reply::Nil, |(f, _)| bulk(f)),
            Some(c) => {
                let chosen = pick(&p, c);
                match with_values {
                    true => Reply::Pairs(
                        chosen
                            .into_iter()
                            .map(|(f, v)| (bulk(f), bulk(v)))
                            .collect(),
                    ),
                    false => Reply::Array(chosen.into_iter().map(|(f, _)| bulk(f)).collect()),
                }
            }
        }
    })
    .await
}

/// SRANDMEMBER key [count].
async fn random_members<K: KeyValue>(kv: &K, key: &Bytes, count: Option<&Bytes>) -> Reply {
    let count = match count {
        None => None,
        Some(c) => match int_arg(c) {
            Some(c) => Some(c),
            None => return not_integer(),
        },
    };
    match members(kv, key).await {
        Ok(m) => match count {
            None => pick(&m, 1).into_iter().next().map_or(Reply::Nil, bulk),
            Some(c) => Reply::Array(pick(&m, c).into_iter().map(bulk).collect()),
        },
        Err(reply) => reply,
    }
}

/// HSCAN / SSCAN / ZSCAN key cursor [MATCH pattern] [COUNT n]: the whole
/// collection in one page (cursor 0), filtered by the pattern.
pub(crate) async fn scan<K: KeyValue>(
    kv: &K,
    (key, name): (&Bytes, &str),
    opts: &[Bytes],
) -> Reply {
    if int_arg(&opts[0]).is_none_or(|c| c < 0) {
        return Reply::err("invalid cursor");
    }
    let mut pattern: Option<&[u8]> = None;
    let mut i = 1;
    while i < opts.len() {
        match (opts[i].to_ascii_lowercase().as_slice(), opts.get(i + 1)) {
            (b"match", Some(p)) => pattern = Some(p),
            (b"count", Some(c)) => match int_arg(c) {
                Some(c) if c >= 1 => {}
                Some(_) => return syntax(),
                None => return not_integer(),
            },
            (b"novalues", _) if name == "hscan" => {
                i += 1;
                continue;
            }
            _ => return syntax(),
        }
        i += 2;
    }
    let no_values = opts.iter().any(|o| o.eq_ignore_ascii_case(b"novalues"));
    let kind = match name {
        "hscan" => Kind::Hash,
        "sscan" => Kind::Set,
        _ => Kind::ZSet,
    };
    on(kv, (key, kind), CollOp::All, |r| {
        let Some(p) = pairs(r) else {
            return unexpected();
        };
        let keep = |f: &[u8]| pattern.is_none_or(|pat| chordal_node::glob::matches(pat, f));
        let items = p
            .into_iter()
            .filter(|(f, _)| keep(f))
            .flat_map(|(f, v)| match kind != Kind::Set && !no_values {
                true => vec![bulk(f), bulk(v)],
                false => vec![bulk(f)],
            })
            .collect();
        Reply::Array(vec![Reply::text("0"), Reply::Array(items)])
    })
    .await
}
