//! What happens when a peer stops answering: retransmit, then drop it from
//! the routing state at once and fail what waited on it.

use super::*;

impl VNode {
    // ----- failures -----------------------------------------------------------

    /// No answer to `req` in time: retransmit it, or give up on its target.
    pub(super) fn request_expired(&mut self, now: Time, req: u64) {
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        if p.retries_left > 0 {
            p.retries_left -= 1;
            p.deadline = now + self.config.request_timeout;
            let (to, msg, deadline) = (p.to, p.msg.clone(), p.deadline);
            self.deadlines.insert((deadline, Deadline::Request(req)));
            self.send(to, msg);
            return;
        }
        let to = p.to;
        self.fail_target(now, to);
        self.fail_request(now, req);
    }

    /// The request `req` will not be answered: do what its kind needs.
    pub(super) fn fail_request(&mut self, now: Time, req: u64) {
        let Some(p) = self.take_pending(req) else {
            return;
        };
        match p.kind {
            PendingKind::Stabilize => self.timers[Timer::Stabilize as usize] = Some(now),
            PendingKind::CheckPredecessor | PendingKind::Probe => {}
            PendingKind::Forward {
                origin,
                lookup,
                key,
                hops,
            } => {
                let purpose = (origin == self.me())
                    .then(|| self.lookups.get(&lookup).map(|l| l.purpose))
                    .flatten();
                if purpose == Some(Purpose::Join) {
                    self.next_seed(now);
                } else if purpose == Some(Purpose::Merge) {
                    // The remembered peer is still gone.
                    self.remove_lookup(lookup);
                } else {
                    // Route around the dead hop (lecture: lookup with fault tolerance).
                    self.route_recursive(now, origin, lookup, key, hops);
                }
            }
            PendingKind::Step { lookup } => self.iterative_next(now, lookup),
            PendingKind::Confirm {
                lookup,
                mut successors,
                hops,
                path,
            } => {
                // The named owner is dead: the next live successor owns the key.
                successors.remove(0);
                self.confirm_owner(now, lookup, successors, hops, path);
            }
            PendingKind::Query { query } => self.events.push_back(Event::NeighborsQueried {
                query,
                result: None,
            }),
        }
    }

    /// A request to `to` went unanswered: drop the peer(s) it names.
    pub(super) fn fail_target(&mut self, now: Time, to: Target) {
        // A seed (no id) that does not answer: nothing in our table to drop.
        if let Some(id) = to.id {
            self.fail_peers(now, |n| n.id == id && n.addr == to.addr);
        }
    }

    /// Drops every peer `dead` matches from the routing table at once and
    /// fails the requests still waiting on them.
    pub(super) fn fail_peers(&mut self, now: Time, dead: impl Fn(&NodeRef) -> bool) {
        let (old_succ, old_pred) = (self.table.successor(), self.table.predecessor());
        let removed = self.table.remove(&dead);
        for peer in &removed {
            self.remember_failure(*peer, now);
            self.remember_lost(*peer, now);
            self.events.push_back(Event::PeerFailed {
                vnode: self.me().id,
                peer: *peer,
                left: false,
            });
        }
        self.after_change(now, old_succ, old_pred);
        let stuck: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to.id.is_some_and(|id| dead(&NodeRef::new(id, p.to.addr))))
            .map(|(r, _)| *r)
            .collect();
        for req in stuck {
            self.fail_request(now, req);
        }
    }

    pub(super) fn remember_failure(&mut self, peer: NodeRef, now: Time) {
        if self.recently_failed.len() == RECENT_FAILURES {
            self.recently_failed.pop_front();
        }
        self.recently_failed.push_back((peer, now));
        // Forget failures older than a few timeouts: the node may be back.
        let horizon = self.config.request_timeout * 4;
        while let Some((_, at)) = self.recently_failed.front() {
            if now.saturating_since(*at) > horizon {
                self.recently_failed.pop_front();
            } else {
                break;
            }
        }
    }

    /// The peers that failed within the last few request timeouts.
    pub(super) fn failed_lately(&self, now: Time) -> Vec<NodeRef> {
        self.recently_failed
            .iter()
            .filter(|(n, _)| self.failed_recently(n, now))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Did `n` fail within the last few request timeouts? Such a node is
    /// not re-adopted on hearsay (another node's stale pointer).
    pub(super) fn failed_recently(&self, n: &NodeRef, now: Time) -> bool {
        let horizon = self.config.request_timeout * 4;
        self.recently_failed
            .iter()
            .any(|(f, at)| f == n && now.saturating_since(*at) <= horizon)
    }
}
