//! Transactions: MULTI … EXEC as one batch at the owner of its keys
//! (`KeyValue::batch`), so it applies whole or not at all and nothing
//! interleaves with it; WATCH as version expectations checked in the
//! same step (optimistic, like Redis's). The keys — watched ones too —
//! must share one owner (one hash tag), else EXEC answers `CROSSSLOT`
//! and nothing is done, as Redis Cluster does.
//!
//! EXEC runs each queued command through the same code as outside a
//! transaction (`commands::run_on`), twice: first against a [`Recorder`]
//! that notes the store operations the command asks for, then — once the
//! batch of all of them has been decided — against a [`Replay`] that
//! answers each with its step's answer, which makes the command's reply.

use crate::blocking::IN_TRANSACTION;
use crate::codec::Request;
use crate::commands::{failed, run_on};
use crate::reply::Reply;
use crate::together::cross_slot;
use chordal_core::{Change, OpError, Outcome, Version};
use chordal_node::{Error, KeyValue, Node, StoreOp};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Most commands one transaction queues.
pub const MAX_QUEUED: usize = 1024;

/// Data commands a transaction may not hold: batches of their own, not
/// store operations, or made of several calls at the keys' owners of
/// which the later ones depend on what the first answered (so no one
/// step of a batch).
pub const NOT_IN_MULTI: &[&str] = &[
    "msetnx",
    "rename",
    "renamenx",
    "copy",
    "publish",
    "sinter",
    "sunion",
    "sdiff",
    "sinterstore",
    "sunionstore",
    "sdiffstore",
    "sintercard",
    "smove",
    "zunion",
    "zinter",
    "zdiff",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zintercard",
    "zrangestore",
];

/// Commands that try their keys one after another until one is not
/// empty: one step of a batch only with one key.
const KEY_BY_KEY: &[&str] = &[
    "lmpop", "blmpop", "zmpop", "bzmpop", "blpop", "brpop", "bzpopmin", "bzpopmax",
];

/// May a transaction hold data command `name` with `args` (the name
/// left out)?
pub fn may_queue(name: &str, args: &[bytes::Bytes]) -> bool {
    if NOT_IN_MULTI.contains(&name) {
        return false;
    }
    !KEY_BY_KEY.contains(&name) || crate::commands::keys_of(name, args).len() <= 1
}

/// A transaction being queued (between MULTI and EXEC).
#[derive(Default)]
pub struct Multi {
    /// The commands, in order.
    pub queued: Vec<Request>,
    /// Their bytes (bounded like one request: the batch travels as one
    /// message).
    pub bytes: usize,
    /// A command was refused while queueing: EXEC aborts.
    pub dirty: bool,
}

/// Records the store operations each call asks for, answering each
/// `Refused` (what a command then replies is thrown away).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Vec<StoreOp>>>,
}

impl KeyValue for Recorder {
    async fn run(&self, op: StoreOp) -> Result<Outcome, Error> {
        self.calls.lock().expect("recorder lock").push(vec![op]);
        Err(Error::Op(OpError::Refused))
    }

    async fn run_many(&self, ops: Vec<StoreOp>) -> Vec<Result<Outcome, Error>> {
        let n = ops.len();
        self.calls.lock().expect("recorder lock").push(ops);
        (0..n).map(|_| Err(Error::Op(OpError::Refused))).collect()
    }
}

/// Answers each call with the answers of its operations' steps, in the
/// order the [`Recorder`] saw the calls.
struct Replay {
    calls: Mutex<VecDeque<Vec<Result<Outcome, OpError>>>>,
}

impl Replay {
    /// The answers of the next call, `n` of them (a call the recorder did
    /// not see — a command whose operations depend on an answer — gets
    /// `UnexpectedAnswer`).
    fn next(&self, n: usize) -> Vec<Result<Outcome, Error>> {
        let call = self.calls.lock().expect("replay lock").pop_front();
        let mut out: Vec<Result<Outcome, Error>> = call
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.map_err(Error::Op))
            .collect();
        out.resize_with(n, || Err(Error::Op(OpError::UnexpectedAnswer)));
        out
    }
}

impl KeyValue for Replay {
    async fn run(&self, _op: StoreOp) -> Result<Outcome, Error> {
        self.next(1).remove(0)
    }

    async fn run_many(&self, ops: Vec<StoreOp>) -> Vec<Result<Outcome, Error>> {
        self.next(ops.len())
    }
}

/// `WATCH key…`: the version each key holds now (`None`: no value), of
/// whatever kind — a collection's is its header's, which every write to
/// it renews — to expect at EXEC.
pub async fn watch(
    node: &Node,
    keys: &[bytes::Bytes],
) -> Result<Vec<(Vec<u8>, Option<Version>)>, Reply> {
    let reads = keys.iter().map(|k| node.watch(k.to_vec(), None, false));
    let found = futures_util::future::join_all(reads).await;
    keys.iter()
        .zip(found)
        .map(|(k, f)| match f {
            // A watch from nothing answers the key's record now (a
            // tombstone too: its version is no live value's).
            Ok((_, records)) => {
                let live = records.first().filter(|r| r.value.is_some());
                Ok((k.to_vec(), live.map(|r| r.version)))
            }
            Err(e) => Err(failed(e)),
        })
        .collect()
}

/// `EXEC`: runs `queued` as one batch, expecting the `watched` versions
/// first. The array of the commands' replies; nil if a watched key
/// changed (nothing is done then).
pub async fn exec(
    node: &Node,
    queued: Vec<Request>,
    watched: Vec<(Vec<u8>, Option<Version>)>,
) -> Reply {
    let names: Vec<String> = queued
        .iter()
        .map(|c| String::from_utf8_lossy(&c[0]).to_ascii_lowercase())
        .collect();
    // First: what each command asks of the store.
    let mut recorded: Vec<Vec<Vec<StoreOp>>> = Vec::with_capacity(queued.len());
    for (name, cmd) in names.iter().zip(&queued) {
        let recorder = Recorder::default();
        IN_TRANSACTION
            .scope(true, run_on(&recorder, name, &cmd[1..]))
            .await;
        recorded.push(recorder.calls.into_inner().expect("recorder lock"));
    }
    let expectations = watched.len();
    let mut steps: Vec<StoreOp> = watched
        .into_iter()
        .map(|(key, version)| StoreOp::Update {
            key,
            change: Change::Expect(version),
        })
        .collect();
    steps.extend(recorded.iter().flatten().flatten().cloned());
    let mut answers: VecDeque<Result<Outcome, OpError>> = if steps.is_empty() {
        VecDeque::new()
    } else {
        match node.batch(steps, false).await {
            Ok(b) => b.results.into(),
            Err(Error::Op(OpError::CrossSlot)) => return cross_slot(),
            Err(e) => return failed(e),
        }
    };
    let watched_changed = answers
        .drain(..expectations.min(answers.len()))
        .any(|a| matches!(a, Err(OpError::PreconditionFailed { .. })));
    if watched_changed {
        return Reply::NilArray;
    }
    // Then: each command's reply from its steps' answers.
    let mut replies = Vec::with_capacity(queued.len());
    for ((name, cmd), calls) in names.iter().zip(&queued).zip(recorded) {
        let calls = calls
            .iter()
            .map(|ops| answers.drain(..ops.len().min(answers.len())).collect())
            .collect();
        let replay = Replay {
            calls: Mutex::new(calls),
        };
        let reply = IN_TRANSACTION.scope(true, run_on(&replay, name, &cmd[1..]));
        replies.push(reply.await);
    }
    Reply::Array(replies)
}
