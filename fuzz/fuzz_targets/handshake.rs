//! The first bytes of a connection: the preamble (magic, version), then a
//! Hello. Garbage is refused with an error, never a panic; a Hello that is
//! accepted survives encoding and decoding again.
#![no_main]

use chordal_wire::{PREAMBLE_LEN, check_preamble, decode_hello, encode_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= PREAMBLE_LEN {
        let mut pre = [0u8; PREAMBLE_LEN];
        pre.copy_from_slice(&data[..PREAMBLE_LEN]);
        let _ = check_preamble(&pre);
    }
    if let Ok(hello) = decode_hello(data, "chordal") {
        let back = decode_hello(&encode_hello(&hello), "chordal").expect("our own Hello decodes");
        assert_eq!(back, hello);
    }
});
