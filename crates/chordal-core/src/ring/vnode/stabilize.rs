//! Joining and keeping the ring right: the paper's `join`, `stabilize`,
//! `notify`, `fix_fingers` and `check_predecessor` (Fig. 6), plus the hints
//! that make healing faster than periodic rounds, and graceful leave.

use super::*;

impl VNode {
    // ----- join -----------------------------------------------------------

    pub(super) fn try_join(&mut self, now: Time) {
        let Phase::Joining { seeds, attempt } = &self.phase else {
            return;
        };
        if *attempt >= seeds.len() * self.config.join_rounds.max(1) {
            self.phase = Phase::Idle;
            self.events.push_back(Event::JoinFailed {
                vnode: self.me().id,
            });
            return;
        }
        let seed = seeds[attempt % seeds.len()];
        let me = self.me();
        let id = self.internal_lookup_id();
        self.lookups.insert(
            id,
            Lookup {
                key: me.id,
                deadline: now + self.config.lookup_timeout,
                purpose: Purpose::Join,
                iterative: None,
            },
        );
        self.deadlines
            .insert((now + self.config.lookup_timeout, Deadline::Lookup(id)));
        let target = Target {
            addr: seed,
            id: None,
        };
        let kind = PendingKind::Forward {
            origin: me,
            lookup: id,
            key: me.id,
            hops: 0,
        };
        self.request(now, target, kind, |req| Message::FindSuccessor {
            req,
            origin: me,
            lookup: id,
            key: me.id,
            hops: 0,
            claim: OwnerClaim::Route,
        });
    }

    /// The current join attempt failed: drop it and try the next seed, or,
    /// when every seed failed this round, the first again after a pause
    /// (`join_backoff`, doubled per round up to `lookup_timeout`).
    pub(super) fn next_seed(&mut self, now: Time) {
        let joins: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.purpose == Purpose::Join)
            .map(|(id, _)| *id)
            .collect();
        for id in joins {
            self.remove_lookup(id);
        }
        let Phase::Joining { seeds, attempt } = &mut self.phase else {
            return;
        };
        *attempt += 1;
        let rounds = *attempt / seeds.len();
        let round_over = *attempt % seeds.len() == 0;
        if round_over && rounds < self.config.join_rounds.max(1) {
            let backoff = self
                .config
                .join_backoff
                .saturating_mul(1 << (rounds - 1).min(16))
                .min(self.config.lookup_timeout);
            self.deadlines.insert((now + backoff, Deadline::JoinRound));
        } else {
            self.try_join(now);
        }
    }

    pub(super) fn finish_join(&mut self, now: Time, successors: Vec<NodeRef>) {
        let me = self.me();
        let mut rest = successors.into_iter().filter(|n| n.id != me.id);
        let Some(first) = rest.next() else {
            self.next_seed(now);
            return;
        };
        let rest: Vec<NodeRef> = rest.collect();
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        self.table.set_successors(first, &rest);
        self.phase = Phase::Joined;
        self.events.push_back(Event::Joined {
            vnode: me.id,
            successor: first,
        });
        self.after_change(now, old_succ, old_pred);
        self.arm_all_timers(now);
        // Notify the successor and learn its list right away.
        self.timers[Timer::Stabilize as usize] = Some(now);
    }

    // ----- stabilization ---------------------------------------------------

    pub(super) fn fire(&mut self, now: Time, t: Timer) {
        if self.phase != Phase::Joined || self.busy(t) {
            return;
        }
        match t {
            Timer::Stabilize => self.stabilize(now),
            Timer::FixFingers => self.fix_fingers(now),
            Timer::CheckPredecessor => self.check_predecessor(now, false),
        }
    }

    /// Paper Fig. 6 `stabilize`: ask the successor for its predecessor.
    /// Also probes, now and then, a peer dropped as failed (`merge.rs`).
    pub(super) fn stabilize(&mut self, now: Time) {
        self.stabilize_rounds += 1;
        self.maybe_probe_lost_peer(now);
        let me = self.me();
        if self.table.successor() == me {
            // Alone, but someone notified us: they are our successor too.
            match self.table.predecessor() {
                Some(p) => {
                    let (old_succ, old_pred) = (me, self.table.predecessor());
                    self.table.set_successors(p, &[]);
                    self.after_change(now, old_succ, old_pred);
                }
                None => return,
            }
        }
        let succ = self.table.successor();
        self.request(now, succ.into(), PendingKind::Stabilize, |req| {
            Message::GetNeighbors { req }
        });
    }

    pub(super) fn on_stabilize_reply(
        &mut self,
        now: Time,
        from: NodeRef,
        predecessor: Option<NodeRef>,
        successors: Vec<NodeRef>,
    ) {
        let me = self.me();
        if from != self.table.successor() {
            return; // the successor changed meanwhile; the next round asks the new one
        }
        let (old_succ, old_pred) = (from, self.table.predecessor());
        let x =
            predecessor.filter(|x| x.id.in_open(&me.id, &from.id) && !self.failed_recently(x, now));
        match x {
            Some(x) => {
                let mut rest = vec![from];
                rest.extend(successors);
                self.table.set_successors(x, &rest);
            }
            None => {
                self.table.set_successors(from, &successors);
            }
        }
        let succ = self.table.successor();
        if succ != me {
            self.send(succ, Message::Notify);
        }
        self.after_change(now, old_succ, old_pred);
    }

    /// Paper Fig. 6 `notify`: `from` thinks it might be our predecessor.
    pub(super) fn on_notify(&mut self, now: Time, from: NodeRef) {
        let me = self.me();
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        let accept = match old_pred {
            None => true,
            Some(p) => p == from || from.id.in_open(&p.id, &me.id),
        };
        if !accept {
            // Someone outside (pred, me) notifies us: our predecessor may be
            // dead. Check it now rather than at the next round.
            if !self.busy(Timer::CheckPredecessor) {
                self.check_predecessor(now, true);
            }
            return;
        }
        self.table.set_predecessor(Some(from));
        if old_succ == me {
            self.table.set_successors(from, &[]);
        }
        if let Some(p) = old_pred.filter(|p| *p != from && *p != me) {
            self.send(p, Message::SuccessorHint { candidate: from });
        }
        self.after_change(now, old_succ, old_pred);
    }

    pub(super) fn on_successor_hint(&mut self, now: Time, candidate: NodeRef) {
        let me = self.me();
        let succ = self.table.successor();
        if candidate.id.in_open(&me.id, &succ.id) && !self.failed_recently(&candidate, now) {
            let old_pred = self.table.predecessor();
            self.table.push_successor(candidate);
            self.after_change(now, succ, old_pred);
        }
    }

    /// Paper Fig. 6 `check_predecessor`: ping it; no answer clears it.
    /// Unless `force`d, a predecessor heard from within the last interval
    /// (it notifies us every stabilize round) is not pinged.
    pub(super) fn check_predecessor(&mut self, now: Time, force: bool) {
        let recently = self
            .heard_from_pred
            .is_some_and(|t| now.saturating_since(t) < self.config.check_predecessor_interval);
        if recently && !force {
            return;
        }
        if let Some(p) = self.table.predecessor() {
            self.request(now, p.into(), PendingKind::CheckPredecessor, |req| {
                Message::Ping { req }
            });
        }
    }

    /// Paper Fig. 6 `fix_fingers`: refresh the next finger that our
    /// successor does not cover; fingers within `(me, successor]` are set
    /// without a lookup.
    pub(super) fn fix_fingers(&mut self, now: Time) {
        let succ = self.table.successor();
        for _ in 0..ID_BITS {
            let i = self.next_finger;
            let start = self.table.finger_start(i);
            self.advance_finger(i, i + 1);
            if self.table.successor_owns(&start) {
                self.fingers_changed |= self.table.set_finger(i, succ);
                continue;
            }
            let id = self.internal_lookup_id();
            let purpose = Purpose::FixFinger(i);
            self.begin_lookup_via(now, id, start, LookupMode::Recursive, purpose, None);
            return;
        }
    }

    pub(super) fn on_finger_found(&mut self, i: usize, owner: NodeRef) {
        let me = self.me().id;
        self.fingers_changed |= self.table.set_finger(i, owner);
        // Later fingers whose start also falls before `owner` share it.
        let mut j = i + 1;
        while j < ID_BITS && self.table.finger_start(j).in_open_closed(&me, &owner.id) {
            self.fingers_changed |= self.table.set_finger(j, owner);
            j += 1;
        }
        self.advance_finger(i, j);
    }

    /// Moves `fix_fingers` on from finger `from` to finger `to` (mod 160).
    /// At the end of a cycle, slows down if nothing changed in it.
    pub(super) fn advance_finger(&mut self, from: usize, to: usize) {
        self.next_finger = to % ID_BITS;
        if self.next_finger <= from {
            self.finger_backoff = if self.fingers_changed {
                1
            } else {
                (self.finger_backoff * 2).min(self.config.max_finger_backoff.max(1))
            };
            self.fingers_changed = false;
        }
    }

    pub(super) fn on_leave(
        &mut self,
        now: Time,
        from: NodeRef,
        predecessor: Option<NodeRef>,
        successors: Vec<NodeRef>,
    ) {
        let me = self.me();
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        self.table.remove(|n| *n == from);
        self.remember_failure(from, now);
        if old_pred == Some(from) {
            self.table.set_predecessor(
                self.sanitize(predecessor.into_iter().collect())
                    .first()
                    .copied(),
            );
        }
        if old_succ == from {
            let list: Vec<NodeRef> = self
                .sanitize(successors)
                .into_iter()
                .filter(|n| *n != from && n.id != me.id)
                .collect();
            if let Some((first, rest)) = list.split_first() {
                self.table.set_successors(*first, rest);
            }
        }
        self.events.push_back(Event::PeerFailed {
            vnode: me.id,
            peer: from,
            left: true,
        });
        self.after_change(now, old_succ, old_pred);
    }
}
