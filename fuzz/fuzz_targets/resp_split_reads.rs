//! Bytes from a Redis client in many reads (see `chordal_fuzzing::resp_split_reads`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::resp_split_reads(data));
