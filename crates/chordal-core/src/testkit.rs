//! Test scaffolding for one sub-machine alone: a ring of one vnode whose
//! neighbours are given (no messages needed to form it), a fake clock, and
//! what the machine handed back.

use crate::config::Config;
use crate::io::{Cx, Io};
use crate::message::{Envelope, NodeRef};
use crate::ring::Ring;
use crate::{ID_BITS, Id, Time};
use std::net::SocketAddr;

/// A node of the test ring on port `port` of 127.0.0.1, at `at / 1000`
/// of the way round the ring (so that ranges hold real keys' ids).
pub fn node(at: u64, port: u16) -> NodeRef {
    let mut id = [0u8; crate::ID_BYTES];
    id[..8].copy_from_slice(&((at << 54) / 1000 * 1024).to_be_bytes());
    NodeRef::new(Id(id), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A key whose id falls in `(pred, me]` of the fixture's vnode: the key
/// bytes are searched for (ids are `Id::of_key` of them).
pub fn key_in(fx: &Fixture) -> Vec<u8> {
    let range = fx.ring.range_of(&fx.me).expect("joined");
    (0..100_000)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| range.contains(&Id::of_key(k)))
        .expect("some key falls in the range")
}

/// A key whose id is *not* in the fixture's vnode's range.
pub fn key_outside(fx: &Fixture) -> Vec<u8> {
    let range = fx.ring.range_of(&fx.me).expect("joined");
    (0..100_000)
        .map(|i| format!("other-{i}").into_bytes())
        .find(|k| !range.contains(&Id::of_key(k)))
        .expect("some key falls outside")
}

/// One process with one joined vnode `me`, its predecessor and successor
/// list fixed, a configuration and a clock.
pub struct Fixture {
    pub config: Config,
    pub ring: Ring,
    pub io: Io,
    pub authority: crate::authority::Authority,
    pub me: NodeRef,
    pub now: Time,
}

impl Fixture {
    /// Our vnode `me` (port 1) after `pred`, followed by `succs`. The
    /// vnode's range is `(pred, me]`; its fingers all point at the first
    /// successor.
    pub fn new(config: Config, me: NodeRef, pred: NodeRef, succs: &[NodeRef]) -> Fixture {
        let now = Time::from_millis(1_000_000);
        let mut ring = Ring::new(&config, me.addr, &[me.id], 7);
        let first = succs.first().copied().unwrap_or(me);
        ring.start_converged(now, |_| (pred, succs.to_vec(), vec![first; ID_BITS]), []);
        // Drop what starting produced (timers armed, nothing sent yet).
        ring.drain(now, |_| {});
        Fixture {
            authority: Default::default(),
            config,
            ring,
            io: Io::default(),
            me,
            now,
        }
    }

    /// The usual fixture: R = 3, `me` = id 100 after 50, successors 200
    /// and 300 on two more processes. Without authority: these tests
    /// drive the owner's read, write and replication machinery directly
    /// (`chordal-core`'s authority tests and `chordal-sim`'s drive it
    /// under terms).
    pub fn three_processes() -> Fixture {
        let config = Config {
            replicas: 3,
            authority: false,
            ..Config::default()
        };
        Fixture::new(
            config,
            node(100, 1),
            node(50, 4),
            &[node(200, 2), node(300, 3)],
        )
    }

    /// The context a machine method takes.
    pub fn cx(&mut self) -> Cx<'_> {
        Cx {
            config: &self.config,
            ring: &mut self.ring,
            io: &mut self.io,
            authority: &mut self.authority,
        }
    }

    /// Moves the clock on.
    pub fn advance(&mut self, by: std::time::Duration) {
        self.now = self.now + by;
    }

    /// Takes the messages handed back so far.
    pub fn sent(&mut self) -> Vec<Envelope> {
        self.io.out.drain(..).collect()
    }
}
