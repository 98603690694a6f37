//! Helpers for the tests of TLS rings in one process over loopback: a
//! PKI, a ring of members, raw TLS connections that speak as a member
//! would (or as an impostor does), error counters.

#![allow(dead_code)]

use chordal_core::Id;
use chordal_node::Node;
use chordal_node::local::{LocalRing, quick};
use chordal_tls::{Role, TlsFiles};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Pki {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        chordal_tls::init(&root.join("ca")).unwrap();
        chordal_tls::init(&root.join("other-ca")).unwrap();
        Pki { _dir: dir, root }
    }

    /// Issues a certificate of `ca` into a fresh directory.
    pub fn issue(&self, ca: &str, name: &str, role: Role) -> (PathBuf, Id) {
        let out = self.root.join(name);
        let issued = chordal_tls::issue(&self.root.join(ca), &out, role, &[]).unwrap();
        (out, issued.id)
    }
}

pub fn ring_builder(dir: &Path) -> chordal_node::NodeBuilder {
    quick().tls_dir(dir).join_timeout(Duration::from_secs(3))
}

pub async fn tls_ring(pki: &Pki, n: usize) -> (LocalRing, Vec<Id>) {
    tls_ring_with(pki, n, |b, _| b).await
}

/// [`tls_ring`] with each member's builder changed by `more` (given its
/// index) before it starts.
pub async fn tls_ring_with(
    pki: &Pki,
    n: usize,
    more: impl Fn(chordal_node::NodeBuilder, usize) -> chordal_node::NodeBuilder,
) -> (LocalRing, Vec<Id>) {
    let certs: Vec<(PathBuf, Id)> = (0..n)
        .map(|i| pki.issue("ca", &format!("member-{i}"), Role::Member))
        .collect();
    let ring = LocalRing::start_each(n, |i| more(ring_builder(&certs[i].0), i))
        .await
        .unwrap();
    ring.wait_for(
        chordal_node::local::Check::SuccessorLists,
        Duration::from_millis(20),
        Duration::from_secs(20),
    )
    .await
    .expect("the TLS ring settles");
    (ring, certs.into_iter().map(|(_, id)| id).collect())
}

pub fn metric(text: &str, kind: &str) -> u64 {
    let needle = format!("chordal_errors_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

pub async fn errors(node: &Node, kind: &str) -> u64 {
    metric(&node.metrics().await.unwrap(), kind)
}

/// Waits until `node` counted at least one `kind` error.
pub async fn counted(node: &Node, kind: &str) -> u64 {
    for _ in 0..200 {
        let n = errors(node, kind).await;
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {kind} error was counted");
}

/// Opens a TLS connection to `node`'s peer port with the certificate in
/// `dir` and exchanges `hello`; returns the stream once the node answered
/// with its own Hello.
pub async fn raw_tls(
    node: &Node,
    dir: &Path,
    hello: chordal_wire::Hello,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let files = TlsFiles::load(dir).unwrap();
    let connector = tokio_rustls::TlsConnector::from(files.client_config().unwrap());
    let tcp = TcpStream::connect(node.addr()).await.unwrap();
    let mut tls = connector
        .connect(chordal_tls::peer_name(), tcp)
        .await
        .unwrap();
    let body = chordal_wire::encode_hello(&hello);
    let mut out = chordal_wire::preamble().to_vec();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// A Hello presenting a ring member with `ids`.
pub fn member_hello(ids: Vec<Id>) -> chordal_wire::Hello {
    chordal_wire::Hello {
        cluster: "chordal".into(),
        addr: Some("127.0.0.1:9".parse().unwrap()),
        api: None,
        ids,
        service: None,
        resp: None,
    }
}

/// Reads until the node closes the connection (or 5 s pass: then panics).
pub async fn closed_by_node<S: tokio::io::AsyncRead + Unpin>(mut s: S) {
    let mut buf = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("the node closes the connection");
}
