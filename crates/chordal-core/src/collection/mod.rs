//! Collections — hashes, sets, lists and sorted sets — on the ring, so that an element write
//! costs the same in a collection of 10 elements and of a million.
//!
//! A collection is a *header* record at its own key (its [`Kind`], the
//! version it was created with — `born` — and its element count; its
//! expiry is the collection's) plus one record per element at an element
//! key (see [`key`]) with the collection's key id. Every command is
//! decided at the key's owner by [`decide`] as one batch of the header
//! and the elements it touches (`store/batch.rs` holds, reads and writes
//! them in one atomic apply), so each is linearizable like INCR.
//!
//! An element is alive when its record is and its version is not older
//! than its header's `born`: deleting (or overwriting, or expiring) a
//! collection of a million elements is one write of its header.

mod decide;
pub mod key;

pub use decide::{CollDecision, decide};

mod list;
pub mod zset;

use crate::{Id, Kind, Time, Version};
use std::collections::BTreeMap;

/// Elements one command may read whole (HGETALL, SMEMBERS, SPOP…); a
/// larger collection answers `TooLarge`.
pub const MAX_READ_ELEMENTS: usize = 100_000;
/// Bytes of fields and values one command may read whole.
pub const MAX_READ_BYTES: usize = 2 * 1024 * 1024;

/// A command on a collection, decided at its owner.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CollOp {
    /// HSET / HSETNX / SADD: set each field (a set's members have empty
    /// values); with `only_new`, only fields not present. Answers the
    /// number of fields added.
    Put {
        /// Fields and values, in order (a later one wins).
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Leave present fields alone.
        only_new: bool,
    },
    /// HDEL / SREM: remove each field; the collection goes with its last.
    /// Answers the number removed.
    Remove {
        /// The fields.
        fields: Vec<Vec<u8>>,
    },
    /// HGET / HMGET / HEXISTS / SISMEMBER / SMISMEMBER: each field's value.
    Get {
        /// The fields.
        fields: Vec<Vec<u8>>,
    },
    /// HGETALL / HKEYS / HVALS / SMEMBERS: every field and value.
    All,
    /// HLEN / SCARD: the number of elements.
    Len,
    /// HINCRBY / HINCRBYFLOAT: add `by` (decimal text) to a field.
    Incr {
        /// The field.
        field: Vec<u8>,
        /// The amount, as decimal text.
        by: Vec<u8>,
        /// A float increment (else a 64-bit integer one).
        float: bool,
    },
    /// SPOP: remove and answer up to `count` elements.
    Pop {
        /// How many.
        count: u32,
    },
    /// TYPE (and TTL of a collection): the kind of the key's value,
    /// whatever it is, and its expiry.
    Kind,
    /// LPUSH / RPUSH (`only_existing`: LPUSHX / RPUSHX): push each value
    /// in turn at the head (`left`) or the tail. Answers the new length.
    Push {
        /// The values, pushed one after the other.
        values: Vec<Vec<u8>>,
        /// At the head (else the tail).
        left: bool,
        /// Only onto a list that exists.
        only_existing: bool,
    },
    /// LPOP / RPOP: remove and answer up to `count` values from one end.
    PopEnd {
        /// From the head (else the tail).
        left: bool,
        /// How many.
        count: u32,
    },
    /// LRANGE (and LINDEX as a range of one): the values at positions
    /// `start..=stop` (negative: from the tail, as in Redis).
    Range {
        /// The first position.
        start: i64,
        /// The last position.
        stop: i64,
    },
    /// LSET: replace the value at `index`.
    SetAt {
        /// The position (negative: from the tail).
        index: i64,
        /// The new value.
        value: Vec<u8>,
    },
    /// LTRIM: keep only positions `start..=stop`.
    Trim {
        /// The first position kept.
        start: i64,
        /// The last position kept.
        stop: i64,
    },
    /// LREM: remove up to `count` values equal to `value` (from the head
    /// if `count > 0`, from the tail if `< 0`, all if 0).
    RemoveValue {
        /// How many, and from which end.
        count: i64,
        /// The value.
        value: Vec<u8>,
    },
    /// LINSERT: insert `value` before (or after) the first `pivot`.
    Insert {
        /// Before the pivot (else after).
        before: bool,
        /// The value to find.
        pivot: Vec<u8>,
        /// The value to insert.
        value: Vec<u8>,
    },
    /// LMOVE / RPOPLPUSH: pop one end of this list and push the value
    /// onto an end of the list at `to` (this one too), in one step — so
    /// `to` must share this key's id (one hash tag), else `CrossSlot`.
    Move {
        /// The destination list's key.
        to: Vec<u8>,
        /// Pop the head (else the tail).
        from_left: bool,
        /// Push at the head (else the tail).
        to_left: bool,
    },
    /// ZADD / ZINCRBY: give each member its score (see [`zset::score_key`]
    /// for the sortable form), under ZADD's conditions. Answers the
    /// number added (or changed, with `ch`); with `incr`, the new score.
    ZAdd {
        /// Sortable scores (or increments) and members, in order.
        pairs: Vec<(u64, Vec<u8>)>,
        /// NX, XX, GT, LT.
        when: ZWhen,
        /// Count changed members too.
        ch: bool,
        /// Add the score to the current one (one pair).
        incr: bool,
    },
    /// ZRANGE (and its older forms): members and scores in order.
    ZRange {
        /// By rank, score or member.
        by: ZBy,
        /// From the highest.
        rev: bool,
        /// LIMIT offset count (`u64::MAX`: all).
        limit: Option<(u64, u64)>,
    },
    /// ZCOUNT / ZLEXCOUNT: how many members lie in a range.
    ZCount {
        /// The range (by score or member).
        by: ZBy,
    },
    /// ZRANK / ZREVRANK: a member's rank (`-1`: not a member).
    ZRank {
        /// The member.
        member: Vec<u8>,
        /// Counted from the highest.
        rev: bool,
    },
    /// ZPOPMIN / ZPOPMAX: remove and answer up to `count` members.
    ZPop {
        /// The highest (else the lowest).
        max: bool,
        /// How many.
        count: u32,
    },
    /// ZREMRANGEBYRANK / ZREMRANGEBYSCORE / ZREMRANGEBYLEX.
    ZRemRange {
        /// The range.
        by: ZBy,
    },
}

/// ZADD's conditions.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ZWhen {
    /// Only new members.
    pub nx: bool,
    /// Only members present.
    pub xx: bool,
    /// Only to a greater score.
    pub gt: bool,
    /// Only to a lower score.
    pub lt: bool,
}

/// Which members of a sorted set a range holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ZBy {
    /// Ranks `start..=stop` (negative: from the end).
    Rank {
        /// The first rank.
        start: i64,
        /// The last rank.
        stop: i64,
    },
    /// Scores between `min` and `max` (sortable forms), each bound
    /// inclusive unless marked.
    Score {
        /// The lowest score.
        min: u64,
        /// Is `min` itself left out?
        min_excl: bool,
        /// The highest score.
        max: u64,
        /// Is `max` itself left out?
        max_excl: bool,
    },
    /// Members between `min` and `max`, in Redis's syntax (`-`, `+`,
    /// `[member`, `(member`).
    Lex {
        /// The lower bound.
        min: Vec<u8>,
        /// The upper bound.
        max: Vec<u8>,
    },
}

impl CollOp {
    /// The element keys the command reads (each once, in order) for the
    /// collection at `key`.
    pub fn element_keys(&self, key: &[u8], kind: Kind) -> Vec<Vec<u8>> {
        let family = match kind {
            Kind::ZSet => key::Family::Score,
            _ => key::Family::Member,
        };
        let fields: Vec<&[u8]> = match self {
            CollOp::Put { pairs, .. } => pairs.iter().map(|(f, _)| f.as_slice()).collect(),
            CollOp::Remove { fields } | CollOp::Get { fields } => {
                fields.iter().map(Vec::as_slice).collect()
            }
            CollOp::Incr { field, .. } => vec![field.as_slice()],
            CollOp::ZAdd { pairs, .. } => pairs.iter().map(|(_, m)| m.as_slice()).collect(),
            CollOp::ZRank { member, .. } => vec![member.as_slice()],
            // The destination's header (not an element: read the same way).
            CollOp::Move { to, .. } if to.as_slice() != key => return vec![to.clone()],
            _ => Vec::new(),
        };
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(fields.len());
        for f in fields {
            let k = key::element_key(key, family, f);
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// `(size, limit)` if a field is longer than `max_key` or a value
    /// than `max_value`.
    pub fn over_limits(&self, max_key: usize, max_value: usize) -> Option<(u64, u64)> {
        let too_long =
            |b: &[u8], limit: usize| (b.len() > limit).then_some((b.len() as u64, limit as u64));
        match self {
            CollOp::Put { pairs, .. } => pairs
                .iter()
                .find_map(|(f, v)| too_long(f, max_key).or_else(|| too_long(v, max_value))),
            CollOp::Remove { fields } | CollOp::Get { fields } => {
                fields.iter().find_map(|f| too_long(f, max_key))
            }
            CollOp::Incr { field, by, .. } => {
                too_long(field, max_key).or_else(|| too_long(by, max_key))
            }
            CollOp::Push { values, .. } => values.iter().find_map(|v| too_long(v, max_value)),
            CollOp::ZAdd { pairs, .. } => pairs.iter().find_map(|(_, m)| too_long(m, max_key)),
            CollOp::ZRank { member, .. } => too_long(member, max_key),
            CollOp::Move { to, .. } => too_long(to, max_key),
            CollOp::SetAt { value, .. } => too_long(value, max_value),
            CollOp::RemoveValue { value, .. } => too_long(value, max_value),
            CollOp::Insert { pivot, value, .. } => {
                too_long(pivot, max_value).or_else(|| too_long(value, max_value))
            }
            _ => None,
        }
    }

    /// May the command read a run of elements beyond the ones it names
    /// ([`CollOp::range`] for some header)? Inside a batch, such a
    /// command's collection is read whole before the batch is decided.
    pub fn reads_run(&self) -> bool {
        matches!(
            self,
            CollOp::All
                | CollOp::Pop { .. }
                | CollOp::PopEnd { .. }
                | CollOp::Range { .. }
                | CollOp::SetAt { .. }
                | CollOp::Trim { .. }
                | CollOp::RemoveValue { .. }
                | CollOp::Insert { .. }
                | CollOp::Move { .. }
                | CollOp::ZRange { .. }
                | CollOp::ZCount { .. }
                | CollOp::ZRank { .. }
                | CollOp::ZPop { .. }
                | CollOp::ZRemRange { .. }
        )
    }

    /// Does the command only read?
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            CollOp::Get { .. }
                | CollOp::All
                | CollOp::Len
                | CollOp::Kind
                | CollOp::Range { .. }
                | CollOp::ZRange { .. }
                | CollOp::ZCount { .. }
                | CollOp::ZRank { .. }
        )
    }

    /// The element records the command reads besides those it names
    /// ([`CollOp::element_keys`]), given the collection's header as read
    /// (`None`: no live collection of `kind` at `key`, nothing to read).
    /// `elements`: the records of [`CollOp::element_keys`], as read.
    pub fn range(
        &self,
        key: &[u8],
        kind: Kind,
        header: Option<&Header>,
        elements: &BTreeMap<Vec<u8>, Option<crate::Record>>,
    ) -> Option<Range> {
        let h = header?;
        if kind == Kind::ZSet {
            return zset::range(self, key, h, elements);
        }
        let every = |family| {
            let prefix = key::family_prefix(key, family);
            Range {
                after: prefix[..prefix.len() - 1].to_vec(),
                prefix,
                to: None,
                limit: MAX_READ_ELEMENTS + 1,
            }
        };
        match (kind, self) {
            (Kind::Hash | Kind::Set, CollOp::All | CollOp::Pop { .. }) => {
                Some(every(key::Family::Member))
            }
            (Kind::List, op) => {
                let (first, last) = match *op {
                    CollOp::Move { from_left, .. } => match from_left {
                        true => (h.head, h.head),
                        false => (h.tail - 1, h.tail - 1),
                    },
                    CollOp::PopEnd { left, count } => {
                        let n = (count as i64).min(h.len());
                        match left {
                            true => (h.head, h.head + n - 1),
                            false => (h.tail - n, h.tail - 1),
                        }
                    }
                    CollOp::Range { start, stop } => h.positions(start, stop)?,
                    CollOp::SetAt { index, .. } => h.positions(index, index)?,
                    CollOp::Trim { .. } | CollOp::RemoveValue { .. } | CollOp::Insert { .. } => {
                        (h.head, h.tail - 1)
                    }
                    _ => return None,
                };
                if last < first {
                    return None;
                }
                Some(Range {
                    prefix: key::family_prefix(key, key::Family::Index),
                    after: key::index_key(key, first - 1),
                    to: Some(key::index_key(key, last)),
                    limit: ((last - first + 1) as usize).min(MAX_READ_ELEMENTS + 1),
                })
            }
            _ => None,
        }
    }
}

/// A header's value with its `born` moved into term `term` (what a
/// restore into another ring does: the backup's terms mean nothing
/// there, and the restored elements take the restoring owner's term);
/// `None` if `value` is not a header.
pub fn rebirth(value: &[u8], term: u64) -> Option<Vec<u8>> {
    let mut h = Header::decode(value)?;
    h.born.term = term;
    Some(h.encode())
}

/// The header of the live collection of `kind` that `record` (a key's
/// newest record) holds at `now`, if it holds one.
pub fn live_header(record: Option<&crate::Record>, kind: Kind, now: Time) -> Option<Header> {
    record
        .filter(|r| r.is_live(now) && r.kind == kind && kind != Kind::String)
        .and_then(|r| Header::decode(r.value.as_deref()?))
}

/// A run of element records to read, in key order: keys starting with
/// `prefix`, after `after`, up to `to` (inclusive; `None`: to the end of
/// the prefix), at most `limit`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Range {
    /// The element keys' common prefix.
    pub prefix: Vec<u8>,
    /// Read keys after this one.
    pub after: Vec<u8>,
    /// The last key to read, if not the prefix's last.
    pub to: Option<Vec<u8>>,
    /// At most this many records.
    pub limit: usize,
}

impl Range {
    /// Does the range hold `key`?
    pub fn holds(&self, key: &[u8]) -> bool {
        key.starts_with(&self.prefix)
            && key > self.after.as_slice()
            && self.to.as_ref().is_none_or(|to| key <= to.as_slice())
    }
}

/// What a collection command answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CollReply {
    /// A number: elements added, removed, counted; an integer increment's
    /// result.
    Count(i64),
    /// Per field asked, its value (`None`: absent).
    Values(Vec<Option<Vec<u8>>>),
    /// Fields and values (a set's members with empty values).
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// A list's values, in order.
    Items(Vec<Vec<u8>>),
    /// A refusal particular to the command (LSET's "index out of
    /// range", "no such key"), as Redis words it.
    Error(String),
    /// A float increment's result, as text.
    Number(Vec<u8>),
    /// The key's kind and expiry (`None`: no key).
    Kind(Option<(Kind, Option<Time>)>),
}

/// What a collection's header record holds besides its kind (a record
/// field) and expiry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// The version the collection was created with: elements older than
    /// it belong to an earlier collection at the key, deleted since.
    pub born: Version,
    /// How many elements are alive.
    pub count: u64,
    /// A list's first position (its elements are at `head..tail`).
    pub head: i64,
    /// A list's position after its last.
    pub tail: i64,
}

/// Bytes of an encoded [`Header`].
const HEADER_BYTES: usize = 8 + 8 + 20 + 8 + 8 + 8;

impl Header {
    /// The header record's value bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&self.born.term.to_be_bytes());
        out.extend_from_slice(&self.born.hlc.to_be_bytes());
        out.extend_from_slice(&self.born.node.0);
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.head.to_be_bytes());
        out.extend_from_slice(&self.tail.to_be_bytes());
        out
    }

    /// A new collection's header, born at `born`.
    pub fn new(born: Version) -> Header {
        Header {
            born,
            count: 0,
            head: 0,
            tail: 0,
        }
    }

    /// A list's length.
    pub fn len(&self) -> i64 {
        self.tail - self.head
    }

    /// Is the list empty?
    pub fn is_empty(&self) -> bool {
        self.len() <= 0
    }

    /// The list positions `start..=stop` (negative: from the tail) as
    /// absolute indices clamped to the list; `None` when they hold none.
    pub fn positions(&self, start: i64, stop: i64) -> Option<(i64, i64)> {
        let len = self.len();
        let at = |i: i64| if i < 0 { len.saturating_add(i) } else { i };
        let (start, stop) = (at(start).max(0), at(stop).min(len - 1));
        (start <= stop && start < len).then(|| (self.head + start, self.head + stop))
    }

    /// The header a record's value holds; `None` if malformed.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        if bytes.len() != HEADER_BYTES {
            return None;
        }
        let u64_at = |at: usize| bytes[at..at + 8].try_into().ok().map(u64::from_be_bytes);
        Some(Header {
            born: Version {
                term: u64_at(0)?,
                hlc: u64_at(8)?,
                node: Id::from_slice(&bytes[16..36])?,
            },
            count: u64_at(36)?,
            head: u64_at(44)? as i64,
            tail: u64_at(52)? as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_decodes_what_it_encodes() {
        let h = Header {
            born: Version {
                term: 3,
                hlc: 99,
                node: Id::from_u64(7),
            },
            count: 12,
            head: -3,
            tail: 9,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        // Positions as Redis counts them, clamped to the list.
        assert_eq!(h.positions(0, -1), Some((-3, 8)));
        assert_eq!(h.positions(-2, 100), Some((7, 8)));
        assert_eq!(h.positions(5, 2), None);
        assert_eq!(h.positions(12, 20), None);
        assert_eq!(h.positions(-100, 0), Some((-3, -3)));
        assert_eq!(Header::decode(&h.encode()[1..]), None);
    }

    #[test]
    fn a_restored_header_is_born_in_the_restoring_term() {
        let h = Header {
            born: Version {
                term: 7,
                hlc: 100,
                node: Id::from_u64(1),
            },
            ..Header::new(Version::default())
        };
        // An element of that collection, restored into a ring whose terms
        // are lower: its term is the restoring owner's.
        let element = Version {
            term: 2,
            hlc: 150,
            node: Id::from_u64(1),
        };
        assert!(element < h.born, "left in the old term, it reads as dead");
        let reborn = Header::decode(&rebirth(&h.encode(), 2).unwrap()).unwrap();
        assert!(element >= reborn.born, "in the restoring term, alive");
        assert_eq!((reborn.born.hlc, reborn.count), (100, h.count));
        assert_eq!(rebirth(b"not a header", 2), None);
    }

    #[test]
    fn each_field_is_read_once() {
        let op = CollOp::Get {
            fields: vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()],
        };
        assert_eq!(op.element_keys(b"h", Kind::Hash).len(), 2);
        assert!(CollOp::All.element_keys(b"h", Kind::Hash).is_empty());
    }
}
