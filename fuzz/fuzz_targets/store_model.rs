//! redb against a `BTreeMap` model (see `chordal_fuzzing::store_model`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chordal_fuzzing::store_model(data));
