//! The sequential objects a Chordal key is tested as.

use crate::Model;

/// A key holding an optional value: `GET`, `PUT`, `DELETE`, and the
/// conditional writes (`If-Match`, create-only) as compare-and-set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

/// An operation on a [`Register`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    /// Read the value.
    Get,
    /// Write a value.
    Put(u64),
    /// Remove the value.
    Delete,
    /// Write `new` if the value is `expect` (`None`: absent, a create).
    Cas {
        /// The value the write is conditional on.
        expect: Option<u64>,
        /// The value written (`None`: a conditional delete).
        new: Option<u64>,
    },
}

/// What a [`RegisterOp`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOut {
    /// `Get`'s value.
    Value(Option<u64>),
    /// `Put` and `Delete` succeeded.
    Done,
    /// Whether `Cas` applied.
    Applied(bool),
}

impl Model for Register {
    type State = Option<u64>;
    type Input = RegisterOp;
    type Output = RegisterOut;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &RegisterOp,
        output: Option<&RegisterOut>,
    ) -> Option<Option<u64>> {
        let (result, next) = match input {
            RegisterOp::Get => (RegisterOut::Value(*state), *state),
            RegisterOp::Put(v) => (RegisterOut::Done, Some(*v)),
            RegisterOp::Delete => (RegisterOut::Done, None),
            RegisterOp::Cas { expect, new } => {
                let applies = state == expect;
                (
                    RegisterOut::Applied(applies),
                    if applies { *new } else { *state },
                )
            }
        };
        match output {
            Some(out) if *out != result => None,
            _ => Some(next),
        }
    }
}

/// A counter: `INCR`/`INCRBY` return the new value; `GET` reads it (0
/// when absent, as Redis's counters start).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter;

/// An operation on a [`Counter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CounterOp {
    /// Read the value.
    Get,
    /// Add to it.
    Incr(i64),
}

impl Model for Counter {
    type State = i64;
    type Input = CounterOp;
    /// The value read, or the value after the increment.
    type Output = i64;

    fn init(&self) -> i64 {
        0
    }

    fn step(&self, state: &i64, input: &CounterOp, output: Option<&i64>) -> Option<i64> {
        let next = match input {
            CounterOp::Get => *state,
            CounterOp::Incr(by) => state.checked_add(*by)?,
        };
        match output {
            Some(out) if *out != next => None,
            _ => Some(next),
        }
    }
}
