//! The connection preamble and the Hello exchanged before any envelope.

use crate::{WireError, pb};
use chordal_core::Id;
use prost::Message as _;
use std::net::SocketAddr;

/// First bytes on every peer connection, in both directions.
pub const MAGIC: [u8; 8] = *b"CHORDAL\0";
/// The newest protocol version this crate speaks.
///
/// Version 2 places keys by hash slot (`Id::of_key`): a node of version 1
/// would look for a key elsewhere, so the two refuse each other.
pub const PROTOCOL_VERSION: u32 = 2;
/// The protocol versions this crate speaks: a node accepts a peer whose
/// range overlaps it, so a ring can be upgraded one node at a time as long
/// as each release still speaks its predecessor's newest version — except
/// across a change of key placement, which a whole ring makes at once
/// (docs/operations.md, "Upgrades").
pub const PROTOCOL_VERSIONS: Versions = Versions {
    min: 2,
    max: PROTOCOL_VERSION,
};

/// A range of protocol versions, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    /// The oldest version spoken.
    pub min: u32,
    /// The newest version spoken.
    pub max: u32,
}

impl Versions {
    /// The version two sides speak together: the newest both know, or a
    /// [`WireError::Versions`] naming both ranges.
    pub fn negotiate(self, theirs: Versions) -> Result<u32, WireError> {
        let version = self.max.min(theirs.max);
        if version < self.min.max(theirs.min) {
            return Err(WireError::Versions {
                ours: (self.min, self.max),
                theirs: (theirs.min, theirs.max),
            });
        }
        Ok(version)
    }
}

/// Length of the preamble: magic plus big-endian u32 version (the oldest
/// the sender speaks; its Hello gives the whole range).
pub const PREAMBLE_LEN: usize = 12;
/// A Hello larger than this is refused (it has no reason to be big).
pub const MAX_HELLO: usize = 16 * 1024;

/// The preamble a node sends first.
pub fn preamble() -> [u8; PREAMBLE_LEN] {
    let mut out = [0u8; PREAMBLE_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(&PROTOCOL_VERSIONS.min.to_be_bytes());
    out
}

/// Checks a received preamble: the magic (someone else's protocol on our
/// port fails here) and that the sender's oldest version is not newer than
/// ours (the Hello then settles the version).
pub fn check_preamble(bytes: &[u8; PREAMBLE_LEN]) -> Result<u32, WireError> {
    if bytes[..8] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version == 0 || version > PROTOCOL_VERSIONS.max {
        return Err(WireError::Version(version));
    }
    Ok(version)
}

/// Who is at the other end of a connection, as its Hello says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Cluster name; must equal ours.
    pub cluster: String,
    /// Advertised peer address; `None` for a client that is not a ring member.
    pub addr: Option<SocketAddr>,
    /// HTTP API address, if the peer serves one.
    pub api: Option<SocketAddr>,
    /// Its virtual node ids.
    pub ids: Vec<Id>,
    /// URL of the service instance running beside the node, if declared
    /// (`chordal node --service`): where a gateway sends its clients.
    pub service: Option<String>,
    /// Redis protocol address, if the peer serves one: where `CLUSTER
    /// SLOTS` sends a Redis Cluster client for the keys it owns.
    pub resp: Option<SocketAddr>,
}

/// Longest service URL a Hello may carry.
pub const MAX_SERVICE_URL: usize = 1024;

/// Encodes a Hello frame body, offering [`PROTOCOL_VERSIONS`].
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    encode_hello_offering(h, PROTOCOL_VERSIONS)
}

/// Encodes a Hello frame body offering `versions` (what another release
/// would send: for tests of mixed rings).
pub fn encode_hello_offering(h: &Hello, versions: Versions) -> Vec<u8> {
    pb::Hello {
        // Release 1 read only this field and wanted it equal to its own.
        version: versions.min,
        min_version: versions.min,
        max_version: versions.max,
        cluster: h.cluster.clone(),
        addr: h.addr.map(|a| a.to_string()).unwrap_or_default(),
        api: h.api.map(|a| a.to_string()).unwrap_or_default(),
        ids: h.ids.iter().map(|id| id.0.to_vec()).collect(),
        service: h.service.clone().unwrap_or_default(),
        resp: h.resp.map(|a| a.to_string()).unwrap_or_default(),
    }
    .encode_to_vec()
}

/// Decodes and checks a Hello frame body against our cluster name.
pub fn decode_hello(bytes: &[u8], our_cluster: &str) -> Result<Hello, WireError> {
    if bytes.len() > MAX_HELLO {
        return Err(WireError::Invalid("hello size"));
    }
    let pb = pb::Hello::decode(bytes).map_err(|_| WireError::Protobuf)?;
    // A Hello without a range (release 1) speaks exactly `version`.
    let theirs = match (pb.min_version, pb.max_version) {
        (0, 0) => Versions {
            min: pb.version,
            max: pb.version,
        },
        (min, max) if min <= max => Versions { min, max },
        _ => return Err(WireError::Invalid("protocol versions")),
    };
    PROTOCOL_VERSIONS.negotiate(theirs)?;
    if pb.cluster != our_cluster {
        return Err(WireError::Cluster(pb.cluster));
    }
    let parse = |s: &str, field| -> Result<Option<SocketAddr>, WireError> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| WireError::Invalid(field))
        }
    };
    let ids = pb
        .ids
        .iter()
        .map(|b| Id::from_slice(b).ok_or(WireError::Invalid("ids")))
        .collect::<Result<Vec<_>, _>>()?;
    if pb.service.len() > MAX_SERVICE_URL {
        return Err(WireError::Invalid("service"));
    }
    Ok(Hello {
        cluster: pb.cluster,
        addr: parse(&pb.addr, "addr")?,
        api: parse(&pb.api, "api")?,
        ids,
        service: (!pb.service.is_empty()).then_some(pb.service),
        resp: parse(&pb.resp, "resp")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            cluster: "c".into(),
            addr: Some("127.0.0.1:7000".parse().unwrap()),
            api: None,
            ids: vec![Id::hash(b"x")],
            service: None,
            resp: Some("127.0.0.1:6379".parse().unwrap()),
        }
    }

    #[test]
    fn overlapping_ranges_settle_on_the_newest_common_version() {
        let v = |min, max| Versions { min, max };
        assert_eq!(v(1, 3).negotiate(v(2, 5)), Ok(3));
        assert_eq!(v(2, 5).negotiate(v(1, 3)), Ok(3));
        assert_eq!(v(1, 1).negotiate(v(1, 1)), Ok(1));
        assert_eq!(
            v(1, 2).negotiate(v(3, 4)),
            Err(WireError::Versions {
                ours: (1, 2),
                theirs: (3, 4)
            })
        );
        assert!(v(3, 4).negotiate(v(1, 2)).is_err());
    }

    #[test]
    fn a_hello_outside_our_range_is_refused_naming_both() {
        let ours = PROTOCOL_VERSIONS;
        let newer = Versions {
            min: ours.max + 1,
            max: ours.max + 2,
        };
        let err = decode_hello(&encode_hello_offering(&hello(), newer), "c").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("{}-{}", newer.min, newer.max))
                && text.contains(&format!("{}-{}", ours.min, ours.max)),
            "{text}"
        );
        // A range reaching back to ours is fine, and so is release 1's
        // Hello, which has no range.
        let wider = Versions {
            min: ours.max,
            max: ours.max + 3,
        };
        assert!(decode_hello(&encode_hello_offering(&hello(), wider), "c").is_ok());
        let mut old = pb::Hello::decode(encode_hello(&hello()).as_slice()).unwrap();
        (old.min_version, old.max_version) = (0, 0);
        assert!(decode_hello(&old.encode_to_vec(), "c").is_ok());
        old.version = ours.max + 1;
        assert!(decode_hello(&old.encode_to_vec(), "c").is_err());
        let mut bad = pb::Hello::decode(encode_hello(&hello()).as_slice()).unwrap();
        (bad.min_version, bad.max_version) = (3, 2);
        assert_eq!(
            decode_hello(&bad.encode_to_vec(), "c"),
            Err(WireError::Invalid("protocol versions"))
        );
    }

    #[test]
    fn the_preamble_refuses_only_versions_newer_than_ours() {
        let mut p = preamble();
        assert_eq!(check_preamble(&p), Ok(PROTOCOL_VERSIONS.min));
        p[8..].copy_from_slice(&(PROTOCOL_VERSIONS.max + 1).to_be_bytes());
        assert!(check_preamble(&p).is_err());
        p[8..].copy_from_slice(&0u32.to_be_bytes());
        assert!(check_preamble(&p).is_err());
    }
}
