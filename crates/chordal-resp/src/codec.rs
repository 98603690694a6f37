//! Requests in, replies out, on one connection.
//!
//! Requests are RESP arrays of bulk strings, decoded by the
//! `redis-protocol` crate, or *inline* commands (a line of words, what a
//! person types into `telnet`), which that crate does not decode: they are
//! split here, the way Redis splits them (whitespace, no quoting). Before
//! handing a partial array to the decoder, a guard reads its length
//! headers, so that a client announcing a 512 MiB string is refused at
//! once instead of being buffered. Replies are encoded by the same crate,
//! as RESP2 or RESP3 (after `HELLO 3`).

use crate::reply::Reply;
use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use tokio_util::codec::{Decoder, Encoder};

/// Longest inline command line (as Redis).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments in one command.
pub const MAX_ARGS: usize = 1024 * 1024;

/// Why a connection's input cannot be read: answered with an error, then
/// the connection is closed (the stream can no longer be trusted).
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes are not RESP.
    #[error("Protocol error: {0}")]
    Malformed(String),
    /// A string or the whole request is over the limits.
    #[error("Protocol error: {0}")]
    TooLarge(String),
    /// Reading or writing the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The codec of one connection.
#[derive(Debug)]
pub struct RespCodec {
    /// Largest bulk string accepted (a value, a key).
    pub max_bulk: usize,
    /// Largest request accepted, all its strings together.
    pub max_request: usize,
    /// Replies in RESP3 (`HELLO 3`) rather than RESP2.
    pub resp3: bool,
}

impl RespCodec {
    /// A RESP2 codec with these limits.
    pub fn new(max_bulk: usize, max_request: usize) -> RespCodec {
        RespCodec {
            max_bulk,
            max_request,
            resp3: false,
        }
    }
}

/// One command: its name and arguments, as bytes.
pub type Request = Vec<Bytes>;

/// Checks the headers of the (possibly partial) array at the start of
/// `buf`: the argument count, each bulk length, the total size. Stops at
/// the first header not yet complete. `Err` for a header that is over the
/// limits or not a number.
fn guard(buf: &[u8], codec: &RespCodec) -> Result<(), ProtocolError> {
    let line = |at: usize| -> Option<(&[u8], usize)> {
        let rest = buf.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], at + end + 2))
    };
    let number = |text: &[u8], what: &str| -> Result<i64, ProtocolError> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| ProtocolError::Malformed(format!("invalid {what}")))
    };
    let Some((header, mut at)) = line(0) else {
        return Ok(());
    };
    let count = number(&header[1..], "multibulk length")?;
    if count > MAX_ARGS as i64 {
        return Err(ProtocolError::TooLarge("invalid multibulk length".into()));
    }
    let mut total = 0usize;
    for _ in 0..count.max(0) {
        let Some((header, next)) = line(at) else {
            return Ok(());
        };
        if header.first() != Some(&b'$') {
            return Err(ProtocolError::Malformed(format!(
                "expected '$', got '{}'",
                header.first().map_or(' ', |b| *b as char)
            )));
        }
        let len = number(&header[1..], "bulk length")?;
        if len < 0 || len as u64 > codec.max_bulk as u64 {
            return Err(ProtocolError::TooLarge("invalid bulk length".into()));
        }
        total += len as usize;
        if total > codec.max_request {
            return Err(ProtocolError::TooLarge(format!(
                "request over {} bytes",
                codec.max_request
            )));
        }
        at = next + len as usize + 2;
        if at > buf.len() {
            return Ok(());
        }
    }
    Ok(())
}

impl Decoder for RespCodec {
    type Item = Request;
    type Error = ProtocolError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                let Some(end) = buf.iter().position(|b| *b == b'\n') else {
                    if buf.len() > MAX_INLINE {
                        return Err(ProtocolError::TooLarge("too big inline request".into()));
                    }
                    return Ok(None);
                };
                let line = buf.split_to(end + 1);
                let args: Request = line[..]
                    .split(|b: &u8| b.is_ascii_whitespace())
                    .filter(|w| !w.is_empty())
                    .map(Bytes::copy_from_slice)
                    .collect();
                // An empty line is no command (Redis skips it too).
                if args.is_empty() {
                    continue;
                }
                return Ok(Some(args));
            }
            guard(buf, self)?;
            let decoded = redis_protocol::resp2::decode::decode_bytes_mut(buf)
                .map_err(|e| ProtocolError::Malformed(e.details().to_string()))?;
            let Some((frame, _, _)) = decoded else {
                return Ok(None);
            };
            let Frame2::Array(items) = frame else {
                return Err(ProtocolError::Malformed("expected an array".into()));
            };
            let mut args = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Frame2::BulkString(b) => args.push(b),
                    _ => {
                        return Err(ProtocolError::Malformed(
                            "expected an array of bulk strings".into(),
                        ));
                    }
                }
            }
            // `*0\r\n` is no command either.
            if args.is_empty() {
                continue;
            }
            return Ok(Some(args));
        }
    }
}

impl Encoder<Reply> for RespCodec {
    type Error = ProtocolError;

    fn encode(&mut self, reply: Reply, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let result = if self.resp3 {
            redis_protocol::resp3::encode::complete::extend_encode(out, &reply.into_resp3(), false)
        } else {
            redis_protocol::resp2::encode::extend_encode(out, &reply.into_resp2(), false)
        };
        result
            .map(|_| ())
            .map_err(|e| ProtocolError::Malformed(e.details().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Request>, ProtocolError> {
        let mut codec = RespCodec::new(1024, 4096);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(r) = codec.decode(&mut buf)? {
            out.push(r);
        }
        Ok(out)
    }

    fn words(r: &Request) -> Vec<&[u8]> {
        r.iter().map(|b| b.as_ref()).collect()
    }

    #[test]
    fn multibulk_and_inline_requests_decode_in_order() {
        let got = decode_all(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n  set  a b\n*1\r\n$4\r\nPI")
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(words(&got[0]), vec![&b"ECHO"[..], b"hi"]);
        assert_eq!(words(&got[1]), vec![&b"PING"[..]]);
        assert_eq!(words(&got[2]), vec![&b"set"[..], b"a", b"b"]);
    }

    #[test]
    fn huge_headers_are_refused_before_any_body_arrives() {
        let err = decode_all(b"*1\r\n$536870912\r\n").unwrap_err();
        assert!(err.to_string().contains("invalid bulk length"), "{err}");
        let err = decode_all(b"*99999999999\r\n").unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge(_)), "{err}");
        // Four strings of 1,000 bytes are over the request limit of 4,096
        // although each is under the string limit.
        let mut big = b"*5\r\n".to_vec();
        for _ in 0..5 {
            big.extend_from_slice(b"$1000\r\n");
            big.extend_from_slice(&[b'x'; 1000]);
            big.extend_from_slice(b"\r\n");
        }
        assert!(matches!(decode_all(&big), Err(ProtocolError::TooLarge(_))));
        let err = decode_all(b"*1\r\n:5\r\n").unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
        let err = decode_all(b"*1\r\n$x\r\n").unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err}");
        let long_line = vec![b'a'; MAX_INLINE + 1];
        assert!(matches!(
            decode_all(&long_line),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn replies_encode_as_resp2_or_resp3() {
        let mut codec = RespCodec::new(1024, 4096);
        let mut out = BytesMut::new();
        let reply = Reply::Array(vec![Reply::Bulk(Bytes::from_static(b"v")), Reply::Nil]);
        codec.encode(reply.clone(), &mut out).unwrap();
        assert_eq!(&out[..], b"*2\r\n$1\r\nv\r\n$-1\r\n");
        codec.resp3 = true;
        out.clear();
        codec.encode(reply, &mut out).unwrap();
        assert_eq!(&out[..], b"*2\r\n$1\r\nv\r\n_\r\n");
    }
}
