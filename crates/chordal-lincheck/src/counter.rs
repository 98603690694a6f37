//! An exact, fast linearizability check for one counter whose only
//! changes are increments by one (`INCR`) and whose reads return the
//! count — the shape of issue 27's counter workloads. WGL (`check`) must
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
//! linearization whenever one exists.

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
    // Bounds on each position's point from the reads: position v+1 after
    // the read's call, position v no later than its return. Times are
    // doubled so that "strictly after" is one half-step later.
    let n = top as usize;
    let mut lower = vec![0u128; n + 2];
    let mut upper = vec![u128::MAX; n + 2];
    let mut upper_by = vec![usize::MAX; n + 2];
    for (i, op) in ops.iter().enumerate() {
        if let (CounterOp::Get, Some(v), Some(ret)) = (&op.input, op.output, op.ret) {
            let v = v as usize;
            // t_{v+1} > call (strictly: the read came first).
            lower[v + 1] = lower[v + 1].max(2 * u128::from(op.call) + 1);
            if v >= 1 && 2 * u128::from(ret) < upper[v] {
                upper[v] = 2 * u128::from(ret);
                upper_by[v] = i;
            }
        }
    }
    // Increments of unknown outcome, by call.
    let unknown: Vec<(u64, usize)> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(op.input, CounterOp::Incr(_)) && op.output.is_none())
        .map(|(i, op)| (op.call, i))
        .collect();
    let mut pool: BinaryHeap<Reverse<(u64, usize)>> = unknown.into_iter().map(Reverse).collect();
    let mut t = 0u128;
    for pos in 1..=n {
        let floor = (t + 1).max(lower[pos]);
        let point = match at.get(&(pos as i64)) {
            Some(&i) => {
                let op = &ops[i];
                let point = floor.max(2 * u128::from(op.call));
                let ret = op.ret.map_or(u128::MAX, |r| 2 * u128::from(r));
                if point > ret {
                    return violation(i, pos - 1);
                }
                point
            }
            None => {
                // The earliest-called unknown increment not used yet.
                match pool.pop() {
                    Some(Reverse((call, _))) => floor.max(2 * u128::from(call)),
                    // A count no increment can explain.
                    None => return violation(upper_by[pos].min(ops.len() - 1), pos - 1),
                }
            }
        };
        if point > upper[pos] {
            return violation(upper_by[pos], pos - 1);
        }
        t = point;
    }
    Verdict::Linearizable
}
