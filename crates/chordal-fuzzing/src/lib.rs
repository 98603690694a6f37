//! # chordal-fuzzing: the fuzz targets' entry points
//!
//! Each function takes the bytes a fuzzer (or a corpus file) gives and
//! feeds them to code that reads what arrives from outside, asserting
//! more than "no panic" where it can: a round trip, or agreement with a
//! model. `fuzz/` (cargo-fuzz, its own workspace) wraps each in a
//! `fuzz_target!`; `tests/corpora.rs` here feeds every committed corpus
//! file in `fuzz/corpus/TARGET/` to the same function, so a regression
//! fails `cargo test` without fuzzing. See docs/fuzzing.md.

#![warn(missing_docs)]

mod store_model;
mod targets;

pub use store_model::store_model;
pub use targets::{
    dht_messages, frames, handshake, http_input, resp_requests, resp_split_reads, store_codec,
};

/// A target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames),
    ("handshake", handshake),
    ("store_codec", store_codec),
    ("http_input", http_input),
    ("store_model", store_model),
    ("resp_requests", resp_requests),
    ("resp_split_reads", resp_split_reads),
    ("dht_messages", dht_messages),
];
