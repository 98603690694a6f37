//! Records and their versions.

use super::*;

pub(super) fn version_to_pb(v: &Version) -> pb::Version {
    pb::Version {
        hlc: v.hlc,
        node: id_to_pb(&v.node),
        term: v.term,
    }
}

pub(super) fn version_from_pb(v: &Option<pb::Version>) -> Result<Version, WireError> {
    let v = v.as_ref().ok_or(WireError::Missing("version"))?;
    Ok(Version {
        term: v.term,
        hlc: v.hlc,
        node: id_from_pb(&v.node, "version")?,
    })
}

pub(super) fn record_to_pb(r: &Record) -> pb::Record {
    pb::Record {
        key: r.key.clone(),
        version: Some(version_to_pb(&r.version)),
        value: r.value.clone(),
        expires: r.expires.map(Time::as_micros),
        ops: r.ops.as_bytes().to_vec(),
        kind: u32::from(r.kind.code()),
    }
}

/// The key id is recomputed from the key: a peer cannot make us file a
/// record under the wrong id. A tombstone has no expiry; a log of writes
/// must be well formed (at most `MAX_DONE` entries).
pub(super) fn record_from_pb(r: &mut pb::Record) -> Result<Record, WireError> {
    if r.value.is_none() && r.expires.is_some() {
        return Err(WireError::Invalid("expires"));
    }
    let version = version_from_pb(&r.version)?;
    let mut record = Record::new(take(&mut r.key), version, r.value.take())
        .expiring(r.expires.map(Time::from_micros));
    record.ops = OpLog::from_bytes(&r.ops).ok_or(WireError::Invalid("ops"))?;
    record.kind = kind_from_pb(r.kind)?;
    if record.value.is_none() && record.kind != Kind::String {
        return Err(WireError::Invalid("a tombstone's kind"));
    }
    Ok(record)
}

pub(super) fn kind_from_pb(code: u32) -> Result<Kind, WireError> {
    u8::try_from(code)
        .ok()
        .and_then(Kind::from_code)
        .ok_or(WireError::Invalid("kind"))
}
