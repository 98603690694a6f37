//! Storage operations the core asks for, performed on the store.

use super::*;

impl Driver {
    /// Performs a storage operation for the core: reads at once (a redb read
    /// transaction is microseconds), writes through the store's group
    /// commit, answered when durable.
    pub(super) fn store_request(&mut self, req: StoreRequest) {
        let now = self.now();
        match req.kind {
            StoreKind::Apply { records } => {
                let tx = self.applied_tx.clone();
                let op = req.op;
                self.store.apply_with(
                    records,
                    Box::new(move |r| {
                        let result = match r {
                            Ok(applied) => StoreResult::Applied(applied),
                            Err(e) => {
                                warn!(error = %e, "store write failed");
                                StoreResult::Failed
                            }
                        };
                        let _ = tx.send((op, result));
                    }),
                );
            }
            // The promise table: through the store's writer, in order (a
            // later table must not be overwritten by an earlier one), and
            // answered when durable — the grants wait for it.
            StoreKind::SavePromises { bytes } => {
                let tx = self.applied_tx.clone();
                let op = req.op;
                self.store.set_meta_with(
                    chordal_store::PROMISES,
                    bytes,
                    Box::new(move |r| {
                        let result = match r {
                            Ok(()) => StoreResult::Saved,
                            Err(e) => {
                                warn!(error = %e, "saving the promise table failed");
                                StoreResult::Failed
                            }
                        };
                        let _ = tx.send((op, result));
                    }),
                );
            }
            // A point read: at once (a redb read transaction is
            // microseconds).
            kind @ StoreKind::Get { .. } => {
                let result = chordal_store::perform(self.store.as_ref(), kind);
                self.core.handle_store(now, req.op, result);
            }
            // Summaries, page scans and sweeps are O(records) and may wait
            // for the disk: off the driver task, so that lookups, pings and
            // stabilization never wait behind them (the core bounds how
            // many run at once). Results come back like durable writes.
            kind => {
                let (store, tx, op) = (self.store.clone(), self.applied_tx.clone(), req.op);
                tokio::task::spawn_blocking(move || {
                    let result = chordal_store::perform(store.as_ref(), kind);
                    let _ = tx.send((op, result));
                });
            }
        }
    }
}
