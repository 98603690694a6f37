//! The connection pool: at most one connection we write to per peer
//! address, with reconnect backoff for addresses that refuse us.

use crate::outbox::Outbox;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// First wait after a failed connect; doubles per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A connection we can write to.
#[derive(Debug)]
pub struct Peer {
    /// Tells this connection apart from a later one to the same address.
    pub conn_id: u64,
    /// Where frames for this peer go; bounded.
    pub outbox: Arc<Outbox>,
    pub last_used: Instant,
}

/// What to do with a frame for an address.
pub enum Route<'a> {
    /// Write it here.
    Send(&'a Peer),
    /// No connection yet: start one (the caller inserts it).
    Connect,
    /// The address refused us recently: fail fast.
    BackingOff,
}

/// Peers by address, plus backoff state of addresses that failed.
#[derive(Debug, Default)]
pub struct Pool {
    peers: HashMap<SocketAddr, Peer>,
    backoff: HashMap<SocketAddr, (Instant, u32)>,
    next_conn_id: u64,
}

impl Pool {
    /// Where a frame for `addr` should go now.
    pub fn route(&mut self, addr: SocketAddr, now: Instant) -> Route<'_> {
        if let Some(p) = self.peers.get_mut(&addr) {
            p.last_used = now;
            return Route::Send(p);
        }
        match self.backoff.get(&addr) {
            Some((until, _)) if *until > now => Route::BackingOff,
            _ => Route::Connect,
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&mut self) -> u64 {
        self.next_conn_id += 1;
        self.next_conn_id
    }

    /// Registers a connection for `addr` unless one exists. When the pool
    /// is full the least recently used entry is dropped: its connection id
    /// is returned so that the caller can close it.
    pub fn insert(&mut self, addr: SocketAddr, peer: Peer, max: usize) -> Option<u64> {
        if self.peers.contains_key(&addr) {
            return None;
        }
        let mut evicted = None;
        if self.peers.len() >= max {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                evicted = self.peers.remove(&oldest).map(|p| p.conn_id);
            }
        }
        self.peers.insert(addr, peer);
        evicted
    }

    /// When the pooled connection `conn_id` to `addr` was last written to.
    pub fn last_used(&self, addr: SocketAddr, conn_id: u64) -> Option<Instant> {
        self.peers
            .get(&addr)
            .filter(|p| p.conn_id == conn_id)
            .map(|p| p.last_used)
    }

    /// Forgets connection `conn_id` to `addr` (if it is the current one).
    pub fn remove(&mut self, addr: SocketAddr, conn_id: u64) {
        if self.peers.get(&addr).is_some_and(|p| p.conn_id == conn_id) {
            self.peers.remove(&addr);
        }
    }

    /// A connect to `addr` failed: back off before trying again.
    pub fn connect_failed(&mut self, addr: SocketAddr, now: Instant) {
        let failures = self.backoff.get(&addr).map(|(_, n)| n + 1).unwrap_or(0);
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << failures.min(6))
            .min(MAX_BACKOFF);
        self.backoff.insert(addr, (now + wait, failures));
    }

    /// A connection to `addr` is established: no more backoff.
    pub fn connected(&mut self, addr: SocketAddr) {
        self.backoff.remove(&addr);
    }

    /// Drops every connection (they flush and close).
    pub fn clear(&mut self) {
        self.peers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_resets() {
        let mut pool = Pool::default();
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let t0 = Instant::now();
        assert!(matches!(pool.route(a, t0), Route::Connect));
        pool.connect_failed(a, t0);
        assert!(matches!(pool.route(a, t0), Route::BackingOff));
        assert!(matches!(pool.route(a, t0 + FIRST_BACKOFF), Route::Connect));
        pool.connect_failed(a, t0);
        assert!(matches!(
            pool.route(a, t0 + FIRST_BACKOFF),
            Route::BackingOff
        ));
        pool.connected(a);
        assert!(matches!(pool.route(a, t0), Route::Connect));
    }

    #[test]
    fn full_pool_evicts_least_recently_used() {
        let mut pool = Pool::default();
        let t0 = Instant::now();
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            let id = pool.next_conn_id();
            let peer = Peer {
                conn_id: id,
                outbox: Arc::new(Outbox::new(1024)),
                last_used: t0 + Duration::from_secs(i as u64),
            };
            let evicted = pool.insert(*a, peer, 2);
            assert_eq!(evicted, if i == 2 { Some(1) } else { None });
        }
        assert!(matches!(pool.route(addrs[0], t0), Route::Connect));
        assert!(matches!(pool.route(addrs[2], t0), Route::Send(_)));
    }
}
