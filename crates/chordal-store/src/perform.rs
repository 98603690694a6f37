//! Carrying out the core's storage requests on a [`Store`]: shared by the
//! tokio driver and the simulator.

use crate::{FINE, KeyVersion, Store, fine_bounds, fine_of};
use chordal_core::{
    Id, Record, StoreKind, StoreResult, Time, bucket_of, bucket_span, collection, fine_span,
};
use std::ops::ControlFlow;

/// Records read per store call while summarizing or filtering a range.
const SCAN_PAGE: usize = 4096;

/// Performs `kind` on `store` synchronously. (Drivers that must not block
/// on durable writes handle `Apply` with [`Store::apply_with`] instead.)
pub fn perform(store: &dyn Store, kind: StoreKind) -> StoreResult {
    let result = match kind {
        StoreKind::Get { key_id, key } => store.get(&key_id, &key).map(StoreResult::Got),
        StoreKind::Apply { records } => store.apply(&records).map(StoreResult::Applied),
        StoreKind::Summary {
            start,
            end,
            buckets,
            hide_tombstones_before,
        } => summarize(store, &start, &end, buckets, hide_tombstones_before)
            .map(StoreResult::Summary),
        StoreKind::ScanBuckets {
            start,
            end,
            buckets,
            which,
            resume,
            limit,
            max_bytes,
        } => {
            let page = PageLimits {
                records: limit,
                bytes: max_bytes,
            };
            scan_buckets(store, &start, &end, buckets, &which, resume, page)
                .map(StoreResult::Scanned)
        }
        StoreKind::Keys {
            start,
            end,
            limit,
            budget,
            now,
        } => live_keys(store, &start, &end, (limit, budget), now)
            .map(|(keys, reached)| StoreResult::Keys(keys, reached)),
        StoreKind::Elements {
            born,
            key_id,
            prefix,
            after,
            to,
            limit,
            max_bytes,
            tombstones,
        } => elements(
            store,
            (&key_id, born, tombstones),
            (&prefix, after, to),
            (limit, max_bytes),
        )
        .map(StoreResult::Scanned),
        StoreKind::Sweep {
            keep,
            tombstones,
            tombstones_before,
            keep_newer_than,
        } => sweep(
            store,
            &keep,
            &tombstones,
            tombstones_before,
            keep_newer_than,
        )
        .map(StoreResult::Swept),
        StoreKind::SavePromises { bytes } => store
            .set_meta(crate::PROMISES, &bytes)
            .map(|()| StoreResult::Saved),
    };
    result.unwrap_or(StoreResult::Failed)
}

/// Visits the key and version of every record of `(start, end]` in scan
/// order, a page at a time (values are not read).
fn for_each_version(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    mut visit: impl FnMut(KeyVersion),
) -> Result<(), crate::StoreError> {
    try_for_each_version(store, start, end, |r| {
        visit(r);
        ControlFlow::Continue(())
    })
    .map(|_| ())
}

/// [`for_each_version`] until `visit` says `Break`; whether it did. Pages
/// start small and double (up to [`SCAN_PAGE`]), so a walk that stops
/// early reads little past where it stops.
fn try_for_each_version(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    mut visit: impl FnMut(KeyVersion) -> ControlFlow<()>,
) -> Result<bool, crate::StoreError> {
    let mut resume: Option<(Id, Vec<u8>)> = None;
    let mut size = 64;
    loop {
        let page = store.scan_versions(
            start,
            end,
            resume.as_ref().map(|(id, k)| (id, k.as_slice())),
            size,
        )?;
        let n = page.len();
        resume = page.last().map(|r| (r.key_id, r.key.clone()));
        for r in page {
            if visit(r).is_break() {
                return Ok(true);
            }
        }
        if n < size {
            return Ok(false);
        }
        size = (size * 2).min(SCAN_PAGE);
    }
}

/// Per bucket of `(start, end]`, the XOR of [`bucket_hash`](chordal_core::bucket_hash) over its
/// records, leaving out those dead (tombstones, expired values) since
/// before `hide_tombstones_before`.
///
/// From the store's fine-bucket digests where it keeps them (a pass over
/// at most 65,536 small entries plus exact reads of the few fine buckets
/// a boundary cuts or that hold mortal records, keys and versions only); by a
/// scan of the range otherwise.
pub fn summarize(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    buckets: u32,
    hide_tombstones_before: u64,
) -> Result<Vec<Id>, crate::StoreError> {
    let first = fine_of(start);
    // The fine buckets the interval touches, from the one holding `start`
    // (all of them for the whole ring, or when it wraps within one).
    let span = fine_span(start, end).min(FINE);
    let Some(digests) = store.fine_digests(first, span) else {
        return summarize_by_scan(store, start, end, buckets, hide_tombstones_before);
    };
    let mut out = vec![Id::ZERO; buckets.max(1) as usize];
    let inside = |id: &Id| start == end || id.in_open_closed(start, end);
    for &(f, d) in &digests {
        let (lo, hi) = fine_bounds(f);
        let b = bucket_of(start, end, buckets, &lo);
        let whole = inside(&lo)
            && inside(&hi)
            && f != first
            && f != fine_of(end)
            && b == bucket_of(start, end, buckets, &hi);
        if whole && d.mortal == 0 {
            let b = b as usize;
            out[b] = out[b].xor(&d.xor);
            continue;
        }
        let one = Id::from_u64(1);
        if d.mortal == 0
            && let Some(cut) = one_side_cut(start, end, buckets, f)
        {
            // Cut by one end only, its inside part in one bucket: the
            // bucket's digest less its outside part, if that is small
            // (the records of one key id, a hash tag's, may fill either).
            let mut xor = d.xor;
            let mut looked = 0;
            let stopped = match cut.outside {
                None => false,
                Some((after, last)) => try_for_each_version(store, &after, &last, |r| {
                    looked += 1;
                    if looked > CUT_BUDGET {
                        return ControlFlow::Break(());
                    }
                    xor = xor.xor(&r.digest());
                    ControlFlow::Continue(())
                })?,
            };
            if !stopped {
                out[cut.bucket] = out[cut.bucket].xor(&xor);
            } else if let Some((after, last)) = cut.inside {
                for_each_version(store, &after, &last, |r| {
                    out[cut.bucket] = out[cut.bucket].xor(&r.digest());
                })?;
            }
            continue;
        }
        // Cut by both ends, or holding mortal records: read it exactly.
        let before_lo = lo.wrapping_sub(&one);
        for_each_version(store, &before_lo, &hi, |r| {
            if inside(&r.key_id) && !r.dead_before(hide_tombstones_before) {
                let b = bucket_of(start, end, buckets, &r.key_id) as usize;
                out[b] = out[b].xor(&r.digest());
            }
        })?;
    }
    Ok(out)
}

/// Records of a cut fine bucket's outside part read before reading its
/// inside part instead.
const CUT_BUDGET: usize = 128;

/// A fine bucket cut by one end of a summary's interval.
struct Cut {
    /// Its ids outside the interval, `(after, last]` (`None`: none).
    outside: Option<(Id, Id)>,
    /// Its ids inside the interval (`None`: none).
    inside: Option<(Id, Id)>,
    /// The sync bucket every inside id falls in (sync buckets are runs of
    /// whole fine buckets).
    bucket: usize,
}

/// Fine bucket `f` if exactly one end of `(start, end]` (not the whole
/// ring) lies in it.
fn one_side_cut(start: &Id, end: &Id, buckets: u32, f: usize) -> Option<Cut> {
    let (lo, hi) = fine_bounds(f);
    let before_lo = lo.wrapping_sub(&Id::from_u64(1));
    let (holds_start, holds_end) = (fine_of(start) == f, fine_of(end) == f);
    if start == end || holds_start == holds_end {
        return None;
    }
    // An interval `(a, a]` would be the whole ring: an empty part is None.
    let part = |after: Id, last: Id| (after != last).then_some((after, last));
    Some(if holds_start {
        // [lo, start] is outside, (start, hi] inside (offset 0).
        Cut {
            outside: part(before_lo, *start),
            inside: part(*start, hi),
            bucket: bucket_of(start, end, buckets, &hi) as usize,
        }
    } else {
        // [lo, end] is inside, (end, hi] outside.
        Cut {
            outside: part(*end, hi),
            inside: part(before_lo, *end),
            bucket: bucket_of(start, end, buckets, end) as usize,
        }
    })
}

/// [`summarize`] by a scan of every record of the range (for stores
/// without digests, and as the model digests are tested against).
pub fn summarize_by_scan(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    buckets: u32,
    hide_tombstones_before: u64,
) -> Result<Vec<Id>, crate::StoreError> {
    let mut out = vec![Id::ZERO; buckets.max(1) as usize];
    for_each_version(store, start, end, |r| {
        if !r.dead_before(hide_tombstones_before) {
            let b = bucket_of(start, end, buckets, &r.key_id) as usize;
            out[b] = out[b].xor(&r.digest());
        }
    })?;
    Ok(out)
}

/// How much one transfer page holds.
#[derive(Clone, Copy, Debug)]
pub struct PageLimits {
    /// At most this many records.
    pub records: usize,
    /// At most this many bytes of keys and values (but always the first
    /// record, whatever its size).
    pub bytes: usize,
}

/// Records of `(start, end]` (split in `buckets`) in the buckets `which`,
/// after `resume`, within `page`: a page of a transfer.
///
/// Reads only the key ids of those buckets (a push of a few differing
/// buckets of a large range does not walk the rest), in pages that start
/// small and double, so that a page of a few large values does not read
/// (and throw away) thousands.
pub fn scan_buckets(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    buckets: u32,
    which: &[u32],
    resume: Option<(Id, Vec<u8>)>,
    page: PageLimits,
) -> Result<Vec<Record>, crate::StoreError> {
    let PageLimits {
        records: limit,
        bytes: max_bytes,
    } = page;
    let mut out = Vec::new();
    let mut bytes = 0;
    for (after, last) in bucket_runs(start, end, buckets, which) {
        // Resume inside the run that holds the last page's end; runs
        // before it are done.
        let mut from = match &resume {
            Some((id, key)) if id.in_open_closed(&after, &last) => Some((*id, key.clone())),
            Some((id, _)) if start.distance(id) > start.distance(&last) => continue,
            _ => None,
        };
        let mut page = 16;
        loop {
            let want = page.min(limit.saturating_sub(out.len())).max(1);
            let got = store.scan(
                &after,
                &last,
                from.as_ref().map(|(id, k)| (id, k.as_slice())),
                want,
            )?;
            let n = got.len();
            from = got.last().map(|r| (r.key_id, r.key.clone()));
            for r in got {
                bytes += r.key.len() + r.value.as_ref().map_or(0, Vec::len);
                out.push(r);
                if out.len() >= limit || bytes >= max_bytes {
                    return Ok(out);
                }
            }
            if n < want {
                break;
            }
            page = (page * 2).min(SCAN_PAGE);
        }
    }
    Ok(out)
}

/// The key ids of the buckets `which` of `(start, end]` (split in
/// `buckets`), as ring intervals `(after, last]` in ring order from
/// `start`, neighbouring buckets joined into one interval.
fn bucket_runs(start: &Id, end: &Id, buckets: u32, which: &[u32]) -> Vec<(Id, Id)> {
    let mut wanted: Vec<u32> = which
        .iter()
        .copied()
        .filter(|b| *b < buckets.max(1))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut runs: Vec<(Id, Id)> = Vec::new();
    for b in wanted {
        let Some((after, last)) = bucket_span(start, end, buckets, b) else {
            continue;
        };
        match runs.last_mut() {
            Some(run) if run.1 == after => run.1 = last,
            _ => runs.push((after, last)),
        }
    }
    // A run of the whole ring, `(a, a]`, the store reads from zero: split
    // at the top of the id space, it reads in ring order from `a` like any
    // other run (and a resume falls in the right half).
    runs.into_iter()
        .flat_map(|(after, last)| {
            if after == last && after != Id::MAX {
                vec![(after, Id::MAX), (Id::MAX, after)]
            } else {
                vec![(after, last)]
            }
        })
        .collect()
}

/// Live keys with their ids, in key-id order.
pub type KeyPage = Vec<(Id, Vec<u8>)>;

/// The keys of the live records with ids in `[start, end]` (`start <=
/// end`), in key-id order, values unread: a page of a scan (see
/// [`StoreKind::Keys`]). Stops once `limit` keys were found or `budget`
/// records looked at, but only where the top 64 bits of the key id
/// change; answers the keys and the last id the page covers.
pub fn live_keys(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    (limit, budget): (usize, usize),
    now: Time,
) -> Result<(KeyPage, Id), crate::StoreError> {
    // The ring interval (start - 1, end] is [start, end]; from ZERO to MAX
    // it is (MAX, MAX], which the store reads as the whole ring.
    let before = start.wrapping_sub(&Id::from_u64(1));
    let mut out = Vec::new();
    let mut looked = 0;
    // The top 64 bits of the last record looked at.
    let mut group: Option<u64> = None;
    let stopped = try_for_each_version(store, &before, end, |r| {
        let high = r.key_id.high_u64();
        if (out.len() >= limit || looked >= budget) && group.is_some_and(|g| g != high) {
            return ControlFlow::Break(());
        }
        looked += 1;
        group = Some(high);
        // A collection's elements are not keys of their own.
        if !r.tombstone
            && r.expires.is_none_or(|e| e > now)
            && !collection::key::is_reserved(&r.key)
        {
            out.push((r.key_id, r.key));
        }
        ControlFlow::Continue(())
    })?;
    let reached = match (stopped, group) {
        (true, Some(last)) => Id::from_high_u64(last).end_of_high_u64(),
        _ => *end,
    };
    Ok((out, reached))
}

/// The live records of key id `key_id` whose keys start with `prefix`
/// (a collection's elements) and whose versions are not older than
/// `born`, after `after` and up to `to` (inclusive), in key order: at
/// most `limit`, stopping once `max_bytes` of keys and values are read.
/// Tombstones are skipped unless `tombstones` (a watch's changes).
pub fn elements(
    store: &dyn Store,
    (key_id, born, tombstones): (&Id, chordal_core::Version, bool),
    (prefix, after, to): (&[u8], Vec<u8>, Option<Vec<u8>>),
    (limit, max_bytes): (usize, usize),
) -> Result<Vec<Record>, crate::StoreError> {
    let before = key_id.wrapping_sub(&Id::from_u64(1));
    let mut resume = (*key_id, after);
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut size = 64.min(limit.max(1));
    loop {
        let page = store.scan(&before, key_id, Some((&resume.0, &resume.1)), size)?;
        let full = page.len() == size;
        for r in page {
            let past_prefix = r.key.as_slice() > prefix && !r.key.starts_with(prefix);
            if past_prefix || to.as_ref().is_some_and(|to| r.key > *to) {
                return Ok(out);
            }
            resume = (r.key_id, r.key.clone());
            let dead = r.value.is_none() && !tombstones;
            if !r.key.starts_with(prefix) || dead || r.version < born {
                continue;
            }
            bytes += r.key.len() + r.value.as_ref().map_or(0, Vec::len);
            out.push(r);
            if out.len() >= limit || bytes >= max_bytes {
                return Ok(out);
            }
        }
        if !full {
            return Ok(out);
        }
        size = (size * 2).min(SCAN_PAGE);
    }
}

/// Removes records outside every `keep` interval (if any are given) that
/// are older than `keep_newer_than`, and records inside a `tombstones`
/// interval dead (tombstones, expired values) since before
/// `tombstones_before`. Returns how many went.
///
/// Reads only the fine buckets that may hold such records (see
/// [`sweep_reads`]): a sweep of a settled node touches few records.
pub fn sweep(
    store: &dyn Store,
    keep: &[(Id, Id)],
    tombstones: &[(Id, Id)],
    tombstones_before: u64,
    keep_newer_than: u64,
) -> Result<u64, crate::StoreError> {
    let inside = |list: &[(Id, Id)], id: &Id| list.iter().any(|(s, e)| id.in_open_closed(s, e));
    let mut doomed = Vec::new();
    for (after, last) in sweep_reads(store, keep, tombstones) {
        // Keys and versions only: a sweep never needs a value.
        for_each_version(store, &after, &last, |r| {
            let stale =
                !keep.is_empty() && !inside(keep, &r.key_id) && r.version.hlc < keep_newer_than;
            let old_tombstone = r.dead_before(tombstones_before) && inside(tombstones, &r.key_id);
            if stale || old_tombstone {
                doomed.push((r.key_id, r.key, r.version));
            }
        })?;
    }
    let mut removed = 0;
    for chunk in doomed.chunks(1024) {
        removed += store.remove(chunk)? as u64;
    }
    Ok(removed)
}

/// The ring intervals `(after, last]` a [`sweep`] must read: the fine
/// buckets holding records that are not wholly inside one `keep`
/// interval (when `keep` is given), and those holding mortal records
/// (tombstones, values with an expiry) that a `tombstones` interval
/// touches; buckets with no skipped bucket of records between them
/// joined. The whole ring for a store without fine digests.
pub fn sweep_reads(store: &dyn Store, keep: &[(Id, Id)], tombstones: &[(Id, Id)]) -> Vec<(Id, Id)> {
    let Some(fine) = store.fine_digests(0, FINE) else {
        return vec![(Id::ZERO, Id::ZERO)];
    };
    let mut runs: Vec<(Id, Id)> = Vec::new();
    // Whether the last run may grow: no bucket holding records we skip
    // lies after it (empty buckets cost a scan nothing).
    let mut open = false;
    for (f, d) in fine {
        let may_be_stale = !keep.is_empty() && !keep.iter().any(|(s, e)| holds_fine(s, e, f));
        let may_be_dead = d.mortal > 0 && tombstones.iter().any(|(s, e)| touches_fine(s, e, f));
        if !may_be_stale && !may_be_dead {
            open = false;
            continue;
        }
        let (lo, hi) = fine_bounds(f);
        match runs.last_mut() {
            Some(run) if open => run.1 = hi,
            _ => runs.push((lo.wrapping_sub(&Id::from_u64(1)), hi)),
        }
        open = true;
    }
    runs
}

/// Is all of fine bucket `f` inside `(start, end]`? (A bucket holding
/// either end is not: part of it may lie outside.)
fn holds_fine(start: &Id, end: &Id, f: usize) -> bool {
    if start == end {
        return true;
    }
    let (lo, hi) = fine_bounds(f);
    lo.in_open_closed(start, end)
        && hi.in_open_closed(start, end)
        && fine_of(start) != f
        && fine_of(end) != f
}

/// Does `(start, end]` share any id with fine bucket `f`?
fn touches_fine(start: &Id, end: &Id, f: usize) -> bool {
    let (lo, hi) = fine_bounds(f);
    // An interval that holds neither end of the bucket but meets it ends
    // inside it.
    start == end
        || lo.in_open_closed(start, end)
        || hi.in_open_closed(start, end)
        || fine_of(end) == f
}
