//! The on-disk form of a record.
//!
//! Table key: key id (20 bytes) followed by the key bytes, so that records
//! sort by key id. Table value: hlc (u64 big-endian), version node id (20
//! bytes), a flag byte (1 = tombstone), then the value bytes.

use chordal_core::{ID_BYTES, Id, Record, Version};

const HEADER: usize = 8 + ID_BYTES + 1;

/// The table key of a record: its key id, then its key bytes.
pub fn table_key(key_id: &Id, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_BYTES + key.len());
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(key);
    out
}

/// The table value of a record: version, tombstone flag, value bytes.
pub fn encode_value(r: &Record) -> Vec<u8> {
    let value = r.value.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&r.version.hlc.to_be_bytes());
    out.extend_from_slice(&r.version.node.0);
    out.push(u8::from(r.value.is_none()));
    out.extend_from_slice(value);
    out
}

/// The version in a table value; `None` if it is too short.
pub fn decode_version(v: &[u8]) -> Option<Version> {
    if v.len() < HEADER {
        return None;
    }
    Some(Version {
        hlc: u64::from_be_bytes(v[..8].try_into().ok()?),
        node: Id::from_slice(&v[8..8 + ID_BYTES])?,
    })
}

/// The version and tombstone flag of a table value (the value itself is
/// not looked at).
pub fn decode_header(v: &[u8]) -> Option<(Version, bool)> {
    let version = decode_version(v)?;
    match v[HEADER - 1] {
        0 => Some((version, false)),
        1 => Some((version, true)),
        _ => None,
    }
}

/// The record a table key and value hold; `None` if they are malformed.
pub fn decode(k: &[u8], v: &[u8]) -> Option<Record> {
    let key_id = Id::from_slice(k.get(..ID_BYTES)?)?;
    let version = decode_version(v)?;
    let value = match v[HEADER - 1] {
        0 => Some(v[HEADER..].to_vec()),
        // A tombstone has no value bytes: any there mean the record is
        // damaged, not that they may be dropped (found by fuzzing).
        1 if v.len() == HEADER => None,
        _ => return None,
    };
    Some(Record {
        key_id,
        key: k[ID_BYTES..].to_vec(),
        version,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Option<Vec<u8>>) -> Record {
        let version = Version {
            hlc: 7,
            node: Id::from_u64(3),
        };
        Record::new(b"key".to_vec(), version, value)
    }

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        for r in [
            record(Some(b"value".to_vec())),
            record(Some(vec![])),
            record(None),
        ] {
            let (k, v) = (table_key(&r.key_id, &r.key), encode_value(&r));
            assert_eq!(decode(&k, &v), Some(r.clone()));
            assert_eq!(decode_header(&v), Some((r.version, r.value.is_none())));
        }
        let tomb = record(None);
        let (k, mut v) = (table_key(&tomb.key_id, &tomb.key), encode_value(&tomb));
        // A tombstone followed by bytes (the fuzzer's find): damaged.
        v.extend_from_slice(&[0, 0, 138]);
        assert_eq!(decode(&k, &v), None);
        // An unknown flag, a short value, a short key.
        let mut bad_flag = encode_value(&tomb);
        bad_flag[HEADER - 1] = 2;
        assert_eq!(decode(&k, &bad_flag), None);
        assert_eq!(decode(&k, &encode_value(&tomb)[..HEADER - 1]), None);
        assert_eq!(decode(&k[..ID_BYTES - 1], &encode_value(&tomb)), None);
    }
}
