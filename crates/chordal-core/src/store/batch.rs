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
use super::{Asker, Attempt, ReadFor, Store, StoreWait};
use crate::batch::{StepAnswer, decide_steps, with_version};
use crate::collection::{self, CollOp, MAX_READ_BYTES, MAX_READ_ELEMENTS, Range};
use crate::io::Cx;
use crate::request::{OpName, ReplyTo};
use crate::write::Then;
use crate::{
    Answered, Change, Done, Id, Kind, NodeRef, OpLog, OpResult, Operation, Record, Retried,
    StoreKind, StoreResult, Time, Version,
};
use std::collections::BTreeMap;

/// May `vnode` read what its own store holds of `key_id` beyond one
/// record (a run of elements, a watch's changes)? Only once its term has
/// caught up: the store then holds every acknowledged write.
pub(super) fn caught_up(cx: &Cx<'_>, now: Time, (vnode, key_id): (&NodeRef, &Id)) -> bool {
    !cx.config.authority
        || cx
            .authority
            .lease(vnode, key_id, now)
            .is_ok_and(|l| l.catch_up.is_empty())
}

/// What a batch decides.
#[derive(Debug)]
enum Deciding {
    /// Steps of `Operation::Batch`.
    Steps {
        steps: Vec<Operation>,
        all_or_nothing: bool,
        /// Per collection a step reads a run of, its stored elements
        /// (see `decide_steps`), once read.
        runs: BTreeMap<Vec<u8>, Vec<Record>>,
        /// Reads of `runs` not yet back.
        runs_left: usize,
    },
    /// A collection command (`Operation::Collection`): its keys are the
    /// header's and the named elements'.
    Collection {
        key: Vec<u8>,
        kind: Kind,
        op: CollOp,
        /// Every element record, once read (for a command reading all).
        all: Option<Vec<Record>>,
    },
}

/// A batch at its owner, from its arrival to its decision.
#[derive(Debug)]
pub(super) struct BatchOp {
    vnode: NodeRef,
    key_id: Id,
    /// The keys it reads and holds, each once, in order.
    keys: Vec<Vec<u8>>,
    what: Deciding,
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
        let mut keys: Vec<Vec<u8>> = Operation::batch_keys(&steps)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        // A collection step's named elements are held and read too.
        for s in &steps {
            if let Operation::Collection { key, kind, op } = s {
                for k in op.element_keys(key, *kind) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
        }
        let what = Deciding::Steps {
            steps,
            all_or_nothing,
            runs: BTreeMap::new(),
            runs_left: 0,
        };
        self.start_batch(cx, now, (vnode, key_id), (keys, what), name, reply);
    }

    /// Serves `Operation::Collection` as the owner `vnode` of `key_id`
    /// (the key's): a batch of the header and the elements the command
    /// names — and, for a command reading every element, a read of them
    /// all once those are held (see `crate::collection`).
    pub fn collection(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (vnode, key_id): (NodeRef, Id),
        (key, kind, op): (Vec<u8>, Kind, CollOp),
        name: Option<OpName>,
        reply: ReplyTo,
    ) {
        let refused = match op.is_read() {
            true => self.closing(),
            false => self.refuses_writes(),
        };
        if refused {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        if let CollOp::Move { to, .. } = &op
            && Id::of_key(to) != key_id
        {
            // Another owner's list: no one step can do it.
            cx.io.answer(reply, OpResult::CrossSlot);
            return;
        }
        let mut keys = vec![key.clone()];
        keys.extend(op.element_keys(&key, kind));
        let what = Deciding::Collection {
            key,
            kind,
            op,
            all: None,
        };
        self.start_batch(cx, now, (vnode, key_id), (keys, what), name, reply);
    }

    fn start_batch(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (vnode, key_id): (NodeRef, Id),
        (keys, what): (Vec<Vec<u8>>, Deciding),
        name: Option<OpName>,
        reply: ReplyTo,
    ) {
        let id = cx.io.next();
        let answer_by = reply.answer_by(now, cx.config);
        self.batches.insert(
            id,
            BatchOp {
                vnode,
                key_id,
                keys,
                what,
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
            let asker = Asker { reply, answer_by };
            self.start_read(cx, now, vnode, (key_id, k), why, asker);
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
        if b.failure.is_none()
            && let Deciding::Steps { steps, .. } = &b.what
        {
            // Collections whose run some step reads: read them whole.
            let mut wanted: Vec<Vec<u8>> = Vec::new();
            for s in steps {
                let read = match s {
                    Operation::Collection { key, kind, op } => {
                        let current = b.currents.get(key).and_then(Option::as_ref);
                        let live = collection::live_header(current, *kind, now).is_some();
                        (live && op.reads_run()).then_some(key)
                    }
                    // A collection copied: every element.
                    Operation::Update {
                        change: Change::CopyFrom { from, .. },
                        ..
                    } => {
                        let current = b.currents.get(from).and_then(Option::as_ref);
                        let live =
                            current.is_some_and(|r| r.is_live(now) && r.kind != Kind::String);
                        live.then_some(from)
                    }
                    _ => None,
                };
                if let Some(key) = read
                    && !wanted.contains(key)
                {
                    wanted.push(key.clone());
                }
            }
            if !wanted.is_empty() {
                if !caught_up(cx, now, (&b.vnode, &b.key_id)) {
                    b.failure = Some(super::owner::not_ready(cx));
                } else {
                    let mut reads = Vec::new();
                    for key in wanted {
                        let current = b.currents.get(&key).and_then(Option::as_ref);
                        let born = current
                            .and_then(|r| r.value.as_deref())
                            .and_then(collection::Header::decode)
                            .map(|h| h.born)
                            .unwrap_or_default();
                        let prefix = collection::key::elements_prefix(&key);
                        let range = Range {
                            after: prefix[..prefix.len() - 1].to_vec(),
                            prefix,
                            to: None,
                            limit: MAX_READ_ELEMENTS + 1,
                        };
                        reads.push((key, born, range));
                    }
                    if let Deciding::Steps { runs_left, .. } = &mut b.what {
                        *runs_left = reads.len();
                    }
                    let key_id = b.key_id;
                    for (key, born, range) in reads {
                        self.read_run(cx, (id, key_id), (born, range), Some(key));
                    }
                    return;
                }
            }
        }
        if b.failure.is_none()
            && let Deciding::Collection {
                key,
                kind,
                op,
                all: None,
            } = &b.what
        {
            let current = b.currents.get(key).and_then(Option::as_ref);
            let header = collection::live_header(current, *kind, now);
            if let Some(range) = op.range(key, *kind, header.as_ref(), &b.currents) {
                let (key_id, vnode) = (b.key_id, b.vnode);
                // A run of elements, from our store: only once our term
                // has caught up (it then holds every acknowledged one).
                if caught_up(cx, now, (&vnode, &key_id)) {
                    let born = header.map(|h| h.born).unwrap_or_default();
                    self.read_run(cx, (id, key_id), (born, range), None);
                    return;
                }
                b.failure = Some(super::owner::not_ready(cx));
            }
        }
        self.finish_batch(cx, now, id);
    }

    /// Reads `range` of the elements born at `born` or later for batch
    /// `id` (of collection `of` among its steps, or its own collection).
    fn read_run(
        &mut self,
        cx: &mut Cx<'_>,
        (id, key_id): (u64, Id),
        (born, range): (Version, Range),
        of: Option<Vec<u8>>,
    ) {
        // Writes of ours not stored yet may delete some of what the store
        // holds: read as many more.
        let pending = self.hot.pending_with_prefix(&range.prefix).len();
        let read = StoreKind::Elements {
            born,
            key_id,
            prefix: range.prefix.clone(),
            after: range.after.clone(),
            to: range.to.clone(),
            limit: range.limit.saturating_add(pending),
            max_bytes: MAX_READ_BYTES + 1,
            tombstones: false,
        };
        let wait = StoreWait::BatchElements(id, Box::new((range, of)));
        self.store_op(cx, read, wait);
    }

    /// The element records of collection batch `id` are read (or the
    /// store failed): add the elements we wrote and have not stored yet,
    /// then decide.
    pub(super) fn batch_elements(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (id, (range, of)): (u64, (Range, Option<Vec<u8>>)),
        result: StoreResult,
    ) {
        let pending = self.hot.pending_with_prefix(&range.prefix);
        let Some(b) = self.batches.get_mut(&id) else {
            return;
        };
        let read = match result {
            StoreResult::Scanned(records) => {
                let bytes: usize = records
                    .iter()
                    .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
                    .sum();
                if records.len() > MAX_READ_ELEMENTS || bytes > MAX_READ_BYTES {
                    Err(OpResult::TooLarge {
                        size: bytes.min(u32::MAX as usize) as u32,
                        limit: MAX_READ_BYTES as u32,
                    })
                } else {
                    let mut by_key: BTreeMap<Vec<u8>, Record> =
                        records.into_iter().map(|r| (r.key.clone(), r)).collect();
                    for p in pending.into_iter().filter(|p| range.holds(&p.key)) {
                        match by_key.get(&p.key) {
                            Some(r) if !p.supersedes(r) => {}
                            _ => {
                                by_key.insert(p.key.clone(), p);
                            }
                        }
                    }
                    Ok(by_key.into_values().collect::<Vec<_>>())
                }
            }
            _ => Err(OpResult::StoreFailed),
        };
        let read = match read {
            Ok(records) => records,
            Err(e) => {
                b.failure.get_or_insert(e);
                Vec::new()
            }
        };
        match (&mut b.what, of) {
            (Deciding::Collection { all, .. }, None) => *all = Some(read),
            (
                Deciding::Steps {
                    runs, runs_left, ..
                },
                Some(key),
            ) => {
                runs.insert(key, read);
                *runs_left = runs_left.saturating_sub(1);
                if *runs_left > 0 {
                    return;
                }
            }
            _ => return,
        }
        self.finish_batch(cx, now, id);
    }

    /// Batch `id` has read all it reads: decide and write, then let its
    /// keys go.
    fn finish_batch(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(mut b) = self.batches.remove(&id) else {
            return;
        };
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
        for c in b.currents.values().flatten() {
            self.hlc.observe(c.version.hlc);
        }
        // What to answer if nothing is written, how to answer once the
        // writes are on the quorum, the writes, and their version if the
        // decision needed it.
        let (unwritten, then, mut writes, version) = match b.what {
            Deciding::Steps {
                steps,
                all_or_nothing,
                runs,
                ..
            } => {
                // A collection step may create a collection, born with the
                // batch's version: that is chosen first.
                let collections = steps.iter().any(|s| {
                    matches!(
                        s,
                        Operation::Collection { .. }
                            | Operation::Update {
                                change: Change::CopyFrom { .. },
                                ..
                            }
                    )
                });
                let version = match collections {
                    false => None,
                    true => {
                        let Some(term) = super::owner::decider_term(cx, &b.vnode, &b.key_id, now)
                        else {
                            cx.io.answer(b.reply, super::owner::not_ready(cx));
                            return;
                        };
                        Some(Version {
                            term,
                            hlc: self.hlc.tick(now),
                            node: b.vnode.id,
                        })
                    }
                };
                let reads = (&b.currents, &runs);
                let limits = (now, version, cx.config.max_value);
                let decision = decide_steps(steps, reads, all_or_nothing, limits);
                // A cancelled batch (or one that changed nothing) writes
                // no step: the steps that would have written answer
                // `Refused`.
                let unwritten: Vec<StepAnswer> = decision
                    .answers
                    .iter()
                    .map(|a| match a {
                        StepAnswer::Then(_) => StepAnswer::Now(OpResult::Refused),
                        now => now.clone(),
                    })
                    .collect();
                let then = Then::Batch(decision.answers);
                (answer(&unwritten, None), then, decision.writes, version)
            }
            Deciding::Collection { key, kind, op, all } => {
                // A new collection is born with the write's version: the
                // decision needs it.
                let all = all.unwrap_or_default();
                for r in &all {
                    self.hlc.observe(r.version.hlc);
                }
                let Some(term) = super::owner::decider_term(cx, &b.vnode, &b.key_id, now) else {
                    cx.io.answer(b.reply, super::owner::not_ready(cx));
                    return;
                };
                let version = Version {
                    term,
                    hlc: self.hlc.tick(now),
                    node: b.vnode.id,
                };
                let header = b.currents.get(&key).cloned().flatten();
                let limits = (now, version, cx.config.max_value);
                let d =
                    collection::decide(&key, kind, op, header.as_ref(), &b.currents, &all, limits);
                let then = Then::Answer(Box::new(d.answer.clone()));
                (d.answer, then, d.writes, Some(version))
            }
        };
        // What we read but do not know to be on a quorum (see
        // `needs_write_back`) is written again with the batch, so that no
        // step answered from it can be undone.
        for (k, c) in &b.currents {
            if let Some(c) = c
                && !writes.contains_key(k)
                && self.needs_write_back(cx, now, &b.vnode, c)
            {
                writes.insert(k.clone(), (c.value.clone(), c.expires, c.kind));
            }
        }
        if writes.is_empty() {
            cx.io.answer(b.reply, unwritten);
            return;
        }
        let version = match version {
            Some(v) => v,
            None => {
                let Some(term) = super::owner::decider_term(cx, &b.vnode, &b.key_id, now) else {
                    // The lease ran out while we read: decide nothing.
                    cx.io.answer(b.reply, super::owner::not_ready(cx));
                    return;
                };
                Version {
                    term,
                    hlc: self.hlc.tick(now),
                    node: b.vnode.id,
                }
            }
        };
        let done = b.name.map(|n| Done {
            op: n.id,
            version,
            answered: Answered::Unrepeatable,
        });
        let mut records: Vec<Record> = writes
            .into_iter()
            .map(|(key, (value, expires, kind))| {
                let before = b.currents.get(&key).map(|c| c.as_ref().map(|r| &r.ops));
                Record {
                    key_id: b.key_id,
                    ops: OpLog::after(Some(before.flatten()), done),
                    key,
                    version,
                    value,
                    expires,
                    kind,
                }
            })
            .collect();
        let first = records.remove(0);
        self.write_attempt(
            cx,
            now,
            b.vnode,
            (first, records),
            (Some(b.reply), then),
            Attempt::first(b.answer_by),
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
