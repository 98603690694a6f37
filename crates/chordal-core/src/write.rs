//! What a write may ask beyond "store this": an expiry, a precondition on
//! the current record, the value it replaced, or a change computed from the
//! current value (increment, append, a new expiry) — and how the owner
//! decides such a write against the current record ([`decide`]).
//!
//! The owner decides; it holds the key for the decision (DESIGN §5,
//! "Conditional writes"): a write that needs the current record waits for
//! the one before it on the same key, so two increments never read the same
//! value and two create-only writes never both succeed.

use crate::{Kind, OpResult, Record, Time, Version};
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
    /// Overwrite the value from byte `offset` on with `bytes`, padding
    /// with zero bytes up to `offset` (a missing key is empty); answers
    /// the new length (RESP `SETRANGE`). Empty `bytes` write nothing and
    /// answer the current length. The expiry stays.
    SetRange {
        /// Where `bytes` start.
        offset: u64,
        /// What to write there.
        bytes: Vec<u8>,
    },
    /// Set bit `offset` (bit 0 is the most significant of byte 0) to
    /// `bit`, padding with zero bytes (a missing key is empty); answers
    /// the bit's value before (RESP `SETBIT`). The expiry stays.
    SetBit {
        /// Which bit.
        offset: u64,
        /// Its new value.
        bit: bool,
    },
    /// Add a decimal number (its text, as RESP `INCRBYFLOAT` takes it)
    /// to the value read as one (a missing key is 0); answers `Found`
    /// with the new value's text. The expiry stays.
    IncrByFloat(Vec<u8>),
    /// Give a live value this expiry (`None`: never) and answer `Found`
    /// with it (RESP `GETEX`); a missing key is `NotFound`.
    GetEx(Option<Time>),
    /// Give the value a new expiry (`None`: never) if its current one
    /// passes `when` (RESP `EXPIRE … NX | XX | GT | LT`); answers 1, or 0
    /// when it does not (nothing is written). A missing key is `NotFound`.
    ExpireIf {
        /// The new expiry.
        expires: Option<Time>,
        /// What the current expiry must be.
        when: ExpireWhen,
    },
    /// Inside a batch only ([`Operation::Batch`](crate::Operation::Batch)):
    /// give this key the value and expiry `from` holds (RESP `COPY`,
    /// `RENAME`); answers `Updated` 1, or 0 when this key has a live value
    /// and `replace` is false (nothing is written). `from` without a live
    /// value answers `PreconditionFailed`.
    CopyFrom {
        /// The key to copy (of the same owner: the batch's).
        from: Vec<u8>,
        /// Overwrite a live value of this key?
        replace: bool,
    },
    /// Inside a batch only: the key's live value must be this version
    /// (`None`: the key has none), else the whole batch is refused
    /// `PreconditionFailed` and writes nothing (RESP `WATCH`). Answers
    /// `Updated` 1.
    Expect(Option<Version>),
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
        /// What the value is (a collection's header, or a string).
        kind: Kind,
    },
}

impl Change {
    /// The kind of the record this change leaves, decided against
    /// `current`: an expiry keeps it, a restore brings its own, the
    /// others compute a string.
    pub(crate) fn kind_written(&self, current: Option<&Record>) -> Kind {
        match self {
            Change::Expire(_) | Change::ExpireIf { .. } | Change::GetEx(_) => {
                current.map_or(Kind::String, |r| r.kind)
            }
            Change::Restore { kind, .. } => *kind,
            _ => Kind::String,
        }
    }
}

/// When [`Change::ExpireIf`] sets an expiry, by the current one (a value
/// without an expiry counts as expiring never, later than any time).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExpireWhen {
    /// The value has no expiry.
    Nx,
    /// The value has an expiry.
    Xx,
    /// The new expiry is later than the current one.
    Gt,
    /// The new expiry is earlier than the current one.
    Lt,
    /// The value has an expiry, and the new one is earlier (XX with LT).
    LtExisting,
}

impl ExpireWhen {
    /// Does a value expiring at `current` take `new` (`None`: never)?
    pub fn allows(&self, current: Option<Time>, new: Option<Time>) -> bool {
        // Never is later than every time.
        let at = |t: Option<Time>| t.map_or(u64::MAX, Time::as_micros);
        match self {
            ExpireWhen::Nx => current.is_none(),
            ExpireWhen::Xx => current.is_some(),
            ExpireWhen::Gt => at(new) > at(current),
            ExpireWhen::Lt => at(new) < at(current),
            ExpireWhen::LtExisting => current.is_some() && at(new) < at(current),
        }
    }
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
    /// Does it need the current value to be a string (a collection's
    /// header answers `WrongType`)? A plain put or delete replaces
    /// whatever is there, and an expiry applies to any kind, as in Redis.
    fn reads_string(&self) -> bool {
        match self {
            Intent::Put { opts, .. } | Intent::Delete { opts } => opts.return_old,
            Intent::Update(
                Change::Expire(_) | Change::ExpireIf { .. } | Change::Restore { .. },
            )
            | Intent::WriteBack => false,
            Intent::Update(_) => true,
        }
    }

    /// The kind of the record a write of this intent leaves, decided
    /// against `current`: an expiry (or a write-back) keeps it, a restore
    /// brings its own, everything else writes a string.
    pub fn kind_written(&self, current: Option<&Record>) -> Kind {
        match self {
            Intent::WriteBack => current.map_or(Kind::String, |r| r.kind),
            Intent::Update(change) => change.kind_written(current),
            Intent::Put { .. } | Intent::Delete { .. } => Kind::String,
        }
    }

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
    /// `Found` with the record written (its value, new version and
    /// expiry).
    Written,
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
    /// A batch: `OpResult::Batch` with each step's answer (see
    /// `batch.rs`), in the batch's version.
    Batch(Vec<crate::batch::StepAnswer>),
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
///
/// Long on purpose: one arm per kind of intent, each the rule that kind
/// decides by; they share the current record's reading above them.
pub(crate) fn decide(
    intent: Intent,
    current: Option<&Record>,
    now: Time,
    max_value: usize,
) -> Decision {
    let live = current.filter(|r| r.is_live(now));
    if live.is_some_and(|r| r.kind != Kind::String) && intent.reads_string() {
        return Decision::Answer(OpResult::WrongType);
    }
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
                return Decision::Answer(too_large(len as u64, max_value));
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
            ..
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
        Intent::Update(Change::SetRange { offset, bytes }) => {
            let mut value = old_value().unwrap_or_default();
            if bytes.is_empty() {
                let version = live.map(|r| r.version).unwrap_or_default();
                return unchanged(version, value.len() as i64);
            }
            let end = offset.saturating_add(bytes.len() as u64);
            if end > max_value as u64 {
                return Decision::Answer(too_large(end, max_value));
            }
            let (offset, end) = (offset as usize, end as usize);
            if value.len() < end {
                value.resize(end, 0);
            }
            value[offset..end].copy_from_slice(&bytes);
            let len = value.len() as i64;
            Decision::Write {
                value: Some(value),
                expires: old_expiry,
                then: Then::Updated(len),
            }
        }
        Intent::Update(Change::SetBit { offset, bit }) => {
            let mut value = old_value().unwrap_or_default();
            let byte = offset / 8;
            if byte >= max_value as u64 {
                return Decision::Answer(too_large(byte + 1, max_value));
            }
            let byte = byte as usize;
            let mask = 0x80u8 >> (offset % 8);
            let was = value.get(byte).is_some_and(|b| b & mask != 0);
            if let Some(r) = live.filter(|_| was == bit && byte < value.len()) {
                // Already so: nothing to write.
                return unchanged(r.version, i64::from(was));
            }
            if value.len() <= byte {
                value.resize(byte + 1, 0);
            }
            if bit {
                value[byte] |= mask;
            } else {
                value[byte] &= !mask;
            }
            Decision::Write {
                value: Some(value),
                expires: old_expiry,
                then: Then::Updated(i64::from(was)),
            }
        }
        Intent::Update(Change::IncrByFloat(by)) => {
            let current = match live.and_then(|r| r.value.as_deref()) {
                None => 0.0,
                Some(bytes) => match parse_float(bytes) {
                    Some(n) => n,
                    None => return Decision::Answer(OpResult::NotAFloat),
                },
            };
            let Some(by) = parse_float(&by) else {
                return Decision::Answer(OpResult::NotAFloat);
            };
            let next = current + by;
            if !next.is_finite() {
                return Decision::Answer(OpResult::Overflow);
            }
            Decision::Write {
                value: Some(format_float(next).into_bytes()),
                expires: old_expiry,
                then: Then::Written,
            }
        }
        Intent::Update(Change::GetEx(expires)) => {
            let Some(r) = live else {
                return Decision::Answer(OpResult::NotFound);
            };
            if r.expires == expires {
                return Decision::Answer(OpResult::Found {
                    value: r.value.clone().unwrap_or_default(),
                    version: r.version,
                    expires: r.expires,
                });
            }
            Decision::Write {
                value: r.value.clone(),
                expires,
                then: Then::Written,
            }
        }
        // They need the other keys of their batch (see `batch.rs`).
        Intent::Update(Change::CopyFrom { .. } | Change::Expect(_)) => {
            Decision::Answer(OpResult::Refused)
        }
        Intent::Update(change @ (Change::Expire(_) | Change::ExpireIf { .. })) => {
            let Some(r) = live else {
                return Decision::Answer(OpResult::NotFound);
            };
            // A plain expiry is written when it changes anything; a
            // conditional one when the current expiry passes.
            let (expires, passes) = match change {
                Change::ExpireIf { expires, when } => (expires, when.allows(r.expires, expires)),
                Change::Expire(expires) => (expires, r.expires != expires),
                _ => unreachable!("matched above"),
            };
            if !passes {
                return unchanged(r.version, 0);
            }
            Decision::Write {
                value: r.value.clone(),
                expires,
                then: Then::Updated(1),
            }
        }
    }
}

/// An update that writes nothing: `Updated` with `number`, naming the
/// version the key keeps.
fn unchanged(version: Version, number: i64) -> Decision {
    Decision::Answer(OpResult::Updated {
        version,
        acked: 0,
        number,
    })
}

/// A value that would grow to `size` bytes, past `max_value`.
fn too_large(size: u64, max_value: usize) -> OpResult {
    OpResult::TooLarge {
        size: size.min(u64::from(u32::MAX)) as u32,
        limit: max_value.min(u32::MAX as usize) as u32,
    }
}

/// A value read as a decimal number the way Redis's INCRBYFLOAT reads
/// one: an optional sign, digits with an optional point and exponent
/// (no spaces, no `inf` or `nan`), at most 5,000 bytes.
pub fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let plain = |c: char| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+');
    if text.is_empty() || text.len() > 5_000 || !text.chars().all(plain) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A number as INCRBYFLOAT writes it: the shortest text that reads back
/// as the same number, without an exponent (`5200`, `10.6`, `-0.5`).
pub fn format_float(n: f64) -> String {
    // `{}` never uses an exponent and gives the shortest round trip.
    let s = format!("{n}");
    if s == "-0" { "0".into() } else { s }
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
mod tests;
