//! How an operation ends: what an owner answers ([`OpResult`], on the
//! wire), what the coordinator makes of it ([`Answer`]), what
//! `Event::OpDone` reports ([`Outcome`]) and the typed result each
//! operation returns to an application ([`Written`], [`Versioned`], …).
//! One mapping for each step, used by the core's coordinator and by
//! `chordal-node`'s `Client` alike; [`OpError`] is the one vocabulary of
//! failures.

use crate::{LookupError, OpResult, Time, Version};

/// A finished operation, as `Event::OpDone` carries it. Applications get
/// the typed result of their operation instead (see [`Outcome::written`]
/// and the methods beside it).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Put or delete stored with `version` on `acked` nodes.
    Stored {
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// Copies that stored it durably (the owner's included).
        acked: u32,
    },
    /// Get found a value.
    Found {
        /// The value's bytes.
        value: Vec<u8>,
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// When the value expires (`None`: never).
        expires: Option<Time>,
    },
    /// A put or delete that asked for the value it replaced.
    Replaced {
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// Copies that stored it durably (the owner's included).
        acked: u32,
        /// The value the write replaced (`None`: there was none).
        old: Option<Vec<u8>>,
    },
    /// An update (increment, append, expiry) with its number.
    Updated {
        /// The version: hybrid logical clock and writing vnode.
        version: Version,
        /// Copies that stored it durably (0: nothing needed writing).
        acked: u32,
        /// The new integer, the new length, or 1 / 0 for an expiry.
        number: i64,
    },
    /// Get or delete of a missing key.
    NotFound,
    /// `send`: the owner's application took the message.
    Delivered,
    /// `request`: the owner's application's answer.
    Replied {
        /// The application's bytes.
        payload: Vec<u8>,
    },
    /// `publish`: the topic's owner queued it for this many subscriber
    /// processes.
    Published {
        /// Subscriber processes the publication was queued for.
        subscribers: u32,
    },
    /// A page of a scan (see [`ScanPage`]).
    Keys(ScanPage),
    /// A batch's answers (see [`Batched`]).
    Batch(Batched),
    /// A collection command's answer.
    Collection(crate::collection::CollReply),
    /// A watch's answer: the records of the oldest change newer than
    /// the version watched from, at `version` (none: nothing newer in
    /// time, or no record for a key watched from `None`). See
    /// [`Operation::Watch`](crate::Operation::Watch).
    Watched {
        /// The change's version.
        version: Option<Version>,
        /// Its records (a value `None`: deleted; a collection's record is
        /// its header: its kind, and the header's encoding as value).
        records: Vec<crate::Record>,
    },
}

/// What a batch ([`Operation::Batch`](crate::Operation::Batch)) did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Batched {
    /// Per step, in order, what it answered (as the single operation
    /// would have).
    pub results: Vec<Result<Outcome, OpError>>,
    /// The batch's write, if it wrote anything (every record it wrote has
    /// this version).
    pub written: Option<Written>,
}

/// One page of a walk over the keyspace: the live keys whose ids lie in
/// the page's `[start, reached]`, from the owner of that part of the ring.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ScanPage {
    /// The keys, in key-id order (keys sharing an id, by their bytes).
    pub keys: Vec<Vec<u8>>,
    /// The last key id the page covers: the walk goes on from the id
    /// after it.
    pub reached: crate::Id,
}

/// What a put (or a delete, whose tombstone is a write) stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Written {
    /// The version the owner gave the write.
    pub version: Version,
    /// Copies durable when the owner answered (the owner's included): at
    /// least the write quorum.
    pub acked: u32,
}

/// A value read from the store, with its version and expiry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Versioned {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The version: hybrid logical clock and writing vnode.
    pub version: Version,
    /// When the value expires (`None`: never).
    pub expires: Option<Time>,
}

/// What a put or delete that asked for the replaced value stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Replaced {
    /// The write.
    pub written: Written,
    /// The value it replaced (`None`: the key had none).
    pub old: Option<Vec<u8>>,
}

/// What an update (increment, append, expiry) stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Updated {
    /// The write (`acked` 0: nothing needed writing).
    pub written: Written,
    /// The new integer, the new length, or 1 / 0 for an expiry.
    pub number: i64,
}

/// Why an operation failed: one vocabulary for every operation (store,
/// messages, pub/sub), on `Node` and `Client` alike. Each operation's
/// documentation says which of these it can return.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("operation timed out")]
    /// The operation ran out of time.
    Timeout,
    #[error("node is not joined to a ring")]
    /// This node is not part of a ring.
    NotJoined,
    #[error("too many operations in flight; try again later")]
    /// Too many operations are in flight here or at the owner.
    Overloaded,
    #[error("{size} bytes is over the limit of {limit}")]
    /// The key, value or message is larger than allowed.
    TooLarge {
        /// The size, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    #[error("cannot find the key's owner: {0}")]
    /// No owner could be found for the key.
    Lookup(LookupError),
    #[error("ownership kept moving; gave up after several tries")]
    /// Ownership of the key kept moving.
    Redirects,
    #[error("only {acked} of the {needed} copies needed were stored in time")]
    /// Fewer copies than the write quorum acknowledged in time; the write may exist on some.
    QuorumFailed {
        /// Copies that stored it durably (the owner's included).
        acked: u32,
        /// Copies the write quorum needed.
        needed: u32,
    },
    #[error("only {available} of the {needed} processes a write needs can hold a copy now")]
    /// Fewer processes than the write quorum can hold a copy; nothing was written.
    QuorumUnavailable {
        /// Processes that can hold a copy now.
        available: u32,
        /// Copies the write quorum needed.
        needed: u32,
    },
    #[error("the condition on the current value does not hold")]
    /// A conditional write's condition did not hold; nothing was written.
    PreconditionFailed {
        /// The key's current version (`None`: no live value).
        current: Option<Version>,
    },
    #[error("value is not an integer or out of range")]
    /// An increment of a value that is not a decimal 64-bit integer.
    NotAnInteger,
    #[error("value is not a valid float")]
    /// A float increment of a value (or by an amount) that is not a
    /// decimal number.
    NotAFloat,
    #[error("operation against a key holding the wrong kind of value")]
    /// A command for one kind of value (a string's, a hash's…) on a key
    /// holding another.
    WrongType,
    #[error("increment or decrement would overflow")]
    /// An increment that would overflow a 64-bit integer.
    Overflow,
    #[error("the owner's storage failed")]
    /// The owner's storage failed (full disk, I/O error).
    StoreFailed,
    #[error("the owner's application refused the message or did not answer in time")]
    /// The receiving application refused the message or did not answer.
    Refused,
    #[error("the node did not answer")]
    /// The node did not answer.
    Unreachable,
    /// No node could decide for the key in time: its owner by Chord held
    /// no lease (a handover or takeover in flight, or a minority side of
    /// a partition). Nothing was done.
    #[error(
        "no node may decide for the key right now (a handover, a takeover or a partition); try again"
    )]
    NotReady,
    /// The keys of a batch do not share one owner (one key id): nothing
    /// was done. Give them one hash tag (`{user:42}:a`, `{user:42}:b`).
    #[error("the keys of a batch must share one owner: give them one hash tag")]
    CrossSlot,
    /// The node that served the operation answered with the result of
    /// another kind of operation (a peer running incompatible code).
    #[error("the node answered with a result that does not fit the operation")]
    UnexpectedAnswer,
}

/// What a coordinator does with an owner's [`OpResult`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Answer {
    /// The operation is over.
    Done(Result<Outcome, OpError>),
    /// The node does not own the key (any more): look the owner up again.
    WrongOwner,
    /// The owner sheds load: back off, then try again.
    Overloaded,
    /// The owner is not sure it may decide yet: try again shortly.
    NotReady,
}

impl OpError {
    /// Was the operation refused before any owner decided it — no lease,
    /// an overloaded owner, too few copies, ownership that kept moving, no
    /// route? Then it did nothing, and a client may send it again. (After
    /// an attempt whose answer was lost, a coordinator ends a write with
    /// `Timeout` instead: that attempt may have been applied.)
    pub fn nothing_done(&self) -> bool {
        matches!(
            self,
            OpError::NotReady
                | OpError::Overloaded
                | OpError::QuorumUnavailable { .. }
                | OpError::Redirects
                | OpError::Lookup(_)
                | OpError::NotJoined
        )
    }
}

impl OpResult {
    /// What this owner's result means for the operation that asked.
    pub fn answer(self) -> Answer {
        use OpResult::*;
        let outcome = match self {
            Stored { version, acked } => Ok(Outcome::Stored { version, acked }),
            Found {
                value,
                version,
                expires,
            } => Ok(Outcome::Found {
                value,
                version,
                expires,
            }),
            Replaced {
                version,
                acked,
                old,
            } => Ok(Outcome::Replaced {
                version,
                acked,
                old,
            }),
            Updated {
                version,
                acked,
                number,
            } => Ok(Outcome::Updated {
                version,
                acked,
                number,
            }),
            PreconditionFailed { current } => Err(OpError::PreconditionFailed { current }),
            NotAnInteger => Err(OpError::NotAnInteger),
            NotAFloat => Err(OpError::NotAFloat),
            WrongType => Err(OpError::WrongType),
            Overflow => Err(OpError::Overflow),
            NotFound => Ok(Outcome::NotFound),
            Delivered => Ok(Outcome::Delivered),
            Replied { payload } => Ok(Outcome::Replied { payload }),
            Published { subscribers } => Ok(Outcome::Published { subscribers }),
            Keys { keys, reached } => Ok(Outcome::Keys(ScanPage { keys, reached })),
            Collection(reply) => Ok(Outcome::Collection(reply)),
            Watched { version, records } => Ok(Outcome::Watched { version, records }),
            Batch {
                results,
                version,
                acked,
            } => Ok(Outcome::Batch(Batched {
                results: results
                    .into_iter()
                    .map(|r| match r.answer() {
                        Answer::Done(step) => step,
                        _ => Err(OpError::UnexpectedAnswer),
                    })
                    .collect(),
                written: version.map(|version| Written { version, acked }),
            })),
            CrossSlot => Err(OpError::CrossSlot),
            QuorumFailed { acked, needed } => Err(OpError::QuorumFailed { acked, needed }),
            QuorumUnavailable { available, needed } => {
                Err(OpError::QuorumUnavailable { available, needed })
            }
            StoreFailed => Err(OpError::StoreFailed),
            TooLarge { size, limit } => Err(OpError::TooLarge {
                size: size as u64,
                limit: limit as u64,
            }),
            Refused => Err(OpError::Refused),
            // Applied or not, nobody can tell now: what a lost answer is.
            OutcomeUnknown => Err(OpError::Timeout),
            WrongOwner => return Answer::WrongOwner,
            Overloaded => return Answer::Overloaded,
            NotReady => return Answer::NotReady,
        };
        Answer::Done(outcome)
    }
}

impl Outcome {
    /// The result of a put.
    pub fn written(self) -> Result<Written, OpError> {
        match self {
            Outcome::Stored { version, acked } => Ok(Written { version, acked }),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a get: the value, or `None` if the key does not exist.
    pub fn value(self) -> Result<Option<Versioned>, OpError> {
        match self {
            Outcome::Found {
                value,
                version,
                expires,
            } => Ok(Some(Versioned {
                value,
                version,
                expires,
            })),
            Outcome::NotFound => Ok(None),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a put or delete that asked for the replaced value
    /// (`None`: a delete of a missing key).
    pub fn replaced(self) -> Result<Option<Replaced>, OpError> {
        match self {
            Outcome::Replaced {
                version,
                acked,
                old,
            } => Ok(Some(Replaced {
                written: Written { version, acked },
                old,
            })),
            Outcome::NotFound => Ok(None),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of an update (`None`: an expiry change of a missing key).
    pub fn updated(self) -> Result<Option<Updated>, OpError> {
        match self {
            Outcome::Updated {
                version,
                acked,
                number,
            } => Ok(Some(Updated {
                written: Written { version, acked },
                number,
            })),
            Outcome::NotFound => Ok(None),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a delete: its tombstone's write, or `None` if the key
    /// did not exist.
    pub fn deleted(self) -> Result<Option<Written>, OpError> {
        match self {
            Outcome::NotFound => Ok(None),
            other => other.written().map(Some),
        }
    }

    /// The result of a `send`: the application took the message.
    pub fn delivered(self) -> Result<(), OpError> {
        match self {
            Outcome::Delivered => Ok(()),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a `request`: the application's answer.
    pub fn replied(self) -> Result<Vec<u8>, OpError> {
        match self {
            Outcome::Replied { payload } => Ok(payload),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a `publish`: the subscriber processes it was queued
    /// for.
    pub fn published(self) -> Result<u32, OpError> {
        match self {
            Outcome::Published { subscribers } => Ok(subscribers),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a batch: per step its answer, and the write.
    pub fn batched(self) -> Result<Batched, OpError> {
        match self {
            Outcome::Batch(b) => Ok(b),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The answer of a collection command.
    pub fn collection(self) -> Result<crate::collection::CollReply, OpError> {
        match self {
            Outcome::Collection(r) => Ok(r),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a scan: one page of keys.
    pub fn scanned(self) -> Result<ScanPage, OpError> {
        match self {
            Outcome::Keys(page) => Ok(page),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }

    /// The result of a watch: the change's version and records (none:
    /// nothing newer in time).
    pub fn watched(self) -> Result<(Option<Version>, Vec<crate::Record>), OpError> {
        match self {
            Outcome::Watched { version, records } => Ok((version, records)),
            _ => Err(OpError::UnexpectedAnswer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    fn v(hlc: u64) -> Version {
        Version {
            term: 0,
            hlc,
            node: Id::from_u64(1),
        }
    }

    #[test]
    fn owner_results_map_to_answers() {
        let stored = OpResult::Stored {
            version: v(5),
            acked: 2,
        };
        let outcome = Outcome::Stored {
            version: v(5),
            acked: 2,
        };
        assert_eq!(stored.answer(), Answer::Done(Ok(outcome)));
        assert_eq!(OpResult::WrongOwner.answer(), Answer::WrongOwner);
        assert_eq!(OpResult::Overloaded.answer(), Answer::Overloaded);
        let too_large = OpResult::TooLarge { size: 9, limit: 4 };
        let error = OpError::TooLarge { size: 9, limit: 4 };
        assert_eq!(too_large.answer(), Answer::Done(Err(error)));
    }

    #[test]
    fn each_operation_accepts_only_its_own_outcomes() {
        let stored = Outcome::Stored {
            version: v(3),
            acked: 1,
        };
        let written = Written {
            version: v(3),
            acked: 1,
        };
        assert_eq!(stored.clone().written(), Ok(written));
        assert_eq!(stored.clone().deleted(), Ok(Some(written)));
        assert_eq!(Outcome::NotFound.deleted(), Ok(None));
        assert_eq!(Outcome::NotFound.value(), Ok(None));
        let unexpected = Some(OpError::UnexpectedAnswer);
        // An answer of the wrong kind is an error, never an empty success.
        assert_eq!(stored.clone().value().err(), unexpected);
        assert_eq!(stored.clone().replied().err(), unexpected);
        assert_eq!(stored.delivered().err(), unexpected);
        assert_eq!(Outcome::Delivered.replied().err(), unexpected);
        assert_eq!(Outcome::NotFound.written().err(), unexpected);
        assert_eq!(Outcome::Delivered.published().err(), unexpected);
        let found = Outcome::Found {
            value: b"x".to_vec(),
            version: v(2),
            expires: None,
        };
        let versioned = Versioned {
            value: b"x".to_vec(),
            version: v(2),
            expires: None,
        };
        assert_eq!(found.value(), Ok(Some(versioned)));
    }
}
