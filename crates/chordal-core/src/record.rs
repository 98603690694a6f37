//! Versioned key-value records and the hybrid logical clock that orders them.
//!
//! Every write gets a [`Version`]: a hybrid logical clock reading plus the id
//! of the node that made it. The newest version wins everywhere (puts,
//! replication, handoff, sync); a delete is a record without a value (a
//! tombstone), so that it wins over older values too (DESIGN §5). A value
//! may carry an absolute expiry: once past it, the record reads as a
//! tombstone of the same version everywhere (see [`Record::is_live`]).

use crate::{Id, OpLog, Time};

/// Under which term a write was decided, when, and where: compared by
/// `term`, then `hlc`, then `node` (the field order), so that whatever a
/// later term decides supersedes what an earlier one did, whatever the
/// clocks said (DESIGN §5, "Who decides").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Version {
    /// The authority term of the range under which the owner decided the
    /// write; 0 for records written before terms existed (and by rings
    /// that run without authority).
    pub term: u64,
    /// Hybrid logical clock: microseconds of wall time, pushed forward so
    /// that it never repeats or goes back on one node and exceeds every
    /// version the node has seen.
    pub hlc: u64,
    /// The virtual node that versioned the write (breaks ties).
    pub node: Id,
}

impl Version {
    /// A version of term 0 (records before terms, and tests).
    pub fn at(hlc: u64, node: Id) -> Version {
        Version { term: 0, hlc, node }
    }

    /// Do `self` and `other` name the same write: decided by the same
    /// node at the same hlc, whatever term confirmed it since? A new
    /// owner that writes a predecessor's record back to a quorum raises
    /// only its term (see `Store::write_back`), so a compare-and-set
    /// naming the version a client read before a takeover still matches.
    /// A node never issues one hlc twice, so the pair names one decision.
    pub fn same_write(&self, other: &Version) -> bool {
        self.hlc == other.hlc && self.node == other.node
    }

    /// The version as text, e.g. for an HTTP header: `"<hlc>-<node hex>"`
    /// for term 0, `"<term>.<hlc>-<node hex>"` otherwise.
    pub fn to_text(&self) -> String {
        match self.term {
            0 => format!("{}-{}", self.hlc, self.node.to_hex()),
            t => format!("{t}.{}-{}", self.hlc, self.node.to_hex()),
        }
    }

    /// Parses [`Version::to_text`]'s forms.
    pub fn from_text(s: &str) -> Option<Version> {
        let (clock, node) = s.split_once('-')?;
        let (term, hlc) = match clock.split_once('.') {
            Some((t, h)) => (t.parse().ok()?, h),
            None => (0, clock),
        };
        Some(Version {
            term,
            hlc: hlc.parse().ok()?,
            node: node.parse().ok()?,
        })
    }
}

/// What a record's value is: a string (any bytes), or the header of a
/// collection whose elements are records of their own (see
/// `crate::collection`). A tombstone is always a `String`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Kind {
    /// Bytes, as SET stores them (every record before collections).
    #[default]
    String,
    /// A hash's header (fields are element records).
    Hash,
    /// A set's header (members are element records).
    Set,
    /// A sorted set's header.
    ZSet,
    /// A list's header.
    List,
}

impl Kind {
    /// The kind's number in the store codec and on the wire.
    pub fn code(self) -> u8 {
        match self {
            Kind::String => 0,
            Kind::Hash => 1,
            Kind::Set => 2,
            Kind::ZSet => 3,
            Kind::List => 4,
        }
    }

    /// The kind numbered `code`, if any.
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::String,
            1 => Kind::Hash,
            2 => Kind::Set,
            3 => Kind::ZSet,
            4 => Kind::List,
            _ => return None,
        })
    }

    /// The name TYPE answers (Redis's).
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
        }
    }
}

/// One key with its newest known version; `value: None` is a tombstone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    /// SHA-1 of `key`: where the record lives on the ring.
    pub key_id: Id,
    /// The key (its bytes).
    pub key: Vec<u8>,
    /// The version: hybrid logical clock and writing vnode.
    pub version: Version,
    /// The value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// When the value expires (the drivers' clock: Unix time in the tokio
    /// driver); `None`: never. From then on the record counts as a
    /// tombstone of its version: reads miss, sync and sweeps treat it
    /// like one. Part of the write: a new expiry is a new version.
    pub expires: Option<Time>,
    /// The last writes that made the record, by operation id: a retried
    /// write is answered from here, not applied again (see `oplog.rs`).
    pub ops: OpLog,
    /// What the value is (`String` for a tombstone).
    pub kind: Kind,
}

impl Record {
    /// A record for `key`, computing its id.
    pub fn new(key: Vec<u8>, version: Version, value: Option<Vec<u8>>) -> Record {
        Record {
            key_id: Id::of_key(&key),
            key,
            version,
            value,
            expires: None,
            ops: OpLog::default(),
            kind: Kind::String,
        }
    }

    /// The same record, of kind `kind`.
    pub fn of_kind(mut self, kind: Kind) -> Record {
        self.kind = kind;
        self
    }

    /// The same record, expiring at `expires`.
    pub fn expiring(mut self, expires: Option<Time>) -> Record {
        self.expires = expires;
        self
    }

    /// Is this a delete?
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Does the record hold a value at `now` (neither a tombstone nor
    /// expired)? Reads answer only live records.
    pub fn is_live(&self, now: Time) -> bool {
        self.value.is_some() && !self.expired(now)
    }

    /// Has the value's expiry passed at `now`?
    pub fn expired(&self, now: Time) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// Since when the record has been dead (a tombstone since its write,
    /// an expired value since its expiry), as an hlc-comparable number of
    /// microseconds; `None` while it holds a value that does not expire.
    /// Tombstones and expired values are collected alike once this is past
    /// the grace period.
    pub fn dead_since(&self) -> Option<u64> {
        dead_since(self.value.is_none(), self.version.hlc, self.expires)
    }

    /// Should this record replace `other` (the same key)? The newer version
    /// wins. Two different records never share a version when every node
    /// is honest (the version names the vnode that wrote it, whose clock
    /// only moves forward), but a forged or damaged one might: then the
    /// content decides — a tombstone over a value, else the larger value
    /// bytes — so that every copy keeps the same one and syncs converge.
    pub fn supersedes(&self, other: &Record) -> bool {
        self.version > other.version
            || (self.version == other.version && self.tiebreak() > other.tiebreak())
    }

    /// The order of records of equal versions (see [`Record::supersedes`]).
    fn tiebreak(&self) -> (bool, &[u8], Option<Time>, Kind) {
        (
            self.is_tombstone(),
            self.value.as_deref().unwrap_or(&[]),
            self.expires,
            self.kind,
        )
    }

    /// Does `key_id` really hash `key`? Check records that came from the network.
    pub fn is_consistent(&self) -> bool {
        self.key_id == Id::of_key(&self.key)
    }
}

/// [`Record::dead_since`] from a record's parts (for stores that read
/// headers without values): a tombstone is dead since its hlc, a value
/// since its expiry.
pub fn dead_since(tombstone: bool, hlc: u64, expires: Option<Time>) -> Option<u64> {
    if tombstone {
        Some(hlc)
    } else {
        expires.map(Time::as_micros)
    }
}

/// A hybrid logical clock (Kulkarni et al.): readings follow wall time but
/// are strictly increasing on one node and larger than any version it has
/// received, so causally later writes get larger versions even when clocks
/// drift.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// A reading for a new write at wall time `now`.
    pub fn tick(&mut self, now: Time) -> u64 {
        self.last = (self.last + 1).max(now.as_micros());
        self.last
    }

    /// Takes note of a version seen from elsewhere.
    pub fn observe(&mut self, seen: u64) {
        self.last = self.last.max(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_is_monotonic_and_follows_what_it_sees() {
        let mut c = Hlc::default();
        let a = c.tick(Time::from_micros(100));
        let b = c.tick(Time::from_micros(100));
        let d = c.tick(Time::from_micros(50)); // the wall clock went back
        assert!(a < b && b < d);
        c.observe(1_000);
        assert!(c.tick(Time::from_micros(200)) > 1_000);
        assert_eq!(c.tick(Time::from_micros(5_000)), 5_000);
    }

    #[test]
    fn an_expired_value_is_dead_like_a_tombstone() {
        let v = Version {
            term: 0,
            hlc: 10,
            node: Id::from_u64(1),
        };
        let r = Record::new(b"k".to_vec(), v, Some(b"x".to_vec()));
        assert!(r.is_live(Time::from_micros(u64::MAX)));
        assert_eq!(r.dead_since(), None);
        let r = r.expiring(Some(Time::from_micros(50)));
        assert!(r.is_live(Time::from_micros(49)));
        assert!(!r.is_live(Time::from_micros(50)));
        assert_eq!(r.dead_since(), Some(50));
        let t = Record::new(b"k".to_vec(), v, None);
        assert!(!t.is_live(Time::ZERO));
        assert_eq!(t.dead_since(), Some(10));
    }

    #[test]
    fn versions_order_by_clock_then_node() {
        let v = |hlc, n| Version {
            term: 0,
            hlc,
            node: Id::from_u64(n),
        };
        assert!(v(2, 1) > v(1, 9));
        assert!(v(2, 2) > v(2, 1));
        assert_eq!(Version::from_text(&v(7, 3).to_text()), Some(v(7, 3)));
        assert_eq!(Version::from_text("x-y"), None);
    }

    #[test]
    fn a_later_term_wins_whatever_the_clocks_said() {
        let v = |term, hlc| Version {
            term,
            hlc,
            node: Id::from_u64(1),
        };
        assert!(v(2, 1) > v(1, u64::MAX));
        assert!(v(0, 5) < v(1, 0));
        // Term 0 keeps the old text form; others put the term first.
        assert_eq!(v(0, 7).to_text(), format!("7-{}", Id::from_u64(1).to_hex()));
        for x in [v(0, 7), v(3, 7), v(u64::MAX, 0)] {
            assert_eq!(Version::from_text(&x.to_text()), Some(x));
        }
        assert_eq!(Version::from_text("a.7-00"), None);
    }
}
