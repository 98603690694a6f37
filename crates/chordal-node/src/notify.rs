//! Keyspace notifications, as Redis's `notify-keyspace-events`: after a
//! write through this node changes a key, the node publishes the event's
//! name on `__keyspace@0__:<key>` and the key on `__keyevent@0__:<event>`
//! — topics of the ring's own pub/sub, so a subscriber on any node gets
//! them. Off unless switched on (`Node::set_keyspace_events`, RESP
//! `CONFIG SET notify-keyspace-events`); each node publishes what its own
//! clients write, as each Redis server does for its own.
//!
//! Not published: expiries as they happen (`x`: a value expires by the
//! clock, at no node's command) and evictions (`e`: nothing is evicted).

use crate::kv::StoreOp;
use chordal_core::collection::{CollOp, CollReply};
use chordal_core::{Change, Kind, Outcome};

/// The event classes, as the flag letters of `notify-keyspace-events`.
const CLASSES: &[(char, u32)] = &[
    ('K', KEYSPACE),
    ('E', KEYEVENT),
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
];
const KEYSPACE: u32 = 1;
const KEYEVENT: u32 = 2;
const GENERIC: u32 = 4;
const STRING: u32 = 8;
const LIST: u32 = 16;
const SET: u32 = 32;
const HASH: u32 = 64;
const ZSET: u32 = 128;
const EXPIRED: u32 = 256;
const EVICTED: u32 = 512;
/// `A`: every class of event.
const ALL: u32 = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED;

/// Reads `notify-keyspace-events` flags (`KEA`, `Kx`, `""`…); `None` for
/// an unknown letter. As in Redis, flags naming no channel (`K` or `E`)
/// or no class mean nothing is published.
pub fn parse(flags: &str) -> Option<u32> {
    let mut out = 0;
    for c in flags.chars() {
        out |= match c {
            'A' => ALL,
            c => CLASSES.iter().find(|(l, _)| *l == c)?.1,
        };
    }
    let channels = out & (KEYSPACE | KEYEVENT) != 0;
    let classes = out & ALL != 0;
    Some(if channels && classes { out } else { 0 })
}

/// The flags as `CONFIG GET` shows them (classes, then `K`, `E`).
pub fn show(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        for (c, bit) in &CLASSES[2..] {
            if flags & bit != 0 {
                out.push(*c);
            }
        }
    }
    for (c, bit) in &CLASSES[..2] {
        if flags & bit != 0 {
            out.push(*c);
        }
    }
    out
}

/// Whether an operation's outcome says it changed its key.
pub type Changed = fn(&Outcome) -> bool;

/// An event a write may cause: its name, class and key.
pub struct Event {
    name: &'static str,
    class: u32,
    key: Vec<u8>,
}

/// The event `op` causes if it changes its key, and how to tell from its
/// outcome whether it did (`None`: no event for this operation). Read
/// before the operation runs (it is moved then).
pub fn event_of(op: &StoreOp) -> Option<(Event, Changed)> {
    let key = op.key().to_vec();
    let wrote: Changed = |_| true;
    let changed: Changed = |o| match o {
        Outcome::NotFound => false,
        Outcome::Updated { number, .. } => *number != 0,
        Outcome::Collection(CollReply::Count(n)) => *n > 0,
        Outcome::Collection(CollReply::Items(v)) => !v.is_empty(),
        Outcome::Collection(CollReply::Pairs(v)) => !v.is_empty(),
        Outcome::Collection(CollReply::Error(_)) => false,
        _ => true,
    };
    let (name, class, test) = match op {
        StoreOp::Put { .. } => ("set", STRING, wrote),
        StoreOp::Delete { .. } => ("del", GENERIC, changed),
        StoreOp::Expire { .. } => ("expire", GENERIC, changed),
        StoreOp::Update { change, .. } => match change {
            Change::IncrBy(_) => ("incrby", STRING, wrote),
            Change::IncrByFloat(_) => ("incrbyfloat", STRING, wrote),
            Change::Append(_) => ("append", STRING, wrote),
            Change::SetRange { .. } => ("setrange", STRING, changed),
            Change::SetBit { .. } => ("setbit", STRING, wrote),
            Change::Expire(None) => ("persist", GENERIC, changed),
            Change::Expire(_) | Change::ExpireIf { .. } | Change::GetEx(_) => {
                ("expire", GENERIC, changed)
            }
            Change::Restore { .. } => ("restore", GENERIC, wrote),
            Change::CopyFrom { .. } | Change::Expect(_) => return None,
        },
        StoreOp::Collection { kind, op, .. } => {
            let class = match kind {
                Kind::Hash => HASH,
                Kind::Set => SET,
                Kind::List => LIST,
                Kind::ZSet => ZSET,
                Kind::String => return None,
            };
            let name = match (kind, op) {
                (Kind::Hash, CollOp::Put { .. }) => "hset",
                (Kind::Hash, CollOp::Remove { .. }) => "hdel",
                (Kind::Hash, CollOp::Incr { float: false, .. }) => "hincrby",
                (Kind::Hash, CollOp::Incr { float: true, .. }) => "hincrbyfloat",
                (Kind::Set, CollOp::Put { .. }) => "sadd",
                (Kind::Set, CollOp::Remove { .. }) => "srem",
                (Kind::Set, CollOp::Pop { .. }) => "spop",
                (Kind::List, CollOp::Push { left: true, .. }) => "lpush",
                (Kind::List, CollOp::Push { left: false, .. }) => "rpush",
                (Kind::List, CollOp::PopEnd { left: true, .. }) => "lpop",
                (Kind::List, CollOp::PopEnd { left: false, .. }) => "rpop",
                (Kind::List, CollOp::SetAt { .. }) => "lset",
                (Kind::List, CollOp::Trim { .. }) => "ltrim",
                (Kind::List, CollOp::RemoveValue { .. }) => "lrem",
                (Kind::List, CollOp::Insert { .. }) => "linsert",
                (Kind::ZSet, CollOp::ZAdd { incr: false, .. }) => "zadd",
                (Kind::ZSet, CollOp::ZAdd { incr: true, .. }) => "zincr",
                (Kind::ZSet, CollOp::Remove { .. }) => "zrem",
                (Kind::ZSet, CollOp::ZPop { max: false, .. }) => "zpopmin",
                (Kind::ZSet, CollOp::ZPop { max: true, .. }) => "zpopmax",
                (Kind::ZSet, CollOp::ZRemRange { .. }) => "zremrangebyscore",
                _ => return None,
            };
            // An HSET that only updated answers 0 but changed the hash.
            let test = match name {
                "hset" | "lset" | "ltrim" | "zadd" => wrote,
                _ => changed,
            };
            (name, class, test)
        }
        StoreOp::Get { .. }
        | StoreOp::Batch { .. }
        | StoreOp::Scan { .. }
        | StoreOp::Watch { .. } => return None,
    };
    Some((Event { name, class, key }, test))
}

/// The (topic, payload) pairs `event` publishes under `flags`.
pub fn publications(flags: u32, event: &Event) -> Vec<(Vec<u8>, Vec<u8>)> {
    if flags & event.class == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    if flags & KEYSPACE != 0 {
        let mut topic = b"__keyspace@0__:".to_vec();
        topic.extend_from_slice(&event.key);
        out.push((topic, event.name.as_bytes().to_vec()));
    }
    if flags & KEYEVENT != 0 {
        let topic = format!("__keyevent@0__:{}", event.name).into_bytes();
        out.push((topic, event.key.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_and_show_as_redis_s() {
        assert_eq!(parse(""), Some(0));
        assert_eq!(parse("K"), Some(0), "no class: nothing");
        assert_eq!(parse("g$"), Some(0), "no channel: nothing");
        assert_eq!(show(parse("KEA").unwrap()), "AKE");
        assert_eq!(show(parse("Kh$").unwrap()), "$hK");
        assert_eq!(parse("Kq"), None);
        let e = Event {
            name: "hset",
            class: HASH,
            key: b"h".to_vec(),
        };
        assert!(publications(parse("K$").unwrap(), &e).is_empty());
        assert_eq!(
            publications(parse("KEh").unwrap(), &e),
            vec![
                (b"__keyspace@0__:h".to_vec(), b"hset".to_vec()),
                (b"__keyevent@0__:hset".to_vec(), b"h".to_vec())
            ]
        );
    }
}
