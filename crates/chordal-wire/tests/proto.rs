//! `src/pb.rs` is written by hand after `proto/chordal.proto`: every
//! message must be the same in both (a field another implementation sends
//! under a tag we read otherwise is garbage), and the envelope's message
//! kinds above all, or a kind one side sends is dropped by the other as an
//! empty envelope.

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

/// One field as a schema declares it: `repeated`/`optional`, its type
/// (a proto type name, or prost's kind for pb.rs), name and tag.
#[derive(Clone, Debug, PartialEq)]
struct Field {
    label: &'static str,
    kind: String,
    name: String,
    tag: u32,
}

/// Every `message` of the .proto with its fields (those of a `oneof`
/// included), and the names of the enums it declares.
fn proto_messages() -> Vec<(String, Vec<Field>, Vec<String>)> {
    let proto = include_str!("../proto/chordal.proto");
    let text: String = proto
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for chunk in text.split("\nmessage ").skip(1) {
        let name = chunk.split_whitespace().next().expect("a name").to_string();
        // The body: up to the brace that closes the message.
        let open = chunk.find('{').expect("an opening brace");
        let (mut depth, mut end) = (0, open);
        for (i, c) in chunk[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = open + i;
                break;
            }
        }
        let body = &chunk[open + 1..end];
        let mut enums = Vec::new();
        let mut fields = Vec::new();
        for statement in body.split([';', '{', '}']) {
            let words: Vec<&str> = statement.split_whitespace().collect();
            match words.as_slice() {
                ["enum", e] => enums.push(e.to_string()),
                ["oneof", _] | ["reserved", ..] | [] => {}
                [label @ ("repeated" | "optional"), kind, field, "=", tag] => fields.push(Field {
                    label: if *label == "repeated" {
                        "repeated"
                    } else {
                        "optional"
                    },
                    kind: kind.to_string(),
                    name: field.to_string(),
                    tag: tag.parse().expect("a tag"),
                }),
                [kind, field, "=", tag] => fields.push(Field {
                    label: "",
                    kind: kind.to_string(),
                    name: field.to_string(),
                    tag: tag.parse().expect("a tag"),
                }),
                // An enum's values (`HOP_LIMIT = 0`).
                [_, "=", _] => {}
                other => panic!("message {name}: cannot read {other:?}"),
            }
        }
        out.push((name, fields, enums));
    }
    out
}

/// Every struct (and the `Body` oneof) of pb.rs with its fields: for a
/// oneof variant the name is the variant's and the kind its payload type.
fn pb_structs() -> Vec<(String, Vec<Field>)> {
    let src = include_str!("../src/pb.rs");
    let mut out: Vec<(String, Vec<Field>)> = Vec::new();
    let mut attr = String::new();
    let mut in_attr = false;
    for line in src.lines().map(str::trim) {
        if let Some(rest) = line
            .strip_prefix("pub struct ")
            .or_else(|| line.strip_prefix("pub enum "))
        {
            let name = rest.trim_end_matches(" {").trim_end_matches(" {}");
            out.push((name.to_string(), Vec::new()));
            continue;
        }
        if line.starts_with("#[prost(") || in_attr {
            attr.push_str(line);
            attr.push(' ');
            in_attr = !line.ends_with(")]");
            continue;
        }
        if attr.is_empty() || line.starts_with("///") {
            continue;
        }
        let inner = attr
            .trim()
            .trim_start_matches("#[prost(")
            .trim_end_matches(")]");
        let kind = inner.split([',', ' ']).next().unwrap_or("").to_string();
        let label = if inner.contains("repeated") {
            "repeated"
        } else if inner.contains("optional") && kind != "message" {
            "optional"
        } else {
            ""
        };
        let tag = inner
            .split("tag = \"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        // `pub name: Type,` in a struct; `Name(Type),` in the oneof.
        let (name, kind) = match line.strip_prefix("pub ") {
            Some(f) => (f.split(':').next().unwrap_or("").to_string(), kind),
            None => {
                let (variant, payload) = line.split_once('(').expect("a oneof variant");
                (
                    variant.to_string(),
                    payload.trim_end_matches("),").to_string(),
                )
            }
        };
        let (_, fields) = out.last_mut().expect("a field inside a struct");
        fields.push(Field {
            label,
            kind,
            name,
            tag,
        });
        attr.clear();
    }
    out
}

/// `get_neighbors` → `GetNeighbors`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

/// Does pb.rs's prost kind carry what the .proto's type says? Scalars
/// must be the same encoding; a `string` may be kept as `bytes` (the same
/// bytes on the wire, checked as UTF-8 where it is decoded); an enum is
/// an `int32`; anything else is a message.
fn same_encoding(proto: &str, pb: &str, enums: &[String]) -> bool {
    const SCALARS: &[&str] = &[
        "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
        "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
    ];
    if enums.iter().any(|e| e == proto) {
        return pb == "int32" || pb == "enumeration";
    }
    if SCALARS.contains(&proto) {
        return pb == proto || (proto == "string" && pb == "bytes");
    }
    pb == "message"
}

#[test]
fn every_message_of_the_proto_is_pb_rs_field_by_field() {
    let proto = proto_messages();
    let pb = pb_structs();
    assert!(
        proto.len() > 40 && pb.len() > 40,
        "parsed {} and {}",
        proto.len(),
        pb.len()
    );
    let find = |name: &str| pb.iter().find(|(n, _)| n == name).map(|(_, f)| f);
    let body = find("Body").expect("the Body oneof");
    let (_, envelope, _) = proto.iter().find(|(n, ..)| n == "Envelope").unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for (name, fields, enums) in &proto {
        // A message pb.rs has under another name (`Ping` is a `Req`) is
        // the payload of its oneof variant.
        let pb_name = match find(name) {
            Some(_) => name.clone(),
            None => {
                let member = envelope
                    .iter()
                    .find(|f| f.kind == *name)
                    .unwrap_or_else(|| panic!("message {name} is not in pb.rs"));
                let variant = body
                    .iter()
                    .find(|v| v.tag == member.tag)
                    .unwrap_or_else(|| panic!("no oneof variant of tag {}", member.tag));
                variant.kind.clone()
            }
        };
        let pb_fields = find(&pb_name).unwrap();
        checked.insert(pb_name.clone());
        for f in fields {
            let oneof = name == "Envelope" && f.tag >= 10;
            let got = if oneof {
                body.iter().find(|v| v.tag == f.tag)
            } else {
                pb_fields.iter().find(|p| p.tag == f.tag)
            };
            let got =
                got.unwrap_or_else(|| panic!("{name}.{} = {} is not in pb.rs", f.name, f.tag));
            if oneof {
                assert_eq!(got.name, camel(&f.name), "{name}'s oneof tag {}", f.tag);
                continue;
            }
            assert_eq!(
                got.name, f.name,
                "{name} field {} is named otherwise in pb.rs",
                f.tag
            );
            assert_eq!(
                got.label, f.label,
                "{name}.{}: repeated or optional",
                f.name
            );
            assert!(
                same_encoding(&f.kind, &got.kind, enums),
                "{name}.{}: `{}` in the .proto, `{}` in pb.rs",
                f.name,
                f.kind,
                got.kind
            );
        }
        let mut extra: Vec<&Field> = pb_fields
            .iter()
            .filter(|p| p.kind != "oneof" && !fields.iter().any(|f| f.tag == p.tag))
            .collect();
        extra.retain(|p| !(name == "Envelope" && p.name == "body"));
        assert!(
            extra.is_empty(),
            "{pb_name} has fields the .proto's {name} lacks: {extra:?}"
        );
    }
    for (name, _) in &pb {
        assert!(
            name == "Body" || checked.contains(name),
            "pb.rs's {name} is no message of the .proto"
        );
    }
}
