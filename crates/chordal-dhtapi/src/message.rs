//! The four messages of the VoidPhone DHT API, byte for byte (big-endian;
//! `size` counts the whole message, its own two bytes included):
//!
//! ```text
//! DHT PUT     650: size u16 | type u16 | ttl u16 | replication u8 | reserved u8 | key [32] | value
//! DHT GET     651: size u16 | type u16 | key [32]
//! DHT SUCCESS 652: size u16 | type u16 | key [32] | value
//! DHT FAILURE 653: size u16 | type u16 | key [32]
//! ```

/// `DHT PUT`.
pub const DHT_PUT: u16 = 650;
/// `DHT GET`.
pub const DHT_GET: u16 = 651;
/// `DHT SUCCESS`.
pub const DHT_SUCCESS: u16 = 652;
/// `DHT FAILURE`.
pub const DHT_FAILURE: u16 = 653;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of the `size` and `type` fields.
pub const HEADER_LEN: usize = 4;
/// Bytes before a PUT's value.
pub const PUT_HEADER_LEN: usize = HEADER_LEN + 4 + KEY_LEN;
/// The largest value a `DHT SUCCESS` can carry.
pub const MAX_SUCCESS_VALUE: usize = u16::MAX as usize - HEADER_LEN - KEY_LEN;

/// A key of the API.
pub type Key = [u8; KEY_LEN];

/// A request from a client.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    /// Store `value` under `key` for `ttl` seconds (0: no expiry),
    /// `replication` copies asked for (a hint). Never answered.
    Put {
        /// Seconds the value lives (0: no expiry).
        ttl: u16,
        /// Copies asked for (a hint).
        replication: u8,
        /// The key.
        key: Key,
        /// The value.
        value: Vec<u8>,
    },
    /// Read `key`: answered `DHT SUCCESS` or `DHT FAILURE`.
    Get {
        /// The key.
        key: Key,
    },
}

/// Why bytes are not a request: the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// `size` is less than a header.
    #[error("size {0} is less than the 4-byte header")]
    TooShort(u16),
    /// `size` does not fit the message type.
    #[error("size {size} does not fit a message of type {kind}")]
    SizeMismatch {
        /// The message type.
        kind: u16,
        /// The size it gave.
        size: u16,
    },
    /// Not a request type (an answer type included).
    #[error("message type {0} is not a request (650 DHT PUT, 651 DHT GET)")]
    UnknownType(u16),
}

/// The header of a message: `(size, type)`, checked as far as a header
/// can be (its body is `size - 4` bytes).
pub fn header(bytes: [u8; HEADER_LEN]) -> Result<(u16, u16), Malformed> {
    let size = u16::from_be_bytes([bytes[0], bytes[1]]);
    let kind = u16::from_be_bytes([bytes[2], bytes[3]]);
    if (size as usize) < HEADER_LEN {
        return Err(Malformed::TooShort(size));
    }
    let fits = match kind {
        DHT_PUT => size as usize >= PUT_HEADER_LEN,
        DHT_GET => size as usize == HEADER_LEN + KEY_LEN,
        _ => return Err(Malformed::UnknownType(kind)),
    };
    if !fits {
        return Err(Malformed::SizeMismatch { kind, size });
    }
    Ok((size, kind))
}

/// The request of type `kind` whose body (the bytes after the header,
/// `size - 4` of them, as [`header`] allowed) is `body`.
pub fn request(kind: u16, body: &[u8]) -> Result<Request, Malformed> {
    let size = (body.len() + HEADER_LEN).min(u16::MAX as usize) as u16;
    let mismatch = Malformed::SizeMismatch { kind, size };
    match kind {
        DHT_PUT if body.len() >= PUT_HEADER_LEN - HEADER_LEN => {
            let key: Key = body[4..4 + KEY_LEN].try_into().map_err(|_| mismatch)?;
            Ok(Request::Put {
                ttl: u16::from_be_bytes([body[0], body[1]]),
                replication: body[2],
                key,
                value: body[4 + KEY_LEN..].to_vec(),
            })
        }
        DHT_GET if body.len() == KEY_LEN => Ok(Request::Get {
            key: body.try_into().map_err(|_| mismatch)?,
        }),
        DHT_PUT | DHT_GET => Err(mismatch),
        other => Err(Malformed::UnknownType(other)),
    }
}

/// A `DHT SUCCESS` with `value`, or a `DHT FAILURE` when there is none or
/// it is too large to carry.
pub fn answer(key: &Key, value: Option<&[u8]>) -> Vec<u8> {
    let (kind, value) = match value {
        Some(v) if v.len() <= MAX_SUCCESS_VALUE => (DHT_SUCCESS, v),
        _ => (DHT_FAILURE, &[][..]),
    };
    let size = (HEADER_LEN + KEY_LEN + value.len()) as u16;
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// The bytes of `request` (what a client sends; for tests and tools).
pub fn encode(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    match request {
        Request::Put {
            ttl,
            replication,
            key,
            value,
        } => {
            let size = (PUT_HEADER_LEN + value.len()) as u16;
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&DHT_PUT.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.push(*replication);
            out.push(0);
            out.extend_from_slice(key);
            out.extend_from_slice(value);
        }
        Request::Get { key } => {
            out.extend_from_slice(&((HEADER_LEN + KEY_LEN) as u16).to_be_bytes());
            out.extend_from_slice(&DHT_GET.to_be_bytes());
            out.extend_from_slice(key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Request, Malformed> {
        let (size, kind) = header(bytes[..4].try_into().unwrap())?;
        assert_eq!(size as usize, bytes.len());
        request(kind, &bytes[4..])
    }

    #[test]
    fn requests_round_trip_exactly_as_the_spec_lays_them_out() {
        let key = [7u8; KEY_LEN];
        let put = Request::Put {
            ttl: 300,
            replication: 2,
            key,
            value: b"hello".to_vec(),
        };
        let bytes = encode(&put);
        assert_eq!(&bytes[..8], &[0, 45, 0x02, 0x8a, 0x01, 0x2c, 2, 0]);
        assert_eq!(decode(&bytes), Ok(put));
        let get = Request::Get { key };
        let bytes = encode(&get);
        assert_eq!(&bytes[..4], &[0, 36, 0x02, 0x8b]);
        assert_eq!(decode(&bytes), Ok(get));
        let ok = answer(&key, Some(b"v"));
        assert_eq!(&ok[..4], &[0, 37, 0x02, 0x8c]);
        let fail = answer(&key, None);
        assert_eq!(&fail[..4], &[0, 36, 0x02, 0x8d]);
        assert_eq!(&fail[4..], &key);
        let huge = vec![0u8; MAX_SUCCESS_VALUE + 1];
        assert_eq!(&answer(&key, Some(&huge))[2..4], &[0x02, 0x8d]);
    }

    #[test]
    fn headers_that_cannot_be_requests_are_refused() {
        assert_eq!(header([0, 3, 0x02, 0x8b]), Err(Malformed::TooShort(3)));
        assert_eq!(
            header([0, 35, 0x02, 0x8b]),
            Err(Malformed::SizeMismatch {
                kind: 651,
                size: 35
            })
        );
        assert_eq!(
            header([0, 39, 0x02, 0x8a]),
            Err(Malformed::SizeMismatch {
                kind: 650,
                size: 39
            })
        );
        // An answer type from a client, and an unknown one.
        assert_eq!(
            header([0, 36, 0x02, 0x8c]),
            Err(Malformed::UnknownType(652))
        );
        assert_eq!(header([0, 36, 0, 1]), Err(Malformed::UnknownType(1)));
        assert!(
            header([0, 40, 0x02, 0x8a]).is_ok(),
            "an empty value is a value"
        );
    }
}
