//! The fast counter check (`counter::check_counter`) against the general
//! search (`check` with the `Counter` model) on random histories small
//! enough for the search to decide: same verdict, every time.

use chordal_lincheck::counter::check_counter;
use chordal_lincheck::models::{Counter, CounterOp};
use chordal_lincheck::{Op, Verdict, check};
use proptest::prelude::*;

/// Random histories of up to 4 clients: increments (answered with a
/// plausible or implausible count, or unknown) and reads.
fn history() -> impl Strategy<Value = Vec<Op<CounterOp, i64>>> {
    let op =
        (0u64..4, 0u64..40, 1u64..15, 0u8..10, 0i64..6).prop_map(|(client, call, len, kind, n)| {
            let (input, output, ret) = match kind {
                0..=4 => (CounterOp::Incr(1), Some(n + 1), Some(call + len)),
                5 => (CounterOp::Incr(1), None, None),
                _ => (CounterOp::Get, Some(n), Some(call + len)),
            };
            Op {
                client,
                call,
                ret,
                input,
                output,
            }
        });
    proptest::collection::vec(op, 0..9)
}

#[test]
fn agrees_with_the_general_search() {
    // Both verdicts must come up often, or the comparison proves little.
    let verdicts = [std::cell::Cell::new(0u32), std::cell::Cell::new(0u32)];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
    runner
        .run(&history(), |ops| {
            let general = check(&Counter, &ops, 10_000_000);
            prop_assert_ne!(&general, &Verdict::Unknown);
            let fast = check_counter(&ops);
            prop_assert_eq!(
                fast.is_ok(),
                general.is_ok(),
                "fast {:?}, general {:?}",
                fast,
                general
            );
            Ok(())
        })
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
    runner
        .run(&history(), |ops| {
            let v = &verdicts[usize::from(check_counter(&ops).is_ok())];
            v.set(v.get() + 1);
            Ok(())
        })
        .unwrap();
    let verdicts = verdicts.map(|c| c.get());
    assert!(
        verdicts.iter().all(|n| *n > 300),
        "verdicts (violation, linearizable): {verdicts:?}"
    );
}

#[test]
fn a_read_that_returned_when_an_increment_began_comes_before_it() {
    // Found by the comparison: the read of 1 ended at the instant the
    // increment to 1 began, so it preceded it and had to see 0.
    let op = |call, ret, input, output| Op {
        client: 0,
        call,
        ret,
        input,
        output,
    };
    let ops = vec![
        op(3, Some(15), CounterOp::Incr(1), Some(2)),
        op(0, None, CounterOp::Incr(1), None),
        op(14, Some(15), CounterOp::Incr(1), Some(1)),
        op(5, Some(14), CounterOp::Get, Some(1)),
    ];
    assert!(!check(&Counter, &ops, 1_000_000).is_ok());
    assert!(!check_counter(&ops).is_ok());
}

#[test]
fn thousands_of_unknown_increments_are_no_harder() {
    // 2,000 acknowledged increments, 500 of unknown outcome interleaved
    // (half of which took effect), reads along the way.
    let mut ops = Vec::new();
    let mut count = 0;
    for i in 0..2_500u64 {
        let call = i * 10;
        if i % 5 == 4 {
            ops.push(Op {
                client: 1,
                call,
                ret: None,
                input: CounterOp::Incr(1),
                output: None,
            });
            if i % 10 == 4 {
                count += 1;
            }
        } else {
            count += 1;
            ops.push(Op {
                client: 0,
                call,
                ret: Some(call + 5),
                input: CounterOp::Incr(1),
                output: Some(count),
            });
            ops.push(Op {
                client: 2,
                call: call + 6,
                ret: Some(call + 8),
                input: CounterOp::Get,
                output: Some(count),
            });
        }
    }
    assert_eq!(check_counter(&ops), Verdict::Linearizable);
    // One read of a count that was already passed: caught.
    ops.push(Op {
        client: 3,
        call: 30_000,
        ret: Some(30_001),
        input: CounterOp::Get,
        output: Some(5),
    });
    assert!(matches!(check_counter(&ops), Verdict::Violation { .. }));
}
