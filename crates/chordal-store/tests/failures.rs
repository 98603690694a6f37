//! Storage failures (a full disk, a failing device), injected through a
//! redb backend that fails on purpose, as redb's own crash tests do:
//! writes that were not synced are never acknowledged, reads keep being
//! served, and the store recovers by itself once writes work again.

use chordal_core::{Applied, Id, Record, Version};
use chordal_store::{Backing, RedbStore, Store, StoreError};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// What the test makes the disk do.
#[derive(Debug, Default)]
struct Faults {
    /// Every write, resize and sync fails with "no space left".
    full: AtomicBool,
    /// Counts syncs down; the sync that takes it to zero fails (an I/O
    /// error), and so do the writes after it until `full` is cleared.
    syncs_until_failure: AtomicI64,
}

/// A file backend whose writes fail when `faults` says so.
#[derive(Debug)]
struct FaultyBackend {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl FaultyBackend {
    fn check(&self) -> io::Result<()> {
        if self.faults.full.load(SeqCst) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.check()?;
        if self.faults.syncs_until_failure.fetch_sub(1, SeqCst) == 1 {
            self.faults.full.store(true, SeqCst);
            return Err(io::Error::other("injected sync failure"));
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

/// A store on `path` whose disk obeys `faults`.
fn faulty_store(path: &Path, faults: Arc<Faults>) -> RedbStore {
    let (open_path, open_faults, probe_faults) = (path.to_path_buf(), faults.clone(), faults);
    let backing = Backing {
        open: Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&open_path)?;
            let backend = FaultyBackend {
                inner: FileBackend::new(file)?,
                faults: open_faults.clone(),
            };
            redb::Builder::new().create_with_backend(backend)
        }),
        probe: Box::new(move || {
            if probe_faults.full.load(SeqCst) {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            } else {
                Ok(())
            }
        }),
    };
    RedbStore::with_backing(backing).expect("open")
}

fn record(k: u64) -> Record {
    Record::new(
        format!("key-{k}").into_bytes(),
        Version {
            term: 0,
            hlc: k + 1,
            node: Id::from_u64(1),
        },
        Some(vec![k as u8; 4000]),
    )
}

fn db_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    (dir, path)
}

fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The disk fills up: writes fail with `Full` (not some other error),
/// reads go on, and once space is back the store takes writes again
/// without a restart — with everything acknowledged before still there.
#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    let (_dir, path) = db_path();
    let faults = Arc::new(Faults::default());
    let store = faulty_store(&path, faults.clone());
    for k in 0..50 {
        assert_eq!(store.apply(&[record(k)]).unwrap(), vec![Applied::Stored]);
    }
    assert!(store.health().is_none());

    faults.full.store(true, SeqCst);
    let err = store.apply(&[record(100)]).unwrap_err();
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    assert!(matches!(store.health(), Some(StoreError::Full(_))));
    // Later writes are refused the same way, at once.
    assert!(matches!(
        store.apply(&[record(101)]),
        Err(StoreError::Full(_))
    ));
    // Reads are served meanwhile.
    for k in 0..50 {
        let r = record(k);
        assert_eq!(store.get(&r.key_id, &r.key).unwrap(), Some(r));
    }
    assert_eq!(store.count().unwrap(), 50);

    // Space is freed: within a few seconds the store reopens by itself.
    faults.full.store(false, SeqCst);
    assert!(
        eventually(Duration::from_secs(10), || store.health().is_none()),
        "the store did not recover"
    );
    assert_eq!(store.apply(&[record(102)]).unwrap(), vec![Applied::Stored]);
    for k in (0..50).chain([102]) {
        let r = record(k);
        assert_eq!(store.get(&r.key_id, &r.key).unwrap(), Some(r), "key {k}");
    }
    // The failed writes were never acknowledged; after the reopen they are
    // either wholly there or not at all, never half.
    for k in [100, 101] {
        let r = record(k);
        let got = store.get(&r.key_id, &r.key).unwrap();
        assert!(got.is_none() || got == Some(r));
    }
}

/// The device fails at the N-th sync, for every N over a run of writes:
/// the batch whose sync failed is reported failed, every batch reported
/// stored is there after the store recovered, and after a reopen from the
/// file (a restart) too.
#[test]
fn no_write_whose_sync_failed_is_acknowledged() {
    for n in 1..12 {
        let (_dir, path) = db_path();
        let faults = Arc::new(Faults::default());
        let store = faulty_store(&path, faults.clone());
        faults.syncs_until_failure.store(n, SeqCst);
        let mut acked = Vec::new();
        let mut failed = 0;
        for k in 0..20 {
            match store.apply(&[record(k)]) {
                Ok(v) => {
                    assert_eq!(v, vec![Applied::Stored]);
                    acked.push(k);
                }
                Err(StoreError::Io(_)) | Err(StoreError::Full(_)) => failed += 1,
                Err(e) => panic!("sync failure {n}: unexpected {e:?}"),
            }
            if failed == 3 {
                // The device comes back.
                faults.full.store(false, SeqCst);
            }
        }
        assert!(failed >= 1, "sync failure {n}: no write failed");
        assert!(
            eventually(Duration::from_secs(10), || store.health().is_none()),
            "sync failure {n}: no recovery"
        );
        let check = |s: &RedbStore| {
            for k in &acked {
                let r = record(*k);
                assert_eq!(
                    s.get(&r.key_id, &r.key).unwrap(),
                    Some(r),
                    "sync failure {n}: acknowledged key {k} lost"
                );
            }
        };
        check(&store);
        drop(store);
        let reopened = RedbStore::open(&path).expect("reopen");
        check(&reopened);
    }
}
