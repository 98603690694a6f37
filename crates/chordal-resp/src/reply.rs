//! What a command answers, independent of the protocol version: turned
//! into a RESP2 or RESP3 frame only when written.

use bytes::Bytes;
use redis_protocol::bytes_utils::Str;
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::BytesFrame as Frame3;

/// A reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`-style status text.
    Status(String),
    /// An error: its first word is the kind (`ERR`, `NOAUTH`, …).
    Error(String),
    /// A number.
    Integer(i64),
    /// A bulk (binary-safe) string.
    Bulk(Bytes),
    /// A missing value (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// A missing array (`*-1` in RESP2, `_` in RESP3): what BLPOP says
    /// when it times out, EXEC when a watched key changed.
    NilArray,
    /// An array of replies.
    Array(Vec<Reply>),
    /// A map in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A floating-point number (a sorted set's score): a double in
    /// RESP3, its text (C's `%.17g`) as a bulk string in RESP2.
    Double(f64),
    /// Pairs (a field and its value, a member and its score): an array
    /// of two-element arrays in RESP3, one flat array in RESP2.
    Pairs(Vec<(Reply, Reply)>),
    /// Out-of-band data (pub/sub messages): a push in RESP3, an array in
    /// RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    /// Is there a reply the `redis-protocol` crate cannot write as
    /// Redis does (a double for RESP3, a nil array for RESP2), at any
    /// depth? Those are encoded by `codec.rs` itself.
    pub fn is_special(&self) -> bool {
        match self {
            Reply::Double(_) | Reply::NilArray => true,
            Reply::Array(items) | Reply::Push(items) => items.iter().any(Reply::is_special),
            Reply::Map(pairs) | Reply::Pairs(pairs) => {
                pairs.iter().any(|(a, b)| a.is_special() || b.is_special())
            }
            _ => false,
        }
    }

    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    /// `-ERR message`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of text.
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(s.into()))
    }

    /// The RESP2 frame.
    pub fn into_resp2(self) -> Frame2 {
        match self {
            Reply::Status(s) => Frame2::SimpleString(Bytes::from(s)),
            Reply::Error(e) => Frame2::Error(Str::from(e)),
            Reply::Integer(n) => Frame2::Integer(n),
            Reply::Bulk(b) => Frame2::BulkString(b),
            Reply::Double(x) => {
                Frame2::BulkString(Bytes::from(chordal_core::collection::zset::format_score(x)))
            }
            Reply::Nil | Reply::NilArray => Frame2::Null,
            Reply::Array(items) | Reply::Push(items) => {
                Frame2::Array(items.into_iter().map(Reply::into_resp2).collect())
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) => Frame2::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [k.into_resp2(), v.into_resp2()])
                    .collect(),
            ),
        }
    }

    /// The RESP3 frame.
    pub fn into_resp3(self) -> Frame3 {
        let attributes = None;
        match self {
            Reply::Status(s) => Frame3::SimpleString {
                data: Bytes::from(s),
                attributes,
            },
            Reply::Error(e) => Frame3::SimpleError {
                data: Str::from(e),
                attributes,
            },
            Reply::Integer(n) => Frame3::Number {
                data: n,
                attributes,
            },
            Reply::Bulk(b) => Frame3::BlobString {
                data: b,
                attributes,
            },
            Reply::Double(data) => Frame3::Double { data, attributes },
            Reply::Nil | Reply::NilArray => Frame3::Null,
            Reply::Array(items) => Frame3::Array {
                data: items.into_iter().map(Reply::into_resp3).collect(),
                attributes,
            },
            Reply::Push(items) => Frame3::Push {
                data: items.into_iter().map(Reply::into_resp3).collect(),
                attributes,
            },
            Reply::Pairs(pairs) => Frame3::Array {
                data: pairs
                    .into_iter()
                    .map(|(a, b)| Frame3::Array {
                        data: vec![a.into_resp3(), b.into_resp3()],
                        attributes: None,
                    })
                    .collect(),
                attributes,
            },
            Reply::Map(pairs) => Frame3::Map {
                data: pairs
                    .into_iter()
                    .map(|(k, v)| (k.into_resp3(), v.into_resp3()))
                    .collect(),
                attributes,
            },
        }
    }
}
