//! What every benchmark reports: percentiles and microseconds.

use std::time::Duration;

/// The `p` quantile (0..=1) of `sorted`, nearest rank; zero if empty.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `d` in microseconds.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
