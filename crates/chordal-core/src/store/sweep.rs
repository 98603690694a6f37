//! Forgetting what should go: copies a node no longer has to hold, and
//! tombstones every copy has had for longer than `tombstone_grace`.
//!
//! A node keeps records in the ranges it owns and in the ranges it holds
//! replicas for. It learns the latter from the owners' syncs: each
//! `SyncSummary` is a lease on `(start, end]` for three sync intervals.
//! Every few sync rounds the node sweeps its store: records outside its
//! own ranges and its unexpired leases, and older than the leases (so that
//! a write that just arrived is never dropped), go.
//!
//! A tombstone may go once every replica has it: when the last sync of an
//! owner with each of its replicas found no difference, the owner drops the
//! tombstones of its range older than the grace period and tells the
//! replicas (`Collect`) to do the same. A node that was down for longer
//! than the grace period could bring a deleted value back; keep the grace
//! longer than any outage you expect.

use super::{Store, StoreKind, StoreWait};
use crate::io::Cx;
use crate::{Id, Message, NodeRef, Time};
use std::time::Duration;

/// Sweeps run every this many sync rounds.
const SWEEP_EVERY: u32 = 6;
/// Most leases a node keeps.
const MAX_LEASES: usize = 1024;

impl Store {
    /// An owner synced `(start, end]` with us: we hold replicas of it until
    /// `until`.
    pub fn lease(&mut self, start: Id, end: Id, until: Time) {
        if let Some(l) = self.leases.iter_mut().find(|l| l.0 == start && l.1 == end) {
            l.2 = l.2.max(until);
            return;
        }
        if self.leases.len() >= MAX_LEASES {
            self.leases.sort_by_key(|l| l.2);
            self.leases.remove(0);
        }
        self.leases.push((start, end, until));
    }
}

impl Store {
    fn lease_ttl(&self, cx: &Cx<'_>) -> Duration {
        cx.config.sync_interval * 3
    }

    /// Records the lease an owner's summary gives us.
    pub(super) fn sync_lease(&mut self, cx: &mut Cx<'_>, now: Time, start: Id, end: Id) {
        let until = now + self.lease_ttl(cx);
        self.lease(start, end, until);
    }

    /// Called once per sync round: every `SWEEP_EVERY` rounds, sweep the
    /// store; and collect tombstones of the ranges whose replicas all
    /// agreed in the last round.
    pub(super) fn sweep_round(&mut self, cx: &mut Cx<'_>, now: Time) {
        self.rounds += 1;
        let ttl = self.lease_ttl(cx);
        self.leases.retain(|l| l.2 > now);
        // Tombstones: ranges whose every replica was in sync last round.
        let before = self.grace_horizon(cx, now);
        for (owner, range) in cx.ring.owned_ranges() {
            let targets = cx.ring.replica_targets(&owner, cx.config.replicas);
            let all_in_sync = !targets.is_empty()
                && targets.iter().all(|t| {
                    self.in_sync
                        .get(&(owner.id, t.id))
                        .is_some_and(|at| now.saturating_since(*at) < cx.config.sync_interval * 2)
                });
            if !all_in_sync {
                continue;
            }
            let sweep = StoreKind::Sweep {
                keep: Vec::new(),
                tombstones: vec![(range.start, range.end)],
                tombstones_before: before,
                keep_newer_than: u64::MAX,
            };
            self.store_op(cx, sweep, StoreWait::Repair);
            for t in targets {
                let msg = Message::Collect {
                    start: range.start,
                    end: range.end,
                    before,
                };
                cx.io.send(owner, t, msg);
            }
        }
        // Stale copies: only once we have been up long enough to hold
        // every lease we should.
        let up_long_enough = self
            .first_round
            .is_some_and(|t| now.saturating_since(t) > ttl);
        if self.first_round.is_none() {
            self.first_round = Some(now);
        }
        if !up_long_enough || !self.rounds.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        // Only with every vnode joined, a predecessor known, and R other
        // processes in reach: in a ring of at most R processes every node
        // holds every key, and while our neighbourhood is unsettled we
        // cannot tell which copies are ours to keep.
        let settled = cx.ring.vnodes().iter().all(|v| {
            v.is_joined()
                && v.table().predecessor().is_some()
                && cx.ring.distinct_successor_processes(v) >= cx.config.replicas
        });
        if !settled {
            return;
        }
        let mut keep: Vec<(Id, Id)> = cx
            .ring
            .vnodes()
            .iter()
            .filter_map(|v| v.range().map(|r| (r.start, r.end)))
            .collect();
        keep.extend(self.leases.iter().map(|l| (l.0, l.1)));
        let keep_newer_than = now.as_micros().saturating_sub(ttl.as_micros() as u64);
        let sweep = StoreKind::Sweep {
            keep,
            tombstones: Vec::new(),
            tombstones_before: 0,
            keep_newer_than,
        };
        self.store_op(cx, sweep, StoreWait::Repair);
    }

    /// An owner says all its replicas agree: drop old tombstones of its range.
    pub(super) fn collect_received(
        &mut self,
        cx: &mut Cx<'_>,
        from: NodeRef,
        start: Id,
        end: Id,
        before: u64,
    ) {
        // Only the owner of the range may ask (its id ends the range).
        if from.id != end {
            return;
        }
        let sweep = StoreKind::Sweep {
            keep: Vec::new(),
            tombstones: vec![(start, end)],
            tombstones_before: before,
            keep_newer_than: u64::MAX,
        };
        self.store_op(cx, sweep, StoreWait::Repair);
    }
}
