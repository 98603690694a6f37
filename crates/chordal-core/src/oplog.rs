//! The writes a record remembers by operation id, so that a retried write
//! is answered, not applied again — also by a later owner (
//! docs/consistency.md "Retries").
//!
//! A coordinator whose request went unanswered cannot know whether the
//! owner applied it. Under authority it sends the same operation (same
//! id) again, flagged a retry, to whoever owns the key then. The answer
//! must come from the key's own history, wherever it now lives: so each
//! record carries the ids of the last [`MAX_DONE`] writes that made it
//! (the way RIFL keeps completion records with the object they changed),
//! and they travel with it through replication, handoff, catch-up, sync
//! and disk. The new owner's copy holds the write iff the retried
//! operation's id is there: it answers what the write answered. A log
//! that may have lost older ids ([`OpLog::cut`]: trimmed, or written by a
//! put that did not read the record before it) cannot say "not applied":
//! the retry is answered `OutcomeUnknown` rather than applied twice.

use crate::{Id, Version};
use std::sync::Arc;

/// Most writes a record remembers: a retry comes within one operation
/// deadline, while the key's writes wait out a takeover; what other
/// clients wrote in between rarely exceeds this.
pub const MAX_DONE: usize = 16;

/// Most bytes of one entry in a log's compact form (see
/// [`OpLog::as_bytes`]): one written in another term or by another node
/// than the entry before it, with a number.
pub const DONE_BYTES: usize = 1 + 8 + 8 + 8 + crate::ID_BYTES + 8;

/// Set in a log's first byte when it is cut.
const CUT: u8 = 0x80;
/// Set in an entry's first byte when its version has the term and node
/// of the entry before it (the usual case: one owner decides a key's
/// writes in one term), which are then left out.
const SAME_DECIDER: u8 = 0x04;
/// The entry's kind of answer, in the low bits of its first byte.
const ANSWER: u8 = 0x03;

/// What a remembered write answered, enough to answer its retry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answered {
    /// `Stored` (a put, a delete, a restore).
    Stored,
    /// `Updated` with this number (an increment, an append, an expiry).
    Updated(i64),
    /// An answer the log cannot repeat (the value a put replaced): its
    /// retry is told the outcome is unknown, never applied again.
    Unrepeatable,
}

/// One remembered write: its operation's id and the version it made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Done {
    /// The operation's id (the coordinator's, unique per process start).
    pub op: u64,
    /// The version the write made.
    pub version: Version,
    /// What it answered.
    pub answered: Answered,
}

/// The last writes of a record by operation id, oldest first, with a
/// flag saying older writes' ids may be missing (`cut`: the log was
/// trimmed, or a write replaced the record without reading it — then a
/// retry not found here may have been applied).
///
/// Kept in its compact form, the one the wire and the disk carry: a
/// byte (the number of entries, plus 128 if cut), then per entry a byte
/// saying what it answered (0 stored, 1 updated, 2 not kept; plus 4 if
/// the version's term and node are the entry before's), its operation
/// id and the version's hlc (u64 big-endian), the version's term (u64)
/// and node (20 bytes) unless the entry before's, and for an update its
/// number (i64 big-endian); nothing at all for an empty log that is not
/// cut. Shared, so that the copies a write makes of its record
/// (replicas, the store, the owner's bookkeeping) share one.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OpLog {
    bytes: Option<Arc<[u8]>>,
}

/// What a retried write is, by the record's log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Retried {
    /// Applied: answer as it was answered.
    Applied(Done),
    /// Never applied to this record: apply it now.
    NotApplied,
    /// The log cannot tell.
    Unknown,
}

impl OpLog {
    /// A log of `done` (oldest first; at most [`MAX_DONE`] are kept, the
    /// newest, and the log is then cut).
    pub fn new(done: &[Done], cut: bool) -> OpLog {
        let keep = &done[done.len().saturating_sub(MAX_DONE)..];
        let cut = cut || keep.len() < done.len();
        if keep.is_empty() && !cut {
            return OpLog::default();
        }
        let mut out = Vec::with_capacity(1 + keep.len() * DONE_BYTES);
        out.push(keep.len() as u8 | if cut { CUT } else { 0 });
        let mut before: Option<&Version> = None;
        for d in keep {
            let v = &d.version;
            let same = before.is_some_and(|b| b.term == v.term && b.node == v.node);
            let (kind, number) = match d.answered {
                Answered::Stored => (0u8, None),
                Answered::Updated(n) => (1, Some(n)),
                Answered::Unrepeatable => (2, None),
            };
            out.push(kind | if same { SAME_DECIDER } else { 0 });
            out.extend_from_slice(&d.op.to_be_bytes());
            out.extend_from_slice(&v.hlc.to_be_bytes());
            if !same {
                out.extend_from_slice(&v.term.to_be_bytes());
                out.extend_from_slice(&v.node.0);
            }
            if let Some(n) = number {
                out.extend_from_slice(&n.to_be_bytes());
            }
            before = Some(v);
        }
        OpLog {
            bytes: Some(out.into()),
        }
    }

    /// The compact form (empty for an empty log that is not cut).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or(&[])
    }

    /// A log from its compact form; `None` if it is malformed (a wrong
    /// length, too many entries, an unknown kind of answer, a first entry
    /// naming an entry before it).
    pub fn from_bytes(b: &[u8]) -> Option<OpLog> {
        if b.is_empty() {
            return Some(OpLog::default());
        }
        if OpLog::len_in(b)? != b.len() {
            return None;
        }
        Some(OpLog {
            bytes: Some(b.into()),
        })
    }

    /// The length of the compact form `b` starts with (for a store that
    /// keeps it inside a larger value); `None` if that is malformed or
    /// claims more than [`MAX_DONE`] entries.
    pub fn len_in(b: &[u8]) -> Option<usize> {
        let mut entries = Entries::new(b)?;
        while entries.left > 0 {
            entries.next()?;
        }
        Some(entries.at)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.as_bytes().first().map_or(0, |b| (b & !CUT) as usize)
    }

    /// Has the log no entries?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// May older writes' ids be missing?
    pub fn is_cut(&self) -> bool {
        self.as_bytes().first().is_some_and(|b| b & CUT != 0)
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> Vec<Done> {
        Entries::new(self.as_bytes()).map_or_else(Vec::new, |e| e.collect())
    }

    /// The log of a new write `done` over `before`, the record it replaces
    /// (`Some(None)`: there was none; `None`: not read, so unknown).
    pub fn after(before: Option<Option<&OpLog>>, done: Option<Done>) -> OpLog {
        let (mut entries, cut) = match before {
            Some(Some(b)) => (b.entries(), b.is_cut()),
            Some(None) => (Vec::new(), false),
            None => (Vec::new(), true),
        };
        if done.is_none() && before.is_some_and(|b| b.is_some()) {
            // Nothing to add: the same log, shared.
            return before.flatten().cloned().unwrap_or_default();
        }
        entries.extend(done);
        OpLog::new(&entries, cut)
    }

    /// Was operation `op` applied to the record this log belongs to?
    /// (`log` `None`: there is no record.)
    pub fn retried(log: Option<&OpLog>, op: u64) -> Retried {
        let Some(log) = log else {
            return Retried::NotApplied;
        };
        let found = Entries::new(log.as_bytes()).and_then(|mut e| e.find(|d| d.op == op));
        match found {
            Some(d) => Retried::Applied(d),
            None if log.is_cut() => Retried::Unknown,
            None => Retried::NotApplied,
        }
    }

    /// The write this log's record was made by, versioned `old`, gets
    /// `new` (it was versioned again above a newer copy): its entry
    /// follows, and older ids may now be missing (the newer copy's log
    /// was never read).
    pub fn reversioned(&mut self, old: Version, new: Version) {
        let mut entries = self.entries();
        if let Some(d) = entries.last_mut().filter(|d| d.version == old) {
            d.version = new;
        }
        *self = OpLog::new(&entries, true);
    }
}

/// Reads a compact form's entries in order (each after the one whose
/// term and node it may repeat).
struct Entries<'a> {
    bytes: &'a [u8],
    /// Where the next entry starts.
    at: usize,
    /// Entries not read yet.
    left: usize,
    before: Option<Version>,
}

impl<'a> Entries<'a> {
    /// `None` if `bytes` is empty or claims too many entries.
    fn new(bytes: &'a [u8]) -> Option<Entries<'a>> {
        let left = (*bytes.first()? & !CUT) as usize;
        (left <= MAX_DONE).then_some(Entries {
            bytes,
            at: 1,
            left,
            before: None,
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

impl Iterator for Entries<'_> {
    type Item = Done;

    /// The next entry; `None` after the last, or at a malformed one.
    fn next(&mut self) -> Option<Done> {
        if self.left == 0 {
            return None;
        }
        let tag = self.take(1)?[0];
        if tag & !(ANSWER | SAME_DECIDER) != 0 {
            return None;
        }
        let op = self.u64()?;
        let hlc = self.u64()?;
        let (term, node) = if tag & SAME_DECIDER != 0 {
            let b = self.before?;
            (b.term, b.node)
        } else {
            (self.u64()?, Id::from_slice(self.take(crate::ID_BYTES)?)?)
        };
        let answered = match tag & ANSWER {
            0 => Answered::Stored,
            1 => Answered::Updated(self.u64()? as i64),
            2 => Answered::Unrepeatable,
            _ => return None,
        };
        let version = Version { term, hlc, node };
        self.before = Some(version);
        self.left -= 1;
        Some(Done {
            op,
            version,
            answered,
        })
    }
}

impl std::fmt::Debug for OpLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpLog")
            .field("done", &self.entries())
            .field("cut", &self.is_cut())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(op: u64) -> Done {
        Done {
            op,
            version: Version::at(op, Id::from_u64(1)),
            answered: Answered::Updated(op as i64),
        }
    }

    #[test]
    fn a_retry_is_found_until_trimmed_and_then_unknown() {
        let mut log = OpLog::after(Some(None), Some(done(1)));
        assert_eq!(OpLog::retried(Some(&log), 1), Retried::Applied(done(1)));
        assert_eq!(OpLog::retried(Some(&log), 2), Retried::NotApplied);
        for op in 2..=MAX_DONE as u64 {
            log = OpLog::after(Some(Some(&log)), Some(done(op)));
        }
        assert!(!log.is_cut());
        assert_eq!(OpLog::retried(Some(&log), 1), Retried::Applied(done(1)));
        log = OpLog::after(Some(Some(&log)), Some(done(100)));
        assert_eq!(log.len(), MAX_DONE);
        assert!(log.is_cut());
        assert_eq!(OpLog::retried(Some(&log), 1), Retried::Unknown);
        assert_eq!(OpLog::retried(Some(&log), 2), Retried::Applied(done(2)));
        assert_eq!(OpLog::retried(Some(&log), 999), Retried::Unknown);
    }

    #[test]
    fn a_write_that_did_not_read_leaves_older_retries_unknown() {
        let blind = OpLog::after(None, Some(done(5)));
        assert_eq!(OpLog::retried(Some(&blind), 5), Retried::Applied(done(5)));
        assert_eq!(OpLog::retried(Some(&blind), 4), Retried::Unknown);
        // No record at all: nothing was applied.
        assert_eq!(OpLog::retried(None, 4), Retried::NotApplied);
        // A write without an id keeps the log it found.
        let kept = OpLog::after(Some(Some(&blind)), None);
        assert_eq!(kept, blind);
    }

    #[test]
    fn a_reversioned_write_keeps_its_entry_and_cuts() {
        let mut log = OpLog::after(Some(None), Some(done(7)));
        let v = Version::at(99, Id::from_u64(2));
        log.reversioned(done(7).version, v);
        assert!(log.is_cut());
        assert_eq!(log.entries()[0].version, v);
    }

    #[test]
    fn the_compact_form_round_trips_and_damage_is_refused() {
        let kinds = [
            Answered::Stored,
            Answered::Updated(-3),
            Answered::Unrepeatable,
        ];
        let entries: Vec<Done> = (0..5u64)
            .map(|i| Done {
                answered: kinds[i as usize % 3],
                ..done(u64::MAX - i)
            })
            .collect();
        // Every entry by one decider: only the first names it; the
        // updates carry their number.
        let one_decider = 1 + 5 * (1 + 8 + 8) + 8 + crate::ID_BYTES + 2 * 8;
        let mut deciders = entries.clone();
        deciders[2].version.node = Id::from_u64(2);
        deciders[4].version.term = 5;
        for (log, len) in [
            (OpLog::default(), 0),
            (OpLog::new(&[], true), 1),
            (OpLog::new(&entries, false), one_decider),
            (OpLog::new(&entries, true), one_decider),
            // Entries 2 and 3 follow a change of node, 4 one of term.
            (
                OpLog::new(&deciders, false),
                one_decider + 3 * (8 + crate::ID_BYTES),
            ),
        ] {
            let b = log.as_bytes();
            assert_eq!(b.len(), len);
            assert_eq!(OpLog::from_bytes(b), Some(log.clone()));
            if !b.is_empty() {
                assert_eq!(OpLog::len_in(b), Some(len));
                let mut longer = b.to_vec();
                longer.extend_from_slice(b"value bytes");
                assert_eq!(OpLog::len_in(&longer), Some(len));
                assert_eq!(OpLog::from_bytes(&longer), None, "bytes after the log");
            }
            for short in 1..len {
                assert_eq!(OpLog::from_bytes(&b[..short]), None, "cut at {short}");
            }
        }
        let log = OpLog::new(&entries, false);
        assert_eq!(log.entries(), entries);
        assert_eq!(OpLog::new(&deciders, true).entries(), deciders);
        let mut bad = log.as_bytes().to_vec();
        bad[1] = 3;
        assert_eq!(OpLog::from_bytes(&bad), None, "an unknown kind of answer");
        let mut bad = log.as_bytes().to_vec();
        bad[1] |= SAME_DECIDER;
        assert_eq!(
            OpLog::from_bytes(&bad),
            None,
            "a first entry naming one before it"
        );
        let mut bad = log.as_bytes().to_vec();
        bad[1] |= 0x40;
        assert_eq!(OpLog::from_bytes(&bad), None, "an unknown flag");
        let mut bad = log.as_bytes().to_vec();
        bad[0] = MAX_DONE as u8 + 1;
        assert_eq!(OpLog::from_bytes(&bad), None, "too many entries");
        // More than MAX_DONE given: the newest kept, cut.
        let many: Vec<Done> = (0..20).map(done).collect();
        let log = OpLog::new(&many, false);
        assert_eq!(log.entries(), many[4..].to_vec());
        assert!(log.is_cut());
    }
}
