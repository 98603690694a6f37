//! The background passes read only part of the store — a sweep the fine
//! buckets that may hold something to remove, a transfer page the key
//! ids of the buckets it pushes — and must find exactly what a walk over
//! every record finds, in memory and in redb.

use chordal_core::{Id, Record, Time, Version, bucket_count, bucket_of};
use chordal_store::{
    FineDigest, KeyVersion, MemoryStore, PageLimits, RedbStore, Store, StoreError, fine_bounds,
    scan_buckets, summarize, summarize_by_scan, sweep, sweep_reads,
};
use proptest::prelude::*;

/// A record of key `k` (a quarter of them share one of four hash tags, so
/// one key id holds several keys, as a Redis Cluster client's keys do):
/// a value, a tombstone, or a value that expires at `expiry`.
fn record(k: u64, hlc: u64, shape: u8, expiry: u64) -> Record {
    let key = match k % 4 {
        0 => format!("{{tag{}}}key-{k}", k % 16).into_bytes(),
        _ => format!("key-{k}").into_bytes(),
    };
    let version = Version {
        term: 1,
        hlc,
        node: Id::from_u64(1),
    };
    let mut r = Record::new(
        key,
        version,
        (shape != 1).then(|| vec![k as u8; (k % 5) as usize]),
    );
    if shape == 2 {
        r.expires = Some(Time::from_micros(expiry));
    }
    r
}

/// Every record of `(start, end]`, page by page.
fn all_of(s: &dyn Store, start: &Id, end: &Id) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    loop {
        let resume = out.last().map(|r| (r.key_id, r.key.clone()));
        let got = s
            .scan(
                start,
                end,
                resume.as_ref().map(|(id, k)| (id, k.as_slice())),
                7,
            )
            .unwrap();
        let n = got.len();
        out.extend(got);
        if n < 7 {
            return out;
        }
    }
}

/// An interval end: anywhere, the ring's origin, a record's id, next to
/// one, or at the edge of a record's fine bucket (where sweeps and
/// buckets are cut).
fn end_near(ids: &[Id], pick: u8, at: usize, raw: [u8; 20]) -> Id {
    if ids.is_empty() {
        return Id(raw);
    }
    let id = ids[at % ids.len()];
    let one = Id::from_u64(1);
    let (lo, hi) = fine_bounds(chordal_store::fine_of(&id));
    // A few steps either side of the id, inside its fine bucket.
    let near = Id::from_u64(u64::from(raw[0] % 8));
    match pick % 9 {
        0 => Id(raw),
        1 => Id::ZERO,
        2 => id,
        3 => id.wrapping_sub(&one),
        4 => lo.wrapping_sub(&one),
        5 => hi,
        6 => lo,
        7 => id.wrapping_sub(&near),
        _ => id.wrapping_add(&near),
    }
}

type End = (u8, usize, [u8; 20]);

/// Ends near a handful of records, so that intervals often cut the fine
/// bucket of a record without holding its ends.
fn any_end() -> impl Strategy<Value = End> {
    (any::<u8>(), 0..4usize, any::<[u8; 20]>())
}

fn stores() -> (tempfile::TempDir, Vec<Box<dyn Store>>) {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("db")).unwrap();
    (dir, vec![Box::new(MemoryStore::new()), Box::new(redb)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A transfer read page by page gives the records of its buckets, in
    /// ring order from the interval's start, as filtering a full scan
    /// does — whatever the interval (whole ring, wrapping, cut inside a
    /// key id), the buckets and the page limits.
    #[test]
    fn bucket_pages_hold_what_a_full_scan_filters(
        writes in proptest::collection::vec((0..300u64, 1..50u64, 0..3u8), 1..200),
        (a, b, whole) in (any_end(), any_end(), any::<bool>()),
        buckets in 1..70u32,
        which in proptest::collection::vec(0..80u32, 0..12),
        (limit, max_bytes) in (1..40usize, 1..200usize),
    ) {
        let (_dir, stores) = stores();
        let records: Vec<Record> = writes.iter().map(|(k, hlc, shape)| record(*k, *hlc, *shape, 5)).collect();
        let ids: Vec<Id> = records.iter().map(|r| r.key_id).collect();
        let start = end_near(&ids, a.0, a.1, a.2);
        let end = if whole { start } else { end_near(&ids, b.0, b.1, b.2) };
        for s in &stores {
            s.apply(&records).unwrap();
            let mut model: Vec<Record> = all_of(s.as_ref(), &start, &end)
                .into_iter()
                .filter(|r| which.contains(&bucket_of(&start, &end, buckets, &r.key_id)))
                .collect();
            // In ring order from `start` (a scan of the whole ring starts
            // at zero).
            model.sort_by(|x, y| (start.distance(&x.key_id), &x.key).cmp(&(start.distance(&y.key_id), &y.key)));
            let mut paged: Vec<Record> = Vec::new();
            loop {
                let resume = paged.last().map(|r| (r.key_id, r.key.clone()));
                let page = scan_buckets(s.as_ref(), &start, &end, buckets, &which, resume, PageLimits { records: limit, bytes: max_bytes }).unwrap();
                prop_assert!(page.len() <= limit);
                if page.is_empty() {
                    break;
                }
                paged.extend(page);
            }
            prop_assert_eq!(&paged, &model, "({:?}, {:?}] in {} buckets, {:?}", start, end, buckets, which);
        }
    }

    /// A sweep that reads only the buckets that may hold what it removes
    /// removes exactly the stale copies and old tombstones a walk over
    /// every record finds, and nothing else.
    #[test]
    fn a_sweep_removes_what_a_full_walk_finds(
        writes in proptest::collection::vec((0..300u64, 1..50u64, 0..3u8, 0..50u64), 1..200),
        keep in proptest::collection::vec((any_end(), any_end()), 0..3),
        tombstones in proptest::collection::vec((any_end(), any_end()), 0..3),
        (tombstones_before, keep_newer_than) in (0..60u64, 0..60u64),
    ) {
        let (_dir, stores) = stores();
        let records: Vec<Record> = writes.iter().map(|(k, hlc, shape, exp)| record(*k, *hlc, *shape, *exp)).collect();
        let ids: Vec<Id> = records.iter().map(|r| r.key_id).collect();
        let interval = |(a, b): &(End, End)| (end_near(&ids, a.0, a.1, a.2), end_near(&ids, b.0, b.1, b.2));
        let keep: Vec<(Id, Id)> = keep.iter().map(interval).collect();
        let tombstones: Vec<(Id, Id)> = tombstones.iter().map(interval).collect();
        let inside = |list: &[(Id, Id)], id: &Id| list.iter().any(|(s, e)| id.in_open_closed(s, e));
        for s in &stores {
            s.apply(&records).unwrap();
            let before = all_of(s.as_ref(), &Id::ZERO, &Id::ZERO);
            let (gone, kept): (Vec<Record>, Vec<Record>) = before.into_iter().partition(|r| {
                let stale = !keep.is_empty() && !inside(&keep, &r.key_id) && r.version.hlc < keep_newer_than;
                let dead = r.dead_since().is_some_and(|d| d < tombstones_before) && inside(&tombstones, &r.key_id);
                stale || dead
            });
            let removed = sweep(s.as_ref(), &keep, &tombstones, tombstones_before, keep_newer_than).unwrap();
            prop_assert_eq!(removed, gone.len() as u64);
            prop_assert_eq!(all_of(s.as_ref(), &Id::ZERO, &Id::ZERO), kept);
        }
    }
}

/// How many of `records` lie in the intervals `reads`.
fn read_by(records: &[Record], reads: &[(Id, Id)]) -> usize {
    records
        .iter()
        .filter(|r| {
            reads
                .iter()
                .any(|(after, last)| r.key_id.in_open_closed(after, last))
        })
        .count()
}

/// A settled node's sweep reads only the fine buckets its intervals cut:
/// with every record inside the intervals it keeps and no tombstones, it
/// reads the two buckets holding the intervals' ends, not the thousands
/// of others that hold records.
#[test]
fn a_settled_sweep_reads_only_the_buckets_its_intervals_cut() {
    let store = MemoryStore::new();
    let records: Vec<Record> = (0..20_000u64).map(|k| record(k * 4 + 1, 1, 0, 0)).collect();
    store.apply(&records).unwrap();
    let (a, b) = (Id::from_high_u64(1 << 62), Id::from_high_u64(3 << 62));
    let keep = [(a, b), (b, a)];
    let reads = sweep_reads(&store, &keep, &[]);
    assert!(reads.len() <= 2, "{reads:?}");
    let read = read_by(&records, &reads);
    assert!(read < 20, "{read} of 20,000 records read");
    // With nothing kept around `a`, the sweep reads what lies there.
    let reads = sweep_reads(&store, &[(b, a)], &[]);
    let outside = records
        .iter()
        .filter(|r| r.key_id.in_open_closed(&a, &b))
        .count();
    let read = read_by(&records, &reads);
    assert!(
        read >= outside && read < outside + 20,
        "{read} read, {outside} outside"
    );
}

/// A memory store that counts the records its scans return.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    read: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn took(&self, n: usize) {
        self.read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn reads(&self) -> usize {
        self.read.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

type Resume<'a> = Option<(&'a Id, &'a [u8])>;

impl Store for Counting {
    fn get(&self, key_id: &Id, key: &[u8]) -> Result<Option<Record>, StoreError> {
        self.inner.get(key_id, key)
    }
    fn apply(&self, batch: &[Record]) -> Result<Vec<chordal_core::Applied>, StoreError> {
        self.inner.apply(batch)
    }
    fn max_hlc(&self) -> Result<u64, StoreError> {
        self.inner.max_hlc()
    }
    fn scan(
        &self,
        start: &Id,
        end: &Id,
        resume: Resume<'_>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let page = self.inner.scan(start, end, resume, limit)?;
        self.took(page.len());
        Ok(page)
    }
    fn scan_versions(
        &self,
        start: &Id,
        end: &Id,
        resume: Resume<'_>,
        limit: usize,
    ) -> Result<Vec<KeyVersion>, StoreError> {
        let page = self.inner.scan_versions(start, end, resume, limit)?;
        self.took(page.len());
        Ok(page)
    }
    fn fine_digests(&self, first: usize, count: usize) -> Option<Vec<(usize, FineDigest)>> {
        self.inner.fine_digests(first, count)
    }
    fn remove(&self, keys: &[(Id, Vec<u8>, Version)]) -> Result<usize, StoreError> {
        self.inner.remove(keys)
    }
    fn count(&self) -> Result<u64, StoreError> {
        self.inner.count()
    }
    fn bytes(&self) -> Result<u64, StoreError> {
        self.inner.bytes()
    }
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta(name)
    }
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.set_meta(name, value)
    }
}

/// A summary of a third of the ring in the most buckets a sync uses reads
/// only the records of the two fine buckets its ends cut — its buckets
/// are runs of whole fine buckets — and a push of three of its buckets
/// reads only their records.
#[test]
fn summaries_and_pushes_read_only_what_they_cover() {
    let store = Counting::default();
    let records: Vec<Record> = (0..30_000u64).map(|k| record(k * 4 + 1, 1, 0, 0)).collect();
    store.apply(&records).unwrap();
    let (start, end) = (
        Id::from_high_u64(0x1234 << 48 | 77),
        Id::from_high_u64(0x6789 << 48 | 5),
    );
    let count = bucket_count(&start, &end, 1024);
    assert_eq!(count, 1024);
    let fast = summarize(&store, &start, &end, count, 0).unwrap();
    let read = store.reads();
    assert_eq!(
        fast,
        summarize_by_scan(&store.inner, &start, &end, count, 0).unwrap()
    );
    assert!(read < 20, "a summary read {read} records");
    let which = [3, 500, 1023];
    let page = scan_buckets(
        &store,
        &start,
        &end,
        count,
        &which,
        None,
        PageLimits {
            records: 100_000,
            bytes: usize::MAX,
        },
    )
    .unwrap();
    let read = store.reads();
    let wanted = records
        .iter()
        .filter(|r| r.key_id.in_open_closed(&start, &end))
        .filter(|r| which.contains(&bucket_of(&start, &end, count, &r.key_id)))
        .count();
    assert_eq!(page.len(), wanted);
    assert!(
        wanted > 0 && read == wanted,
        "{read} read for {wanted} pushed"
    );
}

/// A fine bucket an interval's end cuts is summarized from its digest and
/// the smaller of its two sides: with a hash tag's 2,000 keys on one side
/// of the cut (one key id), either way, a summary equals a full scan's
/// and reads at most a few hundred records.
#[test]
fn a_cut_bucket_is_summarized_from_its_smaller_side() {
    let store = Counting::default();
    let tagged: Vec<Record> = (0..2_000u64)
        .map(|k| {
            let version = Version {
                term: 1,
                hlc: 1,
                node: Id::from_u64(1),
            };
            Record::new(format!("{{hot}}k{k}").into_bytes(), version, Some(vec![1]))
        })
        .collect();
    let tag = tagged[0].key_id;
    store.apply(&tagged).unwrap();
    let others: Vec<Record> = (0..5_000u64).map(|k| record(k * 4 + 1, 1, 0, 0)).collect();
    store.apply(&others).unwrap();
    let one = Id::from_u64(1);
    let far = tag.wrapping_add(&Id::from_high_u64(1 << 62));
    let back = tag.wrapping_sub(&Id::from_high_u64(1 << 62));
    // (start, end]: the tag inside or outside, at the end or the start.
    for (start, end) in [
        (back, tag),
        (back, tag.wrapping_sub(&one)),
        (tag.wrapping_sub(&one), far),
        (tag, far),
    ] {
        let count = bucket_count(&start, &end, 1024);
        let fast = summarize(&store, &start, &end, count, 0).unwrap();
        let read = store.reads();
        assert_eq!(
            fast,
            summarize_by_scan(&store.inner, &start, &end, count, 0).unwrap()
        );
        assert!(read < 300, "({start:?}, {end:?}]: {read} records read");
    }
}
