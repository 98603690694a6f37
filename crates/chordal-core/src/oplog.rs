//! The writes a record remembers by operation id, so that a retried write
//! is answered, not applied again — also by a later owner (issue 27,
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

use crate::Version;

/// Most writes a record remembers: a retry comes within one operation
/// deadline, while the key's writes wait out a takeover; what other
/// clients wrote in between rarely exceeds this.
pub const MAX_DONE: usize = 16;

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

/// The last writes of a record by operation id, oldest first.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct OpLog {
    /// At most [`MAX_DONE`].
    pub done: Vec<Done>,
    /// Older writes' ids may be missing: the log was trimmed, or a write
    /// replaced the record without reading it. Then a retry not found
    /// here may have been applied.
    pub cut: bool,
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
    /// The log of a new write `done` over `before`, the record it replaces
    /// (`Some(None)`: there was none; `None`: not read, so unknown).
    pub fn after(before: Option<Option<&OpLog>>, done: Option<Done>) -> OpLog {
        let mut log = match before {
            Some(Some(b)) => b.clone(),
            Some(None) => OpLog::default(),
            None => OpLog {
                done: Vec::new(),
                cut: true,
            },
        };
        if let Some(d) = done {
            log.done.push(d);
            if log.done.len() > MAX_DONE {
                let extra = log.done.len() - MAX_DONE;
                log.done.drain(..extra);
                log.cut = true;
            }
        }
        log
    }

    /// Was operation `op` applied to the record this log belongs to?
    /// (`log` `None`: there is no record.)
    pub fn retried(log: Option<&OpLog>, op: u64) -> Retried {
        let Some(log) = log else {
            return Retried::NotApplied;
        };
        match log.done.iter().find(|d| d.op == op) {
            Some(d) => Retried::Applied(*d),
            None if log.cut => Retried::Unknown,
            None => Retried::NotApplied,
        }
    }

    /// The write this log's record was made by, versioned `old`, gets
    /// `new` (it was versioned again above a newer copy): its entry
    /// follows, and older ids may now be missing (the newer copy's log
    /// was never read).
    pub fn reversioned(&mut self, old: Version, new: Version) {
        if let Some(d) = self.done.last_mut().filter(|d| d.version == old) {
            d.version = new;
        }
        self.cut = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

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
        assert!(!log.cut);
        assert_eq!(OpLog::retried(Some(&log), 1), Retried::Applied(done(1)));
        log = OpLog::after(Some(Some(&log)), Some(done(100)));
        assert_eq!(log.done.len(), MAX_DONE);
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
        assert!(log.cut);
        assert_eq!(log.done[0].version, v);
    }
}
