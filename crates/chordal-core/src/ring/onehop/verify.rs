//! Verification of hearsay (`verify`, a TLS ring): a claim about
//! another node changes nothing until that node was asked. Claims are
//! received here, checked by a ping (bounded in all and per sender),
//! and resolved by the answer or its absence.

use super::*;

impl OneHop {
    pub(super) fn receive(
        &mut self,
        now: Time,
        sender: SocketAddr,
        until: Id,
        ev: MemberEvent,
        live_local: &impl Fn(&NodeRef) -> bool,
    ) {
        if self.verify {
            self.receive_checked(now, sender, until, ev, live_local);
            return;
        }
        if ev.node.addr == self.me {
            // About us: a departure we did not make is refuted, and not
            // passed on (our own announcement reaches everyone).
            if !ev.joined && live_local(&ev.node) {
                self.detected(now, ev.node, true);
                return;
            }
        } else if ev.joined {
            self.alive(ev.node);
        } else {
            self.gone(now, ev.node);
        }
        self.queue(now, until, ev);
    }

    /// `receive` in verification mode: a claim about us is checked
    /// against our vnodes (a false one is refuted or dropped), a claim
    /// about another node with that node.
    pub(super) fn receive_checked(
        &mut self,
        now: Time,
        sender: SocketAddr,
        until: Id,
        ev: MemberEvent,
        live_local: &impl Fn(&NodeRef) -> bool,
    ) {
        if ev.node.addr == self.me {
            let live = live_local(&ev.node);
            if !ev.joined && live {
                self.detected(now, ev.node, true);
            } else if ev.joined == live {
                self.queue(now, until, ev);
            } else {
                self.stats.claims_false += 1;
            }
            return;
        }
        if ev.joined && self.table.contains(&ev.node) {
            // Checked before: pass it on.
            self.queue(now, until, ev);
            return;
        }
        let claim = if ev.joined {
            Claim::Live {
                forward: Some((until, ev)),
                copied: false,
            }
        } else {
            Claim::Left { until, ev }
        };
        self.check(now, ev.node, claim, sender);
    }

    /// Asks `node` whether `claim` (made by `sender`) holds: a ping, whose
    /// answer or silence [`OneHop::resolve`]s it (one ping settles every
    /// claim about `node` made while it is out). Dropped (and counted)
    /// past the bounds.
    pub(super) fn check(&mut self, now: Time, node: NodeRef, claim: Claim, sender: SocketAddr) {
        let by_sender = self.checks_by.get(&sender).copied().unwrap_or(0);
        let out = self.probing.get(&node).and_then(|req| self.probes.get(req));
        let full = match out {
            Some(p) => p.claims.len() >= MAX_CLAIMS_PER_PROBE,
            None => self.probes.len() >= MAX_CHECKS,
        };
        if full || by_sender >= MAX_CHECKS_PER_SENDER {
            self.stats.claims_dropped += 1;
            return;
        }
        self.stats.claims_checked += 1;
        *self.checks_by.entry(sender).or_insert(0) += 1;
        match self
            .probing
            .get(&node)
            .and_then(|req| self.probes.get_mut(req))
        {
            Some(p) => p.claims.push((claim, sender)),
            None => self.ping(now, node, claim, sender),
        }
    }

    /// Sends the ping of a probe.
    pub(super) fn ping(&mut self, now: Time, node: NodeRef, claim: Claim, sender: SocketAddr) {
        let req = PROBE_REQ | self.next_req;
        self.next_req += 1;
        let deadline = now + self.ack_timeout * 2;
        self.probes.insert(
            req,
            Probe {
                node,
                deadline,
                claims: vec![(claim, sender)],
            },
        );
        self.probing.insert(node, req);
        self.out.push_back((node.into(), Message::Ping { req }));
    }

    /// Probe `req` ended: its node answered itself (`alive`) or did not.
    /// Carries out what each of its claims said, if the answer bears it
    /// out.
    pub(super) fn resolve(&mut self, now: Time, req: u64, alive: bool) {
        let Some(p) = self.probes.remove(&req) else {
            return;
        };
        self.probing.remove(&p.node);
        for (claim, sender) in p.claims {
            let held = match &claim {
                Claim::Kept => true,
                Claim::Live { .. } => alive,
                Claim::Left { .. } => !alive,
            };
            if held {
                self.release_check(sender);
            } else {
                // The charge stays until forgiven: a liar's share is
                // per refresh period, not per ping round trip.
                self.forgive_at.get_or_insert(now + self.refresh);
            }
            match (claim, alive) {
                (Claim::Kept, true) => {
                    self.alive(p.node);
                }
                (Claim::Kept, false) => self.gone(now, p.node),
                (Claim::Live { forward, .. }, true) => {
                    self.alive(p.node);
                    if let Some((until, ev)) = forward {
                        self.queue(now, until, ev);
                    }
                }
                (Claim::Left { until, ev }, false) => {
                    self.gone(now, p.node);
                    self.queue(now, until, ev);
                }
                (Claim::Live { copied, .. }, false) => {
                    self.stats.claims_false += 1;
                    if copied && !self.departed_lately(now, &p.node) {
                        self.gone(now, p.node);
                        self.detected(now, p.node, false);
                    }
                }
                (Claim::Left { .. }, true) => {
                    self.stats.claims_false += 1;
                    self.alive(p.node);
                }
            }
        }
    }

    /// One of `sender`'s checks ended with its claim upheld: its share
    /// is free again.
    pub(super) fn release_check(&mut self, sender: SocketAddr) {
        if let Some(n) = self.checks_by.get_mut(&sender) {
            *n -= 1;
            if *n == 0 {
                self.checks_by.remove(&sender);
            }
        }
    }

    /// Drops the charges of false claims: each sender's share counts
    /// only its claims still being checked.
    pub(super) fn forgive(&mut self) {
        self.forgive_at = None;
        self.checks_by.clear();
        for p in self.probes.values() {
            for (_, sender) in &p.claims {
                *self.checks_by.entry(*sender).or_insert(0) += 1;
            }
        }
    }

    /// Pings `node`, which the successor's table lacks: gone unless it
    /// answers within two ack timeouts.
    pub(super) fn probe(&mut self, now: Time, node: NodeRef) {
        if self.probes.len() >= MAX_PROBES {
            return;
        }
        let me = self.me;
        match self
            .probing
            .get(&node)
            .and_then(|req| self.probes.get_mut(req))
        {
            Some(p) => p.claims.push((Claim::Kept, me)),
            None => self.ping(now, node, Claim::Kept, me),
        }
    }

    /// `node` is alive: into the table, off the departed list. Returns
    /// whether the table changed.
    pub(super) fn alive(&mut self, node: NodeRef) -> bool {
        self.departed.remove(&node);
        self.table.insert(node)
    }
}
