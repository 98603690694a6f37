//! The owner's side of a batch (`Operation::Batch`, decided by
//! `crate::batch`): hold every key the batch names, read them all the way
//! a write that needs its current record reads one (its term's catch-up
//! included), decide, and write every changed record in one atomic apply
//! at every copy — answered once the write quorum holds them all.
//!
//! Holding is all or nothing: a batch that finds one of its keys held
//! waits in that key's queue and, woken, tries every key again. It never
//! holds some keys while it waits for others, so two batches cannot wait
//! for each other.

use super::hot::Waiter;
use super::{ReadFor, Store};
use crate::batch::{StepAnswer, decide_batch, with_version};
use crate::io::Cx;
use crate::request::{OpName, ReplyTo};
use crate::write::Then;
use crate::{
    Answered, Done, Id, NodeRef, OpLog, OpResult, Operation, Record, Retried, Time, Version,
};
use std::collections::BTreeMap;

/// A batch at its owner, from its arrival to its decision.
#[derive(Debug)]
pub(super) struct BatchOp {
    vnode: NodeRef,
    key_id: Id,
    /// The keys its steps name, each once, in order.
    keys: Vec<Vec<u8>>,
    steps: Vec<Operation>,
    all_or_nothing: bool,
    name: Option<OpName>,
    reply: ReplyTo,
    answer_by: Time,
    /// Each key's newest record, as read (`None`: none).
    currents: BTreeMap<Vec<u8>, Option<Record>>,
    /// Reads not yet back.
    reads_left: usize,
    /// Why it cannot be decided (the first read that failed).
    failure: Option<OpResult>,
}

impl Store {
    /// Serves `Operation::Batch`'s `steps` as the owner `vnode` of
    /// `key_id`, the id of all its keys (checked by the caller: see
    /// `Operation::one_owner`): holds the keys (waiting for writes that
    /// hold one), reads them, decides, writes.
    pub fn batch(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (vnode, key_id): (NodeRef, Id),
        (steps, all_or_nothing): (Vec<Operation>, bool),
        name: Option<OpName>,
        reply: ReplyTo,
    ) {
        if self.refuses_writes() {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        let keys = Operation::batch_keys(&steps)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        let id = cx.io.next();
        let answer_by = reply.answer_by(now, cx.config);
        self.batches.insert(
            id,
            BatchOp {
                vnode,
                key_id,
                keys,
                steps,
                all_or_nothing,
                name,
                reply,
                answer_by,
                currents: BTreeMap::new(),
                reads_left: 0,
                failure: None,
            },
        );
        self.begin_batch(cx, now, id);
    }

    /// Batch `id` tries to hold every one of its keys: if one is held, it
    /// waits in that key's queue (and returns `false`); else it holds them
    /// all, reads them and returns `true`.
    pub(super) fn begin_batch(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) -> bool {
        let Some(b) = self.batches.get(&id) else {
            return false;
        };
        if now >= b.answer_by {
            // It waited too long behind others: nothing was done.
            let b = self.batches.remove(&id).expect("just found");
            cx.io.answer(b.reply, OpResult::Overloaded);
            return false;
        }
        if let Some(held) = b.keys.iter().find(|k| self.hot.held(k)) {
            let held = held.clone();
            self.hot.wait(&held, Waiter::Batch(id));
            return false;
        }
        let (vnode, key_id, reply, answer_by) = (b.vnode, b.key_id, b.reply, b.answer_by);
        let keys = b.keys.clone();
        for k in &keys {
            self.hot.hold(k);
        }
        if let Some(b) = self.batches.get_mut(&id) {
            b.reads_left = keys.len();
        }
        for k in keys {
            let why = ReadFor::Batch(id);
            self.start_read(cx, now, vnode, (key_id, k), why, reply, answer_by);
        }
        true
    }

    /// A read of batch `id` is over: `Ok` with the key's newest record,
    /// or the answer that says why the batch cannot be decided. Once all
    /// are back, decides and writes, then lets the keys go.
    pub(super) fn batch_read(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        key: Vec<u8>,
        read: Result<Option<Record>, OpResult>,
    ) {
        let Some(b) = self.batches.get_mut(&id) else {
            return;
        };
        match read {
            Ok(r) => {
                b.currents.insert(key, r);
            }
            Err(e) => {
                b.failure.get_or_insert(e);
            }
        }
        b.reads_left = b.reads_left.saturating_sub(1);
        if b.reads_left > 0 {
            return;
        }
        let mut b = self.batches.remove(&id).expect("just found");
        let keys = std::mem::take(&mut b.keys);
        match b.failure.take() {
            Some(e) => cx.io.answer(b.reply, e),
            None => self.decide_batch_write(cx, now, b),
        }
        // After the decision (its records are pending in `hot`, where
        // the next reads find them): the writes waiting may go.
        for k in &keys {
            self.release_key(cx, now, k);
        }
    }

    /// Every key of batch `b` is read: decide, and write what changed.
    fn decide_batch_write(&mut self, cx: &mut Cx<'_>, now: Time, b: BatchOp) {
        if let Some(n) = b.name.filter(|n| n.retry && cx.config.retries_from_log) {
            // A batch's answer cannot be repeated from a log: a retry
            // of one that was (or may have been) applied is told so.
            let placed = b.currents.values().all(|c| {
                matches!(
                    OpLog::retried(c.as_ref().map(|r| &r.ops), n.id),
                    Retried::NotApplied
                )
            });
            if !placed {
                cx.io.counting.error("kv_retry_outcome_unknown");
                cx.io.answer(b.reply, OpResult::OutcomeUnknown);
                return;
            }
        }
        let decision = decide_batch(
            b.steps,
            &b.currents,
            b.all_or_nothing,
            now,
            cx.config.max_value,
        );
        // A cancelled batch (or one that changed nothing) writes no step:
        // the steps that would have written answer `Refused`.
        let answers: Vec<StepAnswer> = match decision.writes.is_empty() {
            true => decision
                .answers
                .into_iter()
                .map(|a| match a {
                    StepAnswer::Then(_) => StepAnswer::Now(OpResult::Refused),
                    now => now,
                })
                .collect(),
            false => decision.answers,
        };
        let mut writes = decision.writes;
        // What we read but do not know to be on a quorum (see
        // `needs_write_back`) is written again with the batch, so that no
        // step answered from it can be undone.
        for (k, c) in &b.currents {
            if let Some(c) = c
                && !writes.contains_key(k)
                && self.needs_write_back(cx, now, &b.vnode, c)
            {
                writes.insert(k.clone(), (c.value.clone(), c.expires));
            }
        }
        if writes.is_empty() {
            cx.io.answer(b.reply, answer(&answers, None));
            return;
        }
        for c in b.currents.values().flatten() {
            self.hlc.observe(c.version.hlc);
        }
        let Some(term) = super::owner::decider_term(cx, &b.vnode, &b.key_id, now) else {
            // The lease ran out while we read: decide nothing.
            cx.io.answer(b.reply, super::owner::not_ready(cx));
            return;
        };
        let version = Version {
            term,
            hlc: self.hlc.tick(now),
            node: b.vnode.id,
        };
        let done = b.name.map(|n| Done {
            op: n.id,
            version,
            answered: Answered::Unrepeatable,
        });
        let mut records: Vec<Record> = writes
            .into_iter()
            .map(|(key, (value, expires))| {
                let before = b.currents.get(&key).map(|c| c.as_ref().map(|r| &r.ops));
                Record {
                    key_id: b.key_id,
                    ops: OpLog::after(Some(before.flatten()), done),
                    key,
                    version,
                    value,
                    expires,
                }
            })
            .collect();
        let first = records.remove(0);
        let then = Then::Batch(answers);
        self.write_attempt(
            cx,
            now,
            b.vnode,
            (first, records),
            (Some(b.reply), then),
            1,
            b.answer_by,
        );
    }
}

/// The batch's answer: each step's, with the batch's `written` version
/// and copies once its records are on the write quorum (`None`: it wrote
/// nothing).
pub(super) fn answer(answers: &[StepAnswer], written: Option<(Version, u32)>) -> OpResult {
    let (version, acked) = written.unwrap_or_default();
    let results = answers
        .iter()
        .map(|a| match a {
            StepAnswer::Now(r) => with_version(r.clone(), version),
            StepAnswer::Then(Then::Replaced(old)) => OpResult::Replaced {
                version,
                acked,
                old: old.clone(),
            },
            StepAnswer::Then(Then::Updated(number)) => OpResult::Updated {
                version,
                acked,
                number: *number,
            },
            StepAnswer::Then(_) => OpResult::Stored { version, acked },
        })
        .collect();
    OpResult::Batch {
        results,
        version: written.map(|(v, _)| v),
        acked,
    }
}
