//! The commands over the whole keyspace: SCAN, KEYS, RANDOMKEY, DBSIZE,
//! FLUSHALL and FLUSHDB. Each walks the ring in key-id order with
//! [`scan_cursor`], a part at a time from the node that owns it, so a key
//! present for the whole walk is seen whatever joins and leaves happen
//! meanwhile. They run as session commands: after every reply before them
//! on the connection (a pipelined SET before a FLUSHALL is flushed).

use crate::commands::{failed, syntax, wrong_arity};
use crate::reply::Reply;
use bytes::Bytes;
use chordal_node::{KeyValue, Node, StoreOp, glob, scan_cursor};

/// Keys per page when a command walks the whole keyspace.
const WALK_PAGE: usize = 1000;
/// Most keys KEYS answers: past it, an error that points to SCAN (one
/// reply of millions of keys would hold them all in memory twice).
pub const MAX_KEYS_REPLY: usize = 100_000;

/// Runs keyspace command `name` (lower case) with `args` (the name left
/// out).
pub async fn run(node: &Node, name: &str, args: &[Bytes]) -> Reply {
    match (name, args.len()) {
        ("scan", 1..) => scan(node, args).await,
        ("keys", 1) => keys(node, &args[0]).await,
        ("randomkey", 0) => random_key(node).await,
        ("dbsize", 0) => match walk(node, |_| Ok(())).await {
            Ok(n) => Reply::Integer(n as i64),
            Err(reply) => reply,
        },
        ("flushall" | "flushdb", 0 | 1) => flush(node, args.first()).await,
        _ => wrong_arity(name),
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
async fn scan(node: &Node, args: &[Bytes]) -> Reply {
    let Some(cursor) = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Reply::err("invalid cursor");
    };
    let mut pattern: Option<&Bytes> = None;
    let mut count = 10usize;
    let mut only_strings = true;
    let mut i = 1;
    while i < args.len() {
        let word = String::from_utf8_lossy(&args[i]).to_ascii_lowercase();
        let Some(value) = args.get(i + 1) else {
            return syntax();
        };
        match word.as_str() {
            "match" => pattern = Some(value),
            "count" => match std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                Some(n) if n >= 1 => count = n,
                Some(_) => return syntax(),
                None => return crate::commands::not_integer(),
            },
            // Every key is a string (collections do not exist yet).
            "type" => only_strings = value.eq_ignore_ascii_case(b"string"),
            _ => return syntax(),
        }
        i += 2;
    }
    match scan_cursor(node, cursor, count).await {
        Ok((next, keys)) => {
            let keys = keys
                .into_iter()
                .filter(|k| only_strings && pattern.is_none_or(|p| glob::matches(p, k)))
                .map(|k| Reply::Bulk(Bytes::from(k)))
                .collect();
            Reply::Array(vec![
                Reply::Bulk(Bytes::from(next.to_string())),
                Reply::Array(keys),
            ])
        }
        Err(e) => failed(e),
    }
}

/// Walks the whole keyspace, handing each page to `each`; returns how
/// many keys there were. A page `each` refuses ends the walk with its
/// reply.
async fn walk(
    node: &Node,
    mut each: impl FnMut(Vec<Vec<u8>>) -> Result<(), Reply>,
) -> Result<usize, Reply> {
    let mut cursor = 0;
    let mut seen = 0;
    loop {
        let (next, keys) = scan_cursor(node, cursor, WALK_PAGE).await.map_err(failed)?;
        seen += keys.len();
        each(keys)?;
        if next == 0 {
            return Ok(seen);
        }
        cursor = next;
    }
}

/// `KEYS pattern`: every matching key, at most [`MAX_KEYS_REPLY`].
async fn keys(node: &Node, pattern: &Bytes) -> Reply {
    let mut found = Vec::new();
    let collect = |keys: Vec<Vec<u8>>| {
        found.extend(keys.into_iter().filter(|k| glob::matches(pattern, k)));
        if found.len() > MAX_KEYS_REPLY {
            return Err(Reply::err(format!(
                "KEYS would answer more than {MAX_KEYS_REPLY} keys: use SCAN"
            )));
        }
        Ok(())
    };
    match walk(node, collect).await {
        Ok(_) => Reply::Array(
            found
                .into_iter()
                .map(|k| Reply::Bulk(Bytes::from(k)))
                .collect(),
        ),
        Err(reply) => reply,
    }
}

/// `RANDOMKEY`: the first key from a random point of the ring on (keys
/// after a large gap in key ids come up more often), or nil if there is
/// none.
async fn random_key(node: &Node) -> Reply {
    let mut cursor = random_cursor();
    let mut wrapped = false;
    loop {
        match scan_cursor(node, cursor, 1).await {
            Ok((_, keys)) if !keys.is_empty() => {
                return Reply::Bulk(Bytes::from(keys.into_iter().next().expect("a key")));
            }
            Ok((0, _)) if wrapped => return Reply::Nil,
            Ok((0, _)) => {
                wrapped = true;
                cursor = 0;
            }
            Ok((next, _)) => cursor = next,
            Err(e) => return failed(e),
        }
    }
}

/// A cursor from the clock's low bits mixed by SHA-1 (no RNG needed for a
/// key this loosely random).
fn random_cursor() -> u64 {
    let t = chordal_node::wall_clock().as_micros();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    chordal_core::Id::hash(format!("{t}/{nanos}").as_bytes()).high_u64()
}

/// `FLUSHALL [ASYNC|SYNC]` and `FLUSHDB`: deletes every key the walk
/// finds, a page at a time, from each key's owner; answers once every
/// delete is acknowledged. Not one atomic step: a write acknowledged
/// after the flush answered is never undone, one that races with it may
/// stay or go.
async fn flush(node: &Node, mode: Option<&Bytes>) -> Reply {
    if let Some(m) = mode
        && !m.eq_ignore_ascii_case(b"async")
        && !m.eq_ignore_ascii_case(b"sync")
    {
        return syntax();
    }
    let mut cursor = 0;
    loop {
        let (next, keys) = match scan_cursor(node, cursor, WALK_PAGE).await {
            Ok(page) => page,
            Err(e) => return failed(e),
        };
        let deletes = keys
            .into_iter()
            .map(|key| StoreOp::Delete {
                key,
                options: Default::default(),
            })
            .collect();
        for result in node.run_many(deletes).await {
            if let Err(e) = result {
                return failed(e);
            }
        }
        if next == 0 {
            return Reply::ok();
        }
        cursor = next;
    }
}
