//! One client connection: reads requests, runs data commands concurrently
//! (at most `max_pipeline` at once) and writes their replies in request
//! order; handles the commands that change the connection itself (HELLO,
//! AUTH, SUBSCRIBE, QUIT, …) in order, after the replies before them.

use crate::RespConfig;
use crate::codec::{Incoming, Limits, ProtocolError, Request, RespCodec};
use crate::commands::{self, Ctx};
use crate::multi::{self, Multi};
use crate::order::Order;
use crate::reply::Reply;
use crate::server::{command, config, function};
use bytes::Bytes;
use chordal_node::tokens::Role;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::debug;

/// Publications waiting to be written to a subscribed connection.
const PUSH_BUFFER: usize = 1024;

type Pending = FuturesOrdered<Pin<Box<dyn Future<Output = Reply> + Send>>>;

/// The connection's own state.
struct Session {
    ctx: Ctx,
    config: Arc<RespConfig>,
    id: u64,
    /// What the client authenticated as; `None`: not (yet).
    role: Option<Role>,
    /// Channel → the task forwarding its publications.
    channels: HashMap<Vec<u8>, JoinHandle<()>>,
    pushes: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    name: Option<Bytes>,
    /// After MULTI, until EXEC or DISCARD: the commands queued.
    multi: Option<Multi>,
    /// WATCHed keys and the versions they held then (`None`: no value),
    /// expected at EXEC.
    watched: Vec<(Vec<u8>, Option<chordal_core::Version>)>,
}

/// What a session command asks of the connection loop.
enum After {
    Continue,
    /// Reply, then close (QUIT).
    Close,
}

/// Serves one connection (its two halves) until the client leaves, sends
/// garbage, stays silent past its deadline or the server stops.
pub async fn serve<R, W>(read: R, write: W, ctx: Ctx, config: Arc<RespConfig>, id: u64)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let codec = || RespCodec::new(config.max_value + 1024, config.max_request);
    let authenticated = codec().limits;
    let mut reader = FramedRead::new(read, codec());
    let mut writer = FramedWrite::new(write, codec());
    let (pushes, mut published) = mpsc::channel(PUSH_BUFFER);
    let open = config.tokens.is_none();
    let mut s = Session {
        ctx,
        config: config.clone(),
        id,
        role: open.then_some(Role::Admin),
        channels: HashMap::new(),
        pushes,
        name: None,
        multi: None,
        watched: Vec::new(),
    };
    if s.role.is_none() {
        reader.decoder_mut().limits = Limits::before_auth();
    }
    let started = Instant::now();
    // When the last complete command arrived (the idle timeout's start).
    let mut last = started;
    // Wakes at the earliest deadline; on waking the deadline is computed
    // again (a command may have come since), so no command resets a timer.
    let timer = tokio::time::sleep_until(s.deadline(started, last));
    tokio::pin!(timer);
    let mut pending: Pending = FuturesOrdered::new();
    // Cancelled when the client closes: its blocked commands stop waiting.
    let gone = tokio_util::sync::CancellationToken::new();
    // Per-key order of the pending commands (cleared when none is).
    let mut order = Order::default();
    loop {
        tokio::select! {
            Some(reply) = pending.next(), if !pending.is_empty() => {
                if writer.feed(reply).await.is_err() {
                    break;
                }
                if pending.is_empty() && writer.flush().await.is_err() {
                    break;
                }
            }
            () = &mut timer, if pending.is_empty() => {
                let deadline = s.deadline(started, last);
                if deadline <= Instant::now() {
                    s.ctx.node.wire_stats().client_timeouts.fetch_add(1, Ordering::Relaxed);
                    debug!(id, authenticated = s.role.is_some(), "RESP connection timed out");
                    break;
                }
                timer.as_mut().reset(deadline);
            }
            request = reader.next(), if pending.len() < config.max_pipeline => {
                let args = match request {
                    Some(Ok(Incoming::Command(args))) => args,
                    Some(Ok(Incoming::Dropped(why))) => {
                        // Over the limits but read whole: an error in its
                        // place (inside MULTI, EXEC then aborts).
                        last = Instant::now();
                        s.ctx.node.wire_stats().resp_malformed.fetch_add(1, Ordering::Relaxed);
                        debug!(id, %why, "RESP request over the limits dropped");
                        if let Some(m) = s.multi.as_mut() {
                            m.dirty = true;
                        }
                        let reply = Reply::err(why);
                        pending.push_back(Box::pin(async move { reply }));
                        continue;
                    }
                    Some(Err(e)) => {
                        // Answer what came before, say why, and close.
                        gone.cancel();
                        finish(&mut pending, &mut writer).await;
                        if !matches!(e, ProtocolError::Io(_)) {
                            s.ctx.node.wire_stats().resp_malformed.fetch_add(1, Ordering::Relaxed);
                            debug!(error = %e, "RESP connection closed");
                            let _ = writer.send(Reply::err(&e)).await;
                        }
                        break;
                    }
                    None => {
                        // Commands sent before the close still run; a
                        // blocked one stops waiting.
                        gone.cancel();
                        finish(&mut pending, &mut writer).await;
                        break;
                    }
                };
                last = Instant::now();
                let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
                let refused = s.refusal(&name, &args);
                if s.multi.is_some() && !IN_MULTI_ALLOWED.contains(&name.as_str()) {
                    let reply = s.queue(&name, args, refused);
                    pending.push_back(Box::pin(async move { reply }));
                    continue;
                }
                if let Some(reply) = refused {
                    pending.push_back(Box::pin(async move { reply }));
                    continue;
                }
                if let Some(write) = commands::data_command(&name) {
                    if pending.is_empty() {
                        order.clear();
                    }
                    // After the commands before it that it must follow on
                    // its keys: a pipelined GET sees the SET before it.
                    let keys = commands::keys_of(&name, &args[1..]);
                    let mut turn = order.turn(keys, write, 4 * config.max_pipeline);
                    let ctx = s.ctx.clone();
                    let command = async move {
                        turn.wait().await;
                        let reply = commands::run(&ctx, &name, &args[1..]).await;
                        drop(turn);
                        reply
                    };
                    let scoped = crate::blocking::CLIENT_GONE.scope(gone.clone(), command);
                    pending.push_back(Box::pin(scoped));
                    continue;
                }
                // A session command: after every reply before it.
                finish(&mut pending, &mut writer).await;
                let (replies, after) = s.session(&name, &args).await;
                // A HELLO that succeeded answers in the protocol it chose.
                let hello_ok = name == "hello" && matches!(replies.first(), Some(Reply::Map(_)));
                if hello_ok || name == "reset" {
                    writer.encoder_mut().resp3 = args.get(1).is_some_and(|v| v.as_ref() == b"3") && hello_ok;
                }
                // AUTH (or RESET) changes what the next request may be.
                reader.decoder_mut().limits = if s.role.is_some() {
                    authenticated
                } else {
                    Limits::before_auth()
                };
                for reply in replies {
                    let _ = writer.feed(reply).await;
                }
                if writer.flush().await.is_err() || matches!(after, After::Close) {
                    break;
                }
            }
            Some((channel, payload)) = published.recv() => {
                let push = Reply::Push(vec![
                    Reply::text("message"),
                    Reply::Bulk(Bytes::from(channel)),
                    Reply::Bulk(Bytes::from(payload)),
                ]);
                if writer.feed(push).await.is_err() {
                    break;
                }
                if pending.is_empty() && writer.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    for (_, task) in s.channels.drain() {
        task.abort();
    }
}

/// Writes the replies of every command still running, in order.
async fn finish<W: AsyncWrite + Unpin>(
    pending: &mut Pending,
    writer: &mut FramedWrite<W, RespCodec>,
) {
    while let Some(reply) = pending.next().await {
        let _ = writer.feed(reply).await;
    }
    let _ = writer.flush().await;
}

/// Commands a subscribed RESP2 connection may still send.
const SUBSCRIBED_ALLOWED: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ping",
    "quit",
    "reset",
];

/// Commands a connection inside MULTI runs at once (the others are
/// queued).
const IN_MULTI_ALLOWED: &[&str] = &["exec", "discard", "multi", "quit", "reset", "watch"];

/// Commands that need no authentication.
const OPEN: &[&str] = &["auth", "hello", "quit"];

impl Session {
    /// When this connection is closed if nothing comes: `auth_timeout`
    /// after it opened while it has not authenticated, else
    /// `idle_timeout` after the last command (never while subscribed).
    fn deadline(&self, started: Instant, last: Instant) -> Instant {
        if self.role.is_none() {
            started + self.config.auth_timeout
        } else if !self.channels.is_empty() || self.config.idle_timeout.is_zero() {
            // Far enough never to come; woken again then, and still fine.
            last + std::time::Duration::from_secs(86_400)
        } else {
            last + self.config.idle_timeout
        }
    }

    /// The reply refusing `name` before it runs, if it is refused: not
    /// authenticated, a token too weak, subscribed, inside MULTI, or
    /// unknown.
    fn refusal(&self, name: &str, args: &Request) -> Option<Reply> {
        let data = commands::data_command(name);
        if data.is_none() && !SESSION_COMMANDS.contains(&name) {
            let shown: Vec<String> = args[1..]
                .iter()
                .take(8)
                .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
                .collect();
            return Some(Reply::err(format!(
                "unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(&args[0]),
                shown.join(" ")
            )));
        }
        if !OPEN.contains(&name) {
            match self.role {
                None => return Some(Reply::Error("NOAUTH Authentication required.".into())),
                // (Admin may do everything: no need to look the command up.)
                Some(role) if role < Role::Admin && role < needed_role(name) => {
                    return Some(Reply::Error(format!(
                        "NOPERM this token may not run the '{name}' command"
                    )));
                }
                _ => {}
            }
        }
        if !self.channels.is_empty() && !SUBSCRIBED_ALLOWED.contains(&name) {
            return Some(Reply::err(format!(
                "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            )));
        }
        None
    }

    /// Runs a session command; its replies (several for SUBSCRIBE).
    async fn session(&mut self, name: &str, args: &Request) -> (Vec<Reply>, After) {
        let one = |r| (vec![r], After::Continue);
        let n = args.len() - 1;
        match (name, n) {
            ("ping", 0) if !self.channels.is_empty() => {
                one(Reply::Array(vec![Reply::text("pong"), Reply::text("")]))
            }
            ("ping", 0) => one(Reply::Status("PONG".into())),
            ("ping", 1) => one(Reply::Bulk(args[1].clone())),
            ("echo", 1) => one(Reply::Bulk(args[1].clone())),
            ("quit", _) => (vec![Reply::ok()], After::Close),
            ("select", 1) => one(if args[1].as_ref() == b"0" {
                Reply::ok()
            } else {
                Reply::err("DB index is out of range")
            }),
            ("auth", 1 | 2) => one(self.auth(&args[n])),
            ("hello", _) => one(self.hello(&args[1..])),
            ("multi", 0) if self.multi.is_some() => {
                one(Reply::err("MULTI calls can not be nested"))
            }
            ("multi", 0) => {
                self.multi = Some(Multi::default());
                one(Reply::ok())
            }
            ("exec", 0) => {
                let watched = std::mem::take(&mut self.watched);
                match self.multi.take() {
                    None => one(Reply::err("EXEC without MULTI")),
                    Some(m) if m.dirty => one(Reply::Error(
                        "EXECABORT Transaction discarded because of previous errors.".into(),
                    )),
                    Some(m) => one(multi::exec(&self.ctx.node, m.queued, watched).await),
                }
            }
            ("discard", 0) => {
                self.watched.clear();
                match self.multi.take() {
                    Some(_) => one(Reply::ok()),
                    None => one(Reply::err("DISCARD without MULTI")),
                }
            }
            ("watch", 1..) if self.multi.is_some() => {
                one(Reply::err("WATCH inside MULTI is not allowed"))
            }
            ("watch", 1..) => match multi::watch(&self.ctx.node, &args[1..]).await {
                Ok(versions) => {
                    for (key, version) in versions {
                        // The first WATCH of a key counts.
                        if !self.watched.iter().any(|(k, _)| *k == key) {
                            self.watched.push((key, version));
                        }
                    }
                    one(Reply::ok())
                }
                Err(reply) => one(reply),
            },
            ("unwatch", 0) => {
                self.watched.clear();
                one(Reply::ok())
            }
            ("reset", 0) => {
                self.multi = None;
                self.watched.clear();
                self.unsubscribe_all();
                self.role = self.config.tokens.is_none().then_some(Role::Admin);
                one(Reply::Status("RESET".into()))
            }
            ("scan" | "keys" | "randomkey" | "dbsize" | "flushall" | "flushdb", _) => {
                one(crate::keyspace::run(&self.ctx.node, name, &args[1..]).await)
            }
            ("function", 1..) => one(function(&args[1..])),
            ("client", 1..) => one(self.client(&args[1..])),
            ("config", 1..) => {
                let admin = self.role.is_some_and(|r| r >= Role::Admin);
                one(config(&self.ctx.node, admin, &args[1..]))
            }
            ("command", _) => one(command(&args[1..])),
            ("info", _) => one(self.info().await),
            ("cluster", 1..) => one(crate::cluster::run(&self.ctx.node, &args[1..]).await),
            // A cluster client's replica reads and migration steps: every
            // node answers every key, so there is nothing to switch.
            ("readonly" | "readwrite" | "asking", 0) => one(Reply::ok()),
            ("subscribe", 1..) => (self.subscribe(&args[1..]).await, After::Continue),
            ("unsubscribe" | "punsubscribe", _) => (self.unsubscribe(&args[1..]), After::Continue),
            ("psubscribe", _) => one(Reply::err("pattern subscriptions are not supported")),
            _ => one(commands::wrong_arity(name)),
        }
    }

    /// A command inside MULTI: queued (`+QUEUED`) if it is a store
    /// command a transaction can hold, else refused — and EXEC will
    /// abort, so that no half of a transaction applies.
    fn queue(&mut self, name: &str, args: Request, refused: Option<Reply>) -> Reply {
        let size: usize = args.iter().map(|a| a.len()).sum();
        let Some(m) = self.multi.as_mut() else {
            return Reply::err("not in MULTI");
        };
        let storable = commands::data_command(name).is_some() && multi::may_queue(name, &args[1..]);
        let reply = match refused {
            Some(r) => r,
            None if !storable => Reply::err(format!(
                "'{name}' cannot run inside MULTI (only store commands that are one step at their keys' owner can); EXEC will abort the transaction"
            )),
            None if m.queued.len() >= multi::MAX_QUEUED => Reply::err(format!(
                "a transaction holds at most {} commands; EXEC will abort it",
                multi::MAX_QUEUED
            )),
            None if m.bytes + size > self.config.max_request => Reply::err(format!(
                "a transaction holds at most {} bytes; EXEC will abort it",
                self.config.max_request
            )),
            None => {
                m.bytes += size;
                m.queued.push(args);
                return Reply::Status("QUEUED".into());
            }
        };
        m.dirty = true;
        reply
    }

    fn auth(&mut self, token: &[u8]) -> Reply {
        let Some(tokens) = &self.config.tokens else {
            return Reply::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        };
        match tokens.role_of(token) {
            Some(role) => {
                self.role = Some(role);
                Reply::ok()
            }
            None => {
                Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
            }
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    fn hello(&mut self, args: &[Bytes]) -> Reply {
        if let Some(v) = args.first()
            && !matches!(v.as_ref(), b"2" | b"3")
        {
            return Reply::Error("NOPROTO unsupported protocol version".into());
        }
        let mut i = 1;
        while i < args.len() {
            let word = String::from_utf8_lossy(&args[i]).to_ascii_lowercase();
            match word.as_str() {
                "auth" if i + 2 < args.len() => {
                    let reply = self.auth(&args[i + 2]);
                    if !matches!(reply, Reply::Status(_)) {
                        return reply;
                    }
                    i += 3;
                }
                "setname" if i + 1 < args.len() => {
                    self.name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => return Reply::err("syntax error in HELLO"),
            }
        }
        if self.role.is_none() {
            return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
        }
        let proto = match args.first().map(|a| a.as_ref()) {
            Some(b"3") => 3,
            _ => 2,
        };
        Reply::Map(vec![
            (Reply::text("server"), Reply::text("redis")),
            (Reply::text("version"), Reply::text(crate::REDIS_VERSION)),
            (Reply::text("proto"), Reply::Integer(proto)),
            (Reply::text("id"), Reply::Integer(self.id as i64)),
            (Reply::text("mode"), Reply::text("cluster")),
            (Reply::text("role"), Reply::text("master")),
            (Reply::text("modules"), Reply::Array(vec![])),
        ])
    }

    fn client(&mut self, args: &[Bytes]) -> Reply {
        let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match (sub.as_str(), args.len()) {
            ("setname", 2) => {
                self.name = Some(args[1].clone());
                Reply::ok()
            }
            ("getname", 1) => self.name.clone().map_or(Reply::Nil, Reply::Bulk),
            ("id", 1) => Reply::Integer(self.id as i64),
            // Client libraries announce themselves; nothing to keep.
            ("setinfo", 3) => Reply::ok(),
            _ => Reply::err(format!("unknown subcommand '{sub}' of CLIENT")),
        }
    }

    async fn info(&self) -> Reply {
        let status = self.ctx.node.status().await.ok();
        let keys = status.as_ref().map_or(0, |s| s.keys_stored);
        let text = format!(
            "# Server\r\n# redis_version: the Redis release whose commands and replies this server follows (clients test it); this is Chordal, server_name and chordal_version say which\r\nserver_name:chordal\r\nredis_version:{}\r\nchordal_version:{}\r\nredis_mode:cluster\r\nchordal_node_id:{}\r\nprocess_id:{}\r\n\r\n# Cluster\r\n# CLUSTER SLOTS names the owner of each hash slot; every node answers every key\r\ncluster_enabled:1\r\n\r\n# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\n\r\n# Keyspace\r\n# records on this node, replicas included\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n",
            crate::REDIS_VERSION,
            env!("CARGO_PKG_VERSION"),
            self.ctx.node.id().to_hex(),
            std::process::id(),
            self.config.connections.load(Ordering::Relaxed),
            crate::blocking::blocked_clients(),
        );
        Reply::text(text)
    }

    /// `SUBSCRIBE channel...`: one confirmation per channel.
    async fn subscribe(&mut self, channels: &[Bytes]) -> Vec<Reply> {
        let mut out = Vec::new();
        for ch in channels {
            let channel = ch.to_vec();
            if !self.channels.contains_key(&channel) {
                match self.ctx.node.subscribe(channel.clone()).await {
                    Ok(mut sub) => {
                        let tx = self.pushes.clone();
                        let task = tokio::spawn(async move {
                            while let Some(p) = sub.next().await {
                                if tx.send((p.topic, p.payload)).await.is_err() {
                                    return;
                                }
                            }
                        });
                        self.channels.insert(channel, task);
                    }
                    Err(e) => {
                        out.push(Reply::err(format!("cannot subscribe: {e}")));
                        continue;
                    }
                }
            }
            out.push(Reply::Push(vec![
                Reply::text("subscribe"),
                Reply::Bulk(ch.clone()),
                Reply::Integer(self.channels.len() as i64),
            ]));
        }
        out
    }

    /// `UNSUBSCRIBE [channel...]` (none: all).
    fn unsubscribe(&mut self, channels: &[Bytes]) -> Vec<Reply> {
        let names: Vec<Bytes> = if channels.is_empty() {
            self.channels
                .keys()
                .map(|c| Bytes::from(c.clone()))
                .collect()
        } else {
            channels.to_vec()
        };
        if names.is_empty() {
            return vec![Reply::Push(vec![
                Reply::text("unsubscribe"),
                Reply::Nil,
                Reply::Integer(0),
            ])];
        }
        names
            .into_iter()
            .map(|ch| {
                if let Some(task) = self.channels.remove(ch.as_ref()) {
                    task.abort();
                }
                Reply::Push(vec![
                    Reply::text("unsubscribe"),
                    Reply::Bulk(ch),
                    Reply::Integer(self.channels.len() as i64),
                ])
            })
            .collect()
    }

    fn unsubscribe_all(&mut self) {
        for (_, task) in self.channels.drain() {
            task.abort();
        }
    }
}

/// Commands that act on the connection (run in order, one at a time).
pub(crate) const SESSION_COMMANDS: &[&str] = &[
    "ping",
    "echo",
    "quit",
    "select",
    "auth",
    "hello",
    "reset",
    "client",
    "config",
    "command",
    "info",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "scan",
    "keys",
    "randomkey",
    "dbsize",
    "flushall",
    "flushdb",
    "function",
    "cluster",
    "readonly",
    "readwrite",
    "asking",
];

/// Session commands that need the `admin` role under `--api-tokens`.
const ADMIN_COMMANDS: &[&str] = &["flushall", "flushdb"];

/// Session commands that write (refused to the `read` role).
const WRITE_COMMANDS: &[&str] = &["function"];

/// The role of API token command `name` needs.
pub(crate) fn needed_role(name: &str) -> Role {
    if ADMIN_COMMANDS.contains(&name) {
        Role::Admin
    } else if WRITE_COMMANDS.contains(&name) || commands::data_command(name) == Some(true) {
        Role::Write
    } else {
        Role::Read
    }
}
