//! Which certified vnode ids listen at which peer address, as our own
//! dials found (TLS only).
//!
//! A Hello's address is the peer's own claim: a certified member could
//! claim another member's address and so have its API handed out, its
//! traffic sent to it, or frames accepted as if they came from there.
//! Only a dial proves an address: whoever completes a TLS handshake on a
//! connection *we* opened to `addr` holds the certificate that listens
//! there. So an inbound member connection is used — its frames read, its
//! Hello's API recorded, replies written to it — only once a dial of ours
//! to the address it claims met the same certified ids. Until then it is
//! held (and a dial started); if the dial meets other ids, the claimant is
//! an impostor: closed and counted (`chordal_errors_total{kind=
//! "tls_wrong_addr"}`). Frames for a vnode id that the certificate at the
//! destination does not hold are not sent (see the driver's `pump`).

use crate::conn::Established;
use crate::tls::Standing;
use chordal_core::Id;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Inbound connections held at one address at most, waiting for the dial
/// that proves or disproves their claim; more are closed.
const MAX_HELD_PER_ADDR: usize = 4;

/// What to do with an inbound member connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A dial of ours met these very ids at the address it claims: use it.
    Proven,
    /// Not proven yet: hold it and dial the address.
    Unproven,
    /// Other ids hold that address, and are connected now: it lies.
    Impostor,
}

/// The proven addresses and the connections waiting for proof.
#[derive(Default)]
pub(crate) struct Bindings {
    ids_at: HashMap<SocketAddr, Vec<Id>>,
    held: HashMap<SocketAddr, Vec<Established>>,
}

/// The certified ids of a member connection (`None`: a client, or plain
/// TCP, where nothing is certified and nothing is checked).
pub(crate) fn certified(standing: &Standing) -> Option<&[Id]> {
    match standing {
        Standing::Member { ids: Some(ids) } => Some(ids),
        _ => None,
    }
}

impl Bindings {
    /// The ids our last dial to `addr` met, if we dialled it.
    pub fn ids_at(&self, addr: &SocketAddr) -> Option<&[Id]> {
        self.ids_at.get(addr).map(Vec::as_slice)
    }

    /// Judges an inbound connection claiming `addr` with certified `ids`;
    /// `holder_open` says whether a connection at `addr` under the ids our
    /// dial met there is in use now (then they hold the address now).
    pub fn verdict(&self, addr: &SocketAddr, ids: &[Id], holder_open: bool) -> Verdict {
        match self.ids_at.get(addr) {
            Some(bound) if bound == ids => Verdict::Proven,
            Some(_) if holder_open => Verdict::Impostor,
            _ => Verdict::Unproven,
        }
    }

    /// Holds `est` until its address is proven; returns a connection to
    /// close if too many wait there already.
    pub fn hold(&mut self, est: Established) -> Option<Established> {
        let waiting = self.held.entry(est.addr).or_default();
        if waiting.len() >= MAX_HELD_PER_ADDR {
            return Some(est);
        }
        waiting.push(est);
        None
    }

    /// Connections held, in all.
    pub fn held(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }

    /// Our dial to `addr` met `ids`: the address is theirs from now on.
    /// Returns the held connections that claimed the same ids (now
    /// proven) and those that claimed others (impostors), in that order.
    /// At most `max` addresses are remembered: past it, those without a
    /// connection in `open` are forgotten first.
    pub fn proven(
        &mut self,
        addr: SocketAddr,
        ids: Vec<Id>,
        max: usize,
        open: impl Fn(&SocketAddr) -> bool,
    ) -> (Vec<Established>, Vec<Established>) {
        if self.ids_at.len() >= max && !self.ids_at.contains_key(&addr) {
            self.ids_at.retain(|a, _| open(a));
        }
        let waiting = self.held.remove(&addr).unwrap_or_default();
        let (same, other) = waiting
            .into_iter()
            .partition(|e| certified(&e.standing) == Some(&ids[..]));
        if self.ids_at.len() < max || self.ids_at.contains_key(&addr) {
            self.ids_at.insert(addr, ids);
        }
        (same, other)
    }

    /// Our dial to `addr` failed: what waited for it cannot be proven.
    pub fn dial_failed(&mut self, addr: &SocketAddr) -> Vec<Established> {
        self.held.remove(addr).unwrap_or_default()
    }

    /// Every held connection (the node is stopping).
    pub fn drain(&mut self) -> Vec<Established> {
        self.held.drain().flat_map(|(_, v)| v).collect()
    }
}
