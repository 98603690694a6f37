//! The owner of a key: versions writes, stores and replicates them,
//! answers after `W` durable copies; decides conditional writes and
//! updates against the current record, one at a time per key (`hot.rs`);
//! serves reads from one copy or a quorum, asking the replicas when it
//! lacks a key while a handoff may still be running, and repairs the
//! copies it found stale.

use super::hot::{Waiter, Waiting};
use super::{Asker, Attempt, Deadline, OwnerOp, ReadFor, Store, StoreKind, StoreWait, newest};
use crate::io::Cx;
use crate::request::{OpName, ReplyTo};
use crate::write::{Decision, Intent, Then, decide};
use crate::{
    Answered, Consistency, Done, Id, KeyRange, Message, NodeRef, OpLog, OpResult, Record, Retried,
    Time, Version,
};

/// A write of `key` reached its quorum or ended without: one fewer
/// unacknowledged.
fn settle(unacked: &mut crate::fasthash::FastMap<Vec<u8>, u32>, key: &[u8]) {
    if let Some(n) = unacked.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            unacked.remove(key);
        }
    }
}

/// Has a read quorum (one that meets every majority) of each of
/// `quorums` been `heard` from?
fn quorums_met(quorums: &[Vec<std::net::SocketAddr>], heard: &[std::net::SocketAddr]) -> bool {
    quorums.iter().all(|q| {
        let yes = q.iter().filter(|p| heard.contains(p)).count();
        yes >= crate::authority::read_quorum(q.len())
    })
}

/// The term `vnode` decides `key_id` in now: its lease's under authority,
/// 0 without; `None` if it holds no valid lease.
pub(super) fn decider_term(cx: &Cx<'_>, vnode: &NodeRef, key_id: &Id, now: Time) -> Option<u64> {
    if !cx.config.authority {
        return Some(0);
    }
    cx.authority.lease(vnode, key_id, now).ok().map(|l| l.term)
}

/// The answer for a key no term lets us decide: `NotReady` (retryable:
/// a term is on its way), or `StoreFailed` while our storage refuses the
/// promise table — no term of ours can begin before space comes back.
pub(crate) fn not_ready(cx: &Cx<'_>) -> OpResult {
    if cx.authority.saves_failing() {
        OpResult::StoreFailed
    } else {
        OpResult::NotReady
    }
}

/// Most versions one write gets before the owner gives up on it (each
/// time a copy holds a newer version than the last one tried).
pub const MAX_WRITE_ATTEMPTS: u32 = 4;

impl Store {
    /// Serves a write (put, delete, update) as the owner `vnode` of
    /// `key_id` (checked by the request machine), named `name` (its id
    /// goes into the record's log of writes). A plain put is versioned
    /// and written at once; a write that needs the current record — and a
    /// retry, which must find out whether it was applied — reads it first,
    /// holding the key, and waits if another write holds it.
    pub fn write(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (key_id, key): (Id, Vec<u8>),
        (intent, name): (Intent, Option<OpName>),
        reply: ReplyTo,
    ) {
        if self.refuses_writes() {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        let answer_by = reply.answer_by(now, cx.config);
        let w = Waiting {
            vnode,
            key_id,
            intent,
            name,
            reply,
            answer_by,
        };
        if self.hot.held(&key) {
            self.hot.wait(&key, Waiter::Write(Box::new(w)));
            return;
        }
        self.begin_write(cx, now, key, w);
    }

    /// Starts write `w` on `key`, which no write holds: decides it at once
    /// if it needs no current record, else holds the key and reads it.
    /// Returns whether the key is now held.
    fn begin_write(&mut self, cx: &mut Cx<'_>, now: Time, key: Vec<u8>, w: Waiting) -> bool {
        if now >= w.answer_by {
            // It waited too long behind others: nothing was done, the
            // coordinator may try again.
            cx.io.answer(w.reply, OpResult::Overloaded);
            return false;
        }
        let retry = w.name.is_some_and(|n| n.retry);
        if !w.intent.needs_current() && !retry {
            // Not read: the newest record we sent our store, if any (its
            // log then carries on), else unknown (see `OpLog::after`).
            let current = self.hot.latest(&key).cloned();
            let known = current.is_some();
            let asker = Asker {
                reply: w.reply,
                answer_by: w.answer_by,
            };
            self.decide_write(
                cx,
                now,
                (w.vnode, w.key_id, key),
                (w.intent, w.name),
                (current, known),
                asker,
            );
            return false;
        }
        self.hot.hold(&key);
        let read = ReadFor::Write(Box::new((w.intent, w.name)));
        let asker = Asker {
            reply: w.reply,
            answer_by: w.answer_by,
        };
        self.start_read(cx, now, w.vnode, (w.key_id, key), read, asker);
        true
    }

    /// The write holding `key` has decided: start the writes waiting for
    /// it, in order, until one holds the key again.
    pub(super) fn release_key(&mut self, cx: &mut Cx<'_>, now: Time, key: &[u8]) {
        while let Some(w) = self.hot.release(key) {
            let holds = match w {
                Waiter::Write(w) => self.begin_write(cx, now, key.to_vec(), *w),
                Waiter::Batch(id) => self.begin_batch(cx, now, id),
            };
            if holds {
                return;
            }
        }
    }

    /// Serves a get as the owner `vnode`; `unsure`: the key may not be
    /// ours (see `Ownership::Maybe`), and a miss answers `WrongOwner`.
    pub fn get(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (vnode, key): (NodeRef, (Id, Vec<u8>)),
        (consistency, unsure): (Consistency, bool),
        reply: ReplyTo,
    ) {
        if self.closing() {
            // Our farewell waits only for what we took on: take nothing.
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        let why = if unsure {
            ReadFor::MaybeGet
        } else {
            ReadFor::Get(consistency)
        };
        let answer_by = reply.answer_by(now, cx.config);
        self.start_read(cx, now, vnode, key, why, Asker { reply, answer_by })
    }

    /// Draining before a leave (or gone): a write could land behind the
    /// transfer's read position and never reach the successor. The
    /// coordinator tries again; after our farewell it finds the successor.
    pub(super) fn refuses_writes(&self) -> bool {
        self.leaving.is_some() || self.gone_from_ring()
    }

    /// Decides `intent` against `current` and, if it writes, versions the
    /// record above everything seen and starts the write. `known`: the
    /// current record was read (so a `None` means there is none). A
    /// retry (see `name`) found in the record's log is answered as it was
    /// the first time; one the log cannot place is `OutcomeUnknown`.
    fn decide_write(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (vnode, key_id, key): (NodeRef, Id, Vec<u8>),
        (intent, name): (Intent, Option<OpName>),
        (current, known): (Option<Record>, bool),
        Asker { reply, answer_by }: Asker,
    ) {
        let kind = intent.kind_written(current.as_ref());
        let decision = match name.filter(|n| n.retry && cx.config.retries_from_log) {
            Some(n) => match OpLog::retried(current.as_ref().map(|c| &c.ops), n.id) {
                Retried::Applied(done) => {
                    cx.io.counting.error("kv_retry_answered_from_log");
                    Decision::Answer(recalled(cx, &vnode, &key_id, now, &done))
                }
                Retried::Unknown => {
                    cx.io.counting.error("kv_retry_outcome_unknown");
                    cx.io.answer(reply, OpResult::OutcomeUnknown);
                    return;
                }
                Retried::NotApplied => decide(intent, current.as_ref(), now, cx.config.max_value),
            },
            None => decide(intent, current.as_ref(), now, cx.config.max_value),
        };
        match decision {
            Decision::Answer(result) => {
                match current.filter(|c| self.needs_write_back(cx, now, &vnode, c)) {
                    // Decided on a record not known to be on a quorum: make it
                    // so before saying anything about it.
                    Some(c) => {
                        let then = Then::Answer(Box::new(result));
                        self.write_back(cx, now, vnode, c, (reply, then), answer_by)
                    }
                    None => cx.io.answer(reply, result),
                }
            }
            Decision::Write {
                value,
                expires,
                then,
            } => {
                if let Some(c) = &current {
                    self.hlc.observe(c.version.hlc);
                }
                let Some(term) = decider_term(cx, &vnode, &key_id, now) else {
                    // The lease ran out while we read: decide nothing.
                    cx.io.answer(reply, not_ready(cx));
                    return;
                };
                let version = match &then {
                    // A restored record keeps its clock and writer, in
                    // our term: the backup's terms mean nothing here (a
                    // higher one would put it above every later write
                    // until our terms caught up). Later writes still go
                    // above it.
                    Then::Restored(v) => {
                        self.hlc.observe(v.hlc);
                        Version { term, ..*v }
                    }
                    // A write-back keeps the write's identity, in our term
                    // (see `write_back`).
                    Then::ReadBack if let Some(c) = &current => Version { term, ..c.version },
                    _ => Version {
                        term,
                        hlc: self.hlc.tick(now),
                        node: vnode.id,
                    },
                };
                // A restored collection's header: its `born` moves into our
                // term with it, as its elements do when they are restored
                // (after it: they sort after it), so that they stay alive.
                let value = match (&then, kind, value) {
                    (Then::Restored(_), k, Some(v)) if k != crate::Kind::String => {
                        Some(crate::collection::rebirth(&v, term).unwrap_or(v))
                    }
                    (_, _, value) => value,
                };
                // The record's log of writes: the one it replaces carried on
                // (unknown if not read), with this write's entry.
                let before = known.then(|| current.as_ref().map(|c| &c.ops));
                let done = name
                    .filter(|_| !matches!(then, Then::ReadBack))
                    .map(|n| Done {
                        op: n.id,
                        version,
                        answered: answered(&then),
                    });
                let record = Record {
                    key_id,
                    key,
                    version,
                    // A tombstone is always a string's.
                    kind: if value.is_some() {
                        kind
                    } else {
                        crate::Kind::String
                    },
                    value,
                    expires,
                    ops: OpLog::after(before, done),
                };
                let records = (record, Vec::new());
                let attempt = Attempt::first(answer_by);
                self.write_attempt(cx, now, vnode, records, (Some(reply), then), attempt);
            }
        }
    }

    /// One attempt of a write: sends `record` (and `others`, records of
    /// keys with the same key id that a batch writes with it, in one
    /// atomic apply) to the local store and the replicas; answers `reply`
    /// (as `then` says, about `record`) once the write quorum holds them,
    /// or says it failed at `attempt.deadline` (before the coordinator
    /// gives up waiting).
    pub(super) fn write_attempt(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (record, others): (Record, Vec<Record>),
        (reply, then): (Option<ReplyTo>, Then),
        Attempt {
            number: attempt,
            deadline,
        }: Attempt,
    ) {
        let (targets, fence, quorum) = if cx.config.authority {
            // The term's config holds the copies; a majority of it is the
            // quorum (what the next term's prepare will meet).
            match cx.authority.lease(&vnode, &record.key_id, now) {
                Ok(l) => {
                    let need = crate::authority::majority(1 + l.replicas.len()) as u32;
                    (l.replicas.to_vec(), l.term, Some(need))
                }
                Err(_) => {
                    if let Some(r) = reply {
                        cx.io.answer(r, not_ready(cx));
                    }
                    return;
                }
            }
        } else {
            (cx.ring.replica_targets(&vnode, cx.config.replicas), 0, None)
        };
        let copies = 1 + targets.len();
        let need = match quorum.map_or_else(|| self.write_quorum_for(cx, &vnode, copies), Ok) {
            Ok(need) => need,
            Err(needed) => {
                cx.io.counting.error("kv_quorum_unavailable");
                if let Some(r) = reply {
                    let available = copies as u32;
                    let result = OpResult::QuorumUnavailable { available, needed };
                    // Nothing was written: the coordinator may say so.
                    cx.io.answer(r, result);
                }
                return;
            }
        };
        let id = cx.io.next();
        for t in &targets {
            let records = all_of(&record, &others);
            self.replicate(cx, (vnode, *t, fence), id, records);
        }
        let records = all_of(&record, &others);
        for r in &records {
            self.hot.applying(r);
            *self.unacked.entry(r.key.clone()).or_default() += 1;
        }
        let keys = records.iter().map(|r| r.key.clone()).collect();
        self.store_op(
            cx,
            StoreKind::Apply { records },
            StoreWait::OwnerWrite(id, keys),
        );
        self.owners.insert(
            id,
            OwnerOp::Write {
                reply,
                then,
                vnode,
                record,
                others,
                need,
                acked: 0,
                outstanding: copies as u32,
                attempt,
                unacked: true,
                deadline,
                fence,
            },
        );
        self.deadlines.insert((deadline, Deadline::Owner(id)));
    }

    /// Reads `key` for `why`: our copy, and for a quorum read the replicas'
    /// at the same time.
    pub(super) fn start_read(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (key_id, key): (Id, Vec<u8>),
        why: ReadFor,
        Asker { reply, answer_by }: Asker,
    ) {
        let id = cx.io.next();
        // A write the owner versioned may not be in its store yet.
        let pending = self.hot.latest(&key).cloned();
        // A third of the time: a write still has to follow.
        let deadline = now + answer_by.saturating_since(now) / 3;
        let consistency = match &why {
            ReadFor::Get(c) => *c,
            _ => Consistency::Owner,
        };
        self.store_op(
            cx,
            StoreKind::Get {
                key_id,
                key: key.clone(),
            },
            StoreWait::OwnerRead(id),
        );
        self.owners.insert(
            id,
            OwnerOp::Read {
                reply,
                vnode,
                key,
                why,
                best: pending,
                local: None,
                copies: Vec::new(),
                need: 1,
                answered: 0,
                outstanding: 1,
                asked_replicas: false,
                quorums: Vec::new(),
                heard: Vec::new(),
                failed: false,
                deadline,
                answer_by,
            },
        );
        self.deadlines.insert((deadline, Deadline::Owner(id)));
        if consistency != Consistency::Owner {
            self.ask_replicas(cx, now, id, consistency);
        }
        if cx.config.authority
            && let Ok(lease) = cx.authority.lease(&vnode, &key_id, now)
            && !lease.catch_up.is_empty()
        {
            let configs = lease.catch_up.to_vec();
            self.catch_up(cx, id, configs);
        }
    }

    /// Read `id` is of a term still catching up: ask the previous
    /// configs' copies too; the read waits for a read quorum of each.
    fn catch_up(&mut self, cx: &mut Cx<'_>, id: u64, configs: Vec<Vec<NodeRef>>) {
        let me = cx.ring.addr();
        let Some(OwnerOp::Read {
            vnode,
            key,
            outstanding,
            asked_replicas,
            quorums,
            ..
        }) = self.owners.get_mut(&id)
        else {
            return;
        };
        *asked_replicas = true;
        let mut asked: Vec<std::net::SocketAddr> = vec![me];
        let (vnode, key) = (*vnode, key.clone());
        for config in configs {
            let mut procs: Vec<std::net::SocketAddr> = Vec::new();
            for n in config {
                if !procs.contains(&n.addr) {
                    procs.push(n.addr);
                }
                if !asked.contains(&n.addr) {
                    asked.push(n.addr);
                    *outstanding += 1;
                    let req = cx.io.next();
                    self.replica_reqs.insert(req, read_req(id, n));
                    let key = key.clone();
                    cx.io.send(vnode, n, Message::ReplicaRead { req, key });
                }
            }
            quorums.push(procs);
        }
        cx.io.counting.counters.catch_up_reads += 1;
    }

    /// Asks the replicas of read `id` for their copies; the read then
    /// answers once `consistency` says enough copies did.
    fn ask_replicas(&mut self, cx: &mut Cx<'_>, now: Time, id: u64, consistency: Consistency) {
        let Some(OwnerOp::Read {
            vnode,
            key,
            need,
            outstanding,
            asked_replicas,
            ..
        }) = self.owners.get_mut(&id)
        else {
            return;
        };
        *asked_replicas = true;
        let key_id = Id::of_key(key);
        let targets = match cx.authority.lease(vnode, &key_id, now) {
            Ok(lease) if cx.config.authority => lease.replicas.to_vec(),
            _ => cx.ring.replica_targets(vnode, cx.config.replicas),
        };
        *outstanding += targets.len() as u32;
        *need = consistency.copies_needed(cx.config.replicas, 1 + targets.len()) as u32;
        let (vnode, key) = (*vnode, key.clone());
        for t in targets {
            let req = cx.io.next();
            self.replica_reqs.insert(req, read_req(id, t));
            let key = key.clone();
            cx.io.send(vnode, t, Message::ReplicaRead { req, key });
        }
    }

    /// The write quorum `W` of `vnode`'s writes when `copies` processes can
    /// hold one: `--write-quorum` (default a majority of `R`), counted
    /// against `R`. `Err(W)` if fewer than `W` can, unless the ring really
    /// has no more processes (its successor list came back round to us):
    /// then as many copies as there are.
    fn write_quorum_for(&self, cx: &Cx<'_>, vnode: &NodeRef, copies: usize) -> Result<u32, u32> {
        let r = cx.config.replicas.max(1);
        let w = cx.config.write_quorum.unwrap_or(r / 2 + 1).clamp(1, r);
        if copies >= w {
            return Ok(w as u32);
        }
        let complete = cx
            .ring
            .vnodes()
            .iter()
            .find(|v| v.me() == *vnode)
            .is_some_and(|v| v.table().is_complete());
        if complete {
            Ok(copies as u32)
        } else {
            Err(w as u32)
        }
    }

    /// One copy of write `id` answered: durable (`ok`) or not, and
    /// whether it kept a `newer` version instead of the write's.
    ///
    /// A copy that kept a newer version does not count: the write is
    /// versioned again above it (the hlc has observed it) and sent anew,
    /// within the same deadline, up to [`MAX_WRITE_ATTEMPTS`] times. If the
    /// newer version turns up after the write was acknowledged, the owner
    /// still versions it again, so that the acknowledged value is what
    /// every copy ends up with.
    pub(super) fn write_answer(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        ok: bool,
        newer: Option<Version>,
    ) {
        let Some(OwnerOp::Write {
            reply,
            then,
            vnode,
            record,
            others,
            need,
            acked,
            outstanding,
            unacked,
            fence,
            ..
        }) = self.owners.get_mut(&id)
        else {
            return;
        };
        let (vnode, fence) = (*vnode, *fence);
        *outstanding = outstanding.saturating_sub(1);
        if let Some(v) = newer.filter(|v| *v > record.version) {
            self.rewrite(cx, now, id, v);
            return;
        }
        if ok {
            *acked += 1;
        }
        let (acked, need, version, left) = (*acked, *need, record.version, *outstanding);
        if acked >= need && std::mem::take(unacked) {
            for r in std::iter::once(&*record).chain(others.iter()) {
                settle(&mut self.unacked, &r.key);
            }
        }
        // Under authority a quorum counts only while the write's term, or
        // a term of ours that followed it without a break, still holds: a
        // later holder's catch-up reads a read quorum only after our lease
        // ran out, and a write that reached its quorum after that might be
        // missed there (it may or may not stay: ambiguous, like a quorum
        // that failed).
        let late = acked >= need
            && cx.config.authority
            && fence != 0
            && !cx.authority.decides_in(&vnode, &record.key_id, fence, now);
        if late && let Some(r) = reply.take() {
            cx.io.counting.error("kv_quorum_after_lease");
            cx.io.answer(
                r,
                OpResult::QuorumFailed {
                    acked,
                    needed: need,
                },
            );
        }
        if acked >= need
            && let Some(r) = reply.take()
        {
            let result = match then {
                Then::Stored => OpResult::Stored { version, acked },
                Then::Replaced(old) => OpResult::Replaced {
                    version,
                    acked,
                    old: old.take(),
                },
                Then::Updated(number) => OpResult::Updated {
                    version,
                    acked,
                    number: *number,
                },
                Then::Restored(_) => OpResult::Stored { version, acked },
                Then::Written => OpResult::Found {
                    value: record.value.clone().unwrap_or_default(),
                    version,
                    expires: record.expires,
                },
                Then::ReadBack => match record.is_live(now) {
                    true => found(Record {
                        version,
                        ..record.clone()
                    }),
                    false => OpResult::NotFound,
                },
                Then::Answer(result) => (**result).clone(),
                Then::Batch(answers) => super::batch::answer(answers, Some((version, acked))),
            };
            cx.io.answer(r, result);
            // Acknowledged: the watchers of its keys hear of it.
            if let Some(OwnerOp::Write { record, others, .. }) = self.owners.get(&id)
                && self.watches.watching(&record.key_id)
            {
                let written: Vec<Record> = std::iter::once(record).chain(others).cloned().collect();
                self.watch_wake(cx, &written);
            }
        }
        if left == 0 {
            self.end_owner(cx, id);
        }
    }

    /// Is a write our vnode `vnode` decided in a term below `term` over
    /// `range` still under way? A term that followed another of ours
    /// without a break (a config change) pushes our store to its config
    /// only after those ended: the push must carry them, since once it is
    /// done the next holder no longer reads the older config.
    pub(super) fn old_writes_in_flight(&self, vnode: &NodeRef, range: KeyRange, term: u64) -> bool {
        self.owners.values().any(|op| match op {
            OwnerOp::Write {
                vnode: v,
                record,
                fence,
                ..
            } => v == vnode && *fence < term && range.contains(&record.key_id),
            _ => false,
        })
    }

    /// Parts of our holds a joiner took are released once the writes we
    /// decided there ended (while they run, our lease there keeps others
    /// out, so their quorums count). Cheap when nothing is given up; call
    /// after the authority machine ran.
    pub fn check_releases(&mut self, cx: &mut Cx<'_>) {
        if !cx.config.authority {
            return;
        }
        for (vnode, range) in cx.authority.releasing() {
            if !self.old_writes_in_flight(&vnode, range, u64::MAX) {
                let acx = &mut crate::authority::ACx {
                    config: cx.config,
                    ring: cx.ring,
                    io: cx.io,
                };
                cx.authority.drained(acx, &vnode, range);
            }
        }
    }

    /// A copy refused write `id` for a higher `term`: its vnode was deposed
    /// there (the write cannot reach its quorum now; the answer follows
    /// from `write_answer`).
    pub(super) fn write_fenced(&mut self, cx: &mut Cx<'_>, now: Time, id: u64, term: u64) {
        if let Some(OwnerOp::Write { vnode, record, .. }) = self.owners.get(&id) {
            cx.authority.deposed(vnode, &record.key_id, term, now);
        }
    }

    /// The owner's own store could not write `id` (a full disk, an I/O
    /// error): the write fails with `StoreFailed` at once, whatever the
    /// replicas say — an owner that cannot hold its keys cannot vouch for
    /// them.
    pub(super) fn owner_store_failed(&mut self, cx: &mut Cx<'_>, id: u64) {
        let Some(OwnerOp::Write {
            reply,
            deadline,
            vnode,
            record,
            others,
            unacked,
            acked,
            ..
        }) = self.owners.remove(&id)
        else {
            return;
        };
        self.deadlines.remove(&(deadline, Deadline::Owner(id)));
        let unanswered = self.forget_replica_reqs(id);
        if unacked {
            for r in std::iter::once(&record).chain(others.iter()) {
                settle(&mut self.unacked, &r.key);
            }
            // No copy holds it — ours failed, and every replica asked
            // (if any) refused it — so there is nothing to fence: the
            // term goes on (a node alone on a full disk keeps serving
            // reads). Otherwise some replica may hold it.
            if acked > 0 || unanswered {
                self.write_failed(cx, &vnode, &record);
            }
        }
        cx.io.counting.error("kv_store_failed");
        if let Some(r) = reply {
            cx.io.answer(r, OpResult::StoreFailed);
        }
    }

    /// Some copy of write `id` holds `newer`, a newer version: version the
    /// write again above everything seen and start over (or fail the write
    /// when out of attempts or time). A restored record is not versioned
    /// again: the newer copy wins, and the restore answers so.
    fn rewrite(&mut self, cx: &mut Cx<'_>, now: Time, id: u64, newer: Version) {
        let Some(OwnerOp::Write {
            reply,
            then,
            vnode,
            mut record,
            mut others,
            attempt,
            deadline,
            need,
            unacked,
            ..
        }) = self.owners.remove(&id)
        else {
            return;
        };
        self.deadlines.remove(&(deadline, Deadline::Owner(id)));
        self.forget_replica_reqs(id);
        if unacked {
            for r in std::iter::once(&record).chain(others.iter()) {
                settle(&mut self.unacked, &r.key);
            }
        }
        let gives_up = matches!(then, Then::Restored(_))
            || attempt >= MAX_WRITE_ATTEMPTS
            || now >= deadline
            || decider_term(cx, &vnode, &record.key_id, now).is_none_or(|t| t < newer.term);
        if gives_up && unacked {
            // Not acknowledged, and maybe on some copies: see `write_failed`.
            self.write_failed(cx, &vnode, &record);
        }
        if let Then::Restored(_) = then {
            if let Some(r) = reply {
                let current = Some(newer);
                cx.io.answer(r, OpResult::PreconditionFailed { current });
            }
            return;
        }
        cx.io.counting.counters.write_rewrites += 1;
        // Out of attempts or time — or a copy holds a newer term's record:
        // we were deposed there. The write is not acknowledged, and may or
        // may not stay.
        let term = decider_term(cx, &vnode, &record.key_id, now).filter(|t| *t >= newer.term);
        let Some(term) = term.filter(|_| attempt < MAX_WRITE_ATTEMPTS && now < deadline) else {
            if let Some(r) = reply {
                let result = OpResult::QuorumFailed {
                    acked: 0,
                    needed: need,
                };
                cx.io.answer(r, result);
            }
            return;
        };
        let version = Version {
            term,
            hlc: self.hlc.tick(now),
            node: vnode.id,
        };
        for r in std::iter::once(&mut record).chain(others.iter_mut()) {
            r.ops.reversioned(r.version, version);
            r.version = version;
        }
        let records = (record, others);
        let next = Attempt {
            number: attempt + 1,
            deadline,
        };
        self.write_attempt(cx, now, vnode, records, (reply, then), next);
    }

    /// A read answer for read `id`: our copy (`from` is `None`) or a
    /// replica's; `failed`: our store could not read (that copy does not
    /// count as an answer).
    pub(super) fn read_answer(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        (from, record): (Option<NodeRef>, Option<Record>),
        failed: bool,
    ) {
        let window = cx.config.handoff_window;
        let recently_grew = self
            .range_grew_at
            .is_some_and(|t| now.saturating_since(t) < window);
        let Some(OwnerOp::Read {
            best,
            local,
            copies,
            need,
            answered,
            outstanding,
            asked_replicas,
            why,
            vnode,
            failed: read_failed,
            quorums,
            heard,
            ..
        }) = self.owners.get_mut(&id)
        else {
            return;
        };
        match from {
            None => *local = record.as_ref().map(|r| r.version),
            Some(t) => copies.push((t, record.as_ref().map(|r| r.version))),
        }
        if !failed {
            heard.push(from.map_or(cx.ring.addr(), |t| t.addr));
        }
        *read_failed |= failed && from.is_none();
        if !failed {
            *answered += 1;
        }
        *best = newest(best.take(), record);
        *outstanding = outstanding.saturating_sub(1);
        if *asked_replicas {
            let caught_up = quorums_met(quorums, heard);
            if (*answered >= *need && caught_up) || *outstanding == 0 {
                self.finish_read(cx, now, id);
            }
            return;
        }
        if cx.config.authority {
            // The term's catch-up (above) replaces the handoff window.
            self.finish_read(cx, now, id);
            return;
        }
        // Our range grew recently: our copy may be missing (the handoff is
        // still on its way) or stale (we were down and missed writes). Ask
        // the replicas too; the newest version wins. Likewise while we
        // know no predecessor (`unsure`, or a range not known yet), hit or
        // miss: a node that just joined has not heard from its
        // predecessor, and the write it missed sits on its successor — the
        // previous owner, which acknowledged it alone and is still handing
        // the range over; a node that just restarted holds what it had
        // before it went down, and the writes it missed meanwhile are on
        // the replicas (its range is unknown until its first notify, so
        // `range_grew` has not fired yet).
        let unsure = matches!(why, ReadFor::MaybeGet);
        let range_unknown = cx.ring.range_of(vnode).is_none();
        if recently_grew || unsure || range_unknown {
            let targets = cx.ring.replica_targets(vnode, cx.config.replicas);
            if !targets.is_empty() {
                // Every copy that answers in time counts; the read waits
                // for all of them (or its deadline).
                self.ask_replicas(cx, now, id, Consistency::All);
                return;
            }
        }
        self.finish_read(cx, now, id);
    }

    /// A read has its answers (or ran out of time): repair the stale
    /// copies, then answer the get, or decide the write that read.
    fn finish_read(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        let Some(OwnerOp::Read {
            reply,
            vnode,
            key,
            best,
            local,
            copies,
            need,
            answered,
            why,
            outstanding,
            asked_replicas,
            quorums,
            heard,
            failed,
            deadline,
            answer_by,
        }) = self.owners.remove(&id)
        else {
            return;
        };
        self.deadlines.remove(&(deadline, Deadline::Owner(id)));
        if outstanding > 0 && asked_replicas {
            self.forget_replica_reqs(id);
        }
        // A term still catching up that did not hear from a majority of
        // the previous configs, or a lease that ran out while we read:
        // nothing read here may be answered or decided on.
        let key_id = Id::of_key(&key);
        let unsure = !quorums_met(&quorums, &heard)
            || (cx.config.authority && cx.authority.lease(&vnode, &key_id, now).is_err());
        if unsure {
            match why {
                ReadFor::Batch(b) => self.batch_read(cx, now, b, key, Err(not_ready(cx))),
                ReadFor::Write(_) => {
                    cx.io.answer(reply, not_ready(cx));
                    self.release_key(cx, now, &key);
                }
                _ => cx.io.answer(reply, not_ready(cx)),
            }
            return;
        }
        if let Some(r) = &best {
            self.repair(cx, vnode, r, local, &copies);
        }
        match why {
            ReadFor::Batch(b) => {
                let read = if failed {
                    cx.io.counting.error("kv_store_failed");
                    Err(OpResult::StoreFailed)
                } else {
                    Ok(best)
                };
                self.batch_read(cx, now, b, key, read);
            }
            ReadFor::Write(named) => {
                if failed {
                    // A write decided on a read that failed could create
                    // what exists, or lose an increment.
                    cx.io.counting.error("kv_store_failed");
                    cx.io.answer(reply, OpResult::StoreFailed);
                } else {
                    let at = (vnode, key_id, key.clone());
                    let current = (best, true);
                    let asker = Asker { reply, answer_by };
                    self.decide_write(cx, now, at, *named, current, asker);
                }
                self.release_key(cx, now, &key);
            }
            ReadFor::Get(c) if c != Consistency::Owner && answered < need => {
                // Fewer copies answered than the consistency asks.
                let result = OpResult::QuorumFailed {
                    acked: answered,
                    needed: need,
                };
                cx.io.answer(reply, result);
            }
            ReadFor::Get(_) | ReadFor::MaybeGet
                if best
                    .as_ref()
                    .is_some_and(|b| self.needs_write_back(cx, now, &vnode, b)) =>
            {
                // Through the write path, holding the key: a write-back
                // must not overwrite a write decided since this read.
                self.write(
                    cx,
                    now,
                    vnode,
                    (key_id, key),
                    (Intent::WriteBack, None),
                    reply,
                );
            }
            ReadFor::Get(_) | ReadFor::MaybeGet => {
                let found_any = best.is_some();
                let unsure = matches!(why, ReadFor::MaybeGet);
                let result = match best.filter(|r| r.is_live(now)) {
                    Some(r) => found(r),
                    // Not ours for sure: nothing found proves nothing.
                    None if unsure && !found_any => OpResult::WrongOwner,
                    None => OpResult::NotFound,
                };
                cx.io.answer(reply, result);
            }
        }
    }

    /// Under authority: is `record` (what a read of ours found) not known
    /// to be on a quorum? It is when a term before ours wrote it (a write
    /// that failed then may sit on a few copies only, ours among them) or
    /// a write of ours to its key has not reached its quorum yet. A lease
    /// read must not answer it as it is.
    pub(super) fn needs_write_back(
        &self,
        cx: &Cx<'_>,
        now: Time,
        vnode: &NodeRef,
        record: &Record,
    ) -> bool {
        cx.config.authority
            && (self.unacked.contains_key(&record.key)
                || decider_term(cx, vnode, &record.key_id, now)
                    .is_some_and(|t| record.version.term < t))
    }

    /// Writes `record` again in our term to a quorum, then answers as
    /// `then` says: what a read found becomes what a quorum holds before
    /// anyone is told of it (ABD's write-back; Raft's new leader
    /// committing its predecessors' entries). Only the version's term
    /// changes: the write keeps its identity (hlc and deciding node), so
    /// an `If-Match` on the version read before still matches — the value
    /// did not change — while the raised term puts the record above every
    /// copy an older term left.
    fn write_back(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        mut record: Record,
        (reply, then): (ReplyTo, Then),
        answer_by: Time,
    ) {
        let Some(term) = decider_term(cx, &vnode, &record.key_id, now) else {
            cx.io.answer(reply, not_ready(cx));
            return;
        };
        self.hlc.observe(record.version.hlc);
        record.version.term = term;
        cx.io.counting.counters.write_backs += 1;
        let records = (record, Vec::new());
        let attempt = Attempt::first(answer_by);
        self.write_attempt(cx, now, vnode, records, (Some(reply), then), attempt);
    }

    /// Brings copies older than `best` up to it: our own (`local` is its
    /// version) and each replica's in `copies`. Nothing waits for these.
    fn repair(
        &mut self,
        cx: &mut Cx<'_>,
        vnode: NodeRef,
        best: &Record,
        local: Option<Version>,
        copies: &[(NodeRef, Option<Version>)],
    ) {
        let stale = |v: Option<Version>| v.is_none_or(|v| v < best.version);
        if stale(local) && self.hot.latest(&best.key).is_none() {
            let records = vec![best.clone()];
            self.store_op(cx, StoreKind::Apply { records }, StoreWait::Repair);
        }
        for (t, v) in copies {
            if stale(*v) {
                cx.io.counting.counters.read_repairs += 1;
                // An acknowledgement of this request matches nothing and
                // is dropped.
                let req = cx.io.next();
                let records = vec![best.clone()];
                cx.io.send(
                    vnode,
                    *t,
                    Message::Replicate {
                        req,
                        records,
                        fence: 0,
                    },
                );
            }
        }
    }

    /// A write of ours ended without its quorum (`unacked`: still counted
    /// as in flight). Under authority it may sit on some copies, ours
    /// included, without being on a quorum: nothing may read it from our
    /// copy as if it were. The vnode gives its term up and prepares a new
    /// one, in which every record of the range is older than the term —
    /// and a read of such a record writes it back to a quorum first.
    fn write_failed(&mut self, cx: &mut Cx<'_>, vnode: &NodeRef, record: &Record) {
        if cx.config.authority {
            cx.io.counting.error("kv_write_failed_new_term");
            cx.authority
                .deposed(vnode, &record.key_id, record.version.term, Time::ZERO);
        }
    }

    /// Owner operation `id` reached its deadline.
    pub(super) fn owner_expired(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
        match self.owners.get(&id) {
            Some(OwnerOp::Read { .. }) => self.finish_read(cx, now, id),
            Some(OwnerOp::Write { .. }) => self.end_owner(cx, id),
            None => {}
        }
    }

    /// Forgets write `id`; if it never reached its quorum, says so.
    fn end_owner(&mut self, cx: &mut Cx<'_>, id: u64) {
        let Some(op) = self.owners.remove(&id) else {
            return;
        };
        if let OwnerOp::Write {
            reply,
            need,
            acked,
            deadline,
            vnode,
            record,
            others,
            unacked,
            ..
        } = op
        {
            if unacked {
                for r in std::iter::once(&record).chain(others.iter()) {
                    settle(&mut self.unacked, &r.key);
                }
                self.write_failed(cx, &vnode, &record);
            }
            if reply.is_none() && (acked as usize) < cx.config.replicas {
                cx.io.counting.counters.writes_under_replicated += 1;
            }
            self.deadlines.remove(&(deadline, Deadline::Owner(id)));
            self.forget_replica_reqs(id);
            if let Some(r) = reply {
                cx.io.answer(
                    r,
                    OpResult::QuorumFailed {
                        acked,
                        needed: need,
                    },
                );
            }
        }
    }
}

/// What a write that answers as `then` says, for its entry in the
/// record's log (see [`OpLog`]).
fn answered(then: &Then) -> Answered {
    match then {
        Then::Stored | Then::Restored(_) => Answered::Stored,
        Then::Updated(n) => Answered::Updated(*n),
        Then::Replaced(_) | Then::Written | Then::ReadBack | Then::Answer(_) | Then::Batch(_) => {
            Answered::Unrepeatable
        }
    }
}

/// The answer to a retry whose write the record's log holds (`done`):
/// what the write answered then, acknowledged by the quorum our lease's
/// config needs (the caller writes the record back first when it is not
/// known to be on one).
fn recalled(cx: &Cx<'_>, vnode: &NodeRef, key_id: &Id, now: Time, done: &Done) -> OpResult {
    let acked = match cx.authority.lease(vnode, key_id, now) {
        Ok(l) => crate::authority::majority(1 + l.replicas.len()) as u32,
        Err(_) => 1,
    };
    let version = done.version;
    match done.answered {
        Answered::Stored => OpResult::Stored { version, acked },
        Answered::Updated(number) => OpResult::Updated {
            version,
            acked,
            number,
        },
        Answered::Unrepeatable => OpResult::OutcomeUnknown,
    }
}

/// A `ReplicaRead` of operation `id` to `target`.
fn read_req(id: u64, target: NodeRef) -> super::outgoing::ReplicaReq {
    super::outgoing::ReplicaReq {
        target,
        ops: vec![(id, 0, 0)],
    }
}

/// `record` and `others`, as one batch of records to apply.
fn all_of(record: &Record, others: &[Record]) -> Vec<Record> {
    let mut all = Vec::with_capacity(1 + others.len());
    all.push(record.clone());
    all.extend_from_slice(others);
    all
}

/// What a get answers for `r`, a live record: its value, or `WrongType`
/// for a collection's header (its elements are other records).
fn found(r: Record) -> OpResult {
    match r.kind {
        crate::Kind::String => OpResult::Found {
            value: r.value.unwrap_or_default(),
            version: r.version,
            expires: r.expires,
        },
        _ => OpResult::WrongType,
    }
}
