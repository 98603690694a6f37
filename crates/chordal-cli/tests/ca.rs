//! `chordal ca init` / `chordal ca issue` as a user runs them: what they
//! print, what they write, and how they refuse.

mod common;

use common::BIN;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn chordal(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn a_ca_issues_member_and_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let ca = ca.to_str().unwrap();
    let init = chordal(&["ca", "init", "--dir", ca]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    for (role, out) in [("member", "n1"), ("client", "c1")] {
        let out = tmp.path().join(out);
        let issued = chordal(&[
            "ca",
            "issue",
            "--dir",
            ca,
            "--out",
            out.to_str().unwrap(),
            "--role",
            role,
            "--san",
            "127.0.0.1",
        ]);
        assert!(
            issued.status.success(),
            "{}",
            String::from_utf8_lossy(&issued.stderr)
        );
        let line: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
        assert_eq!(line["role"], role);
        // The id printed is the one the certificate gives.
        let cert = std::fs::read(out.join("node.crt")).unwrap();
        let der = chordal_tls::pem_to_der(&cert).unwrap();
        assert_eq!(line["id"], chordal_tls::node_id(&der).unwrap().to_hex());
        let key_mode = std::fs::metadata(out.join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        // The private key is never printed.
        let printed = String::from_utf8_lossy(&issued.stdout);
        assert!(!printed.contains("PRIVATE KEY"));
    }
}

#[test]
fn refusals_are_clear_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    let ca = ca.to_str().unwrap();
    assert!(chordal(&["ca", "init", "--dir", ca]).status.success());
    let again = chordal(&["ca", "init", "--dir", ca]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    let out = tmp.path().join("x");
    let bad_role = chordal(&[
        "ca",
        "issue",
        "--dir",
        ca,
        "--out",
        out.to_str().unwrap(),
        "--role",
        "admin",
    ]);
    assert_eq!(bad_role.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("member or client"));
    assert!(!out.exists());
}
