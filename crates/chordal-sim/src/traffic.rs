//! Traffic accounting: every message the simulated network carries is
//! counted and sized as the same message would be on a TCP connection
//! (`chordal_wire::frame_len`: length prefix and protobuf body; TCP/IP
//! headers not included), by what it is for.

use chordal_core::{Family, Message};

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Keeping the ring: pings, neighbour exchanges, notify, hints, leave.
    Ring,
    /// Lookups: `find_successor` hops, acks, answers, iterative steps. This
    /// includes the lookups `fix_fingers` makes, so it is part of routing
    /// maintenance as well as of application traffic.
    Routing,
    /// The key-value store: requests, replication, range sync, collection,
    /// and the terms and leases that say who decides.
    Store,
    /// One-hop routing's membership events and table copies.
    Membership,
}

impl Purpose {
    /// What `msg` is for.
    pub fn of(msg: &Message) -> Purpose {
        match msg.family() {
            Family::Ring => Purpose::Ring,
            Family::Lookup => Purpose::Routing,
            Family::Members => Purpose::Membership,
            Family::Request | Family::Store | Family::Authority => Purpose::Store,
        }
    }
}

/// Messages and bytes of one kind of traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Messages sent.
    pub messages: u64,
    /// Their encoded size, in bytes.
    pub bytes: u64,
}

/// Everything the network carried, by purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Stabilization, fingers and predecessor checks.
    pub ring: Counter,
    /// Lookups.
    pub routing: Counter,
    /// Store operations, replication, sync and transfers.
    pub store: Counter,
    /// One-hop routing's membership upkeep.
    pub membership: Counter,
}

impl Traffic {
    /// Counts one message of `bytes` bytes.
    pub fn add(&mut self, purpose: Purpose, bytes: usize) {
        let c = match purpose {
            Purpose::Ring => &mut self.ring,
            Purpose::Routing => &mut self.routing,
            Purpose::Store => &mut self.store,
            Purpose::Membership => &mut self.membership,
        };
        c.messages += 1;
        c.bytes += bytes as u64;
    }

    /// All messages.
    pub fn messages(&self) -> u64 {
        self.ring.messages + self.routing.messages + self.store.messages + self.membership.messages
    }

    /// All bytes.
    pub fn bytes(&self) -> u64 {
        self.ring.bytes + self.routing.bytes + self.store.bytes + self.membership.bytes
    }

    /// What was carried since `earlier` (a copy taken before).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        let d = |a: Counter, b: Counter| Counter {
            messages: a.messages - b.messages,
            bytes: a.bytes - b.bytes,
        };
        Traffic {
            ring: d(self.ring, earlier.ring),
            routing: d(self.routing, earlier.routing),
            store: d(self.store, earlier.store),
            membership: d(self.membership, earlier.membership),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_purpose_and_subtracts() {
        let mut t = Traffic::default();
        t.add(Purpose::of(&Message::Notify), 40);
        let before = t;
        t.add(Purpose::of(&Message::LookupAck { reqs: vec![1] }), 30);
        t.add(Purpose::of(&Message::Ping { req: 1 }), 20);
        assert_eq!((t.messages(), t.bytes()), (3, 90));
        let d = t.since(&before);
        assert_eq!(
            d.ring,
            Counter {
                messages: 1,
                bytes: 20
            }
        );
        assert_eq!(
            d.routing,
            Counter {
                messages: 1,
                bytes: 30
            }
        );
        assert_eq!(d.store, Counter::default());
    }
}
