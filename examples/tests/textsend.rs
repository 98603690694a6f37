//! textsend delivers every line to the node owning the line's hash.

use chordal_node::{Id, Oracle};
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn every_line_is_printed_once_by_its_owner() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_textsend"))
        .arg("5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input: Vec<String> = (0..30).map(|i| format!("line number {i}")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<Id> = out
        .lines()
        .filter_map(|l| l.strip_prefix("node "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{out}");
    let oracle = Oracle::new(ids);
    // Nodes print concurrently, so lines from different nodes may come in
    // any order; each must come once, from its owner.
    let got: std::collections::HashMap<&str, &str> = out
        .lines()
        .filter_map(|l| l.split_once(" got: "))
        .map(|(owner, line)| (line, owner))
        .collect();
    assert_eq!(got.len(), input.len(), "{out}");
    assert_eq!(out.matches(" got: ").count(), input.len(), "{out}");
    for line in &input {
        let want = oracle.successor(&Id::of_key(line.as_bytes()));
        assert_eq!(got[line.as_str()].parse::<Id>().unwrap(), want, "{line}");
    }
}
