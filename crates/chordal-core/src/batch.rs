//! Deciding a batch ([`Operation::Batch`]): several operations on keys
//! of one owner, each decided by [`decide`] against the state the steps
//! before it left, as if they ran alone one after the other — so MULTI's
//! INCR after a SET of the same key sees the SET. Pure: the owner
//! (`store/batch.rs`) reads the keys, holds them, calls [`decide_steps`]
//! and writes what it says in one atomic apply.

use crate::write::{Decision, Intent, Then, decide};
use crate::{Change, Id, Kind, OpResult, Operation, Record, Time, Version};
use std::collections::BTreeMap;

/// The version a step sees on a key an earlier step of the same batch
/// wrote: no client can name it (so a condition naming a version read
/// before fails, as it would after that write), and the owner puts the
/// batch's real version in its place in the answers.
pub(crate) const THIS_BATCH: Version = Version {
    term: u64::MAX,
    hlc: u64::MAX,
    node: Id::MAX,
};

/// What a key holds after a batch: its value (`None`: a tombstone),
/// expiry and kind.
pub(crate) type Contents = (Option<Vec<u8>>, Option<Time>, Kind);

/// Each key's newest record as a batch read it (`None`: none).
pub(crate) type Currents = BTreeMap<Vec<u8>, Option<Record>>;
/// Per collection, its live element records as the store held them.
pub(crate) type Runs = BTreeMap<Vec<u8>, Vec<Record>>;

/// How one step answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum StepAnswer {
    /// This (its versions [`THIS_BATCH`] where the batch wrote).
    Now(OpResult),
    /// As a single write answering `then` would, once the batch is
    /// written (with the batch's version).
    Then(Then),
}

/// What the owner does with a batch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct BatchDecision {
    /// Per step, its answer.
    pub answers: Vec<StepAnswer>,
    /// The keys to write and what they hold after the batch: value
    /// (`None`: a tombstone) and expiry. Empty if the batch was cancelled
    /// or changed nothing.
    pub writes: BTreeMap<Vec<u8>, Contents>,
}

/// Does a step answered `r` fail, cancelling an all-or-nothing batch?
fn fails(r: &OpResult) -> bool {
    matches!(
        r,
        OpResult::PreconditionFailed { .. }
            | OpResult::NotAnInteger
            | OpResult::NotAFloat
            | OpResult::WrongType
            | OpResult::Overflow
            | OpResult::TooLarge { .. }
            | OpResult::Refused
    )
}

/// Decides `steps` (puts, gets, deletes, updates, collection commands)
/// against `currents`, the newest record of each key they name (`None`:
/// none), at `now`. `all_or_nothing`: one failed step cancels every
/// write; a failed [`Change::Expect`] always does. `runs` holds, per collection a step reads a run of (see
/// [`CollOp::reads_run`](crate::collection::CollOp::reads_run)), its
/// live element records as the store held them before the batch, and
/// `version` is the version the batch will be written with (a
/// collection born in the batch is born with it). Without a `version`,
/// a collection step is refused.
pub(crate) fn decide_steps(
    steps: Vec<Operation>,
    (currents, runs): (&Currents, &Runs),
    all_or_nothing: bool,
    (now, version, max_value): (Time, Option<Version>, usize),
) -> BatchDecision {
    // Each key's state as the steps so far left it.
    let mut state: BTreeMap<Vec<u8>, Option<Record>> = currents.clone();
    let mut answers = Vec::with_capacity(steps.len());
    let mut writes = BTreeMap::new();
    let mut cancelled = false;
    for step in steps {
        if let Operation::Update {
            key,
            change: Change::CopyFrom { from, replace },
        } = &step
            && let Some(src) = state
                .get(from)
                .cloned()
                .flatten()
                .filter(|r| r.is_live(now) && r.kind != Kind::String)
        {
            // A collection copied (COPY, RENAME): its header and every
            // element under the new key, born anew with the batch.
            let dst = state.get(key).cloned().flatten();
            let answer = match version {
                _ if dst.is_some_and(|d| d.is_live(now)) && !*replace => {
                    StepAnswer::Now(OpResult::Updated {
                        version: THIS_BATCH,
                        acked: 0,
                        number: 0,
                    })
                }
                None => StepAnswer::Now(OpResult::Refused),
                Some(v) => {
                    let run = runs.get(from).map_or(&[][..], Vec::as_slice);
                    match copy_collection(&src, key, run, &state, v) {
                        Some(records) => {
                            for r in records {
                                writes.insert(r.key.clone(), (r.value.clone(), r.expires, r.kind));
                                state.insert(r.key.clone(), Some(r));
                            }
                            StepAnswer::Then(Then::Updated(1))
                        }
                        None => StepAnswer::Now(OpResult::StoreFailed),
                    }
                }
            };
            if let StepAnswer::Now(r) = &answer {
                cancelled |= all_or_nothing && fails(r);
            }
            answers.push(answer);
            continue;
        }
        if let Operation::Collection { key, kind, op } = step {
            let answer = match version {
                Some(v) => {
                    let run = runs.get(&key).map_or(&[][..], Vec::as_slice);
                    let d = collection_step(&state, run, (&key, kind, op), (now, v, max_value));
                    for (k, (value, expires, kind)) in d.writes {
                        let mut next = Record::new(k.clone(), v, value.clone()).of_kind(kind);
                        next.expires = expires;
                        state.insert(k.clone(), Some(next));
                        writes.insert(k, (value, expires, kind));
                    }
                    d.answer
                }
                None => OpResult::Refused,
            };
            cancelled |= all_or_nothing && fails(&answer);
            answers.push(StepAnswer::Now(answer));
            continue;
        }
        let key = step.key().to_vec();
        let current = state.get(&key).cloned().flatten();
        let live = current.as_ref().filter(|r| r.is_live(now));
        let kind = match &step {
            Operation::Update { change, .. } => change.kind_written(current.as_ref()),
            _ => Kind::String,
        };
        let decision = match step {
            Operation::Get { .. } => Decision::Answer(match live {
                // A batch reads and copies strings (a collection is more
                // than its header).
                Some(r) if r.kind != Kind::String => OpResult::WrongType,
                Some(r) => OpResult::Found {
                    value: r.value.clone().unwrap_or_default(),
                    version: r.version,
                    expires: r.expires,
                },
                None => OpResult::NotFound,
            }),
            Operation::Put { value, opts, .. } => decide(
                Intent::Put { value, opts },
                current.as_ref(),
                now,
                max_value,
            ),
            Operation::Delete { opts, .. } => {
                decide(Intent::Delete { opts }, current.as_ref(), now, max_value)
            }
            Operation::Update {
                change: Change::Expect(version),
                ..
            } => {
                let holds = live.map(|r| r.version);
                let same = match (holds, version) {
                    (None, None) => true,
                    (Some(h), Some(v)) => h.same_write(&v),
                    _ => false,
                };
                if !same {
                    cancelled = true;
                }
                Decision::Answer(match same {
                    true => OpResult::Updated {
                        version: holds.unwrap_or(THIS_BATCH),
                        acked: 0,
                        number: 1,
                    },
                    false => OpResult::PreconditionFailed { current: holds },
                })
            }
            Operation::Update {
                change: Change::CopyFrom { from, replace },
                ..
            } => {
                let source = state
                    .get(&from)
                    .cloned()
                    .flatten()
                    .filter(|r| r.is_live(now));
                match source {
                    None => Decision::Answer(OpResult::PreconditionFailed { current: None }),
                    Some(src) if src.kind != Kind::String => Decision::Answer(OpResult::WrongType),
                    Some(_) if live.is_some() && !replace => Decision::Answer(OpResult::Updated {
                        version: live.map_or(THIS_BATCH, |r| r.version),
                        acked: 0,
                        number: 0,
                    }),
                    Some(src) => Decision::Write {
                        value: src.value,
                        expires: src.expires,
                        then: Then::Updated(1),
                    },
                }
            }
            Operation::Update { change, .. } => {
                decide(Intent::Update(change), current.as_ref(), now, max_value)
            }
            // Not a store operation: `Operation::one_owner` keeps them out.
            _ => Decision::Answer(OpResult::Refused),
        };
        match decision {
            Decision::Answer(r) => {
                cancelled |= all_or_nothing && fails(&r);
                answers.push(StepAnswer::Now(r));
            }
            Decision::Write {
                value,
                expires,
                then,
            } => {
                // A step that answers with the record it wrote answers
                // from the state now (the version filled in later).
                let answer = match then {
                    Then::Written => StepAnswer::Now(OpResult::Found {
                        value: value.clone().unwrap_or_default(),
                        version: THIS_BATCH,
                        expires,
                    }),
                    then => StepAnswer::Then(then),
                };
                answers.push(answer);
                let kind = if value.is_some() { kind } else { Kind::String };
                let mut next = Record::new(key.clone(), THIS_BATCH, value.clone()).of_kind(kind);
                next.expires = expires;
                state.insert(key.clone(), Some(next));
                writes.insert(key, (value, expires, kind));
            }
        }
    }
    if cancelled {
        writes.clear();
    }
    BatchDecision { answers, writes }
}

/// The records that make collection `src` (a live header) anew at key
/// `to`, written at `version`: its header born at `version`, and each of
/// its live elements — `run` (as stored) with the batch's writes in
/// `state` over it — under `to`. `None` if the header cannot be read.
fn copy_collection(
    src: &Record,
    to: &[u8],
    run: &[Record],
    state: &Currents,
    version: Version,
) -> Option<Vec<Record>> {
    use crate::collection::{Header, key::elements_prefix};
    let mut header = Header::decode(src.value.as_deref()?)?;
    let born = header.born;
    header.born = version;
    let mut head = Record::new(to.to_vec(), version, Some(header.encode())).of_kind(src.kind);
    head.expires = src.expires;
    let (from_prefix, to_prefix) = (elements_prefix(&src.key), elements_prefix(to));
    let mut out = vec![head];
    for (k, r) in with_writes(run, state, &from_prefix) {
        if r.value.is_none() || r.version < born {
            continue;
        }
        let mut key = to_prefix.clone();
        key.extend_from_slice(&k[from_prefix.len()..]);
        out.push(Record::new(key, version, r.value.clone()).of_kind(r.kind));
    }
    Some(out)
}

/// The element records under `prefix`: `run` (as the store held them)
/// with the batch's own reads and writes in `state` over it, in key
/// order (tombstones included).
fn with_writes<'a>(
    run: &'a [Record],
    state: &'a Currents,
    prefix: &[u8],
) -> BTreeMap<&'a [u8], &'a Record> {
    let mut by_key: BTreeMap<&[u8], &Record> = run.iter().map(|r| (r.key.as_slice(), r)).collect();
    let from = std::ops::Bound::Included(prefix);
    for (k, r) in state.range::<[u8], _>((from, std::ops::Bound::Unbounded)) {
        if !k.starts_with(prefix) {
            break;
        }
        match r {
            Some(r) => by_key.insert(k, r),
            None => by_key.remove(k.as_slice()),
        };
    }
    by_key
}

/// Decides collection command `op` on the `kind` collection at `key`
/// against `state` (the batch's keys as the steps before it left them)
/// and `run` (its elements as stored before the batch): the run it
/// reads is `run` with the batch's own writes over it, cut to the range
/// the command reads from its header now.
fn collection_step(
    state: &BTreeMap<Vec<u8>, Option<Record>>,
    run: &[Record],
    (key, kind, op): (&[u8], Kind, crate::collection::CollOp),
    limits: (Time, Version, usize),
) -> crate::collection::CollDecision {
    use crate::collection::{decide, live_header};
    let record = state.get(key).cloned().flatten();
    let header = live_header(record.as_ref(), kind, limits.0);
    let all: Vec<Record> = match op.range(key, kind, header.as_ref(), state) {
        Some(range) => {
            let born = header.map(|h| h.born).unwrap_or_default();
            with_writes(run, state, &range.prefix)
                .into_iter()
                .filter(|(k, r)| range.holds(k) && r.value.is_some() && r.version >= born)
                .take(range.limit)
                .map(|(_, r)| r.clone())
                .collect()
        }
        None => Vec::new(),
    };
    decide(key, kind, op, record.as_ref(), state, &all, limits)
}

/// `r` with every [`THIS_BATCH`] version made `version` (the one the
/// batch was written with).
pub(crate) fn with_version(r: OpResult, version: Version) -> OpResult {
    let fix = |v: Version| if v == THIS_BATCH { version } else { v };
    match r {
        OpResult::Found {
            value,
            version: v,
            expires,
        } => OpResult::Found {
            value,
            version: fix(v),
            expires,
        },
        OpResult::Updated {
            version: v,
            acked,
            number,
        } => OpResult::Updated {
            version: fix(v),
            acked,
            number,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Condition, WriteOptions};

    const NOW: Time = Time::from_micros(1_000_000);

    /// A batch of steps that names no collection.
    fn decide_batch(
        steps: Vec<Operation>,
        currents: &BTreeMap<Vec<u8>, Option<Record>>,
        all_or_nothing: bool,
        now: Time,
        max_value: usize,
    ) -> BatchDecision {
        let reads = (currents, &BTreeMap::new());
        decide_steps(steps, reads, all_or_nothing, (now, None, max_value))
    }

    fn record(key: &str, value: &str, hlc: u64) -> Record {
        Record::new(
            key.as_bytes().to_vec(),
            Version::at(hlc, Id::from_u64(3)),
            Some(value.as_bytes().to_vec()),
        )
    }

    fn put(key: &str, value: &str, condition: Condition) -> Operation {
        Operation::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            opts: WriteOptions {
                condition,
                ..WriteOptions::default()
            },
        }
    }

    fn update(key: &str, change: Change) -> Operation {
        Operation::Update {
            key: key.as_bytes().to_vec(),
            change,
        }
    }

    fn currents(records: &[Record], missing: &[&str]) -> BTreeMap<Vec<u8>, Option<Record>> {
        let mut out: BTreeMap<Vec<u8>, Option<Record>> = records
            .iter()
            .map(|r| (r.key.clone(), Some(r.clone())))
            .collect();
        for k in missing {
            out.insert(k.as_bytes().to_vec(), None);
        }
        out
    }

    #[test]
    fn later_steps_see_what_earlier_ones_wrote() {
        let steps = vec![
            put("{t}a", "5", Condition::Always),
            update("{t}a", Change::IncrBy(2)),
            Operation::Get {
                key: b"{t}a".to_vec(),
                consistency: Default::default(),
            },
        ];
        let d = decide_batch(steps, &currents(&[], &["{t}a"]), false, NOW, 1024);
        assert_eq!(d.answers[1], StepAnswer::Then(Then::Updated(7)));
        assert_eq!(
            d.answers[2],
            StepAnswer::Now(OpResult::Found {
                value: b"7".to_vec(),
                version: THIS_BATCH,
                expires: None
            })
        );
        assert_eq!(
            d.writes.get(&b"{t}a"[..]),
            Some(&(Some(b"7".to_vec()), None, Kind::String))
        );
    }

    #[test]
    fn all_or_nothing_writes_nothing_when_one_step_fails() {
        // MSETNX with one key taken.
        let taken = record("{t}b", "old", 5);
        let steps = vec![
            put("{t}a", "1", Condition::Absent),
            put("{t}b", "2", Condition::Absent),
        ];
        let d = decide_batch(
            steps.clone(),
            &currents(std::slice::from_ref(&taken), &["{t}a"]),
            true,
            NOW,
            1024,
        );
        assert!(d.writes.is_empty());
        assert!(matches!(
            d.answers[1],
            StepAnswer::Now(OpResult::PreconditionFailed { .. })
        ));
        // Without all-or-nothing (MULTI), the first still writes.
        let d = decide_batch(steps, &currents(&[taken], &["{t}a"]), false, NOW, 1024);
        assert_eq!(d.writes.len(), 1);
    }

    #[test]
    fn a_copy_moves_value_and_expiry_and_respects_replace() {
        let mut src = record("{t}src", "v", 5);
        src.expires = Some(Time::from_micros(9_000_000));
        let dst = record("{t}dst", "old", 6);
        let rename = vec![
            update(
                "{t}dst",
                Change::CopyFrom {
                    from: b"{t}src".to_vec(),
                    replace: true,
                },
            ),
            Operation::Delete {
                key: b"{t}src".to_vec(),
                opts: WriteOptions::default(),
            },
        ];
        let d = decide_batch(
            rename,
            &currents(&[src.clone(), dst.clone()], &[]),
            true,
            NOW,
            1024,
        );
        assert_eq!(
            d.writes.get(&b"{t}dst"[..]),
            Some(&(Some(b"v".to_vec()), src.expires, Kind::String))
        );
        assert_eq!(
            d.writes.get(&b"{t}src"[..]),
            Some(&(None, None, Kind::String))
        );
        // Without replace, a live target stays; a missing source fails.
        let copy = vec![update(
            "{t}dst",
            Change::CopyFrom {
                from: b"{t}src".to_vec(),
                replace: false,
            },
        )];
        let d = decide_batch(
            copy.clone(),
            &currents(&[src, dst.clone()], &[]),
            true,
            NOW,
            1024,
        );
        assert!(d.writes.is_empty());
        let d = decide_batch(copy, &currents(&[dst], &["{t}src"]), true, NOW, 1024);
        assert!(matches!(
            d.answers[0],
            StepAnswer::Now(OpResult::PreconditionFailed { current: None })
        ));
    }

    #[test]
    fn a_failed_expectation_cancels_even_a_non_atomic_batch() {
        let watched = record("{t}w", "1", 5);
        let steps = vec![
            update(
                "{t}w",
                Change::Expect(Some(Version::at(4, Id::from_u64(3)))),
            ),
            put("{t}x", "1", Condition::Always),
        ];
        let d = decide_batch(
            steps,
            &currents(std::slice::from_ref(&watched), &["{t}x"]),
            false,
            NOW,
            1024,
        );
        assert!(d.writes.is_empty());
        // The version it holds passes (whatever term confirmed it since).
        let mut same = watched.version;
        same.term += 1;
        let steps = vec![
            update("{t}w", Change::Expect(Some(same))),
            put("{t}x", "1", Condition::Always),
        ];
        let d = decide_batch(steps, &currents(&[watched], &["{t}x"]), false, NOW, 1024);
        assert_eq!(d.writes.len(), 1);
    }
}
