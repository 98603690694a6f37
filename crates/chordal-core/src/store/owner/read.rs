//! The owner's reads: one copy or a quorum, the replicas asked when
//! the key may have been handed to us just now, and stale copies
//! repaired (a value decided on a copy not known to be on a quorum is
//! written back first).

use super::*;

impl Store {
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

    /// Reads `key` for `why`: our copy, and for a quorum read the replicas'
    /// at the same time.
    pub(in crate::store) fn start_read(
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
    pub(super) fn catch_up(&mut self, cx: &mut Cx<'_>, id: u64, configs: Vec<Vec<NodeRef>>) {
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
    pub(super) fn ask_replicas(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        id: u64,
        consistency: Consistency,
    ) {
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

    /// A read answer for read `id`: our copy (`from` is `None`) or a
    /// replica's; `failed`: our store could not read (that copy does not
    /// count as an answer).
    pub(in crate::store) fn read_answer(
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
    pub(super) fn finish_read(&mut self, cx: &mut Cx<'_>, now: Time, id: u64) {
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
    pub(in crate::store) fn needs_write_back(
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
    pub(super) fn write_back(
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
    pub(super) fn repair(
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
}
