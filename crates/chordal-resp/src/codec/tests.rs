use super::*;

fn decode_all(input: &[u8]) -> Result<Vec<Request>, ProtocolError> {
    let mut out = Vec::new();
    for incoming in decode_incoming(input, input.len().max(1))? {
        match incoming {
            Incoming::Command(r) => out.push(r),
            Incoming::Dropped(why) => panic!("dropped: {why}"),
        }
    }
    Ok(out)
}

/// What `input` decodes to when it arrives in reads of `read` bytes
/// (limits: strings of 1,024 bytes, requests of 4,096).
fn decode_incoming(input: &[u8], read: usize) -> Result<Vec<Incoming>, ProtocolError> {
    let mut codec = RespCodec::new(1024, 4096);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(read) {
        buf.extend_from_slice(piece);
        while let Some(r) = codec.decode(&mut buf)? {
            out.push(r);
        }
        // Nothing of a dropped request stays buffered.
        assert!(buf.len() <= 4096 + MAX_HEADER_LINE + read, "{}", buf.len());
    }
    Ok(out)
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

#[test]
fn a_request_a_little_over_the_limits_is_dropped_and_answered_in_its_place() {
    // SET of a string just over the limit, then one over the request
    // limit (five strings within it), then a PING: two errors in
    // place, the PING answered, in any split of the reads.
    let mut input = b"*3\r\n".to_vec();
    bulk(&mut input, b"SET");
    bulk(&mut input, b"k");
    bulk(&mut input, &[b'v'; 1025]);
    input.extend_from_slice(b"*6\r\n");
    bulk(&mut input, b"MSET");
    for _ in 0..5 {
        bulk(&mut input, &[b'x'; 1000]);
    }
    input.extend_from_slice(b"*1\r\n");
    bulk(&mut input, b"PING");
    for read in [1, 7, 100, 1031, input.len()] {
        let got = decode_incoming(&input, read).unwrap();
        assert_eq!(got.len(), 3, "reads of {read}: {got:?}");
        let Incoming::Dropped(why) = &got[0] else {
            panic!("{:?}", got[0])
        };
        assert_eq!(
            why,
            "request dropped: a string of 1025 bytes is over the limit of 1024 bytes"
        );
        let Incoming::Dropped(why) = &got[1] else {
            panic!("{:?}", got[1])
        };
        assert_eq!(why, "request dropped: the request over 4096 bytes");
        assert_eq!(got[2], Incoming::Command(vec![Bytes::from_static(b"PING")]));
    }
    // Over what may be dropped: closed, as before authentication.
    let mut huge = b"*2\r\n".to_vec();
    huge.extend_from_slice(format!("$1\r\nx\r\n${}\r\n", MAX_SKIP).as_bytes());
    let err = decode_incoming(&huge, huge.len()).unwrap_err();
    assert!(err.to_string().contains("invalid bulk length"), "{err}");
    // Many strings, each under the bound, adding up past it: closed
    // once the total would pass it.
    let mut many = b"*100\r\n".to_vec();
    many.extend_from_slice(format!("${}\r\n", 2048).as_bytes());
    many.extend_from_slice(&[b'y'; 2050]);
    for _ in 0..99 {
        many.extend_from_slice(format!("${}\r\n", MAX_SKIP / 64).as_bytes());
        many.extend_from_slice(&vec![b'y'; MAX_SKIP / 64 + 2]);
    }
    let err = decode_incoming(&many, 1 << 20).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLarge(_)), "{err}");
}

fn words(r: &Request) -> Vec<&[u8]> {
    r.iter().map(|b| b.as_ref()).collect()
}

#[test]
fn multibulk_and_inline_requests_decode_in_order() {
    let got =
        decode_all(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n  set  a b\n*1\r\n$4\r\nPI").unwrap();
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
fn a_header_line_that_never_ends_is_refused_within_its_length() {
    for start in [&b"*"[..], b"*1\r\n$"] {
        let mut codec = RespCodec::new(1024, 4096);
        let mut buf = BytesMut::from(start);
        let mut err = None;
        for _ in 0..100 {
            buf.extend_from_slice(b"0000000000");
            match codec.decode(&mut buf) {
                Ok(None) => {}
                Ok(Some(r)) => panic!("decoded {r:?}"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("refused");
        assert!(matches!(err, ProtocolError::TooLarge(_)), "{err}");
        assert!(
            buf.len() <= start.len() + MAX_HEADER_LINE + 10,
            "{}",
            buf.len()
        );
    }
}

#[test]
fn before_auth_a_request_is_a_few_kib_headers_included() {
    let mut codec = RespCodec::new(1 << 20, 1 << 22);
    codec.limits = Limits::before_auth();
    let ok = b"*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n";
    assert!(
        codec
            .decode(&mut BytesMut::from(&ok[..]))
            .unwrap()
            .is_none()
    );
    let mut codec = RespCodec::new(1 << 20, 1 << 22);
    codec.limits = Limits::before_auth();
    let mut big = BytesMut::from(&b"*1\r\n$2000\r\n"[..]);
    assert!(matches!(
        codec.decode(&mut big),
        Err(ProtocolError::TooLarge(_))
    ));
    // Many empty strings: small bodies, but every header counts (once
    // authenticated, such a request is dropped and answered).
    let mut codec = RespCodec::new(1 << 20, 4096);
    let mut many = BytesMut::from(&b"*1000\r\n"[..]);
    for _ in 0..1000 {
        many.extend_from_slice(b"$0\r\n\r\n");
    }
    assert!(matches!(
        codec.decode(&mut many),
        Ok(Some(Incoming::Dropped(_)))
    ));
    assert!(many.is_empty());
    let mut codec = RespCodec::new(1 << 20, 1 << 22);
    codec.limits = Limits::before_auth();
    let mut long_inline = BytesMut::from(&vec![b'a'; 5000][..]);
    assert!(matches!(
        codec.decode(&mut long_inline),
        Err(ProtocolError::TooLarge(_))
    ));
}

#[test]
fn requests_split_at_every_byte_decode_as_whole_ones() {
    let input: &[u8] = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello\r\nworld\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
    let whole = decode_incoming(input, input.len()).unwrap();
    assert_eq!(whole.len(), 3);
    for chunk in 1..input.len() {
        let got = decode_incoming(input, chunk).unwrap();
        assert_eq!(got, whole, "split every {chunk} bytes");
    }
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

#[test]
fn doubles_and_nil_arrays_are_written_as_redis_7_0_writes_them() {
    let mut codec = RespCodec::new(1024, 4096);
    codec.resp3 = true;
    let mut out = BytesMut::new();
    let member = Reply::Bulk(Bytes::from_static(b"a"));
    let reply = Reply::Array(vec![Reply::Pairs(vec![(member, Reply::Double(0.1))])]);
    codec.encode(reply, &mut out).unwrap();
    assert_eq!(
        &out[..],
        b"*1\r\n*1\r\n*2\r\n$1\r\na\r\n,0.10000000000000001\r\n"
    );
    out.clear();
    codec
        .encode(Reply::Double(f64::NEG_INFINITY), &mut out)
        .unwrap();
    assert_eq!(&out[..], b",-inf\r\n");
    // RESP2: a double is its text; a nil array `*-1`, `_` in RESP3.
    codec.resp3 = false;
    out.clear();
    let reply = Reply::Array(vec![Reply::Double(0.5), Reply::NilArray]);
    codec.encode(reply.clone(), &mut out).unwrap();
    assert_eq!(&out[..], b"*2\r\n$3\r\n0.5\r\n*-1\r\n");
    codec.resp3 = true;
    out.clear();
    codec.encode(reply, &mut out).unwrap();
    assert_eq!(&out[..], b"*2\r\n,0.5\r\n_\r\n");
}
