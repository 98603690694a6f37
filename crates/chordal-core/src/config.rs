//! Protocol parameters of one node.

use std::time::Duration;

/// How a lookup travels: see docs/design.md §3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LookupMode {
    /// Each hop forwards the query; the last hop answers the origin directly.
    #[default]
    Recursive,
    /// The origin asks every hop itself and follows the answers.
    Iterative,
}

/// How a coordinator finds a key's owner: see docs/design.md §3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Routing {
    /// Chord lookups over fingers: O(log N) hops, O(log N) state.
    Chord,
    /// One hop (full membership, disseminated along D1HT's EDRA): requests
    /// go straight to the owner the table names; Chord stays the fallback
    /// when the table is wrong.
    #[default]
    OneHop,
}

/// Protocol parameters. `Config::default()` is what `chordal node` runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Length `r` of the successor list: the ring survives `r - 1`
    /// consecutive failures.
    pub successors: usize,
    /// How often `stabilize` runs.
    pub stabilize_interval: Duration,
    /// How often `fix_fingers` refreshes one finger.
    pub fix_fingers_interval: Duration,
    /// After a whole `fix_fingers` cycle without a change the interval
    /// doubles, up to this factor; any change nearby resets it.
    pub max_finger_backoff: u32,
    /// How often `check_predecessor` pings the predecessor (skipped when the
    /// predecessor has just notified us).
    pub check_predecessor_interval: Duration,
    /// Each periodic task waits its interval scaled by a random factor in
    /// `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// A request not answered within this time is sent again, up to
    /// `request_retries` times; then its target counts as failed. (A peer
    /// whose port refuses connections fails at once, see
    /// `Node::handle_unreachable`.)
    pub request_timeout: Duration,
    /// Retransmissions of an unanswered request.
    pub request_retries: u32,
    /// A forwarded lookup is acknowledged within this time, several acks to
    /// one peer in one message (must be well below `request_timeout`).
    pub ack_delay: Duration,
    /// A lookup not finished within this time fails with `Timeout`.
    pub lookup_timeout: Duration,
    /// A lookup forwarded more often than this fails with `HopLimit`.
    pub max_hops: u32,
    /// Bound on outstanding requests of one virtual node.
    pub max_pending: usize,
    /// Bound on lookups one virtual node runs as origin at once.
    pub max_lookups: usize,
    /// How many times the list of seeds is tried before a join fails.
    pub join_rounds: usize,
    /// The pause after a round in which every seed failed, doubled after
    /// each further round (at most `lookup_timeout`): a seed that is
    /// itself still joining (a rolling restart, a whole ring started at
    /// once) answers that it cannot route yet, and a few seconds later it
    /// can.
    pub join_backoff: Duration,
    /// Replication factor `R`: a key lives on its owner and the next `R - 1`
    /// distinct physical successors.
    pub replicas: usize,
    /// Durable copies needed before a write is acknowledged; `None` = a
    /// majority of the copies that can be placed (at most `R`).
    pub write_quorum: Option<usize>,
    /// A key-value operation not finished within this time fails.
    pub kv_timeout: Duration,
    /// After its key range grows, a node that misses a key asks the
    /// replicas for it during this long (the handoff may still be running).
    pub handoff_window: Duration,
    /// Bound on key-value operations in flight on one node: more are
    /// answered `Overloaded` (the coordinator backs off and tries again).
    pub max_kv_ops: usize,
    /// Largest key and value of a put, checked wherever a write enters
    /// (the HTTP API, the library, the native client, a peer's request).
    /// A value must fit in one frame with room to spare.
    pub max_key: usize,
    /// Largest value a put may store, in bytes.
    pub max_value: usize,
    /// A graceful leave waits at most this long for its successors to
    /// acknowledge every record it hands over, then leaves anyway (and
    /// reports what was not handed over).
    pub leave_drain: Duration,
    /// How often each owner compares its range with each replica (range
    /// sync); a change of neighbours triggers one at once.
    pub sync_interval: Duration,
    /// Most buckets of a range summary (a range spanning fewer fine
    /// buckets, 1/65,536 of the ring each, gets one per fine bucket). More
    /// buckets make a summary longer (20 bytes each, sent only when the
    /// one-hash probe differs) and each push of a differing bucket
    /// shorter: under writes, the buckets with writes in flight differ.
    pub sync_buckets: u32,
    /// How long a coordinator trusts an owner's range learned from its
    /// reply (zero: always look up). A stale entry costs one `WrongOwner`
    /// round trip, never a wrong answer from a non-owner.
    pub owner_cache_ttl: Duration,
    /// Tombstones older than this are collected once every replica has
    /// them. A node down for longer could bring a deleted value back.
    pub tombstone_grace: Duration,
    /// How often each virtual node probes one peer it dropped as failed,
    /// so that rings split by a partition merge again once it heals.
    pub merge_interval: Duration,
    /// How long a dropped peer stays on the probe list.
    pub merge_window: Duration,
    /// Pub/sub: how often a subscriber renews each subscription with the
    /// topic's owner, and the owner pushes its topics' subscribers to the
    /// next owners. A subscription not renewed for three periods lapses.
    pub topic_renew: Duration,
    /// How requests find their owner (`--routing`).
    pub routing: Routing,
    /// One-hop routing: membership events wait this long at each process
    /// to travel together (D1HT's Θ); they reach every process within
    /// ⌈log2 P⌉ such intervals.
    pub membership_interval: Duration,
    /// One-hop routing: how often a process compares its membership table
    /// with its successor's (one digest when they agree) and copies it
    /// when they differ.
    pub membership_refresh: Duration,
    /// One-hop routing: most vnodes the membership table holds; keys of
    /// vnodes beyond it are routed by Chord.
    pub max_members: usize,
    /// One-hop routing: act on what a member says about another node
    /// (membership events, copied table pages, lookup answers) only once
    /// that node confirmed it itself. On in a TLS ring, where the driver
    /// certifies every message's sender; off in plain mode, where anyone
    /// may join anyway.
    pub verify_members: bool,
    /// Decide for a key only under a term granted by a majority of its
    /// copies (DESIGN §5, "Who decides"): linearizable keys through joins,
    /// leaves, crashes and partitions. On by default; off, the owner by
    /// Chord decides alone (two may, while ownership moves).
    pub authority: bool,
    /// How long a grant keeps other holders out; the holder renews every
    /// quarter of it. A crashed holder's range waits this long (after its
    /// failure is noticed) before its successor may decide.
    pub lease: Duration,
    /// The most that two processes' monotonic clocks may differ in rate,
    /// in millionths: a holder counts its lease as `lease × (1 − 2 ×
    /// drift)` from when it asked.
    pub clock_drift_ppm: u32,
    /// Authority: re-form a ring from survivors (`chordal node
    /// --force-new-ring`, etcd's `--force-new-cluster`). Nonzero: every
    /// term this process takes is above this (the driver passes the wall
    /// clock in µs, above any term a ring counts to), and a term settled
    /// below it no longer needs a majority of its config to grant the
    /// next, nor to be read first: the operator accepts that a write
    /// acknowledged only on copies that are gone is lost. 0: off.
    pub force_new_ring_above: u64,
    /// Answer a retried write from its record's log of writes rather than
    /// decide it again (see `oplog.rs`). On; off only in tests
    /// that show what the log prevents (a retry applied twice).
    #[doc(hidden)]
    pub retries_from_log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            successors: 8,
            stabilize_interval: Duration::from_millis(500),
            fix_fingers_interval: Duration::from_millis(500),
            max_finger_backoff: 4,
            check_predecessor_interval: Duration::from_millis(500),
            jitter: 0.25,
            request_timeout: Duration::from_millis(500),
            request_retries: 1,
            ack_delay: Duration::from_millis(20),
            lookup_timeout: Duration::from_secs(5),
            max_hops: 64,
            max_pending: 4096,
            max_lookups: 4096,
            join_rounds: 6,
            join_backoff: Duration::from_millis(250),
            replicas: 3,
            write_quorum: None,
            kv_timeout: Duration::from_secs(3),
            handoff_window: Duration::from_secs(30),
            leave_drain: Duration::from_secs(120),
            max_key: 1024,
            max_value: 1024 * 1024,
            max_kv_ops: 16_384,
            sync_interval: Duration::from_secs(5),
            sync_buckets: 1024,
            owner_cache_ttl: Duration::from_secs(10),
            tombstone_grace: Duration::from_secs(24 * 3600),
            merge_interval: Duration::from_secs(5),
            merge_window: Duration::from_secs(600),
            topic_renew: Duration::from_secs(2),
            routing: Routing::OneHop,
            membership_interval: Duration::from_millis(250),
            membership_refresh: Duration::from_secs(60),
            max_members: 1 << 20,
            verify_members: false,
            authority: true,
            lease: Duration::from_secs(2),
            clock_drift_ppm: 10_000,
            force_new_ring_above: 0,
            retries_from_log: true,
        }
    }
}

impl Config {
    /// The same config with no periodic work at all: no stabilization,
    /// finger fixing, predecessor checks or range syncs. For simulations
    /// of a ring frozen in a given state.
    pub fn frozen(self) -> Config {
        let never = Duration::from_secs(1 << 30);
        let mut c = self.with_maintenance_interval(never);
        c.sync_interval = never;
        c.topic_renew = never;
        c.membership_refresh = never;
        c
    }

    /// The same config with all three maintenance intervals set to `every`.
    pub fn with_maintenance_interval(mut self, every: Duration) -> Config {
        self.stabilize_interval = every;
        self.fix_fingers_interval = every;
        self.check_predecessor_interval = every;
        self
    }
}
