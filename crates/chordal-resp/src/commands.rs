//! The data commands: each one a store operation (or several) on the node,
//! which finds the keys' owners on the ring. They keep no connection state
//! (that is `session.rs`), so a pipeline of them runs concurrently.

use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::collection::{CollOp, CollReply};
use chordal_core::{Condition, ExpireWhen, Expiry, Kind, PutOptions, Time};
use chordal_node::{Error, KeyValue, Node, OpError, StoreOp};

/// What a command needs: the node it runs on (which checks key and value
/// sizes against its limits).
#[derive(Clone)]
pub struct Ctx {
    pub node: Node,
}

/// The data commands, with the role of API token each needs (`true`:
/// write). Everything else is a session command or unknown.
pub const DATA_COMMANDS: &[(&str, bool)] = &[
    ("get", false),
    ("mget", false),
    ("exists", false),
    ("touch", false),
    ("strlen", false),
    ("ttl", false),
    ("expiretime", false),
    ("pexpiretime", false),
    ("pttl", false),
    ("type", false),
    ("getrange", false),
    ("substr", false),
    ("getbit", false),
    ("bitcount", false),
    ("bitpos", false),
    ("lcs", false),
    ("object", false),
    ("memory", false),
    ("set", true),
    ("setex", true),
    ("psetex", true),
    ("setnx", true),
    ("getdel", true),
    ("getset", true),
    ("getex", true),
    ("setrange", true),
    ("setbit", true),
    ("incrbyfloat", true),
    ("expireat", true),
    ("pexpireat", true),
    ("del", true),
    ("unlink", true),
    ("mset", true),
    ("msetnx", true),
    ("rename", true),
    ("renamenx", true),
    ("copy", true),
    ("incr", true),
    ("incrby", true),
    ("decr", true),
    ("decrby", true),
    ("append", true),
    ("expire", true),
    ("pexpire", true),
    ("persist", true),
    ("publish", true),
];

/// Every data command (strings, keys, collections) with whether it
/// writes.
pub fn data_commands() -> impl Iterator<Item = &'static (&'static str, bool)> {
    DATA_COMMANDS
        .iter()
        .chain(crate::collections::COMMANDS.iter())
        .chain(crate::lists::COMMANDS.iter())
        .chain(crate::zsets::COMMANDS.iter())
        .chain(crate::zcombine::COMMANDS.iter())
}

/// Is `name` (lower case) a data command, and does it write? One hash
/// lookup: asked for every command a client sends.
pub fn data_command(name: &str) -> Option<bool> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<&'static str, bool>> =
        std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| data_commands().map(|(n, w)| (*n, *w)).collect())
        .get(name)
        .copied()
}

/// The keys data command `name` touches (`args` without the name): a
/// command waits for the ones before it on its connection that share a
/// key, so that a pipeline applies in order per key.
pub fn keys_of<'a>(name: &str, args: &'a [Bytes]) -> Vec<&'a Bytes> {
    if crate::collections::is_collection_command(name) {
        return crate::collections::keys_of(name, args);
    }
    match name {
        "mget" | "exists" | "touch" | "del" | "unlink" => args.iter().collect(),
        "lcs" => args.iter().take(2).collect(),
        "object" | "memory" => args.get(1).into_iter().collect(),
        "mset" | "msetnx" => args.iter().step_by(2).collect(),
        "rename" | "renamenx" | "copy" => args.iter().take(2).collect(),
        "publish" => Vec::new(),
        _ => args.first().into_iter().collect(),
    }
}

/// `-ERR wrong number of arguments for 'x' command`.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

pub(crate) fn syntax() -> Reply {
    Reply::err("syntax error")
}

pub(crate) fn not_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

/// The reply for a failed operation.
pub(crate) fn failed(e: Error) -> Reply {
    match e {
        Error::Op(OpError::NotAnInteger) => not_integer(),
        Error::Op(OpError::NotAFloat) => Reply::err("value is not a valid float"),
        Error::Op(OpError::WrongType) => crate::collections::wrong_type(),
        Error::Op(OpError::Overflow) => Reply::err("increment or decrement would overflow"),
        Error::Op(OpError::TooLarge { .. }) => Reply::err("string exceeds maximum allowed size"),
        Error::Op(OpError::NotReady) => Reply::Error(
            "TRYAGAIN no node may decide for the key right now (a handover, a takeover or a partition); nothing was done".into(),
        ),
        Error::Op(OpError::Overloaded) => {
            Reply::Error("TRYAGAIN the node is overloaded, try again later".into())
        }
        other => Reply::err(other),
    }
}

pub(crate) fn int_arg(b: &[u8]) -> Option<i64> {
    chordal_core::parse_integer(b)
}

/// The expiry `t` stands for in `unit` — a command's name or option
/// (`ex`, `px`, `exat`, `pxat`, `expire`, `pexpireat`…): seconds or
/// milliseconds, from now or from the epoch. `None` where Redis answers
/// "invalid expire time": its milliseconds overflow a 64-bit integer.
fn expiry_at(t: i64, unit: &str) -> Option<Expiry> {
    let seconds = matches!(unit, "ex" | "exat" | "expire" | "expireat" | "setex");
    let relative = matches!(
        unit,
        "ex" | "px" | "expire" | "pexpire" | "setex" | "psetex"
    );
    let ms = if seconds { t.checked_mul(1000)? } else { t };
    let now_ms = (chordal_node::wall_clock().as_micros() / 1000) as i64;
    let ms = if relative {
        ms.checked_add(now_ms)?
    } else {
        ms
    };
    let micros = (ms.max(0) as u64).saturating_mul(1000);
    Some(Expiry::At(Time::from_micros(micros)))
}

/// Runs data command `name` (lower case) with `args` (its arguments, the
/// name left out) on the node.
pub async fn run(ctx: &Ctx, name: &str, args: &[Bytes]) -> Reply {
    match (name, args.len()) {
        ("publish", 2) => match ctx.node.publish(args[0].to_vec(), args[1].to_vec()).await {
            Ok(n) => Reply::Integer(n as i64),
            Err(e) => failed(e),
        },
        _ => run_on(&ctx.node, name, args).await,
    }
}

/// Runs data command `name` with `args` through `kv`: the node, or inside
/// MULTI a recorder of its operations and then a replay of their answers
/// (`multi.rs`). Each command runs its operations in one call of `kv`
/// (`run` or `run_many`).
///
/// Long on purpose: one arm per command, the table of what each asks of
/// the ring and how its answer reads.
pub async fn run_on<K: KeyValue>(kv: &K, name: &str, args: &[Bytes]) -> Reply {
    let k = |i: usize| args[i].to_vec();
    let n = args.len();
    match (name, n) {
        ("get", 1) => match kv.get(k(0)).await {
            Ok(Some(v)) => Reply::Bulk(Bytes::from(v.value)),
            Ok(None) => Reply::Nil,
            Err(e) => failed(e),
        },
        ("strlen", 1) => match kv.get(k(0)).await {
            Ok(v) => Reply::Integer(v.map_or(0, |v| v.value.len() as i64)),
            Err(e) => failed(e),
        },
        ("type", 1) => match kv.collection(k(0), Kind::Hash, CollOp::Kind).await {
            Ok(CollReply::Kind(kind)) => {
                Reply::Status(kind.map_or("none", |(k, _)| k.name()).into())
            }
            Ok(_) => failed(Error::Op(OpError::UnexpectedAnswer)),
            Err(e) => failed(e),
        },
        ("ttl" | "pttl", 1) => match expiry_of(kv, k(0)).await {
            Ok(None) => Reply::Integer(-2),
            Ok(Some(expires)) => match expires {
                None => Reply::Integer(-1),
                Some(t) => {
                    let left = t.saturating_since(chordal_node::wall_clock());
                    // Redis's rounding: milliseconds up, seconds to
                    // the nearest.
                    let ms = left.as_micros().div_ceil(1_000) as i64;
                    Reply::Integer(if name == "ttl" { (ms + 500) / 1000 } else { ms })
                }
            },
            Err(e) => failed(e),
        },
        ("mget", 1..) => {
            let found = kv.get_many(args.iter().map(|a| a.to_vec()).collect()).await;
            let mut out = Vec::with_capacity(n);
            for f in found {
                match f {
                    Ok(Some(v)) => out.push(Reply::Bulk(Bytes::from(v.value))),
                    Ok(None) => out.push(Reply::Nil),
                    Err(e) => return failed(e),
                }
            }
            Reply::Array(out)
        }
        ("exists" | "touch", 1..) => {
            let found = kv.get_many(args.iter().map(|a| a.to_vec()).collect()).await;
            let mut count = 0;
            for f in found {
                match f {
                    Ok(v) => count += i64::from(v.is_some()),
                    // A collection's header.
                    Err(Error::Op(OpError::WrongType)) => count += 1,
                    Err(e) => return failed(e),
                }
            }
            Reply::Integer(count)
        }
        (name, _) if crate::collections::is_collection_command(name) => {
            crate::collections::run(kv, name, args).await
        }
        ("msetnx" | "rename" | "renamenx" | "copy", _) => {
            crate::together::run(kv, name, args).await
        }
        (
            "getrange" | "substr" | "getbit" | "bitcount" | "bitpos" | "lcs" | "object" | "memory",
            _,
        ) => crate::strings::run(kv, name, args).await,
        ("getset", 2) => {
            let options = PutOptions {
                return_old: true,
                ..PutOptions::default()
            };
            match kv.swap(k(0), k(1), options).await {
                Ok(r) => r.old.map_or(Reply::Nil, |v| Reply::Bulk(Bytes::from(v))),
                Err(e) => failed(e),
            }
        }
        ("set", 2..) => set(kv, args).await,
        ("setex" | "psetex", 3) => match int_arg(&args[1]) {
            Some(t) if t > 0 => match expiry_at(t, name) {
                Some(expiry) => put(kv, k(0), k(2), expiry, Condition::Always).await,
                None => Reply::err(format!("invalid expire time in '{name}' command")),
            },
            Some(_) => Reply::err(format!("invalid expire time in '{name}' command")),
            None => not_integer(),
        },
        ("setnx", 2) => match put(kv, k(0), k(1), Expiry::Never, Condition::Absent).await {
            Reply::Status(_) => Reply::Integer(1),
            Reply::Nil => Reply::Integer(0),
            other => other,
        },
        ("getdel", 1) => match kv.take(k(0)).await {
            Ok(Some(r)) => r.old.map_or(Reply::Nil, |v| Reply::Bulk(Bytes::from(v))),
            Ok(None) => Reply::Nil,
            Err(e) => failed(e),
        },
        ("del" | "unlink", 1..) => {
            let ops = args
                .iter()
                .map(|a| StoreOp::Delete {
                    key: a.to_vec(),
                    options: PutOptions::default(),
                })
                .collect();
            let mut count = 0;
            for outcome in kv.run_many(ops).await {
                match outcome.and_then(|o| Ok(o.deleted()?)) {
                    Ok(d) => count += i64::from(d.is_some()),
                    Err(e) => return failed(e),
                }
            }
            Reply::Integer(count)
        }
        ("mset", _) if n >= 2 && n.is_multiple_of(2) => {
            let pairs = args
                .chunks(2)
                .map(|p| (p[0].to_vec(), p[1].to_vec()))
                .collect();
            for r in kv.put_many(pairs).await {
                if let Err(e) = r {
                    return failed(e);
                }
            }
            Reply::ok()
        }
        ("incr" | "decr", 1) => incr(kv, k(0), if name == "incr" { 1 } else { -1 }).await,
        ("incrby" | "decrby", 2) => match int_arg(&args[1]) {
            Some(by) if name == "incrby" => incr(kv, k(0), by).await,
            Some(by) => match by.checked_neg() {
                Some(by) => incr(kv, k(0), by).await,
                None => Reply::err("decrement would overflow"),
            },
            None => not_integer(),
        },
        ("append", 2) => match kv.append(k(0), k(1)).await {
            Ok(len) => Reply::Integer(len as i64),
            Err(e) => failed(e),
        },
        ("expire" | "pexpire" | "expireat" | "pexpireat", 2..) => {
            let Some(t) = int_arg(&args[1]) else {
                return not_integer();
            };
            let Some(expiry) = expiry_at(t, name) else {
                return Reply::err(format!("invalid expire time in '{name}' command"));
            };
            match expire_when(&args[2..]) {
                Ok(None) => expire(kv, k(0), expiry).await,
                Ok(Some(when)) => match kv.expire_if(k(0), expiry, when).await {
                    Ok(set) => Reply::Integer(i64::from(set)),
                    Err(e) => failed(e),
                },
                Err(reply) => reply,
            }
        }
        ("expiretime" | "pexpiretime", 1) => match expiry_of(kv, k(0)).await {
            Ok(None) => Reply::Integer(-2),
            Ok(Some(expires)) => Reply::Integer(match expires {
                None => -1,
                Some(t) if name == "expiretime" => (t.as_micros() / 1_000_000) as i64,
                Some(t) => (t.as_micros() / 1_000) as i64,
            }),
            Err(e) => failed(e),
        },
        ("getex", 1..) => match getex_expiry(&args[1..]) {
            Ok(None) => match kv.get(k(0)).await {
                Ok(v) => v.map_or(Reply::Nil, |v| Reply::Bulk(Bytes::from(v.value))),
                Err(e) => failed(e),
            },
            Ok(Some(expiry)) => match kv.get_ex(k(0), expiry).await {
                Ok(v) => v.map_or(Reply::Nil, |v| Reply::Bulk(Bytes::from(v.value))),
                Err(e) => failed(e),
            },
            Err(reply) => reply,
        },
        ("setrange", 3) => match int_arg(&args[1]) {
            Some(offset) if offset >= 0 => match kv.set_range(k(0), offset as u64, k(2)).await {
                Ok(len) => Reply::Integer(len as i64),
                Err(e) => failed(e),
            },
            Some(_) => Reply::err("offset is out of range"),
            None => not_integer(),
        },
        ("setbit", 3) => {
            let offset = match crate::strings::bit_offset(&args[1]) {
                Ok(o) => o,
                Err(reply) => return reply,
            };
            let bit = match args[2].as_ref() {
                b"0" => false,
                b"1" => true,
                _ => return Reply::err("bit is not an integer or out of range"),
            };
            match kv.set_bit(k(0), offset, bit).await {
                Ok(was) => Reply::Integer(i64::from(was)),
                Err(e) => failed(e),
            }
        }
        ("incrbyfloat", 2) => match kv.incr_by_float(k(0), k(1)).await {
            Ok(v) => Reply::Bulk(Bytes::from(v)),
            Err(e) => failed(e),
        },
        ("persist", 1) => expire(kv, k(0), Expiry::Never).await,
        _ => wrong_arity(name),
    }
}

/// Whether `key` exists (`None`: it does not) and when it expires,
/// whatever its kind: a string's read, or a collection's header.
async fn expiry_of<K: KeyValue>(kv: &K, key: Vec<u8>) -> Result<Option<Option<Time>>, Error> {
    match kv.get(key.clone()).await {
        Ok(v) => Ok(v.map(|v| v.expires)),
        Err(Error::Op(OpError::WrongType)) => {
            match kv.collection(key, Kind::Hash, CollOp::Kind).await? {
                CollReply::Kind(k) => Ok(k.map(|(_, t)| t)),
                _ => Err(Error::Op(OpError::UnexpectedAnswer)),
            }
        }
        Err(e) => Err(e),
    }
}

/// A put that answers `+OK`, or nil when its condition does not hold.
async fn put<K: KeyValue>(
    kv: &K,
    key: Vec<u8>,
    value: Vec<u8>,
    expiry: Expiry,
    condition: Condition,
) -> Reply {
    let options = PutOptions {
        expiry,
        condition,
        return_old: false,
    };
    match kv.put_with(key, value, options).await {
        Ok(_) => Reply::ok(),
        Err(Error::Op(OpError::PreconditionFailed { .. })) => Reply::Nil,
        Err(e) => failed(e),
    }
}

async fn incr<K: KeyValue>(kv: &K, key: Vec<u8>, by: i64) -> Reply {
    match kv.incr_by(key, by).await {
        Ok(n) => Reply::Integer(n),
        Err(e) => failed(e),
    }
}

/// EXPIRE's options after its time: none, or one of NX, XX, GT, LT, or
/// XX with LT (XX beside GT is GT: a value without an expiry never
/// passes GT).
fn expire_when(words: &[Bytes]) -> Result<Option<ExpireWhen>, Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for w in words {
        match w.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                return Err(Reply::err(format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(w)
                )));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Reply::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(Reply::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => Some(ExpireWhen::Nx),
        (_, _, true, _) => Some(ExpireWhen::Gt),
        (_, true, _, true) => Some(ExpireWhen::LtExisting),
        (_, _, _, true) => Some(ExpireWhen::Lt),
        (_, true, ..) => Some(ExpireWhen::Xx),
        _ => None,
    })
}

/// GETEX's option: none (a plain read), or the new expiry.
fn getex_expiry(words: &[Bytes]) -> Result<Option<Expiry>, Reply> {
    let word = |i: usize| words.get(i).map(|w| w.to_ascii_lowercase());
    match (word(0).as_deref(), words.len()) {
        (None, _) => Ok(None),
        (Some(b"persist"), 1) => Ok(Some(Expiry::Never)),
        (Some(w @ (b"ex" | b"px" | b"exat" | b"pxat")), 2) => {
            let t = int_arg(&words[1]).ok_or_else(not_integer)?;
            if t <= 0 {
                return Err(Reply::err("invalid expire time in 'getex' command"));
            }
            let unit = std::str::from_utf8(w).unwrap_or_default();
            expiry_at(t, unit)
                .map(Some)
                .ok_or_else(|| Reply::err("invalid expire time in 'getex' command"))
        }
        _ => Err(syntax()),
    }
}

async fn expire<K: KeyValue>(kv: &K, key: Vec<u8>, expiry: Expiry) -> Reply {
    match kv.expire(key, expiry).await {
        Ok(changed) => Reply::Integer(i64::from(changed)),
        Err(e) => failed(e),
    }
}

/// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL]`.
async fn set<K: KeyValue>(kv: &K, args: &[Bytes]) -> Reply {
    let (key, value) = (args[0].to_vec(), args[1].to_vec());
    let mut condition = Condition::Always;
    let mut expiry = Expiry::Never;
    let mut get = false;
    let mut has_expiry = false;
    let mut i = 2;
    while i < args.len() {
        let word = String::from_utf8_lossy(&args[i]).to_ascii_lowercase();
        match word.as_str() {
            "nx" | "xx" if condition == Condition::Always => {
                condition = if word == "nx" {
                    Condition::Absent
                } else {
                    Condition::Present
                };
            }
            "get" => get = true,
            "keepttl" if !has_expiry => {
                expiry = Expiry::Keep;
                has_expiry = true;
            }
            "ex" | "px" | "exat" | "pxat" if !has_expiry && i + 1 < args.len() => {
                let Some(t) = int_arg(&args[i + 1]) else {
                    return not_integer();
                };
                if t <= 0 {
                    return Reply::err("invalid expire time in 'set' command");
                }
                let Some(at) = expiry_at(t, &word) else {
                    return Reply::err("invalid expire time in 'set' command");
                };
                expiry = at;
                has_expiry = true;
                i += 1;
            }
            _ => return syntax(),
        }
        i += 1;
    }
    if !get {
        return put(kv, key, value, expiry, condition).await;
    }
    let options = PutOptions {
        expiry,
        condition,
        return_old: true,
    };
    match kv.swap(key.clone(), value, options).await {
        Ok(r) => r.old.map_or(Reply::Nil, |v| Reply::Bulk(Bytes::from(v))),
        // NX with GET on a key that exists: nothing set, the value answered.
        Err(Error::Op(OpError::PreconditionFailed { .. })) => match kv.get(key).await {
            Ok(Some(v)) => Reply::Bulk(Bytes::from(v.value)),
            Ok(None) => Reply::Nil,
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    }
}
