//! # chordal-lincheck: is a recorded history linearizable?
//!
//! The consistency tests record what clients did against a ring — each
//! operation's invocation time, its completion time and what it returned,
//! or that its outcome is unknown (a timeout, a dropped connection) — and
//! ask [`check`] whether some order of the operations, each taking effect
//! at one instant between its invocation and its completion, explains
//! every result under a sequential [`Model`] (a register, a counter).
//!
//! The algorithm is Wing & Gong's search (J. Parallel Distrib. Comput.,
//! 1993) with Lowe's memoisation ("Testing for linearizability", 2017), as
//! Knossos and Porcupine run it: walk the history in time order; at a
//! call, try to linearize the operation now (the model accepts its
//! result); at a return whose call was not linearized, backtrack. A set of
//! (operations linearized, model state) pairs already explored cuts the
//! search from exponential to what real histories need. The history is a
//! doubly linked list in arrays, so taking an operation out and putting it
//! back are O(1).
//!
//! An operation whose outcome is unknown gets its return at the end of
//! time: it may take effect at any point after its invocation, or — being
//! linearized after everything else, where nothing observes it — not at
//! all. Its result is whatever the model says.
//!
//! Linearizability is compositional (Herlihy & Wing): check each key's
//! history on its own ([`check_per_key`]). A search may be bounded in
//! steps; past the bound the answer is [`Verdict::Unknown`], never a guess.

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

pub mod counter;
pub mod models;

/// A sequential specification: the state of one object and how an
/// operation changes it.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// What an operation asks (read, write 5, compare-and-set 3 → 4…).
    type Input;
    /// What an operation returned.
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` is applied to `state` returning `output`,
    /// or `None` if the sequential object could not have returned that.
    /// `output` is `None` for an operation whose outcome is unknown: then
    /// it is whatever `input` would return.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op<I, O> {
    /// Who ran it (for reports; a client runs one operation at a time).
    pub client: u64,
    /// When it was invoked (any monotonic unit: nanoseconds).
    pub call: u64,
    /// When it completed, with `output`; `None`: the outcome is unknown.
    pub ret: Option<u64>,
    /// What it asked.
    pub input: I,
    /// What it returned (`None` when the outcome is unknown).
    pub output: Option<O>,
}

/// The operations of a history under model `M`.
pub type History<M> = Vec<Op<<M as Model>::Input, <M as Model>::Output>>;

/// The answer of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations explains every result.
    Linearizable,
    /// None does. `stuck` is the operation (an index into the history)
    /// that could not be placed in the longest order found, `prefix` how
    /// many operations that order held.
    Violation {
        /// The operation no explanation could place.
        stuck: usize,
        /// Operations linearized in the deepest attempt.
        prefix: usize,
    },
    /// The search took more than its budget of steps.
    Unknown,
}

impl Verdict {
    /// Is it [`Verdict::Linearizable`]?
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// An entry of the time-ordered list: the call or the return of op `op`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    op: usize,
    is_call: bool,
}

/// The history as a doubly linked list over entries (index `n` is the
/// head sentinel, `n + 1` the tail).
struct List {
    entries: Vec<Entry>,
    prev: Vec<usize>,
    next: Vec<usize>,
    /// For op `i`: its call's and its return's entry.
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
    head: usize,
    tail: usize,
}

impl List {
    fn new<I, O>(ops: &[Op<I, O>]) -> List {
        // At one instant, returns come before calls (an operation that
        // completed when another began precedes it: the strict reading),
        // except an operation's own return, which follows its call.
        let mut events: Vec<(u64, u8, usize, Entry)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((
                op.call,
                1,
                i,
                Entry {
                    op: i,
                    is_call: true,
                },
            ));
            let end = op.ret.unwrap_or(u64::MAX).max(op.call);
            let kind = if end == op.call { 2 } else { 0 };
            events.push((
                end,
                kind,
                i,
                Entry {
                    op: i,
                    is_call: false,
                },
            ));
        }
        events.sort_by_key(|(t, kind, i, _)| (*t, *kind, *i));
        let n = events.len();
        let (head, tail) = (n, n + 1);
        let mut list = List {
            entries: events.iter().map(|e| e.3).collect(),
            prev: vec![0; n + 2],
            next: vec![0; n + 2],
            call_of: vec![0; ops.len()],
            ret_of: vec![0; ops.len()],
            head,
            tail,
        };
        let mut last = head;
        for (at, e) in events.iter().enumerate() {
            list.next[last] = at;
            list.prev[at] = last;
            last = at;
            if e.3.is_call {
                list.call_of[e.3.op] = at;
            } else {
                list.ret_of[e.3.op] = at;
            }
        }
        list.next[last] = tail;
        list.prev[tail] = last;
        list
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn unlink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = at;
        self.prev[n] = at;
    }

    /// Takes op `op`'s call and return out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        self.unlink(self.ret_of[op]);
    }

    /// Puts them back (in the reverse order of `lift`).
    fn unlift(&mut self, op: usize) {
        self.relink(self.ret_of[op]);
        self.relink(self.call_of[op]);
    }
}

/// A set of operations, as bits.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Whether `ops` is linearizable under `model`, searching at most
/// `budget` steps (a step: one attempt to place one operation).
pub fn check<M: Model>(model: &M, ops: &[Op<M::Input, M::Output>], budget: u64) -> Verdict {
    if ops.is_empty() {
        return Verdict::Linearizable;
    }
    let mut list = List::new(ops);
    let mut linearized = Bits::new(ops.len());
    let mut seen: HashSet<(Bits, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut at = list.first();
    let mut steps = 0u64;
    let mut deepest = (0usize, 0usize);
    while at != list.tail {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        let entry = list.entries[at];
        if entry.is_call {
            let op = &ops[entry.op];
            let next_state = model.step(&state, &op.input, op.output.as_ref());
            if let Some(next_state) = next_state {
                let mut with = linearized.clone();
                with.set(entry.op);
                if seen.insert((with.clone(), next_state.clone())) {
                    stack.push((entry.op, state));
                    state = next_state;
                    linearized = with;
                    list.lift(entry.op);
                    at = list.first();
                    continue;
                }
            }
            at = list.next[at];
        } else {
            // A return whose call was not placed: the order so far cannot
            // be extended; undo the last placement and try further on.
            if stack.len() >= deepest.0 {
                deepest = (stack.len(), entry.op);
            }
            let Some((op, before)) = stack.pop() else {
                return Verdict::Violation {
                    stuck: deepest.1,
                    prefix: deepest.0,
                };
            };
            state = before;
            linearized.clear(op);
            list.unlift(op);
            at = list.next[list.call_of[op]];
        }
    }
    Verdict::Linearizable
}

/// [`check`] on each key's operations separately (linearizability is
/// compositional); the first key that is not linearizable, with its
/// verdict, or `None` if all are. `budget` is per key.
pub fn check_per_key<K, M>(
    model: &M,
    ops: impl IntoIterator<Item = (K, Op<M::Input, M::Output>)>,
    budget: u64,
) -> Option<(K, Verdict)>
where
    K: Eq + Hash + Ord + Clone,
    M: Model,
{
    let mut by_key: HashMap<K, History<M>> = HashMap::new();
    for (k, op) in ops {
        by_key.entry(k).or_default().push(op);
    }
    let mut keys: Vec<K> = by_key.keys().cloned().collect();
    keys.sort();
    keys.into_iter().find_map(|k| {
        let verdict = check(model, &by_key[&k], budget);
        (!verdict.is_ok()).then_some((k, verdict))
    })
}
