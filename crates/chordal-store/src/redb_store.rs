//! [`RedbStore`]: records in a redb database file, with group commit.
//!
//! Every write goes through one writer thread. It takes the first waiting
//! job and everything queued behind it, applies them all in one write
//! transaction and commits once (one fsync), then answers each caller. So
//! concurrent writers share the cost of durability, and each batch is
//! atomic: after a crash a batch is either wholly there or not at all.
//!
//! **Storage failures.** When a commit fails (the disk is full, an I/O
//! error), nothing of that group is acknowledged, and redb refuses every
//! later write ("previous I/O error") until the database is opened again.
//! The store then reports itself unhealthy ([`Store::health`]), answers
//! writes at once with [`StoreError::Full`] or [`StoreError::Io`], keeps
//! serving reads from the open database, and once a second checks whether
//! writes can succeed again (a probe: a small file written and synced
//! beside the database). When they can, it closes and reopens the
//! database (redb recovers it to the last commit) and is healthy again —
//! no restart needed.

use crate::codec::{decode, decode_header, decode_version, encode_value, table_key};
use crate::{ApplyDone, Digests, FineDigest, KeyVersion, MetaDone, Store, StoreError, scan_parts};
use chordal_core::{Applied, ID_BYTES, Id, Record, Version};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::cmp::Ordering;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod writer;

use writer::write_loop;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 1024;
/// The meta entry holding the largest hlc ever stored (8 bytes, big-endian).
const MAX_HLC: &str = "max_hlc";
/// The meta entry naming how key ids are computed: absent in stores of
/// before hash tags (every key's id was the SHA-1 of all of it),
/// `hash-tags` in stores of before hash slots (the SHA-1 of its hash tag
/// or of all of it), else [`KEY_IDS_NOW`].
const KEY_IDS: &str = "key_ids";
/// Key ids are [`Id::of_key`]'s: a key's hash slot above the SHA-1 of its
/// hash tag (or of all of it).
const KEY_IDS_NOW: &[u8] = b"hash-slots";
/// How often a failed store checks whether writes work again.
const RECOVERY_EVERY: Duration = Duration::from_secs(1);

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A write's error, sorted: a full disk, another I/O error, or a database
/// error (corruption, a bug).
fn write_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => io_err(&io),
        redb::Error::PreviousIo => StoreError::Io("a previous I/O error".into()),
        other => StoreError::Db(other.to_string()),
    }
}

fn io_err(io: &std::io::Error) -> StoreError {
    // ENOSPC (28) and EDQUOT (122) on Linux.
    let full = io.kind() == std::io::ErrorKind::StorageFull
        || io.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(io.raw_os_error(), Some(28) | Some(122));
    if full {
        StoreError::Full(io.to_string())
    } else {
        StoreError::Io(io.to_string())
    }
}

enum Job {
    Apply(Vec<Record>, Sender<Result<Vec<Applied>, StoreError>>),
    ApplyThen(Vec<Record>, ApplyDone),
    Remove(
        Vec<(Id, Vec<u8>, Version)>,
        Sender<Result<usize, StoreError>>,
    ),
    Meta(String, Vec<u8>, MetaDone),
}

/// How to (re)open the database and how to tell whether writes can work.
pub struct Backing {
    /// Opens (or creates) the database. Called again after a failure.
    pub open: Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>,
    /// Succeeds if a write would now reach the disk (called while failed,
    /// before a reopen is tried).
    pub probe: Box<dyn Fn() -> std::io::Result<()> + Send + Sync>,
}

impl Backing {
    /// The database file at `path`; the probe writes and syncs a 1 MiB
    /// file beside it.
    pub fn file(path: &Path) -> Backing {
        let (db_path, probe_path) = (path.to_path_buf(), path.with_extension("probe"));
        Backing {
            open: Box::new(move || {
                owner_only(&db_path)?;
                Database::create(&db_path)
            }),
            probe: Box::new(move || {
                use std::io::Write;
                let result = (|| {
                    let mut f = std::fs::File::create(&probe_path)?;
                    f.write_all(&vec![0u8; 1 << 20])?;
                    f.sync_all()
                })();
                let _ = std::fs::remove_file(&probe_path);
                result
            }),
        }
    }
}

/// Creates the database file at `path` readable and writable by its owner
/// only (mode 0600), or narrows an existing one to that: it holds every
/// value the node stores.
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// What the callers and the writer thread share.
struct Shared {
    /// The open database; `None` only while it is being reopened.
    db: RwLock<Option<Arc<Database>>>,
    /// Why writes fail, while they do.
    failure: Mutex<Option<StoreError>>,
    /// The largest hlc ever stored; the writer keeps it (and its copy in
    /// the meta table) up to date.
    max_hlc: AtomicU64,
    /// Fine-bucket digests of the committed records (built at open).
    digests: Digests,
    backing: Backing,
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .expect("store lock")
            .clone()
            .ok_or_else(|| StoreError::Io("the database is being reopened".into()))
    }

    fn failure(&self) -> Option<StoreError> {
        self.failure.lock().expect("store lock").clone()
    }
}

/// A durable store in one redb file.
pub struct RedbStore {
    shared: Arc<Shared>,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The database file.
    path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbStore")
    }
}

/// Opens through `backing` and makes sure the tables exist.
fn open_db(backing: &Backing) -> Result<Database, StoreError> {
    let db = (backing.open)().map_err(|e| write_err(redb::Error::from(e)))?;
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut records = txn.open_table(RECORDS).map_err(write_err)?;
        let mut meta = txn.open_table(META).map_err(write_err)?;
        let current = meta
            .get(KEY_IDS)
            .map_err(write_err)?
            .is_some_and(|v| v.value() == KEY_IDS_NOW);
        if !current {
            move_misplaced_keys(&mut records)?;
            meta.insert(KEY_IDS, KEY_IDS_NOW).map_err(write_err)?;
        }
    }
    txn.commit().map_err(write_err)?;
    Ok(db)
}

/// Moves every record filed under another id than [`Id::of_key`] gives
/// its key now: a store written before hash tags filed `{user:1}:cart`
/// under the hash of its whole key, one written before hash slots every
/// key under its bare SHA-1 — where nobody would look for them now. Once,
/// when such a store is first opened; returns how many moved. A record
/// that moves may now lie outside this node's ranges: the synchronization
/// with the other replicas hands it to its owner as for any stray copy.
fn move_misplaced_keys(records: &mut redb::Table<&[u8], &[u8]>) -> Result<u64, StoreError> {
    let mut moves = Vec::new();
    for entry in records.iter().map_err(write_err)? {
        let (k, _) = entry.map_err(write_err)?;
        let k = k.value();
        let (Some(id), Some(key)) = (
            k.get(..ID_BYTES).and_then(Id::from_slice),
            k.get(ID_BYTES..),
        ) else {
            continue;
        };
        if Id::of_key(key) != id {
            moves.push(k.to_vec());
        }
    }
    for old in &moves {
        let key = &old[ID_BYTES..];
        let value = match records.remove(old.as_slice()).map_err(write_err)? {
            Some(v) => v.value().to_vec(),
            None => continue,
        };
        records
            .insert(
                table_key(&Id::of_key(key), key).as_slice(),
                value.as_slice(),
            )
            .map_err(write_err)?;
    }
    if !moves.is_empty() {
        tracing::info!(
            records = moves.len(),
            "moved records to the ids their keys have now (hash slots)"
        );
    }
    Ok(moves.len() as u64)
}

impl RedbStore {
    /// Opens the database at `path`, creating it (and its tables) if needed.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let mut store = RedbStore::with_backing(Backing::file(path))?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// Opens a database through `backing` (tests use a backend that fails
    /// on purpose).
    pub fn with_backing(backing: Backing) -> Result<RedbStore, StoreError> {
        let db = open_db(&backing)?;
        let digests = Digests::default();
        build_digests(&db, &digests)?;
        let shared = Arc::new(Shared {
            max_hlc: AtomicU64::new(stored_max_hlc(&db)?),
            digests,
            db: RwLock::new(Some(Arc::new(db))),
            failure: Mutex::new(None),
            backing,
        });
        let (tx, rx) = channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("chordal-store-writer".into())
            .spawn(move || write_loop(&writer_shared, rx))
            .map_err(db_err)?;
        Ok(RedbStore {
            shared,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            path: None,
        })
    }

    fn submit<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = channel();
        {
            let jobs = self.jobs.lock().expect("store lock");
            jobs.as_ref()
                .ok_or(StoreError::Closed)?
                .send(make(tx))
                .map_err(|_| StoreError::Closed)?;
        }
        rx.recv().map_err(|_| StoreError::Closed)?
    }
}

impl RedbStore {
    /// Entries of `(start, end]` after `resume`, at most `limit`, decoded
    /// by `decode` from the table key and value.
    fn scan_map<T>(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
        decode: impl Fn(&[u8], &[u8]) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.visit(start, end, resume, |id, k, v| {
            if out.len() >= limit {
                return Ok(false);
            }
            out.push(decode(k, v).ok_or(StoreError::Corrupt(id))?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Calls `f` with each entry of `(start, end]` after `resume`, in
    /// key-id order, all read in one transaction (one snapshot of the
    /// database), until `f` answers `false`.
    fn visit(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        mut f: impl FnMut(Id, &[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.shared.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        for (lo, hi, resume) in scan_parts(start, end, resume) {
            let lower = match resume {
                Some((id, key)) => table_key(id, key),
                None => lo.0.to_vec(),
            };
            let skip_first = resume.is_some();
            let iter = table.range::<&[u8]>(lower.as_slice()..).map_err(db_err)?;
            for (i, entry) in iter.enumerate() {
                let (k, v) = entry.map_err(db_err)?;
                let (k, v) = (k.value(), v.value());
                if i == 0 && skip_first && k == lower.as_slice() {
                    continue; // the resume point itself
                }
                let Some(id) = k.get(..ID_BYTES).and_then(Id::from_slice) else {
                    continue;
                };
                if id > hi {
                    break;
                }
                if !f(id, k, v)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer after its last transaction.
        self.jobs.lock().expect("store lock").take();
        if let Some(w) = self.writer.lock().expect("store lock").take() {
            let _ = w.join();
        }
    }
}

/// The largest hlc in the database: from the meta table, or (a database
/// written before it kept one) from one pass over the records' versions.
fn stored_max_hlc(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(db_err)?;
    let meta = txn.open_table(META).map_err(db_err)?;
    if let Some(v) = meta.get(MAX_HLC).map_err(db_err)? {
        let bytes: [u8; 8] = v.value().try_into().map_err(|_| db_err("bad max_hlc"))?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let records = txn.open_table(RECORDS).map_err(db_err)?;
    let mut high = 0;
    for entry in records.iter().map_err(db_err)? {
        let (_, v) = entry.map_err(db_err)?;
        if let Some(version) = decode_version(v.value()) {
            high = high.max(version.hlc);
        }
    }
    Ok(high)
}

/// Fills `digests` from every record's key and header (one pass, values
/// untouched).
fn build_digests(db: &Database, digests: &Digests) -> Result<(), StoreError> {
    digests.clear();
    let txn = db.begin_read().map_err(db_err)?;
    let records = txn.open_table(RECORDS).map_err(db_err)?;
    for entry in records.iter().map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        if let Some(kv) = key_version(k.value(), v.value()) {
            digests.replace(None, &kv);
        }
    }
    Ok(())
}

/// A table entry's key, id, version, tombstone flag and expiry.
fn key_version(k: &[u8], v: &[u8]) -> Option<KeyVersion> {
    let key_id = Id::from_slice(k.get(..ID_BYTES)?)?;
    let h = decode_header(v)?;
    Some(KeyVersion {
        key_id,
        key: k[ID_BYTES..].to_vec(),
        version: h.version,
        tombstone: h.tombstone,
        expires: h.expires,
    })
}

impl Store for RedbStore {
    fn get(&self, key_id: &Id, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let txn = self.shared.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        let k = table_key(key_id, key);
        match table.get(k.as_slice()).map_err(db_err)? {
            Some(v) => decode(&k, v.value())
                .map(Some)
                .ok_or(StoreError::Corrupt(*key_id)),
            None => Ok(None),
        }
    }

    fn max_hlc(&self) -> Result<u64, StoreError> {
        Ok(self.shared.max_hlc.load(Relaxed))
    }

    fn health(&self) -> Option<StoreError> {
        self.shared.failure()
    }

    fn apply(&self, batch: &[Record]) -> Result<Vec<Applied>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(|reply| Job::Apply(batch.to_vec(), reply))
    }

    fn apply_with(&self, batch: Vec<Record>, done: ApplyDone) {
        let jobs = self.jobs.lock().expect("store lock");
        match jobs.as_ref() {
            Some(tx) => {
                if let Err(e) = tx.send(Job::ApplyThen(batch, done))
                    && let Job::ApplyThen(_, done) = e.0
                {
                    done(Err(StoreError::Closed));
                }
            }
            None => done(Err(StoreError::Closed)),
        }
    }

    fn scan(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.scan_map(start, end, resume, limit, decode)
    }

    fn scan_versions(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        limit: usize,
    ) -> Result<Vec<KeyVersion>, StoreError> {
        self.scan_map(start, end, resume, limit, key_version)
    }

    /// One read transaction for the whole range: redb keeps that snapshot
    /// (and the pages it needs) until the scan ends.
    fn scan_snapshot(
        &self,
        start: &Id,
        end: &Id,
        resume: Option<(&Id, &[u8])>,
        each: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        self.visit(start, end, resume, |id, k, v| {
            Ok(each(decode(k, v).ok_or(StoreError::Corrupt(id))?))
        })
    }

    fn fine_digests(&self, first: usize, count: usize) -> Option<Vec<(usize, FineDigest)>> {
        Some(self.shared.digests.range(first, count))
    }

    fn remove(&self, keys: &[(Id, Vec<u8>, Version)]) -> Result<usize, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.submit(|reply| Job::Remove(keys.to_vec(), reply))
    }

    fn count(&self) -> Result<u64, StoreError> {
        let txn = self.shared.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    fn bytes(&self) -> Result<u64, StoreError> {
        match &self.path {
            Some(path) => std::fs::metadata(path).map(|m| m.len()).map_err(db_err),
            None => Ok(0),
        }
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.shared.db()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(META).map_err(db_err)?;
        Ok(table.get(name).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.submit(|reply| {
            let done: MetaDone = Box::new(move |r| {
                let _ = reply.send(r);
            });
            Job::Meta(name.to_string(), value.to_vec(), done)
        })
    }

    fn set_meta_with(&self, name: &str, value: Vec<u8>, done: MetaDone) {
        let jobs = self.jobs.lock().expect("store lock");
        match jobs.as_ref() {
            Some(tx) => {
                if let Err(e) = tx.send(Job::Meta(name.to_string(), value, done))
                    && let Job::Meta(_, _, done) = e.0
                {
                    done(Err(StoreError::Closed));
                }
            }
            None => done(Err(StoreError::Closed)),
        }
    }
}
