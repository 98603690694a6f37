//! The store's on-disk record form: any key and value bytes either decode
//! to a record whose encoding gives those very bytes back, or are refused.
#![no_main]

use chordal_store::codec::{decode, decode_header, decode_version, encode_value, table_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = (split as usize).min(rest.len());
    let (k, v) = rest.split_at(split);
    let _ = decode_version(v);
    let header = decode_header(v);
    if let Some(r) = decode(k, v) {
        assert_eq!(table_key(&r.key_id, &r.key), k, "the key encodes back");
        assert_eq!(encode_value(&r), v, "the value encodes back");
        assert_eq!(header, Some((r.version, r.value.is_none())));
    }
});
