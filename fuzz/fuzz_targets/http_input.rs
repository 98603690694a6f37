//! Tokens files and client-key settings (see `chordal_fuzzing::http_input`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::http_input(data));
