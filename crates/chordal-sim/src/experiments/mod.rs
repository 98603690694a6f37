//! The experiments of the Chord papers, run on the real core. Each returns
//! rows (for tables and JSON) and can draw a chart beside the paper's
//! reference values.

mod balance;
mod churn;
mod failure;
mod kv_churn;
mod onehop;
mod pathlen;

pub use balance::{BalanceConfig, BalanceRow, balance, balance_chart, theory_p99_ratio};
pub use churn::{ChurnConfig, ChurnRow, Sessions, churn, churn_chart};
pub use failure::{FailureConfig, FailureRow, failure, failure_chart};
pub use kv_churn::{KvChurnConfig, KvChurnRow, kv_churn, kv_churn_chart};
pub use onehop::{EVENT_BYTES, OneHopConfig, OneHopRow, onehop, onehop_chart};
pub use pathlen::{PathlenConfig, PathlenRow, pathlen, pathlen_chart};

/// Judges the lookups of `pending` (origin, lookup, key) that finished,
/// against the joined live ring as it is now (call before this instant's
/// churn changes it): a right owner adds its hop count to `hops`, anything
/// else counts as failed. A lookup whose origin crashed has no one to
/// answer and counts neither way. Returns (failed, orphaned).
pub(crate) fn judge_lookups(
    s: &crate::Sim,
    pending: &mut Vec<(usize, chordal_core::LookupId, chordal_core::Id)>,
    hops: &mut Vec<f64>,
) -> (usize, usize) {
    let before = pending.len();
    pending.retain(|(i, _, _)| s.is_alive(*i));
    let orphaned = before - pending.len();
    let mut failed = 0;
    if pending
        .iter()
        .any(|(i, id, _)| s.lookup_result(*i, *id).is_some())
    {
        let truth = s.joined_oracle();
        pending.retain(|(i, id, key)| match s.lookup_result(*i, *id) {
            None => true,
            Some(Ok(r)) if r.owner.id == truth.successor(key) => {
                hops.push(r.hops as f64);
                false
            }
            Some(_) => {
                failed += 1;
                false
            }
        });
    }
    (failed, orphaned)
}

/// The `p`-quantile (0..=1) of sorted values (nearest rank).
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Runs `run` on every item, each on its own simulation, up to one thread
/// per core at a time, and returns the results in item order (so the
/// output does not depend on which finished first). `progress(done,
/// total)` is called on this thread as runs finish.
///
/// Items start from the last: experiments list their parameters in
/// ascending order (rates, fractions, R), so the longest runs start first
/// and the short ones fill in around them.
///
/// Only for runs that share nothing: each must seed its own simulation.
pub(crate) fn run_each<T: Sync, R: Send>(
    items: &[T],
    run: impl Fn(&T) -> R + Sync,
    mut progress: impl FnMut(usize, usize),
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let (tx, next, run) = (tx.clone(), &next, &run);
            scope.spawn(move || {
                loop {
                    let started = next.fetch_add(1, Ordering::Relaxed);
                    let Some(k) = items.len().checked_sub(started + 1) else {
                        break;
                    };
                    let item = &items[k];
                    if tx.send((k, run(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (done, (k, result)) in rx.iter().enumerate() {
            results[k] = Some(result);
            progress(done + 1, items.len());
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every run finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_each_keeps_item_order_and_reports_every_run() {
        // Runs finish in no particular order: the results must still be
        // in item order.
        let items: Vec<u64> = (0..7).collect();
        let mut reported = Vec::new();
        let out = run_each(
            &items,
            |&k| {
                std::thread::sleep(std::time::Duration::from_millis(5 * (7 - k)));
                k * k
            },
            |done, total| reported.push((done, total)),
        );
        assert_eq!(out, [0, 1, 4, 9, 16, 25, 36]);
        assert_eq!(reported, (1..=7).map(|d| (d, 7)).collect::<Vec<_>>());
        assert!(run_each(&[] as &[u64], |&k| k, |_, _| {}).is_empty());
    }
}
