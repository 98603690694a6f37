//! Lists: each command one collection command (`KeyValue::collection`)
//! decided at the key's owner, which keeps every element as a record of
//! its own at its position (see `chordal_core::collection`).
//!
//! BLPOP and BRPOP pop at the owner like LPOP; while every list they name
//! is empty they try again, each a little later (from 10 ms to 100 ms),
//! until their timeout.

use crate::blocking::{Blocking, MAX_BLOCKING_KEYS};
use crate::collections::{collection_failed, count, pop_count, unexpected};
use crate::commands::{int_arg, not_integer, syntax, wrong_arity};
use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::Kind;
use chordal_core::collection::{CollOp, CollReply};
use chordal_node::KeyValue;

/// The commands of this file, with whether each writes.
pub const COMMANDS: &[(&str, bool)] = &[
    ("lpush", true),
    ("rpush", true),
    ("lpushx", true),
    ("rpushx", true),
    ("lpop", true),
    ("rpop", true),
    ("blpop", true),
    ("brpop", true),
    ("lset", true),
    ("ltrim", true),
    ("lrem", true),
    ("linsert", true),
    ("llen", false),
    ("lrange", false),
    ("lindex", false),
    ("lpos", false),
    ("lmpop", true),
    ("blmpop", true),
    ("lmove", true),
    ("rpoplpush", true),
    ("blmove", true),
    ("brpoplpush", true),
];

/// Is `name` a command of this file?
pub fn is_list_command(name: &str) -> bool {
    COMMANDS.iter().any(|(n, _)| *n == name)
}

/// The keys command `name` touches (`args` without the name).
pub fn keys_of<'a>(name: &str, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    match name {
        // Every key but the timeout.
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => {
            args[..args.len().saturating_sub(1)].iter().collect()
        }
        "lmove" | "rpoplpush" | "blmove" | "brpoplpush" => args.iter().take(2).collect(),
        "lmpop" | "blmpop" => {
            let at = usize::from(name == "blmpop");
            let n = args.get(at).and_then(|a| int_arg(a)).unwrap_or(0).max(0) as usize;
            args.iter().skip(at + 1).take(n).collect()
        }
        _ => args.first().into_iter().collect(),
    }
}

fn bulk(v: Vec<u8>) -> Reply {
    Reply::Bulk(Bytes::from(v))
}

/// Runs `op` on the list at `key`, the answer made a reply by `answer`.
async fn on<K: KeyValue>(
    kv: &K,
    key: &Bytes,
    op: CollOp,
    answer: impl FnOnce(CollReply) -> Reply,
) -> Reply {
    crate::collections::on(kv, (key, Kind::List), op, answer).await
}

fn items(r: CollReply) -> Option<Vec<Vec<u8>>> {
    match r {
        CollReply::Items(v) => Some(v),
        _ => None,
    }
}

/// Runs command `name` (one of [`COMMANDS`]) with `args` through `kv`.
pub async fn run<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Reply {
    let n = args.len();
    match (name, n) {
        ("lpush" | "rpush" | "lpushx" | "rpushx", 2..) => {
            let op = CollOp::Push {
                values: args[1..].iter().map(|v| v.to_vec()).collect(),
                left: name.starts_with('l'),
                only_existing: name.ends_with('x'),
            };
            on(kv, &args[0], op, count).await
        }
        ("lpop" | "rpop", 1 | 2) => {
            let many = match pop_count(args.get(1)) {
                Ok(c) => c,
                Err(reply) => return reply,
            };
            if many == Some(0) {
                // Nothing popped: an empty array for a list, nil for none.
                return on(kv, &args[0], CollOp::Len, |r| match r {
                    CollReply::Count(0) => Reply::NilArray,
                    CollReply::Count(_) => Reply::Array(Vec::new()),
                    _ => unexpected(),
                })
                .await;
            }
            let op = CollOp::PopEnd {
                left: name == "lpop",
                count: many.unwrap_or(1),
            };
            on(kv, &args[0], op, |r| match (items(r), many) {
                (None, _) => unexpected(),
                (Some(v), None) => v.into_iter().next().map_or(Reply::Nil, bulk),
                // An empty answer to a count is a nil array, as Redis's.
                (Some(v), Some(_)) if v.is_empty() => Reply::NilArray,
                (Some(v), Some(_)) => Reply::Array(v.into_iter().map(bulk).collect()),
            })
            .await
        }
        ("blpop" | "brpop", 2..) => blocking_pop(kv, name == "blpop", args).await,
        ("llen", 1) => on(kv, &args[0], CollOp::Len, count).await,
        ("lrange", 3) => {
            let (Some(start), Some(stop)) = (int_arg(&args[1]), int_arg(&args[2])) else {
                return not_integer();
            };
            let op = CollOp::Range { start, stop };
            on(kv, &args[0], op, |r| match items(r) {
                Some(v) => Reply::Array(v.into_iter().map(bulk).collect()),
                None => unexpected(),
            })
            .await
        }
        ("lindex", 2) => {
            let Some(index) = int_arg(&args[1]) else {
                return not_integer();
            };
            let op = CollOp::Range {
                start: index,
                stop: index,
            };
            on(kv, &args[0], op, |r| match items(r) {
                Some(v) => v.into_iter().next().map_or(Reply::Nil, bulk),
                None => unexpected(),
            })
            .await
        }
        ("lset", 3) => {
            let Some(index) = int_arg(&args[1]) else {
                return not_integer();
            };
            let op = CollOp::SetAt {
                index,
                value: args[2].to_vec(),
            };
            on(kv, &args[0], op, |_| Reply::ok()).await
        }
        ("ltrim", 3) => {
            let (Some(start), Some(stop)) = (int_arg(&args[1]), int_arg(&args[2])) else {
                return not_integer();
            };
            on(kv, &args[0], CollOp::Trim { start, stop }, |_| Reply::ok()).await
        }
        ("lrem", 3) => {
            let Some(count) = int_arg(&args[1]) else {
                return not_integer();
            };
            let op = CollOp::RemoveValue {
                count,
                value: args[2].to_vec(),
            };
            on(kv, &args[0], op, self::count).await
        }
        ("linsert", 4) => {
            let before = match args[1].to_ascii_lowercase().as_slice() {
                b"before" => true,
                b"after" => false,
                _ => return syntax(),
            };
            let op = CollOp::Insert {
                before,
                pivot: args[2].to_vec(),
                value: args[3].to_vec(),
            };
            on(kv, &args[0], op, count).await
        }
        ("lpos", 2..) => position(kv, args).await,
        ("lmove" | "blmove", 4 | 5) if (n == 5) == (name == "blmove") => {
            let side = |w: &Bytes| match w.to_ascii_lowercase().as_slice() {
                b"left" => Some(true),
                b"right" => Some(false),
                _ => None,
            };
            let (Some(from_left), Some(to_left)) = (side(&args[2]), side(&args[3])) else {
                return syntax();
            };
            let timeout = args.get(4).map(|t| t.as_ref());
            move_one(kv, (&args[0], &args[1]), (from_left, to_left), timeout).await
        }
        ("rpoplpush", 2) => move_one(kv, (&args[0], &args[1]), (false, true), None).await,
        ("brpoplpush", 3) => {
            move_one(kv, (&args[0], &args[1]), (false, true), Some(&args[2])).await
        }
        ("lmpop", 3..) => pop_first(kv, args, None).await,
        ("blmpop", 4..) => {
            let wait = match Blocking::until(&args[0]) {
                Ok(w) => w,
                Err(reply) => return reply,
            };
            pop_first(kv, &args[1..], Some(&wait)).await
        }
        _ => wrong_arity(name),
    }
}

/// BLPOP / BRPOP key [key …] timeout: the first non-empty list's end, as
/// `[key, value]`; nil once `timeout` seconds (0: for ever) pass.
async fn blocking_pop<K: KeyValue>(kv: &K, left: bool, args: &[Bytes]) -> Reply {
    let (keys, timeout) = args.split_at(args.len() - 1);
    let wait = match Blocking::until(&timeout[0]) {
        Ok(w) => w,
        Err(reply) => return reply,
    };
    let op = CollOp::PopEnd { left, count: 1 };
    first_nonempty(kv, keys, (Kind::List, op), Some(&wait), |key, r| match r {
        CollReply::Items(mut v) if !v.is_empty() => Some(Reply::Array(vec![
            Reply::Bulk(key.clone()),
            bulk(v.remove(0)),
        ])),
        CollReply::Items(_) => None,
        _ => Some(unexpected()),
    })
    .await
}

/// LMOVE / RPOPLPUSH (and, with a `timeout`, BLMOVE / BRPOPLPUSH): one
/// step at the owner of both lists, which must share one (one hash tag,
/// or the same list), else `CROSSSLOT` and nothing is done.
async fn move_one<K: KeyValue>(
    kv: &K,
    (src, dst): (&Bytes, &Bytes),
    (from_left, to_left): (bool, bool),
    timeout: Option<&[u8]>,
) -> Reply {
    let wait = match timeout.map(Blocking::until).transpose() {
        Ok(w) => w,
        Err(reply) => return reply,
    };
    let watched = std::slice::from_ref(src);
    loop {
        let seen = match &wait {
            Some(w) => w.versions(kv, watched).await,
            None => Vec::new(),
        };
        let op = CollOp::Move {
            to: dst.to_vec(),
            from_left,
            to_left,
        };
        match kv.collection(src.to_vec(), Kind::List, op).await {
            Ok(CollReply::Items(mut v)) if !v.is_empty() => return bulk(v.remove(0)),
            Ok(CollReply::Items(_)) => {}
            Ok(_) => return unexpected(),
            Err(chordal_node::Error::Op(chordal_node::OpError::CrossSlot)) => {
                return crate::together::cross_slot();
            }
            Err(e) => return collection_failed(e),
        }
        let again = match &wait {
            Some(w) => w.changed(kv, watched, &seen).await,
            None => false,
        };
        if !again {
            return Reply::Nil;
        }
    }
}

/// LMPOP numkeys key… LEFT|RIGHT [COUNT n]: pops from the first
/// non-empty list (each key at its owner in turn), answering `[key,
/// [value…]]`, or nil; with `wait` (BLMPOP) tries again until its
/// timeout.
async fn pop_first<K: KeyValue>(kv: &K, args: &[Bytes], wait: Option<&Blocking>) -> Reply {
    let n = match args.first().and_then(|a| int_arg(a)) {
        Some(n) if n > 0 => n as usize,
        _ => return Reply::err("numkeys should be greater than 0"),
    };
    if args.len() < n + 2 {
        return syntax();
    }
    let (keys, rest) = (&args[1..1 + n], &args[1 + n..]);
    let left = match rest[0].to_ascii_lowercase().as_slice() {
        b"left" => true,
        b"right" => false,
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
    let op = CollOp::PopEnd { left, count };
    first_nonempty(kv, keys, (Kind::List, op), wait, |key, r| match r {
        CollReply::Items(v) if !v.is_empty() => {
            let values = v.into_iter().map(bulk).collect();
            Some(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                Reply::Array(values),
            ]))
        }
        CollReply::Items(_) => None,
        _ => Some(unexpected()),
    })
    .await
}

/// Runs `op` on the `kind` collection at each of `keys` in turn (each at
/// its owner) until `took` makes a reply of one's answer (`None`: it was
/// empty); with `wait`, once all were empty, waits for a write to one of
/// them (see `blocking.rs`) and tries again, until its timeout: then nil.
/// What LMPOP, BLPOP, ZMPOP, BZPOPMIN and their kin share.
pub(crate) async fn first_nonempty<K: KeyValue>(
    kv: &K,
    keys: &[Bytes],
    (kind, op): (Kind, CollOp),
    wait: Option<&Blocking>,
    took: impl Fn(&Bytes, CollReply) -> Option<Reply>,
) -> Reply {
    if wait.is_some() && keys.len() > MAX_BLOCKING_KEYS {
        return too_many_keys();
    }
    let mut woken = false;
    loop {
        let seen = match wait {
            Some(w) => w.versions(kv, keys).await,
            None => Vec::new(),
        };
        for key in keys {
            match kv.collection(key.to_vec(), kind, op.clone()).await {
                Ok(r) => {
                    if let Some(reply) = took(key, r) {
                        return reply;
                    }
                }
                // Once blocked, a key that now holds another kind is
                // not one to pop from yet: Redis keeps waiting too.
                Err(chordal_node::Error::Op(chordal_node::OpError::WrongType)) if woken => {}
                Err(e) => return collection_failed(e),
            }
        }
        woken = true;
        let again = match wait {
            Some(w) => w.changed(kv, keys, &seen).await,
            None => false,
        };
        if !again {
            return Reply::NilArray;
        }
    }
}

/// A blocking command naming more keys than one may watch.
fn too_many_keys() -> Reply {
    Reply::err(format!(
        "a blocking command waits on at most {MAX_BLOCKING_KEYS} keys"
    ))
}

/// LPOS key element [RANK rank] [COUNT num] [MAXLEN len].
async fn position<K: KeyValue>(kv: &K, args: &[Bytes]) -> Reply {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
    let mut i = 2;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return syntax();
        };
        let Some(v) = int_arg(v) else {
            return not_integer();
        };
        match args[i].to_ascii_lowercase().as_slice() {
            b"rank" if v == 0 || v == i64::MIN => {
                return Reply::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                );
            }
            b"rank" => rank = v,
            b"count" if v < 0 => return Reply::err("COUNT can't be negative"),
            b"count" => count = Some(v),
            b"maxlen" if v < 0 => return Reply::err("MAXLEN can't be negative"),
            b"maxlen" => maxlen = v,
            _ => return syntax(),
        }
        i += 2;
    }
    let op = CollOp::Range { start: 0, stop: -1 };
    let target = &args[1];
    on(kv, &args[0], op, |r| {
        let Some(values) = items(r) else {
            return unexpected();
        };
        let len = values.len();
        let order: Box<dyn Iterator<Item = usize>> = match rank > 0 {
            true => Box::new(0..len),
            false => Box::new((0..len).rev()),
        };
        let scan = if maxlen > 0 { maxlen as usize } else { len };
        let found: Vec<usize> = order
            .take(scan)
            .filter(|i| values[*i] == target.as_ref())
            .skip(rank.unsigned_abs() as usize - 1)
            .take(match count {
                Some(0) => usize::MAX,
                Some(c) => c as usize,
                None => 1,
            })
            .collect();
        match count {
            None => found
                .first()
                .map_or(Reply::Nil, |p| Reply::Integer(*p as i64)),
            Some(_) => Reply::Array(
                found
                    .into_iter()
                    .map(|p| Reply::Integer(p as i64))
                    .collect(),
            ),
        }
    })
    .await
}
