//! A page of a scan (SCAN, KEYS, FLUSHALL walk the keyspace this way),
//! served by the owner of the page's first key id: the live keys of its
//! store in the part of its range the page covers, merged with the writes
//! it versioned and has not stored yet (see `hot.rs`).
//!
//! Why a key present for a whole scan is returned: each part of the ring
//! is read from the vnode that owns it when the page is asked for, and
//! only once that vnode's term has caught up (its store then holds every
//! write acknowledged in the range); a write the owner acknowledged but
//! has not stored is in its hot set.

use super::{Store, StoreWait};
use crate::io::Cx;
use crate::request::ReplyTo;
use crate::{Id, KeyRange, NodeRef, OpResult, Record, StoreKind, StoreResult, Time};
use std::collections::BTreeSet;

/// Scans served at once by one process; more are answered `Overloaded`
/// (each reads up to a page of records on a blocking thread).
const MAX_SCANS: usize = 8;
/// Most keys one page asks its store for (a page ends where the top 64
/// bits of the key id change, so a hash tag's group comes whole).
pub const MAX_SCAN_KEYS: usize = 10_000;
/// Records a page may look at (tombstones and expired values included)
/// per key asked for, beyond a floor of `BUDGET_FLOOR`.
const BUDGET_PER_KEY: usize = 8;
const BUDGET_FLOOR: usize = 256;

/// A page waiting for its store read.
#[derive(Debug)]
pub(super) struct Scanning {
    reply: ReplyTo,
    start: Id,
    now: Time,
    /// The owner's pending records of the page's ids when it was asked.
    hot: Vec<Record>,
}

/// `end`, or less: the last id of `range` when `range` goes on from
/// `start` without wrapping past the top of the ring.
fn within(range: Option<KeyRange>, start: &Id, end: Id) -> Id {
    match range {
        Some(r) if r.start != r.end && r.end >= *start => end.min(r.end),
        _ => end,
    }
}

impl Store {
    /// Serves `Operation::Scan` as `vnode`, which owns `start` (checked by
    /// the request machine): reads the live keys of `[start, end]` up to
    /// the end of our range (and of our term's) and answers
    /// `OpResult::Keys` once the store has. A term still catching up
    /// answers `NotReady`: its store may lack acknowledged keys.
    pub fn scan(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (start, end, limit): (Id, Id, u32),
        reply: ReplyTo,
    ) {
        if self.closing() {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        if end < start {
            cx.io.answer(
                reply,
                OpResult::Keys {
                    keys: Vec::new(),
                    reached: end,
                },
            );
            return;
        }
        if self.scans >= MAX_SCANS {
            cx.io.answer(reply, OpResult::Overloaded);
            return;
        }
        let mut last = within(cx.ring.range_of(&vnode), &start, end);
        if cx.config.authority {
            match cx.authority.lease(&vnode, &start, now) {
                Ok(lease) if lease.catch_up.is_empty() => {
                    last = within(Some(lease.range), &start, last);
                }
                _ => {
                    cx.io.answer(reply, super::owner::not_ready(cx));
                    return;
                }
            }
        }
        let limit = (limit as usize).clamp(1, MAX_SCAN_KEYS);
        let hot = self.hot.pending_between(&start, &last);
        self.scans += 1;
        let kind = StoreKind::Keys {
            start,
            end: last,
            limit,
            budget: limit * BUDGET_PER_KEY + BUDGET_FLOOR,
            now,
        };
        let waiting = Scanning {
            reply,
            start,
            now,
            hot,
        };
        self.store_op(cx, kind, StoreWait::OwnerScan(Box::new(waiting)));
    }

    /// The store read of a page is back: add the pending records (those
    /// seen when the page was asked for, then those pending now, newer)
    /// and answer.
    pub(super) fn scanned(&mut self, cx: &mut Cx<'_>, result: StoreResult, s: Scanning) {
        self.scans = self.scans.saturating_sub(1);
        let StoreResult::Keys(keys, reached) = result else {
            cx.io.answer(s.reply, OpResult::StoreFailed);
            return;
        };
        let mut page: BTreeSet<(Id, Vec<u8>)> = keys.into_iter().collect();
        let now_pending = self.hot.pending_between(&s.start, &reached);
        for r in s.hot.into_iter().chain(now_pending) {
            // A collection's elements are not keys of their own.
            if r.key_id > reached || crate::collection::key::is_reserved(&r.key) {
                continue;
            }
            if r.is_live(s.now) {
                page.insert((r.key_id, r.key));
            } else {
                page.remove(&(r.key_id, r.key));
            }
        }
        let keys = page.into_iter().map(|(_, k)| k).collect();
        cx.io.answer(s.reply, OpResult::Keys { keys, reached });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> Option<KeyRange> {
        Some(KeyRange {
            start: Id::from_high_u64(start),
            end: Id::from_high_u64(end),
        })
    }

    #[test]
    fn a_page_stops_at_the_end_of_the_range_unless_it_wraps() {
        let start = Id::from_high_u64(10);
        assert_eq!(within(range(5, 20), &start, Id::MAX), Id::from_high_u64(20));
        assert_eq!(
            within(range(5, 20), &start, Id::from_high_u64(15)),
            Id::from_high_u64(15)
        );
        // (50, 20] wraps past the top: from 10 it goes on to 20.
        assert_eq!(
            within(range(50, 20), &start, Id::MAX),
            Id::from_high_u64(20)
        );
        // From 60, the part of (50, 20] before the top: up to MAX.
        let late = Id::from_high_u64(60);
        assert_eq!(within(range(50, 20), &late, Id::MAX), Id::MAX);
        // The whole ring, or no range known: the caller's end.
        assert_eq!(within(range(7, 7), &start, Id::MAX), Id::MAX);
        assert_eq!(within(None, &start, Id::MAX), Id::MAX);
    }
}
