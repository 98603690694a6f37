//! What a write may ask beyond "store this": an expiry, a precondition on
//! the current record, the value it replaced, or a change computed from the
//! current value (increment, append, a new expiry) — and how the owner
//! decides such a write against the current record ([`decide`]).
//!
//! The owner decides; it holds the key for the decision (DESIGN §5,
//! "Conditional writes"): a write that needs the current record waits for
//! the one before it on the same key, so two increments never read the same
//! value and two create-only writes never both succeed.

use crate::{OpResult, Record, Time, Version};
use std::time::Duration;

/// What a conditional write requires of the key's current value.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Condition {
    /// Nothing: the write always happens.
    #[default]
    Always,
    /// Create only: the key must not hold a live value (HTTP
    /// `If-None-Match: *`, RESP `SET NX`).
    Absent,
    /// The key must hold a live value (RESP `SET XX`).
    Present,
    /// The key's live value must be the write this version names (HTTP
    /// `If-Match`; see [`Version::same_write`]: a takeover's write-back
    /// raises the term of a version, not its identity).
    Version(Version),
}

impl Condition {
    /// `Ok` if `live` (the key's live record, if any) meets the condition;
    /// else the precondition failure to answer, naming the current version.
    pub fn check(&self, live: Option<&Record>) -> Result<(), OpResult> {
        let ok = match self {
            Condition::Always => true,
            Condition::Absent => live.is_none(),
            Condition::Present => live.is_some(),
            Condition::Version(v) => live.is_some_and(|r| r.version.same_write(v)),
        };
        if ok {
            Ok(())
        } else {
            Err(OpResult::PreconditionFailed {
                current: live.map(|r| r.version),
            })
        }
    }
}

/// When a value written expires, as an application gives it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Expiry {
    /// Never (a put without a TTL clears any expiry the key had).
    #[default]
    Never,
    /// This long after the coordinator starts the write.
    After(Duration),
    /// At this time (the driver's clock: Unix time in the tokio driver).
    At(Time),
    /// Whatever expiry the current value has (RESP `SET … KEEPTTL`).
    Keep,
}

impl Expiry {
    /// The absolute expiry at `now` (`None`: never), unless the current
    /// value's is to be kept.
    pub fn resolve(&self, now: Time) -> Option<Time> {
        match self {
            Expiry::Never | Expiry::Keep => None,
            Expiry::After(d) => Some(now + *d),
            Expiry::At(t) => Some(*t),
        }
    }
}

/// A put's or delete's options, as applications give them
/// (`Node::put_with`, `Client::put_with`, the HTTP and RESP front ends).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PutOptions {
    /// When the value expires (ignored by deletes).
    pub expiry: Expiry,
    /// What the current value must be for the write to happen.
    pub condition: Condition,
    /// Answer with the value the write replaced (RESP `SET … GET`,
    /// `GETDEL`): the result is then `Replaced`.
    pub return_old: bool,
}

impl PutOptions {
    /// The options as they travel to the owner, the expiry made absolute at
    /// `now`.
    pub fn at(&self, now: Time) -> WriteOptions {
        WriteOptions {
            expires: self.expiry.resolve(now),
            keep_ttl: self.expiry == Expiry::Keep,
            condition: self.condition,
            return_old: self.return_old,
        }
    }
}

/// A put's or delete's options as the owner gets them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct WriteOptions {
    /// When the value expires (`None`: never); ignored by deletes.
    pub expires: Option<Time>,
    /// Keep the current value's expiry instead of `expires`.
    pub keep_ttl: bool,
    /// What the current value must be.
    pub condition: Condition,
    /// Answer with the value the write replaced.
    pub return_old: bool,
}

impl WriteOptions {
    /// Does the owner need the current record to decide this write? A plain
    /// put does not (it is versioned and written at once).
    pub fn needs_current(&self) -> bool {
        self.keep_ttl || self.return_old || self.condition != Condition::Always
    }
}

/// A write computed by the owner from the key's current value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    /// Add to the value read as a decimal 64-bit integer (a missing key is
    /// 0); answers the new value. The expiry stays.
    IncrBy(i64),
    /// Append bytes to the value (a missing key is empty); answers the new
    /// length. The expiry stays.
    Append(Vec<u8>),
    /// Give the value a new expiry (`None`: never); answers 1, or 0 when
    /// it already had that one (nothing is written). A missing key is
    /// `NotFound`.
    Expire(Option<Time>),
    /// Put back a record exactly as a backup holds it, its version
    /// included, if that version is newer than every copy's (`chordal
    /// restore`); answers `Stored` with that version (also when the ring
    /// held exactly it: it is then on the write quorum), or
    /// `PreconditionFailed` with the newer version the ring keeps instead.
    Restore {
        /// The record's version, kept as it is.
        version: Version,
        /// The value (`None`: a tombstone).
        value: Option<Vec<u8>>,
        /// When the value expires (`None`: never).
        expires: Option<Time>,
    },
}

/// How many copies a read consults.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Consistency {
    /// The owner's copy (`?consistency=one`, the default): the owner asks
    /// its replicas only when it may lack the key (a handoff may be
    /// running).
    #[default]
    Owner,
    /// A majority of the `R` copies, the owner's included; newest wins.
    Quorum,
    /// Every copy; newest wins.
    All,
}

impl Consistency {
    /// Copies that must answer a read of this consistency when `copies`
    /// exist (the owner's and its replica targets') and `replicas` is `R`.
    pub fn copies_needed(&self, replicas: usize, copies: usize) -> usize {
        let want = match self {
            Consistency::Owner => 1,
            Consistency::Quorum => replicas / 2 + 1,
            Consistency::All => replicas,
        };
        want.clamp(1, copies.max(1))
    }
}

/// A write the owner decides against the key's current record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Intent {
    Put {
        value: Vec<u8>,
        opts: WriteOptions,
    },
    Delete {
        opts: WriteOptions,
    },
    Update(Change),
    /// A get whose record was not known to be on a quorum (authority):
    /// write the current record again, then answer it as a get would.
    WriteBack,
}

impl Intent {
    /// See [`WriteOptions::needs_current`]; deletes and changes always do.
    pub fn needs_current(&self) -> bool {
        match self {
            Intent::Put { opts, .. } => opts.needs_current(),
            Intent::Delete { .. } | Intent::Update(_) | Intent::WriteBack => true,
        }
    }
}

/// What the owner answers once a decided write has its quorum.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Then {
    /// `Stored`.
    Stored,
    /// `Replaced` with the value the write replaced.
    Replaced(Option<Vec<u8>>),
    /// `Updated` with this number.
    Updated(i64),
    /// `Stored`, the record keeping this version of a backup's (see
    /// [`Change::Restore`]); a copy holding a newer one makes it
    /// `PreconditionFailed` instead of a new version.
    Restored(Version),
    /// A write-back (authority): the record a read or a decision found
    /// was not known to be on a quorum, so the owner wrote it again in its
    /// term first. Answer the get with the record written.
    ReadBack,
    /// A write-back before answering this (a decision that wrote nothing).
    Answer(Box<crate::OpResult>),
}

/// The owner's decision on a write.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Decision {
    /// Write this value (`None`: a tombstone) with this expiry, then answer.
    Write {
        value: Option<Vec<u8>>,
        expires: Option<Time>,
        then: Then,
    },
    /// Write nothing; answer this.
    Answer(OpResult),
}

/// Decides `intent` against `current`, the newest record of the key (a
/// tombstone or an expired value included), at `now`; a value may not grow
/// past `max_value` bytes.
pub(crate) fn decide(
    intent: Intent,
    current: Option<&Record>,
    now: Time,
    max_value: usize,
) -> Decision {
    let live = current.filter(|r| r.is_live(now));
    let old_value = || live.and_then(|r| r.value.clone());
    let old_expiry = live.and_then(|r| r.expires);
    match intent {
        Intent::WriteBack => match current {
            Some(r) => Decision::Write {
                value: r.value.clone(),
                expires: r.expires,
                then: Then::ReadBack,
            },
            None => Decision::Answer(OpResult::NotFound),
        },
        Intent::Put { value, opts } => {
            if let Err(refusal) = opts.condition.check(live) {
                return Decision::Answer(refusal);
            }
            let then = if opts.return_old {
                Then::Replaced(old_value())
            } else {
                Then::Stored
            };
            let expires = if opts.keep_ttl {
                old_expiry
            } else {
                opts.expires
            };
            Decision::Write {
                value: Some(value),
                expires,
                then,
            }
        }
        Intent::Delete { opts } => {
            if let Err(refusal) = opts.condition.check(live) {
                return Decision::Answer(refusal);
            }
            if live.is_none() {
                return Decision::Answer(OpResult::NotFound);
            }
            let then = if opts.return_old {
                Then::Replaced(old_value())
            } else {
                Then::Stored
            };
            Decision::Write {
                value: None,
                expires: None,
                then,
            }
        }
        Intent::Update(Change::IncrBy(by)) => {
            let now_value = match live.and_then(|r| r.value.as_deref()) {
                None => 0,
                Some(bytes) => match parse_integer(bytes) {
                    Some(n) => n,
                    None => return Decision::Answer(OpResult::NotAnInteger),
                },
            };
            let Some(next) = now_value.checked_add(by) else {
                return Decision::Answer(OpResult::Overflow);
            };
            Decision::Write {
                value: Some(next.to_string().into_bytes()),
                expires: old_expiry,
                then: Then::Updated(next),
            }
        }
        Intent::Update(Change::Append(tail)) => {
            let mut value = old_value().unwrap_or_default();
            let len = value.len() + tail.len();
            if len > max_value {
                return Decision::Answer(OpResult::TooLarge {
                    size: len.min(u32::MAX as usize) as u32,
                    limit: max_value.min(u32::MAX as usize) as u32,
                });
            }
            value.extend_from_slice(&tail);
            Decision::Write {
                value: Some(value),
                expires: old_expiry,
                then: Then::Updated(len as i64),
            }
        }
        Intent::Update(Change::Restore {
            version,
            value,
            expires,
        }) => {
            // Against every record, tombstones and expired values
            // included: a delete newer than the backup wins. The same
            // version is written again (every copy takes it as stored), so
            // that a retried restore still reaches the write quorum.
            // Newer by the clock, not by the term: a backup's terms are
            // another ring's (or an older incarnation's); the restored
            // record takes the owner's term (see `Store::decide_write`).
            if let Some(c) = current
                && (c.version.hlc, c.version.node) > (version.hlc, version.node)
            {
                return Decision::Answer(OpResult::PreconditionFailed {
                    current: Some(c.version),
                });
            }
            // A tombstone never expires (a record claiming so is refused
            // on the wire).
            let expires = value.as_ref().and(expires);
            Decision::Write {
                value,
                expires,
                then: Then::Restored(version),
            }
        }
        Intent::Update(Change::Expire(expires)) => {
            let Some(r) = live else {
                return Decision::Answer(OpResult::NotFound);
            };
            if r.expires == expires {
                return Decision::Answer(OpResult::Updated {
                    version: r.version,
                    acked: 0,
                    number: 0,
                });
            }
            Decision::Write {
                value: r.value.clone(),
                expires,
                then: Then::Updated(1),
            }
        }
    }
}

/// A stored value read as a decimal 64-bit integer the way Redis reads one:
/// an optional `-`, digits, nothing else (no `+`, no spaces, at most 20
/// bytes).
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 || bytes[0] == b'+' {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    fn version(hlc: u64) -> Version {
        Version {
            term: 0,
            hlc,
            node: Id::from_u64(1),
        }
    }

    fn record(value: Option<&str>, hlc: u64, expires: Option<u64>) -> Record {
        Record::new(
            b"k".to_vec(),
            version(hlc),
            value.map(|v| v.as_bytes().to_vec()),
        )
        .expiring(expires.map(Time::from_micros))
    }

    fn put(condition: Condition) -> Intent {
        Intent::Put {
            value: b"new".to_vec(),
            opts: WriteOptions {
                condition,
                ..WriteOptions::default()
            },
        }
    }

    const NOW: Time = Time::from_micros(1_000);

    fn written(d: &Decision) -> bool {
        matches!(d, Decision::Write { .. })
    }

    #[test]
    fn create_only_writes_only_when_nothing_live_is_there() {
        let live = record(Some("old"), 5, None);
        let dead = record(None, 5, None);
        let expired = record(Some("old"), 5, Some(1_000));
        assert!(written(&decide(put(Condition::Absent), None, NOW, 10)));
        assert!(written(&decide(
            put(Condition::Absent),
            Some(&dead),
            NOW,
            10
        )));
        assert!(written(&decide(
            put(Condition::Absent),
            Some(&expired),
            NOW,
            10
        )));
        let refused = OpResult::PreconditionFailed {
            current: Some(version(5)),
        };
        assert_eq!(
            decide(put(Condition::Absent), Some(&live), NOW, 10),
            Decision::Answer(refused)
        );
    }

    /// A backup's terms are another ring's: a restore is older or newer
    /// than the key's record by the clock alone.
    #[test]
    fn a_restore_is_compared_by_its_clock_not_by_a_foreign_term() {
        let mut current = record(Some("now"), 2_000, None);
        current.version.term = 2;
        let backup = |hlc: u64| {
            Intent::Update(Change::Restore {
                version: Version {
                    term: 9,
                    hlc,
                    node: Id::from_u64(1),
                },
                value: Some(b"backed up".to_vec()),
                expires: None,
            })
        };
        let older = decide(backup(1_000), Some(&current), NOW, 100);
        assert_eq!(
            older,
            Decision::Answer(OpResult::PreconditionFailed {
                current: Some(current.version)
            }),
            "a higher term does not make an older backup win"
        );
        assert!(written(&decide(backup(3_000), Some(&current), NOW, 100)));
        // The same clock and writer: the same write, written again.
        assert!(written(&decide(backup(2_000), Some(&current), NOW, 100)));
    }

    #[test]
    fn compare_version_needs_exactly_the_current_version() {
        let live = record(Some("old"), 5, None);
        assert!(written(&decide(
            put(Condition::Version(version(5))),
            Some(&live),
            NOW,
            10
        )));
        assert_eq!(
            decide(put(Condition::Version(version(4))), Some(&live), NOW, 10),
            Decision::Answer(OpResult::PreconditionFailed {
                current: Some(version(5))
            })
        );
        assert_eq!(
            decide(put(Condition::Present), None, NOW, 10),
            Decision::Answer(OpResult::PreconditionFailed { current: None })
        );
    }

    #[test]
    fn increments_parse_keep_the_expiry_and_refuse_overflow() {
        let n = record(Some("41"), 5, Some(9_000));
        assert_eq!(
            decide(Intent::Update(Change::IncrBy(1)), Some(&n), NOW, 10),
            Decision::Write {
                value: Some(b"42".to_vec()),
                expires: Some(Time::from_micros(9_000)),
                then: Then::Updated(42),
            }
        );
        let absent = decide(Intent::Update(Change::IncrBy(-3)), None, NOW, 10);
        assert!(matches!(
            absent,
            Decision::Write {
                then: Then::Updated(-3),
                ..
            }
        ));
        let text = record(Some("4x"), 5, None);
        assert_eq!(
            decide(Intent::Update(Change::IncrBy(1)), Some(&text), NOW, 10),
            Decision::Answer(OpResult::NotAnInteger)
        );
        let max = record(Some(&i64::MAX.to_string()), 5, None);
        assert_eq!(
            decide(Intent::Update(Change::IncrBy(1)), Some(&max), NOW, 10),
            Decision::Answer(OpResult::Overflow)
        );
        assert_eq!(parse_integer(b"+1"), None);
        assert_eq!(parse_integer(b" 1"), None);
        assert_eq!(parse_integer(b"-12"), Some(-12));
    }

    #[test]
    fn appends_grow_up_to_the_value_limit() {
        let v = record(Some("abc"), 5, None);
        let d = decide(
            Intent::Update(Change::Append(b"de".to_vec())),
            Some(&v),
            NOW,
            5,
        );
        assert!(matches!(
            d,
            Decision::Write {
                then: Then::Updated(5),
                ..
            }
        ));
        let d = decide(
            Intent::Update(Change::Append(b"def".to_vec())),
            Some(&v),
            NOW,
            5,
        );
        assert_eq!(
            d,
            Decision::Answer(OpResult::TooLarge { size: 6, limit: 5 })
        );
    }

    #[test]
    fn deletes_and_expiry_changes_need_a_live_value() {
        let v = record(Some("abc"), 5, None);
        let delete = || Intent::Delete {
            opts: WriteOptions {
                return_old: true,
                ..WriteOptions::default()
            },
        };
        assert_eq!(
            decide(delete(), None, NOW, 10),
            Decision::Answer(OpResult::NotFound)
        );
        assert_eq!(
            decide(delete(), Some(&v), NOW, 10),
            Decision::Write {
                value: None,
                expires: None,
                then: Then::Replaced(Some(b"abc".to_vec())),
            }
        );
        let persist = decide(Intent::Update(Change::Expire(None)), Some(&v), NOW, 10);
        assert!(matches!(
            persist,
            Decision::Answer(OpResult::Updated { number: 0, .. })
        ));
        let at = Some(Time::from_micros(5_000));
        assert!(written(&decide(
            Intent::Update(Change::Expire(at)),
            Some(&v),
            NOW,
            10
        )));
        assert_eq!(
            decide(Intent::Update(Change::Expire(at)), None, NOW, 10),
            Decision::Answer(OpResult::NotFound)
        );
    }

    #[test]
    fn keep_ttl_takes_the_current_expiry() {
        let v = record(Some("abc"), 5, Some(7_000));
        let intent = Intent::Put {
            value: b"x".to_vec(),
            opts: PutOptions {
                expiry: Expiry::Keep,
                ..PutOptions::default()
            }
            .at(NOW),
        };
        assert!(matches!(
            decide(intent, Some(&v), NOW, 10),
            Decision::Write { expires: Some(t), .. } if t == Time::from_micros(7_000)
        ));
        assert_eq!(
            Expiry::After(Duration::from_micros(5)).resolve(NOW),
            Some(Time::from_micros(1_005))
        );
    }

    #[test]
    fn consistency_counts_copies() {
        assert_eq!(Consistency::Owner.copies_needed(3, 3), 1);
        assert_eq!(Consistency::Quorum.copies_needed(3, 3), 2);
        assert_eq!(Consistency::All.copies_needed(3, 3), 3);
        assert_eq!(Consistency::All.copies_needed(3, 2), 2);
        assert_eq!(Consistency::Quorum.copies_needed(5, 5), 3);
    }
}
