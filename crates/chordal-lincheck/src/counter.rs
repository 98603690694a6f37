//! An exact, fast linearizability check for one counter whose only
//! changes are increments by one (`INCR`) and whose reads return the
//! count — the shape of the consistency tests' counter workloads. WGL (`check`) must
//! try every subset of increments whose outcome is unknown, which is
//! exponential in how many a nemesis leaves; here they are only a pool to
//! fill gaps from, and the whole check is `O(n log n)`.
//!
//! Why it is exact: an acknowledged increment that returned `n` must be
//! the `n`-th increment in any linearization, so the order of acknowledged
//! increments is fixed by their results; the `n`-th increment's point
//! `t_n` must lie in its interval, increase with `n`, and a read that
//! returned `v` needs a point in its interval between `t_v` and
//! `t_{v+1}` — so it bounds `t_v` from above (by its return) and
//! `t_{v+1}` from below (after its call). Positions no acknowledged
//! increment returned are filled from the increments of unknown outcome
//! (no upper bound); taking the earliest-called one free keeps every
//! later point as early as possible. Choosing each `t_n` as early as its
//! lower bounds allow, then checking the upper bounds, therefore finds a
//! linearization whenever one exists. Points are integers of a scaled
//! time (`window`), so that an operation that completed at the instant
//! another began comes first, as in `check`.

use crate::models::CounterOp;
use crate::{Op, Verdict};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Whether a counter history (increments by 1 and reads) is linearizable.
/// A `Violation`'s `stuck` is the index of an operation that cannot be
/// placed; `prefix` the number of increments placed before it.
/// Increments by anything other than 1 answer `Unknown` (use `check`).
pub fn check_counter(ops: &[Op<CounterOp, i64>]) -> Verdict {
    if ops
        .iter()
        .any(|op| matches!(op.input, CounterOp::Incr(by) if by != 1))
    {
        return Verdict::Unknown;
    }
    let violation = |stuck: usize, prefix: usize| Verdict::Violation { stuck, prefix };
    // The acknowledged increment at each position, and the reads.
    let mut at: std::collections::BTreeMap<i64, usize> = Default::default();
    let mut top = 0i64;
    for (i, op) in ops.iter().enumerate() {
        match (&op.input, op.output) {
            (CounterOp::Incr(_), Some(n)) => {
                if n < 1 || at.insert(n, i).is_some() {
                    return violation(i, 0);
                }
                top = top.max(n);
            }
            (CounterOp::Get, Some(v)) => {
                if v < 0 {
                    return violation(i, 0);
                }
                top = top.max(v);
            }
            _ => {}
        }
    }
    // Each operation is placed at an integer point of its interval in a
    // time scaled by SCALE: [lo, hi] as `window` gives it, so that one
    // returning at the instant another is invoked comes strictly first
    // (the convention of `check`). Reads bound the increments around
    // them: a read of v needs a point strictly between t_v and t_{v+1}.
    let n = top as usize;
    let mut lower = vec![0u128; n + 2];
    let mut upper = vec![u128::MAX; n + 2];
    let mut upper_by = vec![usize::MAX; n + 2];
    for (i, op) in ops.iter().enumerate() {
        if let (CounterOp::Get, Some(v)) = (&op.input, op.output) {
            let (lo, hi) = window(op);
            let v = v as usize;
            lower[v + 1] = lower[v + 1].max(lo + 1);
            if v >= 1 && hi - 1 < upper[v] {
                upper[v] = hi - 1;
                upper_by[v] = i;
            }
        }
    }
    // Increments of unknown outcome, earliest invoked first.
    let mut pool: BinaryHeap<Reverse<(u64, usize)>> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(op.input, CounterOp::Incr(_)) && op.output.is_none())
        .map(|(i, op)| Reverse((op.call, i)))
        .collect();
    // Consecutive increments two apart: room for reads between them.
    let mut t = 0u128;
    for pos in 1..=n {
        let floor = if pos == 1 { 1 } else { t + 2 }.max(lower[pos]);
        let point = match at.get(&(pos as i64)) {
            Some(&i) => {
                let (lo, hi) = window(&ops[i]);
                let point = floor.max(lo);
                if point > hi {
                    return violation(i, pos - 1);
                }
                point
            }
            // The earliest-invoked unknown increment not used yet.
            None => match pool.pop() {
                Some(Reverse((_, i))) => floor.max(window(&ops[i]).0),
                // A count no increment can explain.
                None => return violation(upper_by[pos].min(ops.len() - 1), pos - 1),
            },
        };
        if point > upper[pos] {
            return violation(upper_by[pos], pos - 1);
        }
        t = point;
    }
    Verdict::Linearizable
}

/// Time scale of the points operations are placed at.
const SCALE: u128 = 1024;

/// The points `op` may take effect at: from just after its invocation to
/// just after its completion, so that an operation completed at instant
/// `r` comes before one invoked at `r`; one invoked and completed at the
/// same instant sits between the two. Unknown outcome: no end.
fn window(op: &Op<CounterOp, i64>) -> (u128, u128) {
    let call = SCALE * u128::from(op.call);
    match op.ret {
        None => (call + SCALE / 2, u128::MAX),
        Some(r) if r <= op.call => (call + 3 * SCALE / 8, call + 3 * SCALE / 8),
        Some(r) => (call + SCALE / 2, SCALE * u128::from(r) + SCALE / 4),
    }
}
