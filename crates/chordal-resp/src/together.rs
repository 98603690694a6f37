//! Commands over several keys decided as one step at their common owner
//! (`KeyValue::batch`): MSETNX, RENAME, RENAMENX, COPY. Their keys must
//! share an owner — one hash tag, as in Redis Cluster — else they are
//! refused with Redis Cluster's `CROSSSLOT` error and nothing is done.

use crate::commands::{failed, int_arg, not_integer, syntax};
use crate::reply::Reply;
use bytes::Bytes;
use chordal_core::{Change, Outcome};
use chordal_node::{Error, KeyValue, OpError, PutOptions, StoreOp};

/// Redis Cluster's answer to keys of several slots (here: owners).
pub(crate) fn cross_slot() -> Reply {
    Reply::Error(
        "CROSSSLOT Keys in request don't hash to the same slot (give them one hash tag, e.g. {user:42}:a and {user:42}:b)"
            .into(),
    )
}

/// The reply for a batch that failed as a whole.
fn batch_failed(e: Error) -> Reply {
    match e {
        Error::Op(OpError::CrossSlot) => cross_slot(),
        other => failed(other),
    }
}

fn update(key: &Bytes, change: Change) -> StoreOp {
    StoreOp::Update {
        key: key.to_vec(),
        change,
    }
}

fn delete(key: &Bytes) -> StoreOp {
    StoreOp::Delete {
        key: key.to_vec(),
        options: PutOptions::default(),
    }
}

/// Did step `i` fail its condition (`PreconditionFailed`)?
fn precondition_failed(results: &[Result<Outcome, OpError>], i: usize) -> bool {
    matches!(
        results.get(i),
        Some(Err(OpError::PreconditionFailed { .. }))
    )
}

/// Runs MSETNX, RENAME, RENAMENX or COPY (`args` without the name).
pub async fn run<K: KeyValue>(node: &K, name: &str, args: &[Bytes]) -> Reply {
    match (name, args.len()) {
        ("msetnx", n) if n >= 2 && n.is_multiple_of(2) => msetnx(node, args).await,
        ("rename", 2) => rename(node, &args[0], &args[1], true).await,
        ("renamenx", 2) => rename(node, &args[0], &args[1], false).await,
        ("copy", 2..) => copy(node, args).await,
        _ => crate::commands::wrong_arity(name),
    }
}

/// `MSETNX k v …`: every key is set, or none is (if any exists); 1 or 0.
async fn msetnx<K: KeyValue>(node: &K, args: &[Bytes]) -> Reply {
    // First every key must be absent, then the puts: a key named twice is
    // set twice, the last value winning, as in Redis.
    let mut keys: Vec<&Bytes> = Vec::new();
    for k in args.iter().step_by(2) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut steps: Vec<StoreOp> = keys
        .iter()
        .map(|k| update(k, Change::Expect(None)))
        .collect();
    steps.extend(
        args.chunks(2)
            .map(|p| StoreOp::put(p[0].to_vec(), p[1].to_vec(), PutOptions::default(), false)),
    );
    let expectations = keys.len();
    match node.batch(steps, true).await {
        Ok(b) => {
            let refused = (0..expectations).any(|i| precondition_failed(&b.results, i));
            Reply::Integer(i64::from(!refused))
        }
        Err(e) => batch_failed(e),
    }
}

/// `RENAME src dst` (`replace`) and `RENAMENX src dst`: the value and
/// its expiry move to `dst` and `src` is deleted, in one step.
async fn rename<K: KeyValue>(node: &K, src: &Bytes, dst: &Bytes, replace: bool) -> Reply {
    let no_such_key = || Reply::err("no such key");
    if src == dst {
        return match node.get(src.to_vec()).await {
            Ok(Some(_)) if replace => Reply::ok(),
            Ok(Some(_)) => Reply::Integer(0),
            Ok(None) => no_such_key(),
            Err(e) => failed(e),
        };
    }
    // RENAMENX: first, `dst` must have no value.
    let expect = usize::from(!replace);
    let mut steps = Vec::new();
    if !replace {
        steps.push(update(dst, Change::Expect(None)));
    }
    steps.push(update(
        dst,
        Change::CopyFrom {
            from: src.to_vec(),
            replace: true,
        },
    ));
    steps.push(delete(src));
    match node.batch(steps, true).await {
        Ok(b) if precondition_failed(&b.results, expect) => no_such_key(),
        Ok(b) if !replace => Reply::Integer(i64::from(!precondition_failed(&b.results, 0))),
        Ok(_) => Reply::ok(),
        Err(e) => batch_failed(e),
    }
}

/// `COPY src dst [DB 0] [REPLACE]`: 1 if copied, 0 if `src` has no value
/// or `dst` has one (without REPLACE).
async fn copy<K: KeyValue>(node: &K, args: &[Bytes]) -> Reply {
    let (src, dst) = (&args[0], &args[1]);
    let mut replace = false;
    let mut i = 2;
    while i < args.len() {
        match String::from_utf8_lossy(&args[i])
            .to_ascii_lowercase()
            .as_str()
        {
            "replace" => i += 1,
            "db" if i + 1 < args.len() => {
                match int_arg(&args[i + 1]) {
                    Some(0) => {}
                    Some(_) => return Reply::err("DB index is out of range"),
                    None => return not_integer(),
                }
                i += 2;
                continue;
            }
            _ => return syntax(),
        }
        replace = true;
    }
    if src == dst {
        return Reply::err("source and destination objects are the same");
    }
    let step = update(
        dst,
        Change::CopyFrom {
            from: src.to_vec(),
            replace,
        },
    );
    match node.batch(vec![step], false).await {
        Ok(b) => match b.results.first() {
            Some(Ok(Outcome::Updated { number, .. })) => Reply::Integer(*number),
            // `src` has no value.
            Some(Err(OpError::PreconditionFailed { .. })) => Reply::Integer(0),
            Some(Err(e)) => failed(Error::Op(*e)),
            _ => failed(Error::Op(OpError::UnexpectedAnswer)),
        },
        Err(e) => batch_failed(e),
    }
}
