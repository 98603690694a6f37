//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
//! SODA 2018), as an option of the gateway.
//!
//! Plain routing sends a client to its key's owner; with `n` nodes the
//! busiest node gets a few times the mean (more with one virtual node per
//! process). With a bound `c > 1`, the gateway keeps the clients it has
//! seen recently and their node; a new client goes to the first process,
//! clockwise from its owner, that has fewer than `⌈c · (clients + 1) / n⌉`
//! clients, and stays there while that node lives (sticky). The cost: a
//! client may be served beside a node that does not own its key (its
//! state is still read from the store, one hop further), and what one
//! gateway assigns the others do not know (see docs/gateway.md).

use crate::view::Member;
use chordal_core::Id;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most clients remembered; beyond, idle ones are forgotten first.
const MAX_CLIENTS: usize = 1_000_000;

/// The clients a gateway placed and each process's count of them.
#[derive(Debug)]
pub struct Assignments {
    bound: f64,
    idle: Duration,
    clients: HashMap<String, (Id, SocketAddr, Instant)>,
    load: HashMap<SocketAddr, usize>,
    placed: u64,
}

impl Assignments {
    /// Placement under the bound `c` (clamped to at least 1), forgetting
    /// clients idle for `idle`.
    pub fn new(bound: f64, idle: Duration) -> Assignments {
        Assignments {
            bound: bound.max(1.0),
            idle,
            clients: HashMap::new(),
            load: HashMap::new(),
            placed: 0,
        }
    }

    /// The member `client` (key id `key`) is served by: its assignment if
    /// that node is still in `members` (id order), else a new one under
    /// the bound. `None` if no member has a service.
    pub fn place(
        &mut self,
        client: &str,
        key: &Id,
        members: &[Member],
        now: Instant,
    ) -> Option<Member> {
        if let Some((id, _, seen)) = self.clients.get_mut(client) {
            if let Some(m) = members
                .iter()
                .find(|m| m.node.id == *id && m.service.is_some())
            {
                *seen = now;
                return Some(m.clone());
            }
            self.forget(client);
        }
        let processes = {
            let mut addrs: Vec<SocketAddr> = members
                .iter()
                .filter(|m| m.service.is_some())
                .map(|m| m.node.addr)
                .collect();
            addrs.sort();
            addrs.dedup();
            addrs.len()
        };
        if processes == 0 {
            return None;
        }
        // Now and then (and when full), forget idle clients: a scan per
        // 4,096 placements.
        self.placed += 1;
        if self.clients.len() >= MAX_CLIENTS || self.placed.is_multiple_of(4096) {
            self.expire(now);
        }
        let cap = (self.bound * (self.clients.len() + 1) as f64 / processes as f64).ceil() as usize;
        let start = chordal_core::successor_index(members, key, |m| m.node.id);
        let chosen = (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .filter(|m| m.service.is_some())
            .find(|m| self.load.get(&m.node.addr).copied().unwrap_or(0) < cap.max(1))?
            .clone();
        self.clients
            .insert(client.to_string(), (chosen.node.id, chosen.node.addr, now));
        *self.load.entry(chosen.node.addr).or_default() += 1;
        Some(chosen)
    }

    /// Forgets clients idle for longer than the idle time.
    pub fn expire(&mut self, now: Instant) {
        let idle = self.idle;
        let gone: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, (_, _, seen))| now.duration_since(*seen) > idle)
            .map(|(c, _)| c.clone())
            .collect();
        for c in gone {
            self.forget(&c);
        }
    }

    fn forget(&mut self, client: &str) {
        if let Some((_, addr, _)) = self.clients.remove(client)
            && let Some(l) = self.load.get_mut(&addr)
        {
            *l = l.saturating_sub(1);
        }
    }

    /// Clients placed on each process.
    pub fn loads(&self) -> &HashMap<SocketAddr, usize> {
        &self.load
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chordal_core::NodeRef;

    fn members(n: usize) -> Vec<Member> {
        let mut out: Vec<Member> = (0..n)
            .map(|i| Member {
                node: NodeRef::new(
                    Id::hash(format!("node-{i}").as_bytes()),
                    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                ),
                service: Some("http://127.0.0.1:9000".parse().unwrap()),
            })
            .collect();
        out.sort_by_key(|m| m.node.id);
        out
    }

    #[test]
    fn no_process_exceeds_the_bound_and_clients_stay_put() {
        let ms = members(10);
        let now = Instant::now();
        let mut a = Assignments::new(1.25, Duration::from_secs(60));
        let mut first = HashMap::new();
        for c in 0..10_000 {
            let name = format!("client-{c}");
            let m = a
                .place(&name, &Id::hash(name.as_bytes()), &ms, now)
                .unwrap();
            first.insert(name, m.node.id);
            let max = *a.loads().values().max().unwrap();
            let cap = (1.25 * (c + 1) as f64 / 10.0).ceil() as usize;
            assert!(max <= cap.max(1), "{max} > {cap} after {c}");
        }
        // Sticky: the same node every time.
        for (name, id) in &first {
            let m = a.place(name, &Id::hash(name.as_bytes()), &ms, now).unwrap();
            assert_eq!(m.node.id, *id);
        }
        // A node gone: its clients move, nobody else does.
        let gone = ms[3].node.id;
        let rest: Vec<Member> = ms.iter().filter(|m| m.node.id != gone).cloned().collect();
        let mut moved = 0;
        for (name, id) in &first {
            let m = a
                .place(name, &Id::hash(name.as_bytes()), &rest, now)
                .unwrap();
            if m.node.id != *id {
                moved += 1;
                assert_eq!(*id, gone);
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let ms = members(3);
        let now = Instant::now();
        let mut a = Assignments::new(1.5, Duration::from_secs(10));
        a.place("x", &Id::hash(b"x"), &ms, now).unwrap();
        assert_eq!(a.loads().values().sum::<usize>(), 1);
        a.expire(now + Duration::from_secs(11));
        assert_eq!(a.loads().values().sum::<usize>(), 0);
    }
}
