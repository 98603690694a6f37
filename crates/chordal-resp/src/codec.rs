//! Requests in, replies out, on one connection.
//!
//! Requests are RESP arrays of bulk strings, decoded by the
//! `redis-protocol` crate, or *inline* commands (a line of words, what a
//! person types into `telnet`), which that crate does not decode: they are
//! split here, the way Redis splits them (whitespace, no quoting). Before
//! handing an array to the decoder, a guard reads its length headers as
//! they arrive, so that a client announcing a 512 MiB string, or sending
//! a header line that never ends, is refused at once instead of being
//! buffered; the decoder sees the array only once it is complete, so no
//! byte is parsed twice however the request is split. Replies are encoded
//! by the same crate, as RESP2 or RESP3 (after `HELLO 3`).
//!
//! An authenticated client's request over the limits but within
//! [`Limits::max_skip`] (a value a little over the value limit, an MSET
//! of a few too many) is read to its end and dropped as it arrives —
//! never buffered — and answered with an error in its place
//! ([`Incoming::Dropped`]); the connection goes on. Anything larger, and
//! anything over the limits before authentication, closes the connection.

use crate::reply::Reply;
use bytes::{Buf, Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Frame2;
use tokio_util::codec::{Decoder, Encoder};

/// Longest inline command line (as Redis).
pub const MAX_INLINE: usize = 64 * 1024;
/// Most arguments in one command.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Most bytes of one over-limit request an authenticated connection reads
/// and drops (answering an error) rather than closing.
pub const MAX_SKIP: usize = 64 * 1024 * 1024;
/// Longest header line of a request (`*COUNT` or `$LENGTH`): a number
/// has at most 20 digits, so anything longer is not a header.
pub const MAX_HEADER_LINE: usize = 32;

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

/// What one request may be at most. A connection that has not yet
/// authenticated gets [`Limits::before_auth`], a few KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted (a value, a key).
    pub max_bulk: usize,
    /// Largest request, every byte of it (headers included).
    pub max_request: usize,
    /// Most arguments of one request.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
    /// Most bytes of a request over the other limits that are read and
    /// dropped, answered with an error (0: none, close instead).
    pub max_skip: usize,
}

impl Limits {
    /// Limits for an authenticated client: strings up to `max_bulk`,
    /// requests up to `max_request`.
    pub fn new(max_bulk: usize, max_request: usize) -> Limits {
        Limits {
            max_bulk,
            max_request,
            max_args: MAX_ARGS,
            max_inline: MAX_INLINE,
            max_skip: MAX_SKIP,
        }
    }

    /// Limits before AUTH: `HELLO 3 AUTH user token SETNAME name` fits,
    /// nothing much larger does.
    pub fn before_auth() -> Limits {
        Limits {
            max_bulk: 1024,
            max_request: 4096,
            max_args: 16,
            max_inline: 4096,
            max_skip: 0,
        }
    }
}

/// The codec of one connection.
#[derive(Debug)]
pub struct RespCodec {
    /// What a request may be at most; the session lowers it until the
    /// client has authenticated.
    pub limits: Limits,
    /// Replies in RESP3 (`HELLO 3`) rather than RESP2.
    pub resp3: bool,
    /// How far the headers of the partial request at the start of the
    /// buffer have been checked, so that each read checks only new bytes.
    scan: Scan,
    /// The over-limit request being dropped, if any.
    skip: Option<Skip>,
}

impl RespCodec {
    /// A RESP2 codec with these limits.
    pub fn new(max_bulk: usize, max_request: usize) -> RespCodec {
        RespCodec {
            limits: Limits::new(max_bulk, max_request),
            resp3: false,
            scan: Scan::default(),
            skip: None,
        }
    }
}

/// One command: its name and arguments, as bytes.
pub type Request = Vec<Bytes>;

/// What the decoder makes of the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A command to run.
    Command(Request),
    /// A request over the limits, read to its end and dropped: answer
    /// this error in its place, and go on.
    Dropped(String),
}

/// An over-limit request being read and dropped.
#[derive(Debug)]
struct Skip {
    /// Bytes of the current string's body (and its CRLF) still to drop.
    body_left: usize,
    /// Strings after the current one.
    args_left: usize,
    /// Bytes of the request dropped so far (bounded by `max_skip`).
    dropped: usize,
    /// The error to answer.
    why: String,
}

/// What [`RespCodec::guard`] found.
enum Guarded {
    /// The whole request is there: `len` bytes.
    Whole(usize),
    /// Not all there yet.
    Partial,
    /// A string over the limits, whose body starts at `body`: drop the
    /// request from there (its earlier bytes too) and answer `why`.
    Over {
        body: usize,
        body_len: usize,
        args_left: usize,
        why: String,
    },
}

/// Progress through the headers of a partial array: its argument count,
/// the arguments whose header and body are in the buffer, and the offset
/// just after them.
#[derive(Clone, Copy, Debug, Default)]
struct Scan {
    count: Option<usize>,
    seen: usize,
    at: usize,
}

/// The header line (`*COUNT\r\n` or `$LEN\r\n`) at `at`, without its
/// first byte, and the offset after it; `Ok(None)` while it is not all
/// there yet; `Err` once it is longer than any header.
fn header_line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let Some(window) = buf.get(at..buf.len().min(at + MAX_HEADER_LINE)) else {
        return Ok(None);
    };
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((window.get(1..end).unwrap_or(&[]), at + end + 2))),
        None if window.len() >= MAX_HEADER_LINE => Err(ProtocolError::TooLarge(
            "too big count or length line".into(),
        )),
        None => Ok(None),
    }
}

fn number(text: &[u8], what: &str) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ProtocolError::Malformed(format!("invalid {what}")))
}

impl RespCodec {
    /// Checks the headers of the (possibly partial) array at the start of
    /// `buf` against the limits, going on from where the last call
    /// stopped: `Ok(Some(len))` once the whole request (`len` bytes) is
    /// there, `Ok(None)` while it is not, `Err` for a header over the
    /// limits or not a number. Each byte is checked once, however the
    /// request is split across reads.
    fn guard(&mut self, buf: &[u8]) -> Result<Guarded, ProtocolError> {
        let limits = self.limits;
        let count = match self.scan.count {
            Some(count) => count,
            None => {
                let Some((header, next)) = header_line(buf, 0)? else {
                    return Ok(Guarded::Partial);
                };
                let count = number(header, "multibulk length")?;
                if count > limits.max_args as i64 {
                    return Err(ProtocolError::TooLarge("invalid multibulk length".into()));
                }
                let count = count.max(0) as usize;
                self.scan = Scan {
                    count: Some(count),
                    seen: 0,
                    at: next,
                };
                count
            }
        };
        while self.scan.seen < count {
            let Some((header, next)) = header_line(buf, self.scan.at)? else {
                return Ok(Guarded::Partial);
            };
            if buf[self.scan.at] != b'$' {
                return Err(ProtocolError::Malformed(format!(
                    "expected '$', got '{}'",
                    buf[self.scan.at] as char
                )));
            }
            let len = number(header, "bulk length")?;
            if len < 0 {
                return Err(ProtocolError::TooLarge("invalid bulk length".into()));
            }
            let end = (next as u64).saturating_add(len as u64 + 2);
            let over = if len as u64 > limits.max_bulk as u64 {
                Some((
                    "invalid bulk length".to_string(),
                    format!(
                        "a string of {len} bytes is over the limit of {} bytes",
                        limits.max_bulk
                    ),
                ))
            } else if end > limits.max_request as u64 {
                let said = format!("request over {} bytes", limits.max_request);
                Some((said.clone(), format!("the {said}")))
            } else {
                None
            };
            if let Some((closing, dropped)) = over {
                if end > limits.max_skip as u64 {
                    return Err(ProtocolError::TooLarge(closing));
                }
                return Ok(Guarded::Over {
                    body: next,
                    body_len: len as usize + 2,
                    args_left: count - self.scan.seen - 1,
                    why: format!("request dropped: {dropped}"),
                });
            }
            let end = end as usize;
            if end > buf.len() {
                // The body is still on its way: its header is read again
                // next time (a few bytes), the ones before it are not.
                return Ok(Guarded::Partial);
            }
            self.scan.seen += 1;
            self.scan.at = end;
        }
        Ok(Guarded::Whole(self.scan.at))
    }

    /// Drops what has arrived of the over-limit request being skipped:
    /// its error once the request's last byte is gone, `Ok(None)` while
    /// more is to come. Headers are checked as in [`RespCodec::guard`];
    /// a request that would drop more than `max_skip` closes.
    fn skip_more(&mut self, buf: &mut BytesMut) -> Result<Option<String>, ProtocolError> {
        let max_skip = self.limits.max_skip;
        let Some(skip) = self.skip.as_mut() else {
            return Ok(None);
        };
        loop {
            let n = skip.body_left.min(buf.len());
            buf.advance(n);
            skip.body_left -= n;
            skip.dropped += n;
            if skip.body_left > 0 {
                return Ok(None);
            }
            if skip.args_left == 0 {
                return Ok(self.skip.take().map(|s| s.why));
            }
            let Some((header, next)) = header_line(buf, 0)? else {
                return Ok(None);
            };
            if buf[0] != b'$' {
                return Err(ProtocolError::Malformed(format!(
                    "expected '$', got '{}'",
                    buf[0] as char
                )));
            }
            let len = number(header, "bulk length")?;
            let total = (skip.dropped + next) as u64 + len.max(0) as u64 + 2;
            if len < 0 || total > max_skip as u64 {
                return Err(ProtocolError::TooLarge("invalid bulk length".into()));
            }
            buf.advance(next);
            skip.dropped += next;
            skip.body_left = len as usize + 2;
            skip.args_left -= 1;
        }
    }
}

impl Decoder for RespCodec {
    type Item = Incoming;
    type Error = ProtocolError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            if self.skip.is_some() {
                return Ok(self.skip_more(buf)?.map(Incoming::Dropped));
            }
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                let limit = self.limits.max_inline;
                let Some(end) = buf.iter().take(limit + 1).position(|b| *b == b'\n') else {
                    if buf.len() > limit {
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
                if args.len() > self.limits.max_args {
                    return Err(ProtocolError::TooLarge("invalid multibulk length".into()));
                }
                return Ok(Some(Incoming::Command(args)));
            }
            // The decoder sees a request only once it is all there, so it
            // parses each request once.
            let len = match self.guard(buf)? {
                Guarded::Whole(len) => len,
                Guarded::Partial => return Ok(None),
                Guarded::Over {
                    body,
                    body_len,
                    args_left,
                    why,
                } => {
                    // What came before the string goes too; the rest is
                    // dropped as it arrives.
                    buf.advance(body);
                    self.scan = Scan::default();
                    self.skip = Some(Skip {
                        body_left: body_len,
                        args_left,
                        dropped: body,
                        why,
                    });
                    continue;
                }
            };
            self.scan = Scan::default();
            let decoded = redis_protocol::resp2::decode::decode_bytes_mut(buf)
                .map_err(|e| ProtocolError::Malformed(e.details().to_string()))?;
            let Some((frame, used, _)) = decoded else {
                return Err(ProtocolError::Malformed("incomplete request".into()));
            };
            debug_assert_eq!(used, len);
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
            return Ok(Some(Incoming::Command(args)));
        }
    }
}

impl Encoder<Reply> for RespCodec {
    type Error = ProtocolError;

    fn encode(&mut self, reply: Reply, out: &mut BytesMut) -> Result<(), ProtocolError> {
        encode(reply, self.resp3, out)
    }
}

/// Encodes `reply` in RESP3 (`resp3`) or RESP2. What the crate would
/// write otherwise than Redis is written here — a double in RESP3 as
/// Redis 7.0's `%.17g` (`,0.10000000000000001`, where the crate writes
/// Rust's shortest form), a nil array in RESP2 as `*-1` — with the
/// aggregates around them; everything else by the crate.
fn encode(reply: Reply, resp3: bool, out: &mut BytesMut) -> Result<(), ProtocolError> {
    let header = |out: &mut BytesMut, kind: u8, n: usize| {
        out.extend_from_slice(&[kind]);
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    match reply {
        Reply::Double(x) if resp3 => {
            out.extend_from_slice(b",");
            out.extend_from_slice(chordal_core::collection::zset::format_score(x).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Reply::NilArray if !resp3 => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(items) if items.iter().any(Reply::is_special) => {
            header(out, b'*', items.len());
            for item in items {
                encode(item, resp3, out)?;
            }
        }
        Reply::Pairs(pairs) if pairs.iter().any(|(a, b)| a.is_special() || b.is_special()) => {
            // RESP3: an array of pairs; RESP2: one flat array.
            match resp3 {
                true => header(out, b'*', pairs.len()),
                false => header(out, b'*', pairs.len() * 2),
            }
            for (a, b) in pairs {
                if resp3 {
                    header(out, b'*', 2);
                }
                encode(a, resp3, out)?;
                encode(b, resp3, out)?;
            }
        }
        Reply::Map(pairs) if pairs.iter().any(|(a, b)| a.is_special() || b.is_special()) => {
            match resp3 {
                true => header(out, b'%', pairs.len()),
                false => header(out, b'*', pairs.len() * 2),
            }
            for (a, b) in pairs {
                encode(a, resp3, out)?;
                encode(b, resp3, out)?;
            }
        }
        other if resp3 => {
            redis_protocol::resp3::encode::complete::extend_encode(out, &other.into_resp3(), false)
                .map_err(|e| ProtocolError::Malformed(e.details().to_string()))?;
        }
        other => {
            redis_protocol::resp2::encode::extend_encode(out, &other.into_resp2(), false)
                .map_err(|e| ProtocolError::Malformed(e.details().to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
