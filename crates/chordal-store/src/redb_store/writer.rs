//! The writer thread: group commit (every job waiting, one transaction,
//! one fsync, then each caller answered), and recovery once a failed
//! commit left redb refusing writes.

use super::*;

/// The writer thread: one transaction per group of queued jobs; while
/// writes fail, answers them with the failure and tries to recover.
pub(super) fn write_loop(shared: &Shared, rx: Receiver<Job>) {
    let mut last_try = Instant::now();
    loop {
        let first = if shared.failure().is_some() {
            match rx.recv_timeout(RECOVERY_EVERY) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        };
        if shared.failure().is_some() && last_try.elapsed() >= RECOVERY_EVERY {
            last_try = Instant::now();
            try_recover(shared);
        }
        let Some(first) = first else {
            continue;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcome = match shared.failure() {
            // Still failing: answer at once, touch nothing.
            Some(e) => group.iter().map(|_| Err(e.clone())).collect(),
            None => {
                let outcome = match shared.db() {
                    Ok(db) => run_group(&db, &shared.max_hlc, &shared.digests, &group),
                    Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
                };
                if let Some(Err(e)) = outcome.first()
                    && matches!(e, StoreError::Full(_) | StoreError::Io(_))
                {
                    tracing::warn!(error = %e, "store write failed; writes refused until it recovers");
                    *shared.failure.lock().expect("store lock") = Some(e.clone());
                    last_try = Instant::now();
                }
                outcome
            }
        };
        for (job, result) in group.into_iter().zip(outcome) {
            match (job, result) {
                (Job::Apply(_, reply), r) => {
                    let _ = reply.send(r.map(|o| o.applied));
                }
                (Job::ApplyThen(_, done), r) => done(r.map(|o| o.applied)),
                (Job::Remove(_, reply), r) => {
                    let _ = reply.send(r.map(|o| o.removed));
                }
                (Job::Meta(_, _, done), r) => done(r.map(|_| ())),
            }
        }
    }
}

/// While failed: if a probe write succeeds, close and reopen the database.
fn try_recover(shared: &Shared) {
    if (shared.backing.probe)().is_err() {
        return;
    }
    // Close: take the database out and wait for readers to let go (they
    // hold it for one call).
    let old = shared.db.write().expect("store lock").take();
    if let Some(mut db) = old {
        let start = Instant::now();
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(again) if start.elapsed() < Duration::from_secs(5) => {
                    db = again;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(again) => {
                    // A reader hangs on: give it back, try later.
                    *shared.db.write().expect("store lock") = Some(again);
                    return;
                }
            }
        }
    }
    match open_db(&shared.backing) {
        Ok(db) => {
            if let Ok(high) = stored_max_hlc(&db) {
                shared.max_hlc.fetch_max(high, Relaxed);
            }
            if let Err(e) = build_digests(&db, &shared.digests) {
                tracing::warn!(error = %e, "rebuilding range digests failed");
            }
            *shared.db.write().expect("store lock") = Some(Arc::new(db));
            *shared.failure.lock().expect("store lock") = None;
            tracing::info!("store recovered: writes accepted again");
        }
        Err(e) => {
            tracing::warn!(error = %e, "store reopen failed; trying again");
            *shared.failure.lock().expect("store lock") = Some(e);
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
    digests: &Digests,
    group: &[Job],
) -> Vec<Result<Outcome, StoreError>> {
    let before = max_hlc.load(Relaxed);
    let mut high = before;
    // Digest changes, applied once the transaction is committed.
    let mut stored: Vec<(Option<KeyVersion>, KeyVersion)> = Vec::new();
    let mut removed: Vec<KeyVersion> = Vec::new();
    let result = (|| -> Result<Vec<Outcome>, StoreError> {
        let txn = db.begin_write().map_err(write_err)?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut records = txn.open_table(RECORDS).map_err(write_err)?;
            let mut meta = txn.open_table(META).map_err(write_err)?;
            for job in group {
                let mut o = Outcome::default();
                match job {
                    Job::Apply(batch, _) | Job::ApplyThen(batch, _) => {
                        for r in batch {
                            let k = table_key(&r.key_id, &r.key);
                            let new = encode_value(r);
                            // The record there, and the answer if it stays:
                            // it is newer, the very same, or of the same
                            // version with content that wins the tie
                            // (`Record::supersedes`, which orders equal
                            // versions as their stored bytes compare).
                            let (old, settled) =
                                match records.get(k.as_slice()).map_err(write_err)? {
                                    Some(g) => {
                                        let kv = key_version(&k, g.value());
                                        let settled = kv.as_ref().and_then(|o| {
                                            match (
                                                o.version.cmp(&r.version),
                                                g.value().cmp(new.as_slice()),
                                            ) {
                                                (Ordering::Greater, _) => {
                                                    Some(Applied::Kept(o.version))
                                                }
                                                (Ordering::Equal, Ordering::Equal) => {
                                                    Some(Applied::Stored)
                                                }
                                                (Ordering::Equal, Ordering::Greater) => {
                                                    Some(Applied::Kept(o.version))
                                                }
                                                _ => None,
                                            }
                                        });
                                        (kv, settled)
                                    }
                                    None => (None, None),
                                };
                            let applied = match settled {
                                Some(applied) => applied,
                                None => {
                                    records
                                        .insert(k.as_slice(), new.as_slice())
                                        .map_err(write_err)?;
                                    high = high.max(r.version.hlc);
                                    stored.push((old, KeyVersion::of(r)));
                                    Applied::Stored
                                }
                            };
                            o.applied.push(applied);
                        }
                    }
                    Job::Remove(keys, _) => {
                        for (id, key, version) in keys {
                            let k = table_key(id, key);
                            let old = records
                                .get(k.as_slice())
                                .map_err(write_err)?
                                .and_then(|old| key_version(&k, old.value()));
                            if let Some(old) = old.filter(|o| o.version == *version) {
                                records.remove(k.as_slice()).map_err(write_err)?;
                                removed.push(old);
                                o.removed += 1;
                            }
                        }
                    }
                    Job::Meta(name, value, _) => {
                        meta.insert(name.as_str(), value.as_slice())
                            .map_err(write_err)?;
                    }
                }
                outcomes.push(o);
            }
            if high > before {
                meta.insert(MAX_HLC, high.to_be_bytes().as_slice())
                    .map_err(write_err)?;
            }
        }
        txn.commit().map_err(write_err)?;
        Ok(outcomes)
    })();
    match result {
        Ok(outcomes) => {
            max_hlc.fetch_max(high, Relaxed);
            for (old, new) in &stored {
                digests.replace(old.as_ref(), new);
            }
            for old in &removed {
                digests.remove(old);
            }
            outcomes.into_iter().map(Ok).collect()
        }
        Err(e) => group.iter().map(|_| Err(e.clone())).collect(),
    }
}
