//! The byte-level targets: frames, the handshake, the store codec and the
//! HTTP-side text inputs.

use bytes::BytesMut;
use std::net::SocketAddr;
use tokio_util::codec::Decoder;

/// Bytes from a peer after the handshake: length-prefixed frames, each a
/// protobuf envelope converted to a core message. Nothing may panic or
/// allocate past the frame limit, and a frame that decodes must survive
/// encoding and decoding again unchanged.
pub fn frames(data: &[u8]) {
    let local: SocketAddr = "127.0.0.1:7000".parse().expect("an address");
    // A small limit keeps oversize headers cheap to hit.
    let mut codec = chordal_wire::frame_codec(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let Ok(env) = chordal_wire::decode_envelope(frame.freeze(), local) else {
            continue;
        };
        let again = chordal_wire::encode_envelope(&env);
        let back =
            chordal_wire::decode_envelope(again.into(), local).expect("our own encoding decodes");
        assert_eq!(back, env, "a decoded envelope survives a round trip");
    }
}

/// The first bytes of a connection: the preamble (magic, version), then a
/// Hello. Garbage is refused with an error, never a panic; a Hello that is
/// accepted survives encoding and decoding again.
pub fn handshake(data: &[u8]) {
    use chordal_wire::{PREAMBLE_LEN, check_preamble, decode_hello, encode_hello};
    if data.len() >= PREAMBLE_LEN {
        let mut pre = [0u8; PREAMBLE_LEN];
        pre.copy_from_slice(&data[..PREAMBLE_LEN]);
        let _ = std::hint::black_box(check_preamble(&pre));
    }
    if let Ok(hello) = decode_hello(data, "chordal") {
        let back = decode_hello(&encode_hello(&hello), "chordal").expect("our own Hello decodes");
        assert_eq!(back, hello);
    }
}

/// The store's on-disk record form: any key and value bytes either decode
/// to a record whose encoding gives those very bytes back, or are refused.
/// The first byte splits the rest into key and value.
pub fn store_codec(data: &[u8]) {
    use chordal_store::codec::{decode, decode_header, decode_version, encode_value, table_key};
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = (split as usize).min(rest.len());
    let (k, v) = rest.split_at(split);
    let _ = std::hint::black_box(decode_version(v));
    let header = decode_header(v);
    if let Some(r) = decode(k, v) {
        assert_eq!(table_key(&r.key_id, &r.key), k, "the key encodes back");
        assert_eq!(encode_value(&r), v, "the value encodes back");
        let h = header.expect("a record has a header");
        assert_eq!((h.version, h.tombstone), (r.version, r.value.is_none()));
        assert_eq!(h.expires, r.expires);
    }
}

/// Text that reaches the HTTP side from outside: a tokens file, a
/// gateway's client-key setting and the headers it reads.
pub fn http_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tokens) = chordal_http::Tokens::parse(text) {
        // Every token the parser kept is found again with its line's role.
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(token) = line.split_whitespace().next() {
                assert!(tokens.role_of(token.as_bytes()).is_some(), "{token:?} lost");
            }
        }
    }
    if let Ok(key) = text.parse::<chordal_gateway::ClientKey>() {
        let _ = std::hint::black_box(key.describe());
        let req = request_carrying(text);
        let _ = std::hint::black_box(key.extract(&req));
    }
}

/// A request carrying `text` in a header and a cookie.
fn request_carrying(text: &str) -> http::Request<()> {
    let mut b = http::Request::builder().uri("/x");
    if let Ok(v) = http::HeaderValue::from_str(text) {
        b = b.header("x-client-id", v.clone()).header("cookie", v);
    }
    b.body(()).expect("a valid request")
}

/// Bytes from a Redis client: requests decoded by the RESP codec (multibulk
/// and inline) never panic, never yield an empty command or an argument
/// over the string limit, and stop at an error, with the buffer never
/// growing past the request limit before one.
pub fn resp_requests(data: &[u8]) {
    use chordal_resp::codec::{Incoming, RespCodec};
    let (max_bulk, max_request) = (512, 4096);
    let mut codec = RespCodec::new(max_bulk, max_request);
    // In two pieces, as a socket may deliver them.
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let mut buf = BytesMut::new();
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Incoming::Command(args))) => {
                    assert!(!args.is_empty(), "an empty command");
                    assert!(args.iter().all(|a| a.len() <= max_bulk.max(64 * 1024)));
                }
                // Over the limits, dropped whole: nothing of it buffered.
                Ok(Some(Incoming::Dropped(_))) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Bytes from a Redis client, delivered in many reads of sizes the input
/// chooses (its first byte seeds them): the commands decoded, and whether
/// and where decoding stopped with an error, are those of the same bytes
/// in one read; and the buffer never holds more than one request's limit
/// (plus a header line and a read) while nothing has been decoded.
pub fn resp_split_reads(data: &[u8]) {
    use chordal_resp::codec::{Limits, MAX_HEADER_LINE, RespCodec};
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let limits = if seed & 1 == 0 {
        Limits::new(512, 4096)
    } else {
        Limits::before_auth()
    };
    let codec = || {
        let mut c = RespCodec::new(0, 0);
        c.limits = limits;
        c
    };
    let decode = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(args)) => got.push(args),
                    Ok(None) => break,
                    Err(_) => return (got, true),
                }
            }
            let bound = limits.max_request.max(limits.max_inline) + MAX_HEADER_LINE + piece.len();
            assert!(buf.len() <= bound, "{} buffered, over {bound}", buf.len());
        }
        (got, false)
    };
    let whole = decode(&mut std::iter::once(input));
    // Piece sizes 1..=16 from a small generator seeded by the first byte.
    let mut state = u32::from(seed) | 1;
    let mut rest = input;
    let mut pieces = std::iter::from_fn(|| {
        if rest.is_empty() {
            return None;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 16 + 1).min(rest.len());
        let (piece, after) = rest.split_at(n);
        rest = after;
        Some(piece)
    });
    let split = decode(&mut pieces);
    assert_eq!(split, whole, "split reads decode differently");
}

/// Bytes from a VoidPhone module: headers and bodies are refused or give
/// a request that encodes back to the very bytes it came from.
pub fn dht_messages(data: &[u8]) {
    use chordal_dhtapi::message::{HEADER_LEN, encode, header, request};
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let head: [u8; HEADER_LEN] = rest[..HEADER_LEN].try_into().expect("four bytes");
        let Ok((size, kind)) = header(head) else {
            return;
        };
        let Some(whole) = rest.get(..size as usize) else {
            return;
        };
        let Ok(req) = request(kind, &whole[HEADER_LEN..]) else {
            return;
        };
        let mut again = encode(&req);
        // The reserved byte of a PUT is not kept: compare without it.
        if kind == chordal_dhtapi::message::DHT_PUT {
            again[7] = whole[7];
        }
        assert_eq!(again, whole, "a request encodes back to its bytes");
        rest = &rest[size as usize..];
    }
}
