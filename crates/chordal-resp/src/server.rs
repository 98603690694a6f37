//! Commands about the server that the session answers itself, from
//! fixed tables: `FUNCTION` (no server-side functions), `CONFIG` (what
//! clients such as `redis-benchmark` ask for; keyspace notifications)
//! and `COMMAND` (the command table).

use crate::commands;
use crate::reply::Reply;
use crate::session::{SESSION_COMMANDS, needed_role};
use bytes::Bytes;
use chordal_node::tokens::Role;

/// `FUNCTION FLUSH` and `FUNCTION LIST`: there are no server-side
/// functions (no Lua), so there is never one to flush or list; Redis's
/// test suite starts every file with `FUNCTION FLUSH`.
pub(crate) fn function(args: &[Bytes]) -> Reply {
    match String::from_utf8_lossy(&args[0])
        .to_ascii_lowercase()
        .as_str()
    {
        "flush" if args.len() <= 2 => Reply::ok(),
        "list" => Reply::Array(vec![]),
        other => Reply::err(format!(
            "FUNCTION {other} is not supported: Chordal runs no server-side functions"
        )),
    }
}

/// What `CONFIG GET` shows (clients such as `redis-benchmark` ask for
/// these); nothing is configurable through RESP.
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
];

/// `CONFIG GET name…` (exact names or `*`); `CONFIG SET` of
/// `notify-keyspace-events` (the node's keyspace notifications: the
/// `admin` role under `--api-tokens`) and of Redis's encoding sizes (no
/// effect); other settings are refused.
pub(crate) fn config(node: &chordal_node::Node, admin: bool, args: &[Bytes]) -> Reply {
    const NOTIFY: &str = "notify-keyspace-events";
    match String::from_utf8_lossy(&args[0])
        .to_ascii_lowercase()
        .as_str()
    {
        "get" => {
            let asked: Vec<String> = args[1..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                .collect();
            let events = node.keyspace_events();
            Reply::Map(
                CONFIG
                    .iter()
                    .copied()
                    .chain([(NOTIFY, events.as_str())])
                    .filter(|(name, _)| asked.iter().any(|a| a == name || a == "*"))
                    .map(|(name, value)| (Reply::text(name), Reply::text(value)))
                    .collect(),
            )
        }
        "set" if args.len() == 3 && args[1].eq_ignore_ascii_case(NOTIFY.as_bytes()) => {
            if !admin {
                return Reply::Error(
                    "NOPERM keyspace notifications are the node's: the admin role sets them".into(),
                );
            }
            match node.set_keyspace_events(&String::from_utf8_lossy(&args[2])) {
                true => Reply::ok(),
                false => Reply::err(format!(
                    "Invalid argument '{}' for CONFIG SET '{NOTIFY}'",
                    String::from_utf8_lossy(&args[2])
                )),
            }
        }
        "resetstat" => Reply::ok(),
        // Redis's tuning of its compact encodings: Chordal keeps every
        // value one way, so there is nothing to tune (accepted, no
        // effect; Redis's own test suite sets them).
        "set"
            if args.len() >= 3
                && args[1..].chunks(2).all(|p| {
                    encoding_tuning(&p[0]) || p.get(1).is_some_and(|v| already(&p[0], v))
                }) =>
        {
            Reply::ok()
        }
        other => Reply::err(format!(
            "CONFIG {other} is not supported: configure the node with its flags"
        )),
    }
}

/// Does setting `name` to `value` ask for what Chordal does anyway (no
/// snapshots: `save ""`; no append-only file: `appendonly no`)? Accepted
/// with no effect (Redis's test suite sets them).
fn already(name: &[u8], value: &[u8]) -> bool {
    CONFIG.iter().any(|(n, v)| {
        name.eq_ignore_ascii_case(n.as_bytes()) && value == v.as_bytes() && *n != "databases"
    })
}

/// Is `name` a setting of Redis's compact encodings (listpack, ziplist,
/// intset sizes)?
fn encoding_tuning(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    ["-max-listpack-", "-max-ziplist-", "-max-intset-"]
        .iter()
        .any(|part| name.contains(part))
        || name == "list-compress-depth"
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS`, `COMMAND INFO`.
pub(crate) fn command(args: &[Bytes]) -> Reply {
    let all: Vec<&str> = commands::data_commands()
        .map(|(n, _)| *n)
        .chain(SESSION_COMMANDS.iter().copied())
        .collect();
    let info = |name: &str| {
        let flags = if needed_role(name) >= Role::Write {
            "write"
        } else {
            "readonly"
        };
        Reply::Array(vec![
            Reply::text(name),
            Reply::Integer(-1),
            Reply::Array(vec![Reply::Status(flags.into())]),
            Reply::Integer(1),
            Reply::Integer(1),
            Reply::Integer(1),
        ])
    };
    let sub = args
        .first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase());
    match sub.as_deref() {
        None => Reply::Array(all.iter().map(|n| info(n)).collect()),
        Some("count") => Reply::Integer(all.len() as i64),
        // No documentation to offer: clients do without.
        Some("docs") => Reply::Map(vec![]),
        Some("info") => Reply::Array(
            args[1..]
                .iter()
                .map(|a| {
                    let name = String::from_utf8_lossy(a).to_ascii_lowercase();
                    if all.contains(&name.as_str()) {
                        info(&name)
                    } else {
                        Reply::Nil
                    }
                })
                .collect(),
        ),
        Some(other) => Reply::err(format!("unknown subcommand '{other}' of COMMAND")),
    }
}
