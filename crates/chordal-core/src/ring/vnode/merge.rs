//! Merging rings after a network partition heals.
//!
//! During a partition each side drops the other side's nodes as failed and
//! stabilizes into a ring of its own. When the network heals, plain Chord
//! never notices: every node's neighbours are on its own side, and nothing
//! makes anyone talk across. So each virtual node remembers the peers it
//! dropped as failed (a few, for `merge_window`) and every `merge_interval`
//! probes one of them: it asks that peer's ring for the successor of its
//! own id (a `FindSuccessor` sent straight to the peer). On one ring the
//! answer is ourselves; on another ring it is the node that follows us
//! there, and if that node falls between us and our successor we take it
//! as our successor. Stabilize and notify do the rest, zipping the two
//! rings into one.

use super::*;

/// Peers remembered per virtual node for merge probes.
pub(super) const MAX_LOST_PEERS: usize = 16;

impl VNode {
    /// `peer` was dropped as failed: remember it for merge probes.
    pub(super) fn remember_lost(&mut self, peer: NodeRef, now: Time) {
        if peer.id == self.me().id {
            return;
        }
        self.lost_peers.retain(|(p, _)| *p != peer);
        if self.lost_peers.len() == MAX_LOST_PEERS {
            self.lost_peers.pop_front();
        }
        self.lost_peers.push_back((peer, now));
    }

    /// Called each stabilize round: if a probe is due, probes the oldest
    /// remembered peer (then puts it last, so that all get their turn).
    pub(super) fn maybe_probe_lost_peer(&mut self, now: Time) {
        if self.merge_probe_at.is_some_and(|at| now < at) {
            return;
        }
        self.merge_probe_at = Some(now + self.config.merge_interval);
        let window = self.config.merge_window;
        self.lost_peers
            .retain(|(_, since)| now.saturating_since(*since) <= window);
        let Some((peer, since)) = self.lost_peers.pop_front() else {
            return;
        };
        // Back in our routing table: nothing to merge through it.
        if self.table.contains(&peer) {
            return;
        }
        self.lost_peers.push_back((peer, since));
        let me = self.me();
        let id = self.internal_lookup_id();
        let deadline = now + self.config.lookup_timeout;
        self.lookups.insert(
            id,
            Lookup {
                key: me.id,
                deadline,
                purpose: Purpose::Merge,
                iterative: None,
            },
        );
        self.deadlines.insert((deadline, Deadline::Lookup(id)));
        let kind = PendingKind::Forward {
            origin: me,
            lookup: id,
            key: me.id,
            hops: 0,
        };
        let sent = self.request(now, peer.into(), kind, |req| Message::FindSuccessor {
            req,
            origin: me,
            lookup: id,
            key: me.id,
            hops: 1,
            claim: OwnerClaim::Route,
        });
        if sent.is_none() {
            self.remove_lookup(id);
        }
    }

    /// A merge probe's answer: `owner` follows us on the prober's ring.
    /// If it sits between us and our successor, it is our successor.
    pub(super) fn on_merge_found(&mut self, now: Time, owner: NodeRef) {
        self.lost_peers.retain(|(p, _)| *p != owner);
        let me = self.me();
        let succ = self.table.successor();
        let closer = owner.id != me.id && (succ == me || owner.id.in_open(&me.id, &succ.id));
        if closer && !self.failed_recently(&owner, now) {
            let old_pred = self.table.predecessor();
            self.table.push_successor(owner);
            self.after_change(now, succ, old_pred);
        }
    }
}
