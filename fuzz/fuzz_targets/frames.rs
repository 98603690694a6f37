//! Bytes from a peer after the handshake (see `chordal_fuzzing::frames`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::frames(data));
