//! `find_successor`, recursive (forwarded hop by hop, answered straight to
//! the origin) and iterative (the origin asks each hop), both routing around
//! dead hops.

use super::*;

impl VNode {
    // ----- lookups ----------------------------------------------------------

    /// Starts lookup `id` of `key` for `purpose`: answered at once if the
    /// key is ours, else routed (a recursive one's first hop `via` if
    /// given and our successor does not own the key).
    pub(super) fn begin_lookup_via(
        &mut self,
        now: Time,
        id: u64,
        key: Id,
        mode: LookupMode,
        purpose: Purpose,
        via: Option<NodeRef>,
    ) {
        if self.phase != Phase::Joined {
            self.events.push_back(Event::LookupDone {
                lookup: LookupId(id),
                result: Err(LookupError::NotJoined),
            });
            return;
        }
        if self.lookups.len() >= self.config.max_lookups {
            if purpose == Purpose::User {
                self.events.push_back(Event::LookupDone {
                    lookup: LookupId(id),
                    result: Err(LookupError::Overloaded),
                });
            }
            return;
        }
        let deadline = now + self.config.lookup_timeout;
        let iterative = (mode == LookupMode::Iterative).then(Iterative::default);
        let ours = self.range.is_some_and(|r| r.contains(&key));
        self.lookups.insert(
            id,
            Lookup {
                key,
                deadline,
                purpose,
                iterative,
            },
        );
        self.deadlines.insert((deadline, Deadline::Lookup(id)));
        if ours {
            // The key is in our own range: we are its owner, and alive.
            self.answer_origin(now, self.me(), id, key, 0);
            return;
        }
        match mode {
            LookupMode::Iterative => {
                if self.table.successor_owns(&key) {
                    let list = self.table.successors_or_me();
                    self.confirm_owner(now, id, list, 0, Vec::new());
                } else {
                    let cands = self.table.closest_preceding_nodes(&key, ITERATIVE_KEEP);
                    if let Some(it) = self.lookups.get_mut(&id).and_then(|l| l.iterative.as_mut()) {
                        it.candidates = cands;
                    }
                    self.iterative_next(now, id);
                }
            }
            _ => match via.filter(|v| *v != self.me() && !self.table.successor_owns(&key)) {
                Some(owner) => self.forward(now, self.me(), (id, key, 0), owner, OwnerClaim::Table),
                None => self.route_recursive(now, self.me(), id, key, 0),
            },
        }
    }

    /// Paper Fig. 5 `find_successor`, recursive: answer the origin if our
    /// successor owns `key`, else forward to the closest preceding node.
    pub(super) fn route_recursive(
        &mut self,
        now: Time,
        origin: NodeRef,
        lookup: u64,
        key: Id,
        hops: u32,
    ) {
        let me = self.me();
        if hops > self.config.max_hops {
            self.fail_recursive(origin, lookup, LookupFailure::HopLimit);
            return;
        }
        if self.table.successor_owns(&key) {
            let successor = self.table.successor();
            if successor == me {
                // Alone on the ring: every key is ours.
                self.answer_origin(now, origin, lookup, key, hops);
            } else {
                // The last hop goes to the owner itself, so the answer
                // names a live node; if it is dead, `fail_request` drops
                // it and we fall through the successor list.
                let claim = OwnerClaim::Successor;
                self.forward(now, origin, (lookup, key, hops), successor, claim);
            }
            return;
        }
        let Some(next) = self.table.closest_preceding_node(&key) else {
            self.fail_recursive(origin, lookup, LookupFailure::NoRoute);
            return;
        };
        self.forward(now, origin, (lookup, key, hops), next, OwnerClaim::Route);
    }

    /// A recursive lookup of `origin` reached us with `claim`: answer it
    /// as the owner, or route on.
    pub(super) fn on_find_successor(
        &mut self,
        now: Time,
        origin: NodeRef,
        lookup: u64,
        key: Id,
        hops: u32,
        claim: OwnerClaim,
    ) {
        let ours = match claim {
            OwnerClaim::Route => false,
            // The key's predecessor vouches that nothing live lies between
            // it and us (our own predecessor pointer may still name a node
            // that died).
            OwnerClaim::Successor => true,
            // A membership table may be stale: trust our own range.
            OwnerClaim::Table => self.range.is_none_or(|r| r.contains(&key)),
        };
        if ours {
            self.answer_origin(now, origin, lookup, key, hops);
        } else {
            self.route_recursive(now, origin, lookup, key, hops);
        }
    }

    /// We own `key`: tell `origin` (lookup `lookup`) so, with our successor
    /// list behind us.
    fn answer_origin(&mut self, now: Time, origin: NodeRef, lookup: u64, key: Id, hops: u32) {
        let me = self.me();
        let mut successors = Vec::with_capacity(self.config.successors + 1);
        successors.push(me);
        successors.extend(
            self.table
                .successors_or_me()
                .into_iter()
                .filter(|n| *n != me)
                .take(self.config.successors),
        );
        if origin == me {
            self.answer_lookup(now, lookup, successors, hops, Vec::new());
        } else {
            self.send(
                origin,
                Message::FoundSuccessor {
                    lookup,
                    key,
                    successors,
                    hops,
                },
            );
        }
    }

    /// Forwards recursive lookup `lookup` of `origin` to `next`, which must
    /// acknowledge it (else it counts as failed and the lookup routes
    /// around it: see `fail_request`). A forward to the owner found by the
    /// successor list (`OwnerClaim::Successor`) is a confirmation, not a
    /// hop: `hops` counts what the paper counts, the nodes that route the
    /// lookup to the key's predecessor.
    fn forward(
        &mut self,
        now: Time,
        origin: NodeRef,
        (lookup, key, hops): (u64, Id, u32),
        next: NodeRef,
        claim: OwnerClaim,
    ) {
        let kind = PendingKind::Forward {
            origin,
            lookup,
            key,
            hops,
        };
        let sent_hops = match claim {
            OwnerClaim::Successor => hops,
            OwnerClaim::Route | OwnerClaim::Table => hops + 1,
        };
        let sent = self.request(now, next.into(), kind, |req| Message::FindSuccessor {
            req,
            origin,
            lookup,
            key,
            hops: sent_hops,
            claim,
        });
        if sent.is_none() {
            self.fail_recursive(origin, lookup, LookupFailure::NoRoute);
        }
    }

    pub(super) fn fail_recursive(&mut self, origin: NodeRef, lookup: u64, reason: LookupFailure) {
        if origin == self.me() {
            let err = match reason {
                LookupFailure::HopLimit => LookupError::HopLimit,
                LookupFailure::NoRoute => LookupError::NoRoute,
            };
            self.finish_lookup(lookup, Err(err));
        } else {
            self.send(origin, Message::LookupFailed { lookup, reason });
        }
    }

    /// Asks the best remaining candidate of iterative lookup `id`.
    pub(super) fn iterative_next(&mut self, now: Time, id: u64) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let key = l.key;
        let Some(it) = l.iterative.as_mut() else {
            return;
        };
        let next = loop {
            if it.candidates.is_empty() {
                break None;
            }
            let c = it.candidates.remove(0);
            if !it.asked.contains(&c.id) {
                break Some(c);
            }
        };
        let Some(next) = next else {
            self.finish_lookup(id, Err(LookupError::NoRoute));
            return;
        };
        it.asked.push(next.id);
        let sent = self.request(now, next.into(), PendingKind::Step { lookup: id }, |req| {
            Message::ClosestPreceding { req, key }
        });
        if sent.is_none() {
            self.finish_lookup(id, Err(LookupError::Overloaded));
        }
    }

    pub(super) fn on_step_reply(
        &mut self,
        now: Time,
        id: u64,
        from: NodeRef,
        done: bool,
        nodes: Vec<NodeRef>,
    ) {
        let me = self.me().id;
        let recently_failed = self.failed_lately(now);
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let key = l.key;
        let Some(it) = l.iterative.as_mut() else {
            return;
        };
        it.hops += 1;
        it.path.push(from);
        if done {
            let (hops, path) = (it.hops, it.path.clone());
            self.confirm_owner(now, id, nodes, hops, path);
            return;
        }
        for n in nodes {
            // Only nodes strictly closer to the key than the one that answered.
            let closer = n.id.in_open(&from.id, &key) && n.id.in_open(&me, &key);
            if closer
                && !it.asked.contains(&n.id)
                && !recently_failed.contains(&n)
                && !it.candidates.iter().any(|c| c.id == n.id)
            {
                it.candidates.push(n);
            }
        }
        it.candidates
            .sort_by_key(|c| std::cmp::Reverse(me.distance(&c.id)));
        it.candidates.truncate(ITERATIVE_KEEP);
        self.iterative_next(now, id);
    }

    /// An iterative lookup found the key's predecessor, whose successor
    /// list is `successors`: ask `successors[0]` whether it is alive and
    /// answer with it, or fall through the list (each dead entry costs a
    /// timeout, as in the paper). We ourselves need no asking.
    pub(super) fn confirm_owner(
        &mut self,
        now: Time,
        id: u64,
        successors: Vec<NodeRef>,
        hops: u32,
        path: Vec<NodeRef>,
    ) {
        let me = self.me();
        let recently_failed = self.failed_lately(now);
        let successors: Vec<NodeRef> = successors
            .into_iter()
            .filter(|n| !recently_failed.contains(n))
            .collect();
        match successors.first() {
            None => self.finish_lookup(id, Err(LookupError::NoRoute)),
            Some(owner) if *owner == me => self.answer_lookup(now, id, successors, hops, path),
            Some(owner) => {
                let owner = *owner;
                let kind = PendingKind::Confirm {
                    lookup: id,
                    successors,
                    hops,
                    path,
                };
                let sent = self.request(now, owner.into(), kind, |req| Message::Ping { req });
                if sent.is_none() {
                    self.finish_lookup(id, Err(LookupError::Overloaded));
                }
            }
        }
    }

    /// A lookup we started has its answer: `successors[0]` owns the key.
    pub(super) fn answer_lookup(
        &mut self,
        now: Time,
        id: u64,
        successors: Vec<NodeRef>,
        hops: u32,
        path: Vec<NodeRef>,
    ) {
        let Some(l) = self.lookups.get(&id) else {
            return;
        };
        let (key, purpose) = (l.key, l.purpose);
        match purpose {
            Purpose::Join => {
                self.remove_lookup(id);
                self.finish_join(now, successors);
            }
            Purpose::Merge => {
                self.remove_lookup(id);
                if let Some(owner) = successors.first() {
                    self.on_merge_found(now, *owner);
                }
            }
            _ => {
                let result = match successors.first() {
                    Some(owner) => Ok(LookupResult {
                        key,
                        owner: *owner,
                        successors: successors[1..].to_vec(),
                        hops,
                        path,
                    }),
                    None => Err(LookupError::NoRoute),
                };
                self.finish_lookup(id, result);
            }
        }
    }

    /// Ends lookup `id` with `result`: an event for users, a finger update
    /// for `fix_fingers`.
    pub(super) fn finish_lookup(&mut self, id: u64, result: Result<LookupResult, LookupError>) {
        let Some(l) = self.remove_lookup(id) else {
            return;
        };
        match l.purpose {
            Purpose::User => self.events.push_back(Event::LookupDone {
                lookup: LookupId(id),
                result,
            }),
            Purpose::FixFinger(i) => {
                if let Ok(r) = result {
                    self.on_finger_found(i, r.owner);
                }
            }
            // Join and merge answers end in `answer_lookup`; a merge probe
            // that failed just ends.
            Purpose::Join | Purpose::Merge => {}
        }
    }

    pub(super) fn lookup_expired(&mut self, now: Time, id: u64) {
        match self.lookups.get(&id).map(|l| l.purpose) {
            Some(Purpose::Join) => self.next_seed(now),
            Some(_) => self.finish_lookup(id, Err(LookupError::Timeout)),
            None => {}
        }
    }

    pub(super) fn remove_lookup(&mut self, id: u64) -> Option<Lookup> {
        let l = self.lookups.remove(&id)?;
        self.deadlines.remove(&(l.deadline, Deadline::Lookup(id)));
        Some(l)
    }

    pub(super) fn internal_lookup_id(&mut self) -> u64 {
        let id = INTERNAL_LOOKUP | self.next_internal_lookup;
        self.next_internal_lookup += 1;
        id
    }
}
