//! Inside a node: each message handed to the machine it is for, each
//! piece of work one machine hands back routed to the next (`flush`),
//! an operation served by the vnode that owns its key (`serve`), and
//! what a ring event means for the store, pub/sub and authority.

use super::*;

impl Node {
    /// Hands a message from a peer (or one of our vnodes) to the machine
    /// its [`Family`](crate::Family) names.
    pub(super) fn deliver(&mut self, now: Time, env: Envelope) {
        use crate::Family;
        match env.msg.family() {
            Family::Ring | Family::Lookup | Family::Members => {
                if let Err(not_here) = self.ring.handle_message(now, env) {
                    match not_here {
                        Some(reply) => self.out.push_back(*reply),
                        None => self.io.counting.error("message_for_unknown_vnode"),
                    }
                }
            }
            Family::Request => self.deliver_request(now, env),
            Family::Store => self.store.handle_message(cx!(self), now, env),
            Family::Authority => self.authority.handle_message(acx!(self), now, env),
        }
    }

    /// A message of the request family: an operation for one of our
    /// vnodes as owner, or an owner's answer to one of our operations.
    fn deliver_request(&mut self, now: Time, env: Envelope) {
        match env.msg {
            Message::Request {
                req,
                op,
                op_id,
                timeout_ms,
                retry,
            } => {
                let in_flight = self.in_flight();
                self.requests.handle_request(
                    cx!(self),
                    now,
                    (env.from, env.to),
                    (req, op, op_id, timeout_ms, retry),
                    in_flight,
                );
            }
            Message::Reply { req, result, range } => {
                self.requests
                    .handle_reply(cx!(self), now, env.from, req, result, range)
            }
            other => debug_assert!(false, "{} is not of the request family", other.kind()),
        }
    }

    /// An operation for our vnode `vnode` to serve: checked for ownership
    /// and size, then handed to the machine that serves it.
    pub(super) fn serve(
        &mut self,
        now: Time,
        Serve {
            vnode,
            op,
            reply,
            name,
        }: Serve,
    ) {
        let owns = match crate::request::admit(&self.config, &self.ring, &vnode, &op) {
            Ok(owns) => owns,
            Err(refusal) => {
                self.requests.answer(cx!(self), now, reply, refusal);
                return;
            }
        };
        let key_id = op.key_id();
        if self.config.authority
            && op.is_store()
            && self.authority.lease(&vnode, &key_id, now).is_err()
        {
            // Chord says ours, but no term says so yet: decide nothing.
            self.io.counting.error("kv_not_ready");
            let refusal = if self.authority.saves_failing() {
                OpResult::StoreFailed
            } else {
                OpResult::NotReady
            };
            self.requests.answer(cx!(self), now, reply, refusal);
            return;
        }
        match op {
            Operation::Put { key, value, opts } => {
                let intent = Intent::Put { value, opts };
                self.store
                    .write(cx!(self), now, vnode, (key_id, key), (intent, name), reply)
            }
            Operation::Get { key, consistency } => {
                let unsure = owns == Ownership::Maybe;
                let at = (vnode, (key_id, key));
                self.store
                    .get(cx!(self), now, at, (consistency, unsure), reply)
            }
            Operation::Delete { key, opts } => {
                let intent = Intent::Delete { opts };
                self.store
                    .write(cx!(self), now, vnode, (key_id, key), (intent, name), reply)
            }
            Operation::Update { key, change } => {
                let intent = Intent::Update(change);
                self.store
                    .write(cx!(self), now, vnode, (key_id, key), (intent, name), reply)
            }
            Operation::Batch {
                steps,
                all_or_nothing,
            } => {
                if Operation::one_owner(&steps) {
                    let batch = (steps, all_or_nothing);
                    self.store
                        .batch(cx!(self), now, (vnode, key_id), batch, name, reply)
                } else {
                    self.requests
                        .answer(cx!(self), now, reply, OpResult::CrossSlot)
                }
            }
            Operation::Collection { key, kind, op } => {
                let what = (key, kind, op);
                self.store
                    .collection(cx!(self), now, (vnode, key_id), what, name, reply)
            }
            Operation::Scan { start, end, limit } => {
                self.store
                    .scan(cx!(self), now, vnode, (start, end, limit), reply)
            }
            Operation::Watch { key, after, group } => {
                self.store
                    .watch(cx!(self), now, vnode, (key_id, key), (after, group), reply)
            }
            Operation::Deliver {
                key,
                payload,
                want_reply,
            } => self
                .messaging
                .deliver(cx!(self), now, reply, Some(key), payload, want_reply),
            Operation::Direct {
                payload,
                want_reply,
            } => self
                .messaging
                .deliver(cx!(self), now, reply, None, payload, want_reply),
            Operation::Subscribe { topic } => {
                self.pubsub.topic_subscribe(cx!(self), now, reply, topic)
            }
            Operation::Unsubscribe { topic } => {
                self.pubsub.topic_unsubscribe(cx!(self), reply, topic)
            }
            Operation::Publish {
                topic,
                publications,
            } => self
                .pubsub
                .topic_publish(cx!(self), now, reply, topic, publications),
            Operation::Notify { items, missed } => {
                self.pubsub.topic_notify(cx!(self), reply, items, missed)
            }
            Operation::TopicReplica { topics } => {
                self.pubsub.topic_replica(cx!(self), now, reply, topics)
            }
        }
    }

    /// Routes what the machines handed back to one another (`Io`), until
    /// none is left. Returns whether there was any.
    pub(super) fn route_work(&mut self, now: Time) -> bool {
        let mut any = false;
        loop {
            if let Some(s) = self.io.start.pop_front() {
                let in_flight = self.in_flight();
                self.requests
                    .start(cx!(self), now, s.id, s.op, s.target, in_flight);
            } else if let Some(s) = self.io.serve.pop_front() {
                self.serve(now, s);
            } else if let Some((reply, result)) = self.io.answers.pop_front() {
                self.requests.answer(cx!(self), now, reply, result);
            } else if let Some((id, result)) = self.io.done.pop_front() {
                if let Err(e) = &result {
                    self.io.counting.error(e.kind());
                }
                if self.pubsub.claims(id) {
                    // Operations pub/sub started itself: its business, not
                    // an event.
                    self.pubsub.op_done(cx!(self), id, result);
                } else {
                    self.io.events.push_back(Event::OpDone {
                        op: OpId(id),
                        result,
                    });
                }
            } else {
                return any;
            }
            any = true;
        }
    }

    /// Moves the machines' output to our queues, delivering messages
    /// between our own virtual nodes directly, until all is quiet.
    /// Our farewell: besides our neighbours (told by the ring), every
    /// coordinator that sent us a request lately hears that we left —
    /// after our answers, on the same connection — so that a request still
    /// unanswered (we took nothing on since we began closing) goes to the
    /// next owner at once instead of ending `Timeout`.
    pub(super) fn tell_requesters_we_left(&mut self, now: Time) {
        let me = self.ring.primary().me();
        let table = self.ring.primary().table();
        let msg = Message::Leave {
            predecessor: table.predecessor(),
            successors: table.successors().to_vec(),
        };
        let since = now.saturating_sub(self.config.kv_timeout);
        for to in self.requests.recent_requesters(since) {
            self.io.send(me, to, msg.clone());
        }
    }

    pub(super) fn flush(&mut self, now: Time) {
        let mut rounds = 0;
        loop {
            // One pass: collect what the machines produced, deliver what is
            // for this process, and go round again only if that (or the
            // work it triggered) left output.
            let addr = self.ring.addr();
            let mut local: VecDeque<Envelope> = VecDeque::new();
            let out = &mut self.out;
            let events = self.ring.drain(now, |env| {
                // Most messages leave the process: straight out.
                if env.to.addr == addr {
                    local.push_back(env);
                } else {
                    out.push_back(env);
                }
            });
            let mut again = !events.is_empty();
            for e in events {
                self.ring_event(now, e);
            }
            if std::mem::take(&mut self.io.farewell) {
                let handed = self.store.handed_over().to_vec();
                self.authority.release_all(acx!(self), &handed);
                self.tell_requesters_we_left(now);
                self.ring.leave();
                again = true;
            }
            if std::mem::take(&mut self.authority_check) {
                self.authority.tick(acx!(self), now);
            }
            while let Some((bytes, then)) = self.io.saves.pop_front() {
                self.store.save_promises(cx!(self), bytes, then);
            }
            self.pubsub.check_topic_targets(cx!(self), now);
            self.store.check_sync_targets(cx!(self), now);
            self.store.check_finishing(cx!(self), now);
            self.store.check_releases(cx!(self));
            again |= self.route_work(now);
            while let Some(env) = self.io.out.pop_front() {
                if env.to.addr == addr {
                    local.push_back(env);
                } else {
                    self.out.push_back(env);
                }
            }
            // Local deliveries may change the routing tables, which the
            // target checks above must see.
            again |= !local.is_empty();
            for env in local {
                rounds += 1;
                if rounds > MAX_LOCAL_DELIVERIES {
                    self.io.counting.error("local_delivery_loop");
                    continue;
                }
                self.deliver(now, env);
            }
            if !again && !self.io.has_work() && !self.ring.has_output() {
                break;
            }
        }
    }

    /// Events of the virtual nodes: some are the other machines' business
    /// too; all go to the application.
    pub(super) fn ring_event(&mut self, now: Time, e: Event) {
        match &e {
            Event::LookupDone { result, .. } => self.io.counting.lookup_done(result),
            Event::SuccessorChanged { .. } | Event::PredecessorChanged { .. } => {
                self.io.counting.counters.routing_changes += 1
            }
            _ => {}
        }
        if matches!(
            e,
            Event::SuccessorChanged { .. }
                | Event::PredecessorChanged { .. }
                | Event::RangeChanged { .. }
                | Event::Joined { .. }
                | Event::PeerFailed { .. }
        ) {
            self.authority_check = true;
        }
        match &e {
            Event::LookupDone { lookup, result } if self.requests.owns_lookup(lookup) => {
                let result = result.clone();
                self.requests.lookup_done(cx!(self), now, *lookup, result);
                return;
            }
            Event::RangeChanged {
                vnode,
                old: Some(old),
                new,
            } if new.start != old.start && new.start.in_open(&old.start, &old.end) => {
                // Our range shrank: a new predecessor took `(old.start,
                // new.start]`. Hand it what we have there at once (we may
                // hold writes it missed while it was away).
                let (vnode, lost_start, lost_end) = (*vnode, old.start, new.start);
                self.store
                    .hand_over_lost_range(cx!(self), now, vnode, lost_start, lost_end);
                let pred = self.ring.vnode_by_id(&vnode);
                if let Some(pred) = pred.and_then(|v| v.table().predecessor()) {
                    self.pubsub
                        .hand_over_topics(cx!(self), pred, lost_start, lost_end);
                }
                self.store.sync_soon(now);
            }
            Event::RangeChanged { .. } | Event::PredecessorChanged { new: None, .. } => {
                self.store.range_grew(now);
                self.store.sync_soon(now);
            }
            Event::SuccessorChanged { .. }
            | Event::PredecessorChanged { .. }
            | Event::Joined { .. } => self.store.sync_soon(now),
            // A graceful leaver answered every request it took on before
            // its farewell (which follows those answers on the same
            // connection) and takes none on after: one still waiting never
            // reached it, and may go to the next owner — like a refusal.
            Event::PeerFailed { peer, left, .. } => {
                let (peer, left) = (*peer, *left);
                // A leave is the whole process's.
                let gone = |n: &NodeRef| match left {
                    true => n.addr == peer.addr,
                    false => *n == peer,
                };
                self.requests.peers_failed(cx!(self), now, left, gone);
                self.store.leave_transfers_to_failed(cx!(self), now, &gone);
            }
            _ => {}
        }
        self.io.events.push_back(e);
    }
}
