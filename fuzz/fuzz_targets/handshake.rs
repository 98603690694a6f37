//! The preamble and Hello (see `chordal_fuzzing::handshake`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::handshake(data));
