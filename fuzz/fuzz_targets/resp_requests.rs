//! Bytes from a Redis client (see `chordal_fuzzing::resp_requests`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::resp_requests(data));
