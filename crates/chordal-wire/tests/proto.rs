//! `src/pb.rs` is written by hand after `proto/chordal.proto`: the
//! envelope's message kinds must be the same in both, or a kind one side
//! sends is dropped by the other as an empty envelope.

use chordal_wire::pb;
use prost::Message;

/// The field numbers of `oneof body` in the .proto's `message Envelope`.
fn proto_body_tags() -> Vec<u32> {
    let proto = include_str!("../proto/chordal.proto");
    let envelope = proto
        .split("message Envelope {")
        .nth(1)
        .expect("message Envelope in the .proto");
    let body = envelope
        .split("oneof body {")
        .nth(1)
        .expect("oneof body in Envelope")
        .split('}')
        .next()
        .expect("the oneof's end");
    body.lines()
        .filter_map(|l| {
            let l = l.split("//").next()?.trim();
            let n = l.strip_suffix(';')?.rsplit('=').next()?.trim();
            n.parse().ok()
        })
        .collect()
}

/// The tags pb.rs's `Envelope` lists for its oneof.
fn pb_body_tags() -> Vec<u32> {
    let src = include_str!("../src/pb.rs");
    let attr = src
        .split("oneof = \"Body\",")
        .nth(1)
        .expect("the Body oneof in pb.rs");
    let tags = attr
        .split("tags = \"")
        .nth(1)
        .expect("its tags")
        .split('"')
        .next()
        .expect("the tags' end");
    tags.split(',')
        .map(|t| t.trim().parse().expect("a tag"))
        .collect()
}

#[test]
fn the_envelope_kinds_of_the_proto_and_of_pb_rs_are_the_same() {
    let proto = proto_body_tags();
    assert!(proto.len() > 30, "parsed only {proto:?}");
    let mut listed = pb_body_tags();
    listed.sort_unstable();
    let mut want = proto.clone();
    want.sort_unstable();
    assert_eq!(listed, want, "pb.rs's oneof tags against the .proto's");
    // And the decoder knows each: an envelope holding only that kind
    // (an empty message) decodes with a body.
    for tag in proto {
        // Field `tag`, length-delimited, then a length of 0.
        let mut frame = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut frame);
        frame.push(0);
        let env = pb::Envelope::decode(frame.as_slice()).expect("decodes");
        assert!(env.body.is_some(), "kind {tag} decodes to no body");
    }
}
