//! The owner's writes: each versioned above everything seen (a
//! conditional write or update decided against the current record, one
//! at a time per key), stored and replicated, answered after `W`
//! durable copies — or versioned again when a copy holds a newer one.

use super::*;

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
    pub(super) fn begin_write(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        key: Vec<u8>,
        w: Waiting,
    ) -> bool {
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
    pub(in crate::store) fn release_key(&mut self, cx: &mut Cx<'_>, now: Time, key: &[u8]) {
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

    /// Draining before a leave (or gone): a write could land behind the
    /// transfer's read position and never reach the successor. The
    /// coordinator tries again; after our farewell it finds the successor.
    pub(in crate::store) fn refuses_writes(&self) -> bool {
        self.leaving.is_some() || self.gone_from_ring()
    }

    /// Decides `intent` against `current` and, if it writes, versions the
    /// record above everything seen and starts the write. `known`: the
    /// current record was read (so a `None` means there is none). A
    /// retry (see `name`) found in the record's log is answered as it was
    /// the first time; one the log cannot place is `OutcomeUnknown`.
    pub(super) fn decide_write(
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
    pub(in crate::store) fn write_attempt(
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

    /// The write quorum `W` of `vnode`'s writes when `copies` processes can
    /// hold one: `--write-quorum` (default a majority of `R`), counted
    /// against `R`. `Err(W)` if fewer than `W` can, unless the ring really
    /// has no more processes (its successor list came back round to us):
    /// then as many copies as there are.
    pub(super) fn write_quorum_for(
        &self,
        cx: &Cx<'_>,
        vnode: &NodeRef,
        copies: usize,
    ) -> Result<u32, u32> {
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
    pub(in crate::store) fn write_answer(
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
                Then::Batch(answers) => {
                    crate::store::batch::answer(answers, Some((version, acked)))
                }
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
    pub(in crate::store) fn old_writes_in_flight(
        &self,
        vnode: &NodeRef,
        range: KeyRange,
        term: u64,
    ) -> bool {
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
    pub(in crate::store) fn write_fenced(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        term: u64,
    ) {
        if let Some(OwnerOp::Write { vnode, record, .. }) = self.owners.get(&id) {
            cx.authority.deposed(vnode, &record.key_id, term, now);
        }
    }

    /// The owner's own store could not write `id` (a full disk, an I/O
    /// error): the write fails with `StoreFailed` at once, whatever the
    /// replicas say — an owner that cannot hold its keys cannot vouch for
    /// them.
    pub(in crate::store) fn owner_store_failed(&mut self, cx: &mut Cx<'_>, id: u64) {
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
    pub(super) fn rewrite(&mut self, cx: &mut Cx<'_>, now: Time, id: u64, newer: Version) {
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
}
