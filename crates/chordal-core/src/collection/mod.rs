//! Collections — hashes and sets — on the ring, so that an element write
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

use crate::{Id, Kind, Time, Version};

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
}

impl CollOp {
    /// The element keys the command reads (each once, in order) for the
    /// collection at `key`.
    pub fn element_keys(&self, key: &[u8]) -> Vec<Vec<u8>> {
        let fields: Vec<&[u8]> = match self {
            CollOp::Put { pairs, .. } => pairs.iter().map(|(f, _)| f.as_slice()).collect(),
            CollOp::Remove { fields } | CollOp::Get { fields } => {
                fields.iter().map(Vec::as_slice).collect()
            }
            CollOp::Incr { field, .. } => vec![field.as_slice()],
            CollOp::All | CollOp::Len | CollOp::Pop { .. } | CollOp::Kind => Vec::new(),
        };
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(fields.len());
        for f in fields {
            let k = key::element_key(key, key::Family::Member, f);
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
            CollOp::All | CollOp::Len | CollOp::Pop { .. } | CollOp::Kind => None,
        }
    }

    /// Does the command read every element (see [`MAX_READ_ELEMENTS`])?
    pub fn reads_all(&self) -> bool {
        matches!(self, CollOp::All | CollOp::Pop { .. })
    }

    /// Does the command only read?
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            CollOp::Get { .. } | CollOp::All | CollOp::Len | CollOp::Kind
        )
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
}

/// Bytes of an encoded [`Header`].
const HEADER_BYTES: usize = 8 + 8 + 20 + 8;

impl Header {
    /// The header record's value bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(&self.born.term.to_be_bytes());
        out.extend_from_slice(&self.born.hlc.to_be_bytes());
        out.extend_from_slice(&self.born.node.0);
        out.extend_from_slice(&self.count.to_be_bytes());
        out
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
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&h.encode()[1..]), None);
    }

    #[test]
    fn each_field_is_read_once() {
        let op = CollOp::Get {
            fields: vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()],
        };
        assert_eq!(op.element_keys(b"h").len(), 2);
        assert!(CollOp::All.element_keys(b"h").is_empty());
    }
}
