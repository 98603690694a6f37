//! # chordal-wire: the bytes of the peer protocol
//!
//! A peer connection is: a 12-byte preamble each way ([`preamble`]: magic
//! `CHORDAL\0` + version), then u32 big-endian length-prefixed frames
//! ([`frame_codec`]) whose bodies are protobuf: first a [`Hello`], then
//! [`chordal_core::Envelope`]s ([`encode_envelope`], [`decode_envelope`]).
//! The schema is `proto/chordal.proto`; the framing is described in
//! `docs/peer-protocol.md`.
//!
//! Decoding never panics and never allocates beyond the frame limit: the
//! length prefix is checked before the body is read.

#![warn(missing_docs)]

mod collection;
mod convert;
mod handshake;
pub mod pb;

pub use convert::{
    MAX_ACKS, MAX_LIST, MAX_RECORDS, decode_envelope, encode_envelope, encode_frame,
    envelope_from_pb, envelope_to_pb, frame_len,
};
pub use handshake::{
    Hello, MAGIC, MAX_HELLO, PREAMBLE_LEN, PROTOCOL_VERSION, PROTOCOL_VERSIONS, Versions,
    check_preamble, decode_hello, encode_hello, encode_hello_offering, preamble,
};

use tokio_util::codec::LengthDelimitedCodec;

/// Default hard maximum of one frame body: room for a 1 MiB value and more.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// Why bytes from a peer were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection did not start with `CHORDAL\0`.
    #[error("not a chordal peer (bad magic number)")]
    BadMagic,
    /// The peer's oldest protocol version is newer than ours (or 0).
    #[error(
        "the peer's oldest protocol version is {0}, this node speaks {min}-{max}: upgrade one release at a time (docs/operations.md)",
        min = handshake::PROTOCOL_VERSIONS.min, max = handshake::PROTOCOL_VERSIONS.max
    )]
    Version(u32),
    /// The peer's protocol versions and ours do not overlap.
    #[error(
        "the peer speaks protocol versions {}-{}, this node {}-{}: upgrade one release at a time (docs/operations.md)",
        theirs.0, theirs.1, ours.0, ours.1
    )]
    Versions {
        /// Our range (oldest, newest).
        ours: (u32, u32),
        /// The peer's range.
        theirs: (u32, u32),
    },
    /// The peer belongs to another cluster.
    #[error("peer is in cluster {0:?}, not ours")]
    Cluster(String),
    /// The body is not valid protobuf.
    #[error("malformed protobuf body")]
    Protobuf,
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field has an impossible value (wrong id length, bad address, ...).
    #[error("invalid field {0}")]
    Invalid(&'static str),
}

/// The frame codec: u32 big-endian length prefix, bodies up to `max_frame`
/// bytes. A larger prefix is an error before anything is allocated.
pub fn frame_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame)
        .new_codec()
}
