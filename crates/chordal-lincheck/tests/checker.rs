//! The checker against histories whose answer is known: hand-made ones
//! (the anomalies found before authority), histories generated from a sequential
//! run (always linearizable), and random small histories judged by an
//! independent implementation (todc-utils' WGLChecker) as the oracle.

use chordal_lincheck::models::{Counter, CounterOp, Register, RegisterOp, RegisterOut};
use chordal_lincheck::{Model, Op, Verdict, check, check_per_key};
use proptest::prelude::*;

const BUDGET: u64 = 10_000_000;

fn op<I, O>(client: u64, call: u64, ret: u64, input: I, output: O) -> Op<I, O> {
    Op {
        client,
        call,
        ret: Some(ret),
        input,
        output: Some(output),
    }
}

fn unknown<I, O>(client: u64, call: u64, input: I) -> Op<I, O> {
    Op {
        client,
        call,
        ret: None,
        input,
        output: None,
    }
}

use RegisterOp::{Cas, Get, Put};
use RegisterOut::{Applied, Done, Value};

#[test]
fn a_read_may_see_a_concurrent_write_or_not_but_not_an_overwritten_value() {
    // w1 [0,10]; w2 [20,30]; r [5,15] may see 1 or nothing.
    for seen in [None, Some(1)] {
        let h = vec![
            op(1, 0, 10, Put(1), Done),
            op(2, 5, 15, Get, Value(seen)),
            op(1, 20, 30, Put(2), Done),
        ];
        assert!(check(&Register, &h, BUDGET).is_ok(), "{seen:?}");
    }
    // A read that starts after w2 completed cannot see 1.
    let stale = vec![
        op(1, 0, 10, Put(1), Done),
        op(1, 20, 30, Put(2), Done),
        op(2, 40, 50, Get, Value(Some(1))),
    ];
    assert!(matches!(
        check(&Register, &stale, BUDGET),
        Verdict::Violation { stuck: 2, .. }
    ));
}

#[test]
fn two_compare_and_sets_from_one_value_cannot_both_win() {
    let both_won = vec![
        op(1, 0, 5, Put(7), Done),
        op(
            1,
            10,
            20,
            Cas {
                expect: Some(7),
                new: Some(8),
            },
            Applied(true),
        ),
        op(
            2,
            12,
            22,
            Cas {
                expect: Some(7),
                new: Some(9),
            },
            Applied(true),
        ),
    ];
    assert!(!check(&Register, &both_won, BUDGET).is_ok());
    let one_won = {
        let mut h = both_won.clone();
        h[2].output = Some(Applied(false));
        h
    };
    assert!(check(&Register, &one_won, BUDGET).is_ok());
}

#[test]
fn duplicate_and_double_increments_are_caught_and_unknown_ones_may_go_either_way() {
    use CounterOp::{Get, Incr};
    // Two increments both answered 1: a duplicate value.
    let duplicate = vec![op(1, 0, 10, Incr(1), 1), op(2, 2, 12, Incr(1), 1)];
    assert!(!check(&Counter, &duplicate, BUDGET).is_ok());
    // One client alone sees 285, then 287: applied twice.
    let twice = vec![op(1, 0, 10, Incr(285), 285), op(1, 20, 30, Incr(1), 287)];
    assert!(!check(&Counter, &twice, BUDGET).is_ok());
    // An increment whose outcome is unknown: a later read may see it or
    // not, but not twice.
    for (read, ok) in [(1, true), (2, true), (3, false)] {
        let h = vec![
            op(1, 0, 10, Incr(1), 1),
            unknown(2, 11, Incr(1)),
            op(3, 40, 50, Get, read),
        ];
        assert_eq!(check(&Counter, &h, BUDGET).is_ok(), ok, "read {read}");
    }
}

#[test]
fn keys_are_checked_apart_and_the_bad_one_is_named() {
    let h = vec![
        ("a", op(1, 0, 10, Put(1), Done)),
        ("b", op(1, 20, 30, Put(5), Done)),
        ("a", op(2, 40, 50, Get, Value(Some(1)))),
        ("b", op(2, 60, 70, Get, Value(Some(6)))),
    ];
    let bad = check_per_key(&Register, h, BUDGET);
    assert!(
        matches!(bad, Some(("b", Verdict::Violation { .. }))),
        "{bad:?}"
    );
}

#[test]
fn a_search_past_its_budget_says_unknown() {
    // Many concurrent writes and reads of values no order explains.
    let mut h: Vec<_> = (0..40).map(|i| op(i, 0, 100, Put(i), Done)).collect();
    h.push(op(99, 200, 210, Get, Value(Some(1000))));
    assert_eq!(check(&Register, &h, 1_000), Verdict::Unknown);
}

/// A sequential run of `ops` (client, input) with each taking effect at
/// `at[i]`, stretched to a random interval around that point: always
/// linearizable.
fn stretched(ops: Vec<(u64, RegisterOp, u64, u64)>) -> Vec<Op<RegisterOp, RegisterOut>> {
    let mut state = Register.init();
    ops.into_iter()
        .enumerate()
        .map(|(i, (client, input, before, after))| {
            let point = 1_000 + i as u64 * 100;
            let output = match &input {
                Get => Value(state),
                Put(_) | RegisterOp::Delete => Done,
                Cas { expect, .. } => Applied(state == *expect),
            };
            state = Register
                .step(&state, &input, Some(&output))
                .expect("the model accepts its own result");
            op(client, point - before, point + after, input, output)
        })
        .collect()
}

fn register_op() -> impl Strategy<Value = RegisterOp> {
    let value = 0u64..4;
    prop_oneof![
        Just(Get),
        value.clone().prop_map(Put),
        Just(RegisterOp::Delete),
        (
            proptest::option::of(value.clone()),
            proptest::option::of(value)
        )
            .prop_map(|(expect, new)| Cas { expect, new }),
    ]
}

/// todc-utils' register, whose operations carry their results.
struct Spec;

#[derive(Clone, Debug)]
struct Done2(RegisterOp, RegisterOut);

impl todc_utils::Specification for Spec {
    type State = Option<u64>;
    type Operation = Done2;
    fn init() -> Option<u64> {
        None
    }
    fn apply(op: &Done2, state: &Option<u64>) -> (bool, Option<u64>) {
        match Register.step(state, &op.0, Some(&op.1)) {
            Some(next) => (true, next),
            None => (false, *state),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_sequential_run_stretched_in_time_is_linearizable(
        ops in proptest::collection::vec((0u64..5, register_op(), 0u64..400, 0u64..400), 1..40)
    ) {
        let h = stretched(ops);
        prop_assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn the_verdict_is_the_independent_checkers(
        ops in proptest::collection::vec(
            (register_op(), prop_oneof![Just(None), (0u64..3).prop_map(Some)], 0u64..6, 1u64..6),
            1..9,
        )
    ) {
        // Small random histories with random results: one client per op,
        // so any overlap is allowed.
        let h: Vec<Op<RegisterOp, RegisterOut>> = ops
            .into_iter()
            .enumerate()
            .map(|(i, (input, read, start, len))| {
                let output = match &input {
                    Get => Value(read),
                    Put(_) | RegisterOp::Delete => Done,
                    Cas { .. } => Applied(read.is_some()),
                };
                op(i as u64, start * 10 + i as u64, start * 10 + len * 10 + i as u64, input, output)
            })
            .collect();
        let mut events: Vec<(u64, usize, todc_utils::Action<Done2>)> = Vec::new();
        for (i, o) in h.iter().enumerate() {
            let done = Done2(o.input.clone(), o.output.clone().unwrap());
            events.push((o.call, i, todc_utils::Action::Call(done.clone())));
            events.push((o.ret.unwrap(), i, todc_utils::Action::Response(done)));
        }
        events.sort_by_key(|(t, i, a)| (*t, matches!(a, todc_utils::Action::Call(_)), *i));
        let actions = events.into_iter().map(|(_, i, a)| (i, a)).collect();
        let theirs = todc_utils::WGLChecker::<Spec>::is_linearizable(
            todc_utils::History::from_actions(actions),
        );
        prop_assert_eq!(check(&Register, &h, BUDGET).is_ok(), theirs);
    }
}

#[test]
fn a_long_history_of_eight_clients_is_checked_within_a_small_budget() {
    // 20,000 increments and reads, eight at a time, each taking effect
    // somewhere inside its interval: the search stays near-linear.
    use CounterOp::{Get, Incr};
    let mut value = 0i64;
    let mut h = Vec::new();
    for i in 0..20_000u64 {
        let point = 100 + i * 10;
        let (input, output) = if i % 3 == 0 {
            (Get, value)
        } else {
            value += 1;
            (Incr(1), value)
        };
        // Overlaps with about eight neighbours on each side.
        let (before, after) = ((i * 7919) % 80, (i * 104_729) % 80);
        h.push(op(i % 8, point - before, point + after, input, output));
    }
    assert_eq!(check(&Counter, &h, 2_000_000), Verdict::Linearizable);
    // One increment answered twice breaks it.
    let mut bad = h.clone();
    let last = bad.len() - 1;
    bad[last].output = bad[last - 1].output;
    bad[last].input = Incr(1);
    assert!(!check(&Counter, &bad, 2_000_000).is_ok());
}
