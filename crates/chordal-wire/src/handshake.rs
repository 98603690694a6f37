//! The connection preamble and the Hello exchanged before any envelope.

use crate::{WireError, pb};
use chordal_core::Id;
use prost::Message as _;
use std::net::SocketAddr;

/// First bytes on every peer connection, in both directions.
pub const MAGIC: [u8; 8] = *b"CHORDAL\0";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Length of the preamble: magic plus big-endian u32 version.
pub const PREAMBLE_LEN: usize = 12;
/// A Hello larger than this is refused (it has no reason to be big).
pub const MAX_HELLO: usize = 16 * 1024;

/// The preamble a node sends first.
pub fn preamble() -> [u8; PREAMBLE_LEN] {
    let mut out = [0u8; PREAMBLE_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    out
}

/// Checks a received preamble: the magic (someone else's protocol on our
/// port fails here) and the version.
pub fn check_preamble(bytes: &[u8; PREAMBLE_LEN]) -> Result<u32, WireError> {
    if bytes[..8] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != PROTOCOL_VERSION {
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
}

/// Longest service URL a Hello may carry.
pub const MAX_SERVICE_URL: usize = 1024;

/// Encodes a Hello frame body.
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    pb::Hello {
        version: PROTOCOL_VERSION,
        cluster: h.cluster.clone(),
        addr: h.addr.map(|a| a.to_string()).unwrap_or_default(),
        api: h.api.map(|a| a.to_string()).unwrap_or_default(),
        ids: h.ids.iter().map(|id| id.0.to_vec()).collect(),
        service: h.service.clone().unwrap_or_default(),
    }
    .encode_to_vec()
}

/// Decodes and checks a Hello frame body against our cluster name.
pub fn decode_hello(bytes: &[u8], our_cluster: &str) -> Result<Hello, WireError> {
    if bytes.len() > MAX_HELLO {
        return Err(WireError::Invalid("hello size"));
    }
    let pb = pb::Hello::decode(bytes).map_err(|_| WireError::Protobuf)?;
    if pb.version != PROTOCOL_VERSION {
        return Err(WireError::Version(pb.version));
    }
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
    })
}
