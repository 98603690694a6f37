//! Keeping the holds in step with the ring: one hold per interval our
//! vnodes own (`reconcile`), and each hold moved along its states on
//! time (`step`: prepares started, renewals sent, given-up parts
//! released).

use super::*;

impl Holds {
    /// Brings the holds in line with the ranges Chord gives our vnodes,
    /// then moves each along: prepares, renewals, retries.
    /// Processes in `leaving` are left out of new configs.
    pub fn reconcile(
        &mut self,
        cx: &mut ACx<'_>,
        now: Time,
        promises: &Promises,
        leaving: &BTreeMap<SocketAddr, (NodeRef, Time)>,
    ) {
        self.leaving = leaving.values().map(|(n, _)| *n).collect();
        let wanted = if self.released {
            Vec::new()
        } else {
            wanted(cx, leaving)
        };
        // A joiner took the start of a hold's interval: give that part
        // up and keep deciding for the rest in the same term (it is ours
        // as much as before), rather than stop and prepare it again.
        for h in self.holds.values_mut() {
            let kept = wanted
                .iter()
                .find(|(v, r, _)| *v == h.vnode && r.end == h.range.end && within(r, &h.range));
            if let Some((_, r, _)) = kept
                && *r != h.range
                && r.start != r.end
            {
                let lost = KeyRange {
                    start: h.range.start,
                    end: r.start,
                };
                self.releasing.push(releasing(h, lost));
                h.range = *r;
            }
        }
        // Holds no vnode of ours owns any more (or only in part, not as
        // above): give them up, once our writes there ended (as above). A
        // part still ours is prepared again below — at once, since the
        // last holder was us.
        let gone: Vec<u64> = self
            .holds
            .iter()
            .filter(|(_, h)| {
                !wanted
                    .iter()
                    .any(|(v, r, _)| *v == h.vnode && within(&h.range, r))
            })
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            if let Some(h) = self.holds.remove(&s) {
                cx.io.counting.counters.terms_released += 1;
                self.releasing.push(releasing(&h, h.range));
            }
        }
        let holds = &self.holds;
        self.reqs
            .retain(|req, s| holds.get(s).is_some_and(|h| h.awaits(*req)));
        // A new config (a successor came or went): a new term with it.
        // Make before break: a settled, caught-up term keeps deciding (with
        // its old config) while the next is prepared; the acceptors that
        // grant the next still take its writes (see
        // `Promises::fencing_term`).
        for (v, _, config) in &wanted {
            for h in self.holds.values_mut() {
                if h.vnode == *v && processes(&h.config) != processes(config) {
                    if let State::Held(held) = &h.state
                        && held.settling.is_empty()
                        && held.catch_up.is_empty()
                        && held.valid_until > now
                    {
                        h.previous = Some(Previous {
                            term: h.term,
                            replicas: std::mem::take(&mut h.replicas),
                            valid_until: held.valid_until,
                            since: held.since,
                        });
                    }
                    h.config = config.clone();
                    h.replicas = config[1..].to_vec();
                    if !matches!(h.state, State::Waiting(_)) {
                        h.state = State::Waiting(now);
                    }
                }
            }
        }
        // Parts of our ranges no hold covers yet — while we drain too: a
        // range a leaving neighbour left us must get a term without it
        // before we go, or its config would lose two members at once.
        for (v, range, config) in &wanted {
            let mut covered: RingMap<()> = RingMap::default();
            for h in self.holds.values().filter(|h| h.vnode == *v) {
                covered.set(h.range, Some(()));
            }
            for (piece, c) in covered.pieces(*range) {
                if c.is_none() {
                    self.next += 1;
                    let hold = Hold {
                        vnode: *v,
                        range: piece,
                        term: 0,
                        config: config.clone(),
                        replicas: config[1..].to_vec(),
                        above: 0,
                        wide: false,
                        state: State::Waiting(now),
                        previous: None,
                    };
                    self.holds.insert(self.next, hold);
                }
            }
        }
        self.step(cx, now, promises);
    }

    /// Moves every hold along at `now`, and sets the next tick.
    pub(super) fn step(&mut self, cx: &mut ACx<'_>, now: Time, promises: &Promises) {
        // A given-up part whose lease ran out: nothing of ours counts
        // there any more; release it now.
        self.releasing.retain(|r| {
            if r.valid_until > now {
                return true;
            }
            send_release(cx, r);
            false
        });
        let mut next: Option<Time> = None;
        let mut soonest = |t: Time| next = Some(next.map_or(t, |n: Time| n.min(t)));
        for r in &self.releasing {
            soonest(r.valid_until);
        }
        let quarter = cx.config.lease / 4;
        let serials: Vec<u64> = self.holds.keys().copied().collect();
        for s in serials {
            let Some(h) = self.holds.get_mut(&s) else {
                continue;
            };
            if h.previous.as_ref().is_some_and(|p| p.valid_until <= now) {
                h.previous = None;
            }
            match &mut h.state {
                State::Waiting(at) if *at <= now => {
                    // A leaver's handover covering the interval names the
                    // terms it knew there: prepare above them. (Its grant
                    // it gives when asked: it stays for that, see
                    // `Authority::may_go`.)
                    let floor = handed_for(&self.handovers, h.range, now)
                        .iter()
                        .flat_map(|(_, known)| known.iter().map(|k| k.term))
                        .max()
                        .unwrap_or(0);
                    let req = prepare(cx, now, h, promises, floor);
                    self.reqs.insert(req, s);
                }
                State::Waiting(at) => soonest(*at),
                State::Preparing(a) if a.deadline <= now => {
                    // Not enough answers in time: try again a little later.
                    cx.io.counting.counters.prepares_failed += 1;
                    self.reqs.remove(&a.req);
                    let retry = now + a.wait.unwrap_or(quarter).min(quarter);
                    h.state = State::Waiting(retry);
                    soonest(retry);
                }
                State::Preparing(a) => soonest(a.deadline),
                State::Held(held) => {
                    if let Some(r) = &held.renewal
                        && r.sent_at + cx.config.lease / 2 <= now
                    {
                        // Unanswered: count it lost, renew again.
                        self.reqs.remove(&r.req);
                        held.renewal = None;
                    }
                    if held.renewal.is_none() && held.renew_at <= now {
                        let req = cx.io.next();
                        let mut to = h.config.clone();
                        for c in &held.settling {
                            to.extend(c.iter().copied());
                        }
                        // The pending configs' members hear it too (their
                        // answers count for nothing): a member of one
                        // waits with a graceful leave while we may still
                        // need its copies — and once more when we do not.
                        let pending_members: Vec<NodeRef> =
                            held.pending.iter().flatten().copied().collect();
                        to.extend(std::mem::replace(
                            &mut held.pending_told,
                            distinct(&pending_members),
                        ));
                        to.extend(pending_members);
                        to.extend(self.leaving.iter().copied());
                        for n in distinct(&to) {
                            let msg = Message::Renew {
                                req,
                                range: h.range,
                                term: h.term,
                                pending: held.pending.clone(),
                                config: h.config.clone(),
                            };
                            cx.io.send(h.vnode, n, msg);
                        }
                        held.renewal = Some(Renewal {
                            req,
                            sent_at: now,
                            acked: Vec::new(),
                            finished: held.pending.is_empty() && held.catch_up.is_empty(),
                        });
                        held.renew_at = now + quarter;
                        self.reqs.insert(req, s);
                    }
                    // One renewal at a time: the next is due when this one
                    // is answered (then `renew_at`) or counted lost.
                    match &held.renewal {
                        Some(r) => soonest(r.sent_at + cx.config.lease / 2),
                        None => soonest(held.renew_at),
                    }
                }
            }
            if let State::Preparing(a) = &self.holds[&s].state {
                soonest(a.deadline);
            }
        }
        debug_assert!(
            next.is_none_or(|t| t > now),
            "authority would tick again at once"
        );
        self.tick_at = next;
    }
}

/// What our vnodes own by Chord now: each joined vnode that knows its
/// range, with the config it would hold it with — its replica targets,
/// skipping processes draining for a leave (`leaving`).
fn wanted(
    cx: &ACx<'_>,
    leaving: &BTreeMap<SocketAddr, (NodeRef, Time)>,
) -> Vec<(NodeRef, KeyRange, Vec<NodeRef>)> {
    let r = cx.config.replicas;
    cx.ring
        .owned_ranges()
        .into_iter()
        .map(|(v, range)| {
            let mut config = vec![v];
            let staying = |n: &NodeRef| !leaving.contains_key(&n.addr);
            config.extend(cx.ring.replica_targets_where(&v, r, staying));
            (v, range, config)
        })
        .collect()
}
