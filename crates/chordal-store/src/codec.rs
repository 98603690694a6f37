//! The on-disk form of a record.
//!
//! Table key: key id (20 bytes) followed by the key bytes, so that records
//! sort by key id. Table value: hlc (u64 big-endian), version node id (20
//! bytes), a flag byte (1 = tombstone), then the value bytes.

use chordal_core::{ID_BYTES, Id, Record, Version};

const HEADER: usize = 8 + ID_BYTES + 1;

pub fn table_key(key_id: &Id, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_BYTES + key.len());
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(key);
    out
}

pub fn encode_value(r: &Record) -> Vec<u8> {
    let value = r.value.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&r.version.hlc.to_be_bytes());
    out.extend_from_slice(&r.version.node.0);
    out.push(u8::from(r.value.is_none()));
    out.extend_from_slice(value);
    out
}

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

pub fn decode(k: &[u8], v: &[u8]) -> Option<Record> {
    let key_id = Id::from_slice(k.get(..ID_BYTES)?)?;
    let version = decode_version(v)?;
    let value = match v[HEADER - 1] {
        0 => Some(v[HEADER..].to_vec()),
        1 => None,
        _ => return None,
    };
    Some(Record {
        key_id,
        key: k[ID_BYTES..].to_vec(),
        version,
        value,
    })
}
