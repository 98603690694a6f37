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

use super::{KvState, StoreKind, StoreWait};
use crate::{Id, Message, Node, NodeRef, Time};
use std::time::Duration;

/// Sweeps run every this many sync rounds.
const SWEEP_EVERY: u32 = 6;
/// Most leases a node keeps.
const MAX_LEASES: usize = 1024;

impl KvState {
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

impl Node {
    /// Distinct processes other than ours in `v`'s successor list.
    fn distinct_successor_processes(&self, v: &crate::VNode) -> usize {
        let mut seen: Vec<std::net::SocketAddr> = Vec::new();
        for n in v.table().successors() {
            if n.addr != self.addr && !seen.contains(&n.addr) {
                seen.push(n.addr);
            }
        }
        seen.len()
    }

    fn lease_ttl(&self) -> Duration {
        self.config.sync_interval * 3
    }

    /// Records the lease an owner's summary gives us.
    pub(crate) fn sync_lease(&mut self, now: Time, start: Id, end: Id) {
        let until = now + self.lease_ttl();
        self.kv.lease(start, end, until);
    }

    /// Called once per sync round: every `SWEEP_EVERY` rounds, sweep the
    /// store; and collect tombstones of the ranges whose replicas all
    /// agreed in the last round.
    pub(crate) fn sweep_round(&mut self, now: Time) {
        self.kv.rounds += 1;
        let ttl = self.lease_ttl();
        self.kv.leases.retain(|l| l.2 > now);
        // Tombstones: ranges whose every replica was in sync last round.
        let before = self.grace_horizon(now);
        for (owner, range) in self.owned_ranges() {
            let targets = self.replica_targets(&owner);
            let all_in_sync = !targets.is_empty()
                && targets.iter().all(|t| {
                    self.kv
                        .in_sync
                        .get(&(owner.id, t.id))
                        .is_some_and(|at| now.saturating_since(*at) < self.config.sync_interval * 2)
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
            self.kv.store(sweep, StoreWait::Repair);
            for t in targets {
                let msg = Message::Collect {
                    start: range.start,
                    end: range.end,
                    before,
                };
                self.kv_send(owner, t, msg);
            }
        }
        // Stale copies: only once we have been up long enough to hold
        // every lease we should.
        let up_long_enough = self
            .kv
            .first_round
            .is_some_and(|t| now.saturating_since(t) > ttl);
        if self.kv.first_round.is_none() {
            self.kv.first_round = Some(now);
        }
        if !up_long_enough || !self.kv.rounds.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        // Only with every vnode joined, a predecessor known, and R other
        // processes in reach: in a ring of at most R processes every node
        // holds every key, and while our neighbourhood is unsettled we
        // cannot tell which copies are ours to keep.
        let settled = self.vnodes.iter().all(|v| {
            v.is_joined()
                && v.table().predecessor().is_some()
                && self.distinct_successor_processes(v) >= self.config.replicas
        });
        if !settled {
            return;
        }
        let mut keep: Vec<(Id, Id)> = self
            .vnodes
            .iter()
            .filter_map(|v| v.range().map(|r| (r.start, r.end)))
            .collect();
        keep.extend(self.kv.leases.iter().map(|l| (l.0, l.1)));
        let keep_newer_than = now.as_micros().saturating_sub(ttl.as_micros() as u64);
        let sweep = StoreKind::Sweep {
            keep,
            tombstones: Vec::new(),
            tombstones_before: 0,
            keep_newer_than,
        };
        self.kv.store(sweep, StoreWait::Repair);
    }

    /// An owner says all its replicas agree: drop old tombstones of its range.
    pub(crate) fn collect_received(&mut self, from: NodeRef, start: Id, end: Id, before: u64) {
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
        self.kv.store(sweep, StoreWait::Repair);
    }
}
