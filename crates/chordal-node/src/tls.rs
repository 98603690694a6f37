//! Mutual TLS on the peer protocol (`--tls-dir`): the TLS layer under the
//! preamble and Hello, and the checks that bind a connection to the
//! identity its certificate gives.
//!
//! Order on every connection: TCP, then the TLS handshake (both sides
//! present a certificate of the cluster CA: foreign, expired or missing
//! certificates fail here), then the preamble and Hello inside TLS, then
//! [`admit`]: the Hello must say what the certificate allows — a member's
//! ids are exactly [`vnode_ids_from`](chordal_core::Node::vnode_ids_from)
//! its certificate's id, and a client certificate may not present itself
//! as a ring member. Plain TCP (no `--tls-dir`) skips the first and last
//! steps.

use chordal_tls::{PeerIdentity, Role, TlsError, TlsFiles};
use chordal_wire::Hello;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Most virtual nodes a member may host under TLS: each vnode is a share
/// of the key space, so a member that could claim any number could take
/// most of a small ring.
pub const MAX_TLS_VNODES: usize = 64;

/// A node's or a client's TLS material, ready to accept and dial.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    identity: PeerIdentity,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Loads `dir/ca.crt`, `dir/node.crt` and `dir/node.key` (as written by
    /// `chordal ca issue`).
    pub fn load(dir: &Path) -> Result<PeerTls, TlsError> {
        let files = TlsFiles::load(dir)?;
        // A client certificate cannot serve TLS: its acceptor is never used
        // (clients do not listen), but building one with it is harmless.
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(files.server_config()?),
            connector: TlsConnector::from(files.client_config()?),
            identity: files.identity(),
        })
    }

    /// Our own id and role, from our certificate.
    pub fn identity(&self) -> PeerIdentity {
        self.identity
    }
}

/// The node's TLS material, replaceable while it runs: a renewed
/// certificate (`chordal ca issue --renew`) is used for new connections
/// without a restart. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct TlsSlot(Arc<RwLock<Arc<PeerTls>>>);

impl TlsSlot {
    pub fn new(tls: PeerTls) -> TlsSlot {
        TlsSlot(Arc::new(RwLock::new(Arc::new(tls))))
    }

    /// The material to handshake with now.
    pub fn current(&self) -> Arc<PeerTls> {
        self.0.read().expect("tls lock").clone()
    }

    /// Watches `dir/node.crt` every `every` until `stop`: when it changes,
    /// loads the directory again and uses it if it gives the same id and
    /// role (else warns and keeps the old: a new id would move the node on
    /// the ring, which takes a restart).
    pub async fn watch(self, dir: PathBuf, every: Duration, stop: CancellationToken) {
        let cert = dir.join(chordal_tls::NODE_CERT);
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut seen = modified(&cert);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = modified(&cert);
            if now == seen {
                continue;
            }
            seen = now;
            let old = self.current().identity();
            match PeerTls::load(&dir) {
                Ok(new) if new.identity().id == old.id && new.identity().role == old.role => {
                    info!(dir = %dir.display(), "renewed certificate loaded");
                    *self.0.write().expect("tls lock") = Arc::new(new);
                }
                Ok(new) => warn!(
                    dir = %dir.display(),
                    id = %new.identity().id,
                    "the new certificate gives another id or role; restart the node to use it"
                ),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot load the renewed certificate")
                }
            }
        }
    }
}

/// Read and write halves of a peer connection's byte stream.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A peer connection's byte stream, plain or TLS, before it is split.
pub(crate) enum PeerStream {
    /// Plain TCP: the driver writes to the socket directly.
    Plain(TcpStream),
    /// TLS over TCP; `identity` is what the peer's certificate gives.
    Tls {
        stream: Box<tokio_rustls::TlsStream<TcpStream>>,
        identity: PeerIdentity,
    },
}

/// A TLS stream's write half: written by the connection's writer task.
pub(crate) type TlsWriter = tokio::io::WriteHalf<tokio_rustls::TlsStream<TcpStream>>;

/// How a stream splits: the reader, and where writes go.
pub(crate) enum Halves {
    Plain(Reader, tokio::net::tcp::OwnedWriteHalf),
    Tls(Reader, TlsWriter),
}

impl PeerStream {
    /// The TLS handshake of an outbound connection (`tls`), or the plain
    /// stream as it is.
    pub async fn dial(tcp: TcpStream, tls: Option<&PeerTls>) -> std::io::Result<PeerStream> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(PeerStream::Plain(tcp));
        };
        let stream = tls.connector.connect(chordal_tls::peer_name(), tcp).await?;
        let identity = identity_of(stream.get_ref().1.peer_certificates())?;
        Ok(PeerStream::Tls {
            stream: Box::new(stream.into()),
            identity,
        })
    }

    /// The TLS handshake of an inbound connection (`tls`), or the plain
    /// stream as it is.
    pub async fn accept(tcp: TcpStream, tls: Option<&PeerTls>) -> std::io::Result<PeerStream> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(PeerStream::Plain(tcp));
        };
        let stream = tls.acceptor.accept(tcp).await?;
        let identity = identity_of(stream.get_ref().1.peer_certificates())?;
        Ok(PeerStream::Tls {
            stream: Box::new(stream.into()),
            identity,
        })
    }

    /// Who the peer's certificate says it is (`None` on plain TCP).
    pub fn identity(&self) -> Option<PeerIdentity> {
        match self {
            PeerStream::Plain(_) => None,
            PeerStream::Tls { identity, .. } => Some(*identity),
        }
    }

    /// Our end's address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            PeerStream::Plain(s) => s.local_addr(),
            PeerStream::Tls { stream, .. } => stream.get_ref().0.local_addr(),
        }
    }

    /// Splits into a reader and a writer.
    pub fn split(self) -> Halves {
        match self {
            PeerStream::Plain(s) => {
                let (r, w) = s.into_split();
                Halves::Plain(Box::new(r), w)
            }
            PeerStream::Tls { stream, .. } => {
                let (r, w) = tokio::io::split(*stream);
                Halves::Tls(Box::new(r), w)
            }
        }
    }
}

/// The verified peer's identity; an expired certificate is refused even
/// if the TLS layer let it through (resumption is off, but this does not
/// depend on it).
fn identity_of(
    certs: Option<&[rustls_pki_types::CertificateDer<'_>]>,
) -> std::io::Result<PeerIdentity> {
    let identity = chordal_tls::peer_identity(certs).map_err(std::io::Error::other)?;
    if identity.expires <= std::time::SystemTime::now() {
        return Err(std::io::Error::other("the peer's certificate has expired"));
    }
    Ok(identity)
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls { stream, .. } => {
                std::pin::Pin::new(stream.as_mut()).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls { stream, .. } => {
                std::pin::Pin::new(stream.as_mut()).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            PeerStream::Tls { stream, .. } => std::pin::Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls { stream, .. } => std::pin::Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a verified connection may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// A ring member. Under TLS, `ids` are the only vnode ids its
    /// envelopes may come from (`None` on plain TCP: nothing binds them).
    Member { ids: Option<Vec<chordal_core::Id>> },
    /// Not a ring member: only what [`Message::client_may_send`]
    /// allows.
    ///
    /// [`Message::client_may_send`]: chordal_core::Message::client_may_send
    Client,
}

impl Standing {
    /// May a peer of this standing send `env`? A client only what
    /// [`Message::client_may_send`](chordal_core::Message::client_may_send)
    /// allows; a member under TLS only from the vnodes its certificate
    /// gives.
    pub fn may_send(&self, env: &chordal_core::Envelope) -> bool {
        match self {
            Standing::Client => env.client_may_send(),
            Standing::Member { ids: None } => true,
            Standing::Member { ids: Some(ids) } => ids.contains(&env.from.id),
        }
    }
}

/// Why a peer was refused after its handshake; each is counted in
/// `chordal_errors_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The Hello claims ids the certificate does not give.
    #[error("the Hello claims ids its certificate does not give")]
    WrongIds,
    /// A client certificate presented itself as a ring member (or a
    /// member was expected and a client answered).
    #[error("a client certificate cannot act as a ring member")]
    ClientRole,
}

/// Decides what a peer that sent `hello` over a connection whose
/// certificate gave `identity` (`None`: plain TCP) may do. A Hello with an
/// address presents a ring member; one without, a client.
pub(crate) fn admit(hello: &Hello, identity: Option<PeerIdentity>) -> Result<Standing, Refusal> {
    let member = hello.addr.is_some();
    let Some(identity) = identity else {
        return Ok(if member {
            Standing::Member { ids: None }
        } else {
            Standing::Client
        });
    };
    if !member {
        // A member's certificate may also act as a client (a tool run on a
        // member host); it then claims no ids.
        return if hello.ids.is_empty() {
            Ok(Standing::Client)
        } else {
            Err(Refusal::WrongIds)
        };
    }
    if identity.role != Role::Member {
        return Err(Refusal::ClientRole);
    }
    let n = hello.ids.len();
    if n == 0
        || n > MAX_TLS_VNODES
        || hello.ids != chordal_core::Node::vnode_ids_from(identity.id, n)
    {
        return Err(Refusal::WrongIds);
    }
    Ok(Standing::Member {
        ids: Some(hello.ids.clone()),
    })
}

/// The plain-mode warning: a node reachable beyond this host without TLS
/// lets anyone join, read and overwrite. Returns it when `listen` is not
/// a loopback address.
pub fn plain_warning(listen: std::net::SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "PLAIN MODE on {listen}: the peer port is reachable beyond this host without TLS — \
             anyone who reaches it can join the ring, read every message and overwrite any key. \
             Use --tls-dir (see docs/security.md)."
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chordal_core::Id;

    fn hello(addr: bool, ids: Vec<Id>) -> Hello {
        Hello {
            cluster: "c".into(),
            addr: addr.then(|| "127.0.0.1:1".parse().unwrap()),
            api: None,
            ids,
            service: None,
            resp: None,
        }
    }

    fn member(id: Id) -> Option<PeerIdentity> {
        Some(PeerIdentity {
            id,
            role: Role::Member,
            expires: std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        })
    }

    #[test]
    fn a_member_must_claim_exactly_the_ids_its_certificate_gives() {
        let id = Id::hash(b"cert");
        let four = chordal_core::Node::vnode_ids_from(id, 4);
        assert_eq!(
            admit(&hello(true, four.clone()), member(id)),
            Ok(Standing::Member {
                ids: Some(four.clone())
            })
        );
        let mut other = four.clone();
        other[2] = Id::hash(b"chosen");
        assert_eq!(
            admit(&hello(true, other), member(id)),
            Err(Refusal::WrongIds)
        );
        assert_eq!(
            admit(&hello(true, vec![Id::hash(b"x")]), member(id)),
            Err(Refusal::WrongIds)
        );
        assert_eq!(
            admit(&hello(true, vec![]), member(id)),
            Err(Refusal::WrongIds)
        );
        let many = chordal_core::Node::vnode_ids_from(id, MAX_TLS_VNODES + 1);
        assert_eq!(
            admit(&hello(true, many), member(id)),
            Err(Refusal::WrongIds)
        );
    }

    #[test]
    fn a_client_certificate_never_joins() {
        let id = Id::hash(b"client");
        let client = Some(PeerIdentity {
            id,
            role: Role::Client,
            expires: std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        });
        let ids = chordal_core::Node::vnode_ids_from(id, 1);
        assert_eq!(admit(&hello(true, ids), client), Err(Refusal::ClientRole));
        assert_eq!(admit(&hello(false, vec![]), client), Ok(Standing::Client));
        assert_eq!(
            admit(&hello(false, vec![id]), client),
            Err(Refusal::WrongIds)
        );
    }

    #[test]
    fn plain_peers_are_taken_at_their_word() {
        assert_eq!(
            admit(&hello(true, vec![Id::hash(b"any")]), None),
            Ok(Standing::Member { ids: None })
        );
        assert_eq!(admit(&hello(false, vec![]), None), Ok(Standing::Client));
    }

    #[test]
    fn clients_ask_but_never_speak_for_the_ring() {
        use chordal_core::{Envelope, Message, NodeRef, OwnerClaim, Target};
        let me = NodeRef::new(Id::hash(b"client"), "127.0.0.1:5".parse().unwrap());
        let to = Target {
            addr: "127.0.0.1:6".parse().unwrap(),
            id: None,
        };
        let env = |msg| Envelope { from: me, to, msg };
        let lookup = |origin| Message::FindSuccessor {
            req: 1,
            origin,
            lookup: 1,
            key: Id::hash(b"k"),
            hops: 0,
            claim: OwnerClaim::Route,
        };
        let client = Standing::Client;
        assert!(client.may_send(&env(Message::GetNeighbors { req: 1 })));
        assert!(client.may_send(&env(lookup(me))));
        let victim = NodeRef::new(Id::hash(b"victim"), "127.0.0.1:7".parse().unwrap());
        assert!(!client.may_send(&env(lookup(victim))));
        assert!(!client.may_send(&env(Message::Notify)));
        assert!(!client.may_send(&env(Message::Replicate {
            req: 1,
            records: vec![],
            fence: 0,
        })));
        let member = Standing::Member {
            ids: Some(vec![Id::hash(b"other")]),
        };
        assert!(
            !member.may_send(&env(Message::Notify)),
            "not its certified id"
        );
        assert!(Standing::Member { ids: None }.may_send(&env(Message::Notify)));
    }

    #[test]
    fn plain_mode_warns_beyond_loopback_only() {
        assert!(plain_warning("127.0.0.1:7000".parse().unwrap()).is_none());
        assert!(plain_warning("[::1]:7000".parse().unwrap()).is_none());
        assert!(plain_warning("0.0.0.0:7000".parse().unwrap()).is_some());
        assert!(plain_warning("10.0.0.5:7000".parse().unwrap()).is_some());
    }
}
