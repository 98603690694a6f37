//! Range sync (DESIGN §5): every `sync_interval`, and soon after any change
//! of neighbours, each owner compares its range `(predecessor, self]` with
//! each replica. Both sides summarize the range in buckets (a hash of the
//! (key id, version) pairs in each); the replica answers which buckets
//! differ, and both push their records of those buckets to the other.
//! Stores keep the newest version, so after a round both hold the union,
//! newest wins — whatever joins, leaves, failures or lost writes happened.
//! A join's handoff is the first sync of the new owner with its successor.
//!
//! Most rounds find nothing to do, so a pair that agreed last round is
//! first sent a *probe*: one hash of the whole range (the XOR of the
//! buckets, as a bucket hash is the XOR of its records' digests). Only a
//! replica that disagrees asks for the buckets (`refine`). A quiet ring then
//! spends ~100 bytes per pair and round instead of ~1.3 KiB per summary.

use super::transfer::{OnEnd, Purpose, Push};
use super::{Deadline, Store, StoreKind, StoreResult, StoreWait};
use crate::io::Cx;
use crate::{Id, Message, NodeRef, Record, Time};
use sha1::{Digest, Sha1};

/// Most buckets a summary may have (more is refused).
pub const MAX_BUCKETS: usize = 4096;

/// A replica's half of a sync: the owner's summary to compare ours with.
#[derive(Debug)]
pub(super) struct Compare {
    /// The owner, where the answer goes.
    pub(super) to: NodeRef,
    /// Our vnode the summary was addressed to.
    pub(super) me: NodeRef,
    pub(super) req: u64,
    pub(super) start: Id,
    pub(super) end: Id,
    pub(super) theirs: Vec<Id>,
    /// `theirs` is one hash of the whole range: answer `refine` if ours
    /// differs rather than pushing everything.
    pub(super) probe: bool,
}

/// A sync this process runs as owner.
#[derive(Debug)]
pub(super) struct SyncJob {
    owner: NodeRef,
    target: NodeRef,
    start: Id,
    end: Id,
    deadline: Time,
    /// Our summary, kept after a probe in case the replica asks for it.
    buckets: Vec<Id>,
    /// A sync of a finishing job (`finish.rs`): the job, and whether we
    /// only pull (the target is no copy of ours: push nothing to it).
    finish: Option<(u64, bool)>,
}

/// Fine buckets on the ring: the top 16 bits of a key id. Stores keep a
/// digest per fine bucket, and sync buckets are made of whole fine
/// buckets, so that a summary reads no record but those of the two fine
/// buckets the interval's ends cut.
pub const FINE: usize = 1 << 16;

/// The fine bucket of a key id.
pub fn fine_of(key_id: &Id) -> usize {
    ((key_id.0[0] as usize) << 8) | key_id.0[1] as usize
}

/// The lowest and highest key ids of fine bucket `f`.
pub fn fine_bounds(f: usize) -> (Id, Id) {
    let mut lo = [0u8; 20];
    let mut hi = [0xffu8; 20];
    lo[0] = (f >> 8) as u8;
    lo[1] = f as u8;
    hi[0] = lo[0];
    hi[1] = lo[1];
    (Id(lo), Id(hi))
}

/// How many fine buckets past `start`'s own `key` lies, going clockwise
/// from `start`: 0 for `start`'s fine bucket from `start` on, [`FINE`]
/// for the part of it before `start` (the far end of a ring interval that
/// wraps all the way round).
fn fine_offset(start: &Id, key: &Id) -> usize {
    let (f, s) = (fine_of(key), fine_of(start));
    if f == s && key < start {
        FINE
    } else {
        (f + FINE - s) % FINE
    }
}

/// Fine offsets the interval `(start, end]` spans, counted from the fine
/// bucket holding `start`: [`FINE`] + 1 for the whole ring and for an
/// interval that wraps round into `start`'s own fine bucket (which it
/// then meets twice).
pub fn fine_span(start: &Id, end: &Id) -> usize {
    if start == end {
        FINE + 1
    } else {
        fine_offset(start, end) + 1
    }
}

/// How many sync buckets a summary of `(start, end]` has when at most
/// `wanted` are asked for: no more than the fine buckets it spans, since a
/// bucket is made of whole fine buckets.
pub fn bucket_count(start: &Id, end: &Id, wanted: u32) -> u32 {
    (wanted.max(1) as usize).min(fine_span(start, end)) as u32
}

/// Which of `buckets` parts of the ring interval `(start, end]` (the whole
/// ring if `start == end`) holds `key`. The parts are runs of whole fine
/// buckets, as equal as their count allows (the first and last may be cut
/// by the interval's ends). Both sides of a sync must compute the same
/// function.
pub fn bucket_of(start: &Id, end: &Id, buckets: u32, key: &Id) -> u32 {
    let buckets = buckets.max(1) as usize;
    let offset = fine_offset(start, key);
    ((offset * buckets) / fine_span(start, end)).min(buckets - 1) as u32
}

/// The key ids of bucket `b` of `(start, end]` split in `buckets` (see
/// [`bucket_of`]), as the ring interval `(after, last]`, or `None` if the
/// bucket is empty (more buckets than the interval spans fine buckets).
///
/// Call it to read one bucket's records without walking the others: a
/// sync push of a few differing buckets of a large range.
pub fn bucket_span(start: &Id, end: &Id, buckets: u32, b: u32) -> Option<(Id, Id)> {
    let count = buckets.max(1) as usize;
    let (b, whole) = (b as usize, start == end);
    let span = fine_span(start, end);
    // The first fine offset of bucket `i`: the least o with o * count /
    // span >= i.
    let first = |i: usize| (i * span).div_ceil(count);
    let (low, high) = (first(b), if b + 1 >= count { span } else { first(b + 1) });
    // `start`'s fine bucket holds nothing before `start` when `start` is
    // its first id.
    let home = fine_of(start);
    let high = if whole && high == FINE + 1 && fine_bounds(home).0 == *start {
        FINE
    } else {
        high
    };
    if b >= count || low >= high {
        return None;
    }
    // A bucket of only `start`'s own fine bucket when `start` is its last
    // id holds nothing; as a ring interval `(start, start]` it would read
    // as the whole ring. (Only a one-bucket summary of the whole ring is
    // the whole ring.)
    if low == 0 && high == 1 && fine_bounds(home).1 == *start && !(whole && count == 1) {
        return None;
    }
    let one = Id::from_u64(1);
    // Before the first id of offset `low`; the last id of offset `high - 1`.
    let after = match low {
        0 if whole => start.wrapping_sub(&one),
        0 => *start,
        o if o == FINE => fine_bounds(home).0.wrapping_sub(&one),
        o => fine_bounds((home + o) % FINE).0.wrapping_sub(&one),
    };
    let last = match high - 1 {
        _ if high == span && !whole => *end,
        o if o == FINE => start.wrapping_sub(&one),
        o => fine_bounds((home + o) % FINE).1,
    };
    Some((after, last))
}

/// A record's contribution to its bucket's hash. A bucket hash is the XOR
/// of its records' digests, so it does not depend on scan order.
pub fn bucket_hash(r: &Record) -> Id {
    record_digest(&r.key_id, &r.key, &r.version, r.is_tombstone())
}

/// [`bucket_hash`] of a record given by its parts (what a store needs to
/// know without reading the value).
pub fn record_digest(key_id: &Id, key: &[u8], version: &crate::Version, tombstone: bool) -> Id {
    let mut h = Sha1::new();
    h.update(key_id.0);
    // Term 0 is left out, so that digests of records from before terms
    // did not change.
    if version.term != 0 {
        h.update(version.term.to_be_bytes());
    }
    h.update(version.hlc.to_be_bytes());
    h.update(version.node.0);
    h.update([u8::from(tombstone)]);
    h.update(key);
    let mut out = [0u8; 20];
    out.copy_from_slice(&h.finalize());
    Id(out)
}

impl Store {
    /// Starts a sync of every owned range with every replica (unless one
    /// is still running), and schedules the next round.
    pub(super) fn sync_round(&mut self, cx: &mut Cx<'_>, now: Time) {
        self.sync_at = Some(now + cx.config.sync_interval);
        self.sweep_round(cx, now);
        for (owner, range) in cx.ring.owned_ranges() {
            for target in cx.ring.replica_targets(&owner, cx.config.replicas) {
                let busy = self
                    .syncs
                    .values()
                    .any(|j| j.owner == owner && j.target == target);
                if busy || self.in_flight() >= cx.config.max_kv_ops {
                    continue;
                }
                self.start_sync(cx, now, (owner, target), range, None);
            }
        }
    }

    /// Starts one sync of our vnode's `range` with `target`: summarize
    /// it, then send the summary. Returns the sync's request number.
    pub(super) fn start_sync(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        (owner, target): (NodeRef, NodeRef),
        range: crate::KeyRange,
        finish: Option<(u64, bool)>,
    ) -> u64 {
        let req = cx.io.next();
        let deadline = now + cx.config.kv_timeout;
        self.syncs.insert(
            req,
            SyncJob {
                owner,
                target,
                start: range.start,
                end: range.end,
                deadline,
                buckets: Vec::new(),
                finish,
            },
        );
        self.deadlines.insert((deadline, Deadline::Sync(req)));
        let kind = StoreKind::Summary {
            start: range.start,
            end: range.end,
            buckets: bucket_count(&range.start, &range.end, cx.config.sync_buckets),
            hide_tombstones_before: self.grace_horizon(cx, now),
        };
        self.store_op(cx, kind, StoreWait::SyncOwnSummary(req));
        req
    }

    /// Sync `req`'s time ran out before its answer.
    pub(super) fn sync_expired(&mut self, cx: &mut Cx<'_>, now: Time, req: u64) {
        if let Some(job) = self.syncs.remove(&req)
            && let Some((f, _)) = job.finish
        {
            let failed = (super::finish::Side::Both, false);
            self.finish_member(cx, now, f, job.target.addr, failed);
        }
    }

    /// The hlc below which tombstones count as past their grace period.
    pub(super) fn grace_horizon(&self, cx: &Cx<'_>, now: Time) -> u64 {
        now.as_micros()
            .saturating_sub(cx.config.tombstone_grace.as_micros() as u64)
    }

    /// Our neighbourhood changed: sync soon (not at once, so that a burst
    /// of changes makes one round).
    pub fn sync_soon(&mut self, now: Time) {
        let soon = now + std::time::Duration::from_millis(100);
        if self.sync_at.is_none_or(|at| at > soon) {
            self.sync_at = Some(soon);
        }
    }

    /// Did some vnode's replica targets change (a node joined or failed
    /// within its next R-1 successors, not only next to it)? Then sync
    /// soon: the new holder must not wait for the periodic round. Cheap
    /// when no successor list changed; called at every flush.
    pub fn check_sync_targets(&mut self, cx: &mut Cx<'_>, now: Time) {
        // The sum of the change counts moves whenever one of them does
        // (they only grow); most flushes stop here.
        let total = cx.ring.successor_changes();
        if self.targets_total == Some(total) {
            return;
        }
        self.targets_total = Some(total);
        let mut changed = false;
        for i in 0..cx.ring.vnodes().len() {
            let (me, seen) = (
                cx.ring.vnodes()[i].me(),
                cx.ring.vnodes()[i].table().successor_changes(),
            );
            if self.targets.get(&me.id).is_some_and(|(at, _)| *at == seen) {
                continue;
            }
            let targets = cx.ring.replica_targets(&me, cx.config.replicas);
            let old = self.targets.insert(me.id, (seen, targets.clone()));
            // A vnode seen for the first time is alone or just joined
            // (which syncs anyway).
            changed |= old.is_some_and(|(_, t)| t != targets);
        }
        if changed {
            self.sync_soon(now);
        }
    }

    /// Our summary for sync `req` is ready: send it to the replica — only
    /// its root hash (a probe) if the pair agreed last round.
    pub(super) fn sync_summary_ready(
        &mut self,
        cx: &mut Cx<'_>,
        _now: Time,
        req: u64,
        result: StoreResult,
    ) {
        let (Some(job), StoreResult::Summary(buckets)) = (self.syncs.get_mut(&req), result) else {
            return;
        };
        let (owner, target, start, end) = (job.owner, job.target, job.start, job.end);
        let probe = self.in_sync.contains_key(&(owner.id, target.id));
        let sent = if probe {
            job.buckets = buckets;
            vec![root_of(&job.buckets)]
        } else {
            buckets
        };
        let msg = Message::SyncSummary {
            req,
            start,
            end,
            buckets: sent,
            probe,
        };
        cx.io.send(owner, target, msg);
    }

    /// An owner's summary arrived: summarize the same range ourselves.
    pub(super) fn sync_summary_received(&mut self, cx: &mut Cx<'_>, now: Time, c: Compare) {
        if c.theirs.is_empty() || c.theirs.len() > MAX_BUCKETS || (c.probe && c.theirs.len() != 1) {
            return;
        }
        let kind = StoreKind::Summary {
            start: c.start,
            end: c.end,
            buckets: c.theirs.len() as u32,
            hide_tombstones_before: self.grace_horizon(cx, now),
        };
        self.store_op(cx, kind, StoreWait::SyncCompare(c));
    }

    /// Compares our summary with the owner's: answer the differing buckets
    /// and push our records of them.
    pub(super) fn sync_compare(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        c: Compare,
        result: StoreResult,
    ) {
        let StoreResult::Summary(ours) = result else {
            return;
        };
        if c.probe {
            let refine = ours.first() != c.theirs.first();
            let answer = Message::SyncDiff {
                req: c.req,
                differing: Vec::new(),
                refine,
            };
            cx.io.send(c.me, c.to, answer);
            return;
        }
        let differing: Vec<u32> = (0..c.theirs.len())
            .filter(|i| ours.get(*i) != Some(&c.theirs[*i]))
            .map(|i| i as u32)
            .collect();
        let diff = Message::SyncDiff {
            req: c.req,
            differing: differing.clone(),
            refine: false,
        };
        cx.io.send(c.me, c.to, diff);
        if !differing.is_empty() {
            let push = Push {
                to: c.to,
                me: c.me,
                start: c.start,
                end: c.end,
                buckets: c.theirs.len() as u32,
                which: differing,
            };
            // The owner hears when our side has arrived (or could not
            // start: an identical push already running began before we
            // compared, and may have passed records we hold now).
            let (owner, me, req) = (c.to, c.me, c.req);
            let on_end = OnEnd::TellOwner { owner, me, req };
            if self
                .start_transfer_then(cx, now, push, Purpose::Sync, Some(on_end))
                .is_none()
            {
                cx.io
                    .send(me, owner, Message::SyncPushed { req, ok: false });
            }
        }
    }

    /// The replica's answer to our summary: push our side of the
    /// differences, or send the buckets if it disagreed with our probe.
    pub(super) fn sync_diff_received(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        req: u64,
        differing: Vec<u32>,
        refine: bool,
    ) {
        if refine {
            self.sync_refine(cx, req);
            return;
        }
        let Some(job) = self.syncs.remove(&req) else {
            return;
        };
        self.deadlines.remove(&(job.deadline, Deadline::Sync(req)));
        let member = job.target.addr;
        if let Some((f, _)) = job.finish {
            if differing.is_empty() {
                // Equal: pulled and pushed alike.
                let both = (super::finish::Side::Both, true);
                self.finish_member(cx, now, f, member, both);
            } else {
                // The replica pushes its side, and says when it is done.
                self.finish_awaits(req, f, member);
            }
        } else if differing.is_empty() {
            self.in_sync.insert((job.owner.id, job.target.id), now);
        } else {
            self.in_sync.remove(&(job.owner.id, job.target.id));
        }
        let buckets = bucket_count(&job.start, &job.end, cx.config.sync_buckets);
        let differing: Vec<u32> = differing.into_iter().filter(|b| *b < buckets).collect();
        let pull_only = job.finish.is_some_and(|(_, pull_only)| pull_only);
        if !differing.is_empty() && !pull_only {
            let push = Push {
                to: job.target,
                me: job.owner,
                start: job.start,
                end: job.end,
                buckets,
                which: differing,
            };
            let on_end = job.finish.map(|(f, _)| OnEnd::Finish { job: f, member });
            let started = self.start_transfer_then(cx, now, push, Purpose::Sync, on_end);
            if started.is_none()
                && let Some((f, _)) = job.finish
            {
                self.finish_member(cx, now, f, member, (super::finish::Side::Pushed, false));
            }
        }
    }

    /// The replica's range hash differs from our probe's: send it the
    /// buckets we kept, under the same request (and deadline).
    fn sync_refine(&mut self, cx: &mut Cx<'_>, req: u64) {
        let Some(job) = self.syncs.get_mut(&req) else {
            return;
        };
        if job.buckets.is_empty() {
            return; // Not a probe of ours: ignore.
        }
        let buckets = std::mem::take(&mut job.buckets);
        let (owner, target, start, end) = (job.owner, job.target, job.start, job.end);
        self.in_sync.remove(&(owner.id, target.id));
        let msg = Message::SyncSummary {
            req,
            start,
            end,
            buckets,
            probe: false,
        };
        cx.io.send(owner, target, msg);
    }

    /// Our vnode `vnode` lost `(start, end]` to its new predecessor: push
    /// the records we hold there to it.
    pub fn hand_over_lost_range(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: Id,
        start: Id,
        end: Id,
    ) {
        let Some(v) = cx.ring.vnodes().iter().find(|v| v.me().id == vnode) else {
            return;
        };
        let me = v.me();
        let Some(pred) = v
            .table()
            .predecessor()
            .filter(|p| p.id == end && p.addr != cx.ring.addr())
        else {
            return;
        };
        self.start_transfer(cx, now, Push::whole(pred, me, start, end), Purpose::Handoff);
    }
}

/// The hash of a whole range from its bucket hashes: what a one-bucket
/// summary of the same records is.
fn root_of(buckets: &[Id]) -> Id {
    buckets.iter().fold(Id::ZERO, |root, b| root.xor(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_the_interval_in_order() {
        let start = Id::from_u64(0);
        let end = Id::MAX.wrapping_sub(&Id::from_u64(0)); // (0, MAX]
        let b = |k: &Id| bucket_of(&start, &end, 4, k);
        assert_eq!(b(&Id::from_u64(1)), 0);
        assert_eq!(b(&Id::pow2(158)), 1);
        assert_eq!(b(&Id::pow2(159)), 2);
        assert_eq!(b(&Id::MAX), 3);
        // Whole ring, wrapping start.
        let s = Id::pow2(159);
        assert_eq!(bucket_of(&s, &s, 2, &Id::MAX), 0);
        assert_eq!(bucket_of(&s, &s, 2, &Id::from_high_u64(1 << 62)), 1);
        // A tiny interval is one bucket.
        assert_eq!(
            bucket_of(&Id::from_u64(10), &Id::from_u64(20), 64, &Id::from_u64(15)),
            0
        );
    }

    /// An id near `base` (so that tiny intervals and bucket edges are
    /// hit: a few steps either way, or the edges of fine buckets near it),
    /// or anywhere.
    fn near(base: [u8; 20], offset: u64, how: u8) -> Id {
        let base = Id(base);
        let one = Id::from_u64(1);
        let (lo, hi) = fine_bounds(fine_of(&base));
        match how % 6 {
            0 => base.wrapping_add(&Id::from_u64(offset % 4)),
            1 => base.wrapping_sub(&Id::from_u64(offset % 4)),
            2 => lo.wrapping_sub(&one),
            3 => hi.wrapping_add(&Id::from_high_u64((offset % 3) << 48)),
            4 => lo.wrapping_add(&Id::from_u64(offset % 2)),
            _ => base.wrapping_add(&Id::from_high_u64(offset)),
        }
    }

    proptest::proptest! {
        /// Every id of the interval lies in the span of its own bucket and
        /// in no other's; no id outside the interval lies in any span.
        #[test]
        fn a_bucket_span_holds_exactly_the_ids_of_its_bucket(
            start in proptest::prelude::any::<[u8; 20]>(),
            edge in 0..3u8,
            len in proptest::prelude::any::<u64>(),
            tiny in proptest::prelude::any::<u8>(),
            whole in proptest::prelude::any::<bool>(),
            buckets in 1..80u32,
            probes in proptest::collection::vec((proptest::prelude::any::<u64>(), proptest::prelude::any::<u8>()), 1..40),
        ) {
            // Sometimes the first or the last id of a fine bucket.
            let (lo, hi) = fine_bounds(fine_of(&Id(start)));
            let start = match edge {
                0 => start,
                1 => lo.0,
                _ => hi.0,
            };
            let start_id = Id(start);
            let end = if whole { start_id } else { near(start, len, tiny) };
            let whole = start_id == end;
            let spans: Vec<Option<(Id, Id)>> =
                (0..buckets).map(|b| bucket_span(&start_id, &end, buckets, b)).collect();
            let mut ids: Vec<Id> = probes.iter().map(|(o, how)| near(start, *o, *how)).collect();
            ids.extend(probes.iter().map(|(o, how)| near(end.0, *o, *how)));
            ids.extend([start_id, end, end.wrapping_add(&Id::from_u64(1))]);
            for (b, span) in spans.iter().enumerate() {
                if let Some((a, z)) = span {
                    ids.extend([*a, a.wrapping_add(&Id::from_u64(1)), *z, z.wrapping_add(&Id::from_u64(1))]);
                } else {
                    // Only when there are more buckets than fine buckets
                    // spanned (the whole ring from a fine bucket's first
                    // id spans one fewer), or for the part of the first
                    // fine bucket after its last id.
                    let home = fine_bounds(fine_of(&start_id));
                    let at_edge = (whole && home.0 == start_id) || home.1 == start_id;
                    proptest::prop_assert!(
                        bucket_count(&start_id, &end, buckets) < buckets || at_edge,
                        "bucket {} empty", b
                    );
                }
            }
            for id in ids {
                let inside = whole || id.in_open_closed(&start_id, &end);
                let holders: Vec<u32> = spans
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.is_some_and(|(a, z)| id.in_open_closed(&a, &z)))
                    .map(|(b, _)| b as u32)
                    .collect();
                if inside {
                    proptest::prop_assert_eq!(holders, vec![bucket_of(&start_id, &end, buckets, &id)], "{:?}", id);
                } else {
                    proptest::prop_assert!(holders.is_empty(), "{:?} outside yet in {:?}", id, holders);
                }
            }
        }
    }
}
