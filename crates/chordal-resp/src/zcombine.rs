//! Sorted-set commands over several keys: ZUNION, ZINTER, ZDIFF (and
//! their STORE forms), ZINTERCARD, ZRANGESTORE, ZMPOP and BZMPOP. Each
//! key is read (or popped) at its own owner in turn, as SINTER does
//! (`collections.rs`): every read is linearizable, the whole is not one
//! step, and a STORE form writes its destination after it has read.

use crate::blocking::Blocking;
use crate::collections::{collection_failed, on, pop_count, unexpected};
use crate::commands::{int_arg, syntax, wrong_arity};
use crate::lists::first_nonempty;
use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::Kind;
use chordal_core::collection::zset::{parse_score, score_key};
use chordal_core::collection::{CollOp, CollReply, ZWhen};
use chordal_node::{Error, KeyValue, OpError};
use std::collections::BTreeMap;

/// The commands of this file, with whether each writes.
pub const COMMANDS: &[(&str, bool)] = &[
    ("zunionstore", true),
    ("zinterstore", true),
    ("zdiffstore", true),
    ("zrangestore", true),
    ("zmpop", true),
    ("bzmpop", true),
    ("zunion", false),
    ("zinter", false),
    ("zdiff", false),
    ("zintercard", false),
];

/// Is `name` a command of this file?
pub fn is_zcombine_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
}

/// The keys command `name` touches (`args` without the name).
pub fn keys_of<'a>(name: &str, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    let numbered = |from: usize| {
        let n = args.get(from).and_then(|a| int_arg(a)).unwrap_or(0).max(0) as usize;
        args.iter().skip(from + 1).take(n)
    };
    match name {
        "zunionstore" | "zinterstore" | "zdiffstore" => {
            args.first().into_iter().chain(numbered(1)).collect()
        }
        "zrangestore" => args.iter().take(2).collect(),
        "bzmpop" => numbered(1).collect(),
        _ => numbered(0).collect(),
    }
}

fn bulk(v: Vec<u8>) -> Reply {
    Reply::Bulk(Bytes::from(v))
}

/// Every member of the sorted set (or set: score 1) at `key` with its
/// score; empty if there is none.
async fn scores_of<K: KeyValue>(kv: &K, key: &Bytes) -> Result<BTreeMap<Vec<u8>, f64>, Reply> {
    let read = |kind| kv.collection(key.to_vec(), kind, CollOp::All);
    let pairs = match read(Kind::ZSet).await {
        Ok(CollReply::Pairs(p)) => p
            .into_iter()
            .map(|(m, s)| {
                let s = parse_score(&s).unwrap_or(0.0);
                (m, s)
            })
            .collect(),
        Err(Error::Op(OpError::WrongType)) => match read(Kind::Set).await {
            Ok(CollReply::Pairs(p)) => p.into_iter().map(|(m, _)| (m, 1.0)).collect(),
            Ok(_) => return Err(unexpected()),
            Err(e) => return Err(collection_failed(e)),
        },
        Ok(_) => return Err(unexpected()),
        Err(e) => return Err(collection_failed(e)),
    };
    Ok(pairs)
}

/// How ZUNION and ZINTER combine the scores of one member.
#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, a: f64, b: f64) -> f64 {
        let r = match self {
            Aggregate::Sum => a + b,
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        };
        // inf + -inf: Redis makes it 0, never NaN.
        if r.is_nan() { 0.0 } else { r }
    }
}

/// The options after the keys: WEIGHTS, AGGREGATE, WITHSCORES (each where
/// the command allows it).
struct Options {
    weights: Vec<f64>,
    aggregate: Aggregate,
    with_scores: bool,
    limit: usize,
}

fn options(name: &str, n: usize, rest: &[Bytes]) -> Result<Options, Reply> {
    let mut o = Options {
        weights: vec![1.0; n],
        aggregate: Aggregate::Sum,
        with_scores: false,
        limit: 0,
    };
    let store = name.ends_with("store");
    let diff = name.starts_with("zdiff");
    let mut i = 0;
    while i < rest.len() {
        match rest[i].to_ascii_lowercase().as_slice() {
            b"weights" if !diff && name != "zintercard" && i + n < rest.len() => {
                for (k, w) in rest[i + 1..=i + n].iter().enumerate() {
                    o.weights[k] =
                        parse_score(w).ok_or_else(|| Reply::err("weight value is not a float"))?;
                }
                i += n;
            }
            b"aggregate" if !diff && name != "zintercard" && i + 1 < rest.len() => {
                o.aggregate = match rest[i + 1].to_ascii_lowercase().as_slice() {
                    b"sum" => Aggregate::Sum,
                    b"min" => Aggregate::Min,
                    b"max" => Aggregate::Max,
                    _ => return Err(syntax()),
                };
                i += 1;
            }
            b"withscores" if !store && name != "zintercard" => o.with_scores = true,
            b"limit" if name == "zintercard" && i + 1 < rest.len() => {
                o.limit = match int_arg(&rest[i + 1]) {
                    Some(l) if l >= 0 => l as usize,
                    _ => return Err(Reply::err("LIMIT can't be negative")),
                };
                i += 1;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    Ok(o)
}

/// The union, intersection or difference (`how`: the command's name) of
/// the sets at `keys`, sorted by score then member.
async fn combine<K: KeyValue>(
    kv: &K,
    how: &str,
    keys: &[Bytes],
    o: &Options,
) -> Result<Vec<(Vec<u8>, f64)>, Reply> {
    let mut acc: Option<BTreeMap<Vec<u8>, f64>> = None;
    for (k, key) in keys.iter().enumerate() {
        let w = o.weights[k];
        let set: BTreeMap<Vec<u8>, f64> = scores_of(kv, key)
            .await?
            .into_iter()
            .map(|(m, s)| {
                let s = s * w;
                (m, if s.is_nan() { 0.0 } else { s })
            })
            .collect();
        acc = Some(match acc {
            None => set,
            Some(mut a) if how.starts_with("zunion") => {
                for (m, s) in set {
                    let next = match a.get(&m) {
                        Some(prev) => o.aggregate.apply(*prev, s),
                        None => s,
                    };
                    a.insert(m, next);
                }
                a
            }
            Some(a) if how.starts_with("zinter") => a
                .into_iter()
                .filter_map(|(m, s)| set.get(&m).map(|t| (m, o.aggregate.apply(s, *t))))
                .collect(),
            Some(a) => a
                .into_iter()
                .filter(|(m, _)| !set.contains_key(m))
                .collect(),
        });
    }
    let mut out: Vec<(Vec<u8>, f64)> = acc.unwrap_or_default().into_iter().collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// Makes the sorted set at `dst` hold `members` (deleting it if there are
/// none); answers their count.
async fn store<K: KeyValue>(kv: &K, dst: &Bytes, members: Vec<(Vec<u8>, f64)>) -> Reply {
    let n = members.len() as i64;
    if let Err(e) = kv.delete(dst.to_vec()).await {
        return collection_failed(e);
    }
    if members.is_empty() {
        return Reply::Integer(0);
    }
    let op = CollOp::ZAdd {
        pairs: members
            .into_iter()
            .map(|(m, s)| (score_key(s), m))
            .collect(),
        when: ZWhen::default(),
        ch: false,
        incr: false,
    };
    on(kv, (dst, Kind::ZSet), op, |_| Reply::Integer(n)).await
}

/// `numkeys` and the keys after it, or Redis's error.
fn numbered<'a>(name: &str, args: &'a [Bytes]) -> Result<(&'a [Bytes], &'a [Bytes]), Reply> {
    let n = match args.first().and_then(|a| int_arg(a)) {
        Some(n) if n > 0 => n as usize,
        Some(0)
            if name.starts_with("zunion")
                || name.starts_with("zinter")
                || name.starts_with("zdiff") =>
        {
            return Err(Reply::err(format!(
                "at least 1 input key is needed for '{name}' command"
            )));
        }
        _ => return Err(Reply::err("numkeys should be greater than 0")),
    };
    if args.len() < 1 + n {
        return Err(syntax());
    }
    Ok((&args[1..1 + n], &args[1 + n..]))
}

/// Runs command `name` (one of [`COMMANDS`]) with `args` through `kv`.
pub async fn run<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Reply {
    match name {
        "zunion" | "zinter" | "zdiff" | "zintercard" if !args.is_empty() => {
            let (keys, rest) = match numbered(name, args) {
                Ok(k) => k,
                Err(reply) => return reply,
            };
            let o = match options(name, keys.len(), rest) {
                Ok(o) => o,
                Err(reply) => return reply,
            };
            let how = if name == "zintercard" { "zinter" } else { name };
            let members = match combine(kv, how, keys, &o).await {
                Ok(m) => m,
                Err(reply) => return reply,
            };
            match (name, o.with_scores) {
                ("zintercard", _) => Reply::Integer(match o.limit {
                    0 => members.len(),
                    l => members.len().min(l),
                } as i64),
                (_, true) => Reply::Pairs(
                    members
                        .into_iter()
                        .map(|(m, s)| (bulk(m), Reply::Double(s)))
                        .collect(),
                ),
                (_, false) => Reply::Array(members.into_iter().map(|(m, _)| bulk(m)).collect()),
            }
        }
        "zunionstore" | "zinterstore" | "zdiffstore" if args.len() >= 2 => {
            let (keys, rest) = match numbered(name, &args[1..]) {
                Ok(k) => k,
                Err(reply) => return reply,
            };
            let o = match options(name, keys.len(), rest) {
                Ok(o) => o,
                Err(reply) => return reply,
            };
            match combine(kv, name, keys, &o).await {
                Ok(m) => store(kv, &args[0], m).await,
                Err(reply) => reply,
            }
        }
        "zrangestore" if args.len() >= 4 => {
            // ZRANGE's own parsing, on the source; WITHSCORES is refused.
            if args[4..]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(b"withscores"))
            {
                return syntax();
            }
            let mut range = vec![args[1].clone()];
            range.extend(args[2..].iter().cloned());
            range.push(Bytes::from_static(b"WITHSCORES"));
            match crate::zsets::run(kv, "zrange", &range).await {
                Reply::Pairs(p) => {
                    let members = p
                        .into_iter()
                        .filter_map(|(m, s)| match (m, s) {
                            (Reply::Bulk(m), Reply::Double(s)) => Some((m.to_vec(), s)),
                            _ => None,
                        })
                        .collect();
                    store(kv, &args[0], members).await
                }
                // By member (BYLEX), ZRANGE answers no scores: take them.
                Reply::Error(e) if e.contains("BYLEX") => {
                    let mut range = vec![args[1].clone()];
                    range.extend(args[2..].iter().cloned());
                    match crate::zsets::run(kv, "zrange", &range).await {
                        Reply::Array(items) => {
                            let members = items
                                .into_iter()
                                .filter_map(|m| match m {
                                    Reply::Bulk(m) => Some((m.to_vec(), 0.0)),
                                    _ => None,
                                })
                                .collect();
                            store(kv, &args[0], members).await
                        }
                        other => other,
                    }
                }
                other => other,
            }
        }
        "zmpop" if args.len() >= 3 => pop_first(kv, args, None).await,
        "bzmpop" if args.len() >= 4 => {
            let wait = match Blocking::until(&args[0]) {
                Ok(w) => w,
                Err(reply) => return reply,
            };
            pop_first(kv, &args[1..], Some(&wait)).await
        }
        _ => wrong_arity(name),
    }
}

/// ZMPOP numkeys key… MIN|MAX [COUNT n]: pops from the first non-empty
/// sorted set, answering `[key, [[member, score]…]]`, or nil; with `wait`
/// (BZMPOP) tries again until its timeout.
async fn pop_first<K: KeyValue>(kv: &K, args: &[Bytes], wait: Option<&Blocking>) -> Reply {
    let n = match args.first().and_then(|a| int_arg(a)) {
        Some(n) if n > 0 => n as usize,
        _ => return Reply::err("numkeys should be greater than 0"),
    };
    if args.len() < n + 2 {
        return syntax();
    }
    let (keys, rest) = (&args[1..1 + n], &args[1 + n..]);
    let max = match rest[0].to_ascii_lowercase().as_slice() {
        b"min" => false,
        b"max" => true,
        _ => return syntax(),
    };
    let count = match &rest[1..] {
        [] => 1,
        [w, c] if w.eq_ignore_ascii_case(b"count") => match pop_count(Some(c)) {
            Ok(Some(c)) if c > 0 => c,
            _ => return Reply::err("count should be greater than 0"),
        },
        _ => return syntax(),
    };
    let op = CollOp::ZPop { max, count };
    first_nonempty(kv, keys, (Kind::ZSet, op), wait, |key, r| match r {
        CollReply::Pairs(p) if !p.is_empty() => {
            let popped = p
                .into_iter()
                .map(|(m, s)| Reply::Array(vec![bulk(m), crate::zsets::score(s)]))
                .collect();
            Some(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                Reply::Array(popped),
            ]))
        }
        CollReply::Pairs(_) => None,
        _ => Some(unexpected()),
    })
    .await
}
