//! Bytes from a peer after the handshake: length-prefixed frames, each a
//! protobuf envelope converted to a core message. Nothing may panic or
//! allocate past the frame limit, and a frame that decodes must survive
//! encoding and decoding again unchanged.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let local: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    // A small limit keeps oversize headers cheap to hit.
    let mut codec = chordal_wire::frame_codec(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        let Ok(env) = chordal_wire::decode_envelope(&frame, local) else {
            continue;
        };
        let again = chordal_wire::encode_envelope(&env);
        let back = chordal_wire::decode_envelope(&again, local).expect("our own encoding decodes");
        assert_eq!(back, env, "a decoded envelope survives a round trip");
    }
});
