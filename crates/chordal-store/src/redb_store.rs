//! [`RedbStore`]: records in a redb database file, with group commit.
//!
//! Every write goes through one writer thread. It takes the first waiting
//! job and everything queued behind it, applies them all in one write
//! transaction and commits once (one fsync), then answers each caller. So
//! concurrent writers share the cost of durability, and each batch is
//! atomic: after a crash a batch is either wholly there or not at all.

use crate::codec::{decode, decode_version, encode_value, table_key};
use crate::{ApplyDone, Store, StoreError, scan_parts};
use chordal_core::{Applied, ID_BYTES, Id, Record, Version};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Most jobs folded into one transaction.
const MAX_GROUP: usize = 1024;
/// The meta entry holding the largest hlc ever stored (8 bytes, big-endian).
const MAX_HLC: &str = "max_hlc";

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

enum Job {
    Apply(Vec<Record>, Sender<Result<Vec<Applied>, StoreError>>),
    ApplyThen(Vec<Record>, ApplyDone),
    Remove(
        Vec<(Id, Vec<u8>, Version)>,
        Sender<Result<usize, StoreError>>,
    ),
    Meta(String, Vec<u8>, Sender<Result<(), StoreError>>),
}

/// A durable store in one redb file.
pub struct RedbStore {
    db: Arc<Database>,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The database file.
    path: std::path::PathBuf,
    /// The largest hlc ever stored; the writer keeps it (and its copy in
    /// the meta table) up to date.
    max_hlc: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbStore")
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating it (and its tables) if needed.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(RECORDS).map_err(db_err)?;
        txn.open_table(META).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        let max_hlc = Arc::new(AtomicU64::new(stored_max_hlc(&db)?));
        let db = Arc::new(db);
        let (tx, rx) = channel();
        let (writer_db, writer_max) = (db.clone(), max_hlc.clone());
        let writer = std::thread::Builder::new()
            .name("chordal-store-writer".into())
            .spawn(move || write_loop(&writer_db, &writer_max, rx))
            .map_err(db_err)?;
        Ok(RedbStore {
            db,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            path: path.to_path_buf(),
            max_hlc,
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

/// The writer thread: one transaction per group of queued jobs.
fn write_loop(db: &Database, max_hlc: &AtomicU64, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_group(db, max_hlc, &group);
        for (job, result) in group.into_iter().zip(outcome) {
            match (job, result) {
                (Job::Apply(_, reply), r) => {
                    let _ = reply.send(r.map(|o| o.applied));
                }
                (Job::ApplyThen(_, done), r) => done(r.map(|o| o.applied)),
                (Job::Remove(_, reply), r) => {
                    let _ = reply.send(r.map(|o| o.removed));
                }
                (Job::Meta(_, _, reply), r) => {
                    let _ = reply.send(r.map(|_| ()));
                }
            }
        }
    }
}

#[derive(Default)]
struct Outcome {
    applied: Vec<Applied>,
    removed: usize,
}

/// Applies a group in one transaction. On any error every job of the group
/// fails (nothing of it was committed).
fn run_group(
    db: &Database,
    max_hlc: &AtomicU64,
    group: &[Job],
) -> Vec<Result<Outcome, StoreError>> {
    let before = max_hlc.load(Relaxed);
    let mut high = before;
    let result = (|| -> Result<Vec<Outcome>, StoreError> {
        let txn = db.begin_write().map_err(db_err)?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut records = txn.open_table(RECORDS).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            for job in group {
                let mut o = Outcome::default();
                match job {
                    Job::Apply(batch, _) | Job::ApplyThen(batch, _) => {
                        for r in batch {
                            let k = table_key(&r.key_id, &r.key);
                            let old = records
                                .get(k.as_slice())
                                .map_err(db_err)?
                                .and_then(|old| decode_version(old.value()));
                            let applied = match old {
                                Some(v) if v > r.version => Applied::Kept(v),
                                Some(v) if v == r.version => Applied::Stored,
                                _ => {
                                    records
                                        .insert(k.as_slice(), encode_value(r).as_slice())
                                        .map_err(db_err)?;
                                    high = high.max(r.version.hlc);
                                    Applied::Stored
                                }
                            };
                            o.applied.push(applied);
                        }
                    }
                    Job::Remove(keys, _) => {
                        for (id, key, version) in keys {
                            let k = table_key(id, key);
                            let same = match records.get(k.as_slice()).map_err(db_err)? {
                                Some(old) => decode_version(old.value()) == Some(*version),
                                None => false,
                            };
                            if same {
                                records.remove(k.as_slice()).map_err(db_err)?;
                                o.removed += 1;
                            }
                        }
                    }
                    Job::Meta(name, value, _) => {
                        meta.insert(name.as_str(), value.as_slice())
                            .map_err(db_err)?;
                    }
                }
                outcomes.push(o);
            }
            if high > before {
                meta.insert(MAX_HLC, high.to_be_bytes().as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(outcomes)
    })();
    match result {
        Ok(outcomes) => {
            max_hlc.fetch_max(high, Relaxed);
            outcomes.into_iter().map(Ok).collect()
        }
        Err(e) => group
            .iter()
            .map(|_| Err(StoreError::Db(e.to_string())))
            .collect(),
    }
}

impl Store for RedbStore {
    fn get(&self, key_id: &Id, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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
        Ok(self.max_hlc.load(Relaxed))
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
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        let mut out = Vec::new();
        for (lo, hi, resume) in scan_parts(start, end, resume) {
            let lower = match resume {
                Some((id, key)) => table_key(id, key),
                None => lo.0.to_vec(),
            };
            let skip_first = resume.is_some();
            let iter = table.range::<&[u8]>(lower.as_slice()..).map_err(db_err)?;
            for (i, entry) in iter.enumerate() {
                if out.len() >= limit {
                    return Ok(out);
                }
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
                out.push(decode(k, v).ok_or(StoreError::Corrupt(id))?);
            }
        }
        Ok(out)
    }

    fn remove(&self, keys: &[(Id, Vec<u8>, Version)]) -> Result<usize, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.submit(|reply| Job::Remove(keys.to_vec(), reply))
    }

    fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORDS).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    fn bytes(&self) -> Result<u64, StoreError> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(db_err)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(META).map_err(db_err)?;
        Ok(table.get(name).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.submit(|reply| Job::Meta(name.to_string(), value.to_vec(), reply))
    }
}
