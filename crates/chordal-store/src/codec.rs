//! The on-disk form of a record.
//!
//! Table key: key id (20 bytes) followed by the key bytes, so that records
//! sort by key id. Table value: hlc (u64 big-endian), version node id (20
//! bytes), a flag byte, then per flag:
//! - 0: the value bytes;
//! - 1: nothing (a tombstone);
//! - 2: the expiry (u64 big-endian microseconds), then the value bytes.
//!
//! A record of a term above 0 (DESIGN §5, "Who decides") adds 16 to its
//! flag and puts the term (u64 big-endian) right after the flag byte,
//! before the expiry. Flags 0 and 1 are the first generation's format,
//! still read and written for records without an expiry or a term.
//!
//! A record with a log of writes (`OpLog`: retries are answered from it)
//! adds 32 to its flag and puts the log's compact form (`OpLog::as_bytes`:
//! its first byte gives its length) after the term, before the expiry.
//!
//! A collection's header (a record of a `Kind` other than a string) adds
//! 64 to its flag and puts the kind's code (one byte) right after the
//! flag byte, before the term.

use chordal_core::{ID_BYTES, Id, Kind, OpLog, Record, Time, Version};

const HEADER: usize = 8 + ID_BYTES + 1;
const VALUE: u8 = 0;
const TOMBSTONE: u8 = 1;
const EXPIRING: u8 = 2;
/// Added to the flag when a term follows it.
const TERMED: u8 = 16;
/// Added to the flag when a log of writes follows the term.
const LOGGED: u8 = 32;
/// Added to the flag when a kind byte follows it.
const KINDED: u8 = 64;

/// What a table value says about its record without the value bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// The record's version.
    pub version: Version,
    /// Is the record a tombstone?
    pub tombstone: bool,
    /// When its value expires, if it does.
    pub expires: Option<Time>,
    /// What the value is.
    pub kind: Kind,
    /// Where the log of writes lies (if any).
    log_at: Option<(usize, usize)>,
    /// Where the value bytes start.
    value_at: usize,
}

/// The table key of a record: its key id, then its key bytes.
pub fn table_key(key_id: &Id, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_BYTES + key.len());
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(key);
    out
}

/// The table value of a record: version, flag, expiry, value bytes.
pub fn encode_value(r: &Record) -> Vec<u8> {
    let value = r.value.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(HEADER + 8 + value.len());
    out.extend_from_slice(&r.version.hlc.to_be_bytes());
    out.extend_from_slice(&r.version.node.0);
    let kind = match (&r.value, r.expires) {
        (None, _) => TOMBSTONE,
        (Some(_), None) => VALUE,
        (Some(_), Some(_)) => EXPIRING,
    };
    let term = r.version.term;
    let log = r.ops.as_bytes();
    let logged = !log.is_empty();
    let mut flag = kind;
    if term != 0 {
        flag |= TERMED;
    }
    if logged {
        flag |= LOGGED;
    }
    let kinded = r.kind != Kind::String && r.value.is_some();
    if kinded {
        flag |= KINDED;
    }
    out.push(flag);
    if kinded {
        out.push(r.kind.code());
    }
    if term != 0 {
        out.extend_from_slice(&term.to_be_bytes());
    }
    out.extend_from_slice(log);
    if let (Some(_), Some(t)) = (&r.value, r.expires) {
        out.extend_from_slice(&t.as_micros().to_be_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// The version in a table value; `None` if it is malformed.
pub fn decode_version(v: &[u8]) -> Option<Version> {
    decode_header(v).map(|h| h.version)
}

/// The header of a table value (the value itself is not looked at);
/// `None` if it is malformed.
pub fn decode_header(v: &[u8]) -> Option<Header> {
    if v.len() < HEADER {
        return None;
    }
    let hlc = u64::from_be_bytes(v[..8].try_into().ok()?);
    let node = Id::from_slice(&v[8..8 + ID_BYTES])?;
    let flag = v[HEADER - 1];
    let (kind, at) = if flag & KINDED != 0 {
        (Kind::from_code(*v.get(HEADER)?)?, HEADER + 1)
    } else {
        (Kind::String, HEADER)
    };
    let (term, at) = if flag & TERMED != 0 {
        let t = v.get(at..at + 8)?;
        (u64::from_be_bytes(t.try_into().ok()?), at + 8)
    } else {
        (0, at)
    };
    let (log_at, at) = if flag & LOGGED != 0 {
        let len = OpLog::len_in(v.get(at..)?)?;
        (Some((at, len)), at + len)
    } else {
        (None, at)
    };
    let (tombstone, expires, value_at) = match flag & !(TERMED | LOGGED | KINDED) {
        VALUE => (false, None, at),
        // A tombstone has no value bytes: any there mean the record is
        // damaged, not that they may be dropped (found by fuzzing).
        TOMBSTONE if v.len() == at && kind == Kind::String => (true, None, at),
        EXPIRING => {
            let t = v.get(at..at + 8)?;
            let t = Time::from_micros(u64::from_be_bytes(t.try_into().ok()?));
            (false, Some(t), at + 8)
        }
        _ => return None,
    };
    Some(Header {
        version: Version { term, hlc, node },
        tombstone,
        expires,
        kind,
        log_at,
        value_at,
    })
}

/// The record a table key and value hold; `None` if they are malformed.
pub fn decode(k: &[u8], v: &[u8]) -> Option<Record> {
    let key_id = Id::from_slice(k.get(..ID_BYTES)?)?;
    let h = decode_header(v)?;
    let value = (!h.tombstone).then(|| v[h.value_at..].to_vec());
    let ops = match h.log_at {
        Some((at, len)) => OpLog::from_bytes(&v[at..at + len])?,
        None => OpLog::default(),
    };
    Some(Record {
        key_id,
        key: k[ID_BYTES..].to_vec(),
        version: h.version,
        value,
        expires: h.expires,
        ops,
        kind: h.kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Option<Vec<u8>>) -> Record {
        record_of(0, value)
    }

    fn record_of(term: u64, value: Option<Vec<u8>>) -> Record {
        let version = Version {
            term,
            hlc: 7,
            node: Id::from_u64(3),
        };
        Record::new(b"key".to_vec(), version, value)
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let at = Some(Time::from_micros(1 << 50));
        for r in [
            record(Some(b"value".to_vec())),
            record(Some(vec![])),
            record(None),
            record(Some(b"value".to_vec())).expiring(at),
            record(Some(vec![])).expiring(at),
            record_of(9, Some(b"value".to_vec())),
            record_of(u64::MAX, None),
            record_of(1, Some(vec![])).expiring(at),
            record_of(3, Some(b"header".to_vec())).of_kind(Kind::Hash),
            record(Some(vec![1])).of_kind(Kind::List).expiring(at),
        ] {
            let (k, v) = (table_key(&r.key_id, &r.key), encode_value(&r));
            assert_eq!(decode(&k, &v), Some(r.clone()));
            let h = decode_header(&v).expect("a header");
            assert_eq!((h.version, h.tombstone), (r.version, r.value.is_none()));
            assert_eq!(h.kind, r.kind);
            assert_eq!(h.expires, r.expires);
        }
        // An expiring record cut inside its expiry.
        let r = record(Some(b"v".to_vec())).expiring(at);
        let v = encode_value(&r);
        assert_eq!(
            decode(&table_key(&r.key_id, &r.key), &v[..HEADER + 4]),
            None
        );
        let tomb = record(None);
        let (k, mut v) = (table_key(&tomb.key_id, &tomb.key), encode_value(&tomb));
        // A tombstone followed by bytes (the fuzzer's find): damaged.
        v.extend_from_slice(&[0, 0, 138]);
        assert_eq!(decode(&k, &v), None);
        // A kind no one knows: damaged.
        let set = record(Some(b"h".to_vec())).of_kind(Kind::Set);
        let mut v = encode_value(&set);
        assert_eq!(v[HEADER], Kind::Set.code());
        v[HEADER] = 200;
        assert_eq!(decode(&table_key(&set.key_id, &set.key), &v), None);
        // An unknown flag, a short value, a short key.
        let mut bad_flag = encode_value(&tomb);
        bad_flag[HEADER - 1] = 3;
        assert_eq!(decode(&k, &bad_flag), None);
        assert_eq!(decode(&k, &encode_value(&tomb)[..HEADER - 1]), None);
        assert_eq!(decode(&k[..ID_BYTES - 1], &encode_value(&tomb)), None);
    }

    /// A record with a log of writes, `n` entries of every kind.
    fn logged(term: u64, value: Option<Vec<u8>>, n: u64, cut: bool) -> Record {
        use chordal_core::{Answered, Done};
        let mut r = record_of(term, value);
        let kinds = [
            Answered::Stored,
            Answered::Updated(-5),
            Answered::Unrepeatable,
        ];
        let done: Vec<Done> = (0..n)
            .map(|i| Done {
                op: u64::MAX - i,
                version: Version {
                    term: i,
                    hlc: 1000 + i,
                    node: Id::from_u64(i),
                },
                answered: kinds[i as usize % 3],
            })
            .collect();
        r.ops = OpLog::new(&done, cut);
        r
    }

    #[test]
    fn logs_of_writes_round_trip_beside_terms_expiries_and_tombstones() {
        let at = Some(Time::from_micros(1 << 50));
        for r in [
            logged(0, Some(b"value".to_vec()), 1, false),
            logged(4, Some(b"12".to_vec()), chordal_core::MAX_DONE as u64, true),
            logged(4, None, 3, false),
            logged(9, Some(vec![]), 0, true),
            logged(2, Some(b"v".to_vec()), 2, false).expiring(at),
        ] {
            let (k, v) = (table_key(&r.key_id, &r.key), encode_value(&r));
            assert_eq!(decode(&k, &v), Some(r.clone()));
            let h = decode_header(&v).expect("a header");
            assert_eq!((h.version, h.expires), (r.version, r.expires));
            // Cut anywhere up to the end of the log: damaged, never
            // misread.
            let log_end = h.value_at - if r.expires.is_some() { 8 } else { 0 };
            for end in HEADER..log_end {
                assert_eq!(decode(&k, &v[..end]), None, "cut at {end}");
            }
        }
        // A log longer than any record keeps: damaged.
        let r = logged(0, Some(b"v".to_vec()), 1, false);
        let (k, mut v) = (table_key(&r.key_id, &r.key), encode_value(&r));
        v[HEADER] = chordal_core::MAX_DONE as u8 + 1;
        assert_eq!(decode(&k, &v), None);
        // An unknown kind of answer: damaged.
        let mut v = encode_value(&r);
        v[HEADER + 1] = 3;
        assert_eq!(decode(&k, &v), None);
    }
}
