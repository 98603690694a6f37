//! Carrying out the core's storage requests on a [`Store`]: shared by the
//! tokio driver and the simulator.

use crate::Store;
use chordal_core::{Id, Record, StoreKind, StoreResult, bucket_hash, bucket_of};

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
        } => scan_buckets(
            store, &start, &end, buckets, &which, resume, limit, max_bytes,
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
        _ => return StoreResult::Failed,
    };
    result.unwrap_or(StoreResult::Failed)
}

/// Visits every record of `(start, end]` in scan order, a page at a time.
fn for_each_in(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    mut resume: Option<(Id, Vec<u8>)>,
    mut visit: impl FnMut(Record) -> bool,
) -> Result<(), crate::StoreError> {
    loop {
        let page = store.scan(
            start,
            end,
            resume.as_ref().map(|(id, k)| (id, k.as_slice())),
            SCAN_PAGE,
        )?;
        let n = page.len();
        resume = page.last().map(|r| (r.key_id, r.key.clone()));
        for r in page {
            if !visit(r) {
                return Ok(());
            }
        }
        if n < SCAN_PAGE {
            return Ok(());
        }
    }
}

/// Per bucket of `(start, end]`, the XOR of [`bucket_hash`] over its
/// records, leaving out tombstones older than `hide_tombstones_before`.
pub fn summarize(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    buckets: u32,
    hide_tombstones_before: u64,
) -> Result<Vec<Id>, crate::StoreError> {
    let mut out = vec![Id::ZERO; buckets.max(1) as usize];
    for_each_in(store, start, end, None, |r| {
        if r.is_tombstone() && r.version.hlc < hide_tombstones_before {
            return true;
        }
        let b = bucket_of(start, end, buckets, &r.key_id) as usize;
        out[b] = out[b].xor(&bucket_hash(&r));
        true
    })?;
    Ok(out)
}

/// Records of `(start, end]` in the buckets `which`, after `resume`, at
/// most `limit` records and (after the first) `max_bytes` of keys and
/// values: a page of a transfer.
///
/// Reads the store in pages that start small and double, so that a page
/// of a few large values does not read (and throw away) thousands.
#[allow(clippy::too_many_arguments)]
pub fn scan_buckets(
    store: &dyn Store,
    start: &Id,
    end: &Id,
    buckets: u32,
    which: &[u32],
    mut resume: Option<(Id, Vec<u8>)>,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<Record>, crate::StoreError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut page = 16;
    loop {
        let want = page.min(limit.saturating_sub(out.len())).max(1);
        let got = store.scan(
            start,
            end,
            resume.as_ref().map(|(id, k)| (id, k.as_slice())),
            want,
        )?;
        let n = got.len();
        resume = got.last().map(|r| (r.key_id, r.key.clone()));
        for r in got {
            if which.contains(&bucket_of(start, end, buckets, &r.key_id)) {
                bytes += r.key.len() + r.value.as_ref().map_or(0, Vec::len);
                out.push(r);
                if out.len() >= limit || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
        if n < want {
            return Ok(out);
        }
        page = (page * 2).min(SCAN_PAGE);
    }
}

/// Removes records outside every `keep` interval (if any are given) that
/// are older than `keep_newer_than`, and tombstones inside a `tombstones`
/// interval older than `tombstones_before`. Returns how many went.
pub fn sweep(
    store: &dyn Store,
    keep: &[(Id, Id)],
    tombstones: &[(Id, Id)],
    tombstones_before: u64,
    keep_newer_than: u64,
) -> Result<u64, crate::StoreError> {
    let inside = |list: &[(Id, Id)], id: &Id| list.iter().any(|(s, e)| id.in_open_closed(s, e));
    let mut doomed = Vec::new();
    for_each_in(store, &Id::ZERO, &Id::ZERO, None, |r| {
        let stale = !keep.is_empty() && !inside(keep, &r.key_id) && r.version.hlc < keep_newer_than;
        let old_tombstone =
            r.is_tombstone() && r.version.hlc < tombstones_before && inside(tombstones, &r.key_id);
        if stale || old_tombstone {
            doomed.push((r.key_id, r.key, r.version));
        }
        true
    })?;
    let mut removed = 0;
    for chunk in doomed.chunks(1024) {
        removed += store.remove(chunk)? as u64;
    }
    Ok(removed)
}
