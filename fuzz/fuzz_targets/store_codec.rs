//! The store's record encoding (see `chordal_fuzzing::store_codec`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::store_codec(data));
