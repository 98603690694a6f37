//! Bytes from a VoidPhone module (see `chordal_fuzzing::dht_messages`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::dht_messages(data));
