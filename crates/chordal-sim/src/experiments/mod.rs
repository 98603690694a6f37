//! The experiments of the Chord papers, run on the real core. Each returns
//! rows (for tables and JSON) and can draw a chart beside the paper's
//! reference values.

mod balance;
mod churn;
mod failure;
mod kv_churn;
mod pathlen;

pub use balance::{BalanceConfig, BalanceRow, balance, balance_chart, theory_p99_ratio};
pub use churn::{ChurnConfig, ChurnRow, Sessions, churn, churn_chart};
pub use failure::{FailureConfig, FailureRow, failure, failure_chart};
pub use kv_churn::{KvChurnConfig, KvChurnRow, kv_churn, kv_churn_chart};
pub use pathlen::{PathlenConfig, PathlenRow, pathlen, pathlen_chart};

/// The `p`-quantile (0..=1) of sorted values (nearest rank).
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}
