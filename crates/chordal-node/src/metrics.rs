//! A node's metrics in Prometheus text format (`Node::metrics`, served at
//! `GET /metrics`). Each node has its own recorder — several nodes often
//! share a process (`chordal cluster`, tests) and must not mix their
//! numbers — fed by the driver as messages flow and requests finish, and
//! topped up from the core's counters when rendered.

use chordal_core::Counters;
use chordal_core::fasthash::FastMap;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::time::Duration;

static META: Metadata<'static> = Metadata::new("chordal", Level::INFO, None);

/// Seconds buckets for latencies: 50 µs … 10 s.
const SECONDS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];
/// Hop-count buckets.
const HOPS: [f64; 12] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 16.0,
];

/// Every metric, its kind and its help text.
const DESCRIPTIONS: [(&str, char, &str); 40] = [
    (
        "chordal_sent_messages_total",
        'c',
        "Peer messages sent, by type.",
    ),
    (
        "chordal_sent_bytes_total",
        'c',
        "Bytes of peer messages sent (frames), by type.",
    ),
    (
        "chordal_received_messages_total",
        'c',
        "Peer messages received, by type.",
    ),
    (
        "chordal_received_bytes_total",
        'c',
        "Bytes of peer messages received (frames), by type.",
    ),
    (
        "chordal_lookup_hops",
        'h',
        "Hops of lookups this node started (its own and the store's).",
    ),
    (
        "chordal_lookup_duration_seconds",
        'h',
        "Latency of lookups asked of this node through its API.",
    ),
    (
        "chordal_request_duration_seconds",
        'h',
        "Latency of requests to this node (put, get, delete, send, request, publish, subscribe), by op.",
    ),
    (
        "chordal_lookups_total",
        'c',
        "Lookups this node started that found the owner.",
    ),
    (
        "chordal_errors_total",
        'c',
        "Failures, by kind (lookups, store operations, peers' frames and handshakes, full queues).",
    ),
    (
        "chordal_stabilize_rounds_total",
        'c',
        "Stabilization rounds run (all virtual nodes).",
    ),
    (
        "chordal_routing_changes_total",
        'c',
        "Routing table changes, by part (neighbour: successor or predecessor; finger).",
    ),
    ("chordal_connections", 'g', "Open peer connections."),
    (
        "chordal_client_connections",
        'g',
        "Open client connections, by listener (http, resp, dht_api).",
    ),
    (
        "chordal_client_connections_refused_total",
        'c',
        "Client connections closed at once for being over the listener's or one source address's bound, by listener.",
    ),
    (
        "chordal_write_rewrites_total",
        'c',
        "Writes the owner versioned again because a copy held a newer version.",
    ),
    (
        "chordal_read_repairs_total",
        'c',
        "Replica copies a read found stale and brought up to the newest one.",
    ),
    (
        "chordal_writes_under_replicated_total",
        'c',
        "Acknowledged writes that ended with fewer than R copies.",
    ),
    (
        "chordal_ranges_under_replicated",
        'g',
        "Owned ranges whose successor list offers fewer than R - 1 other processes.",
    ),
    (
        "chordal_kv_in_flight",
        'g',
        "Key-value operations in flight on this node (at chordal_kv_in_flight_max requests are answered overloaded).",
    ),
    (
        "chordal_kv_in_flight_max",
        'g',
        "Bound on key-value operations in flight.",
    ),
    (
        "chordal_replica_applies",
        'g',
        "Replicated records being stored for other nodes (answered busy at 256).",
    ),
    (
        "chordal_transfers",
        'g',
        "Bulk transfers (handoff, sync pushes, leave) running or waiting.",
    ),
    (
        "chordal_transfer_bytes_total",
        'c',
        "Key and value bytes sent by bulk transfers (resent pages again).",
    ),
    (
        "chordal_transfer_failures_total",
        'c',
        "Transfer pages lost, refused or answered busy (each resumed from the last acknowledged page).",
    ),
    (
        "chordal_authority_total",
        'c',
        "Authority events (--authority), by event: prepare_started, prepare_failed, term_held, term_lost, term_released, term_granted, catch_up_read, catch_up_ended, term_finished, write_back.",
    ),
    (
        "chordal_leases",
        'g',
        "Intervals this node's vnodes own by Chord, by state: held (a term is held), pending (preparing or waiting), unfinished (held, catch-up not finished).",
    ),
    (
        "chordal_keys_stored",
        'g',
        "Records in this node's store (tombstones included).",
    ),
    (
        "chordal_ring_size_estimate",
        'g',
        "Processes in the ring: the membership table's count (one-hop routing) or an estimate from this node's successor lists (Chord).",
    ),
    (
        "chordal_membership_entries",
        'g',
        "Virtual nodes in the one-hop membership table.",
    ),
    (
        "chordal_membership_bytes",
        'g',
        "Estimated memory of the one-hop membership table.",
    ),
    (
        "chordal_membership_events_total",
        'c',
        "Membership events by kind: detected here, received, sent (one per event per message), dropped (queue full or target silent).",
    ),
    (
        "chordal_membership_messages_total",
        'c',
        "Membership event messages sent.",
    ),
    (
        "chordal_membership_claims_total",
        'c',
        "What members said about other nodes (TLS rings), by result: checked with the node named, false (the node named disproved it), dropped (too many from one sender or in all).",
    ),
    (
        "chordal_stored_bytes",
        'g',
        "Bytes of this node's data: keys and values in memory, or the database file.",
    ),
    (
        "chordal_storage_failing",
        'g',
        "1 while this node's storage refuses writes (a full disk, an I/O error; reads are still served), else 0.",
    ),
    ("chordal_vnodes", 'g', "Virtual nodes hosted, by state."),
    (
        "chordal_handoff_sent_messages_total",
        'c',
        "Messages that copy records to other nodes (replication, handoff, range sync).",
    ),
    (
        "chordal_handoff_sent_bytes_total",
        'c',
        "Bytes of messages that copy records to other nodes.",
    ),
    (
        "chordal_repair_messages_total",
        'c',
        "Range-sync messages sent (summaries, differences): the cost of repair.",
    ),
    (
        "chordal_frames_dropped_total",
        'c',
        "Outgoing frames dropped because a peer's queue was full.",
    ),
];

/// Message types that carry records to other nodes.
const HANDOFF: [&str; 1] = ["replicate"];
/// Message types of range sync.
const REPAIR: [&str; 2] = ["sync_summary", "sync_diff"];

/// One node's metrics.
pub(crate) struct NodeMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    // Keyed by our own static names, so the fast hasher is safe: these
    // maps are searched twice per message.
    sent: FastMap<&'static str, (Counter, Counter)>,
    received: FastMap<&'static str, (Counter, Counter)>,
    requests: FastMap<&'static str, Histogram>,
    lookup_seconds: Histogram,
    hops: Histogram,
    /// Messages and bytes copying records to other nodes.
    handoff: (Counter, Counter),
    /// Range-sync messages.
    repair: Counter,
}

impl NodeMetrics {
    pub fn new() -> NodeMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full("chordal_lookup_hops".into()), &HOPS)
            })
            .expect("bucket lists are non-empty")
            .build_recorder();
        for (name, kind, help) in DESCRIPTIONS {
            let (name, help) = (KeyName::from_const_str(name), help.into());
            match kind {
                'c' => recorder.describe_counter(name, None, help),
                'g' => recorder.describe_gauge(name, None, help),
                _ => {
                    let unit = name.as_str().ends_with("_seconds").then_some(Unit::Seconds);
                    recorder.describe_histogram(name, unit, help)
                }
            }
        }
        let handle = recorder.handle();
        let lookup_seconds = histogram(&recorder, "chordal_lookup_duration_seconds", vec![]);
        let hops = histogram(&recorder, "chordal_lookup_hops", vec![]);
        let handoff = (
            counter(&recorder, "chordal_handoff_sent_messages_total", vec![]),
            counter(&recorder, "chordal_handoff_sent_bytes_total", vec![]),
        );
        let repair = counter(&recorder, "chordal_repair_messages_total", vec![]);
        NodeMetrics {
            handoff,
            repair,
            recorder,
            handle,
            sent: FastMap::default(),
            received: FastMap::default(),
            requests: FastMap::default(),
            lookup_seconds,
            hops,
        }
    }

    /// A frame of `bytes` carrying a `kind` message went out.
    pub fn sent(&mut self, kind: &'static str, bytes: usize) {
        let names = ("chordal_sent_messages_total", "chordal_sent_bytes_total");
        count(&self.recorder, &mut self.sent, names, kind, bytes);
        if HANDOFF.contains(&kind) {
            self.handoff.0.increment(1);
            self.handoff.1.increment(bytes as u64);
        } else if REPAIR.contains(&kind) {
            self.repair.increment(1);
        }
    }

    /// A frame of `bytes` carrying a `kind` message came in.
    pub fn received(&mut self, kind: &'static str, bytes: usize) {
        let names = (
            "chordal_received_messages_total",
            "chordal_received_bytes_total",
        );
        count(&self.recorder, &mut self.received, names, kind, bytes);
    }

    /// A request of kind `op` took `took`.
    pub fn request(&mut self, op: &'static str, took: Duration) {
        let recorder = &self.recorder;
        self.requests
            .entry(op)
            .or_insert_with(|| {
                let labels = vec![Label::new("op", op)];
                histogram(recorder, "chordal_request_duration_seconds", labels)
            })
            .record(took.as_secs_f64());
    }

    /// An API lookup took `took`.
    pub fn lookup(&self, took: Duration) {
        self.lookup_seconds.record(took.as_secs_f64());
    }

    /// Lookups finished with these hop counts.
    pub fn hops(&self, samples: &[u32]) {
        for h in samples {
            self.hops.record(*h as f64);
        }
    }

    /// The Prometheus text, after taking in the core's counters and the
    /// node's current state.
    pub fn render(&self, core: &Counters, now: &Snapshot) -> String {
        let r = &self.recorder;
        let set =
            |name: &'static str, labels: Vec<Label>, v: u64| counter(r, name, labels).absolute(v);
        let gauge = |name: &'static str, labels: Vec<Label>, v: f64| gauge(r, name, labels).set(v);
        set("chordal_lookups_total", vec![], core.lookups_ok);
        set(
            "chordal_stabilize_rounds_total",
            vec![],
            core.stabilize_rounds,
        );
        let part = |p: &'static str| vec![Label::new("part", p)];
        set(
            "chordal_routing_changes_total",
            part("neighbour"),
            core.routing_changes,
        );
        set(
            "chordal_routing_changes_total",
            part("finger"),
            core.finger_changes,
        );
        let mut errors: Vec<(&'static str, u64)> =
            core.errors.iter().map(|(k, v)| (*k, *v)).collect();
        errors.extend([
            ("bad_handshake", now.bad_handshakes),
            ("bad_frame", now.bad_frames),
            ("tls_handshake", now.tls_refused),
            ("tls_wrong_id", now.wrong_ids),
            ("tls_client_role", now.client_role),
            ("app_inbox_full", now.app_refused),
            ("resp_malformed", now.resp_malformed),
            ("dht_api_malformed", now.dht_api_malformed),
            ("client_timeout", now.client_timeouts),
            ("tls_wrong_addr", now.addr_impostors),
            ("tls_not_there", now.not_there),
        ]);
        for (kind, n) in errors {
            set("chordal_errors_total", vec![Label::new("kind", kind)], n);
        }
        set("chordal_frames_dropped_total", vec![], now.dropped_out);
        set("chordal_write_rewrites_total", vec![], core.write_rewrites);
        set("chordal_read_repairs_total", vec![], core.read_repairs);
        set(
            "chordal_writes_under_replicated_total",
            vec![],
            core.writes_under_replicated,
        );
        gauge(
            "chordal_ranges_under_replicated",
            vec![],
            core.ranges_under_replicated as f64,
        );
        gauge("chordal_transfers", vec![], core.transfers_active as f64);
        gauge("chordal_kv_in_flight", vec![], core.kv_in_flight as f64);
        gauge(
            "chordal_kv_in_flight_max",
            vec![],
            core.kv_in_flight_max as f64,
        );
        gauge(
            "chordal_replica_applies",
            vec![],
            core.replica_applies as f64,
        );
        set("chordal_transfer_bytes_total", vec![], core.transfer_bytes);
        set(
            "chordal_transfer_failures_total",
            vec![],
            core.transfer_failures,
        );
        for (event, n) in [
            ("prepare_started", core.prepares_started),
            ("prepare_failed", core.prepares_failed),
            ("term_held", core.terms_held),
            ("term_lost", core.terms_lost),
            ("term_released", core.terms_released),
            ("term_granted", core.terms_granted),
            ("catch_up_read", core.catch_up_reads),
            ("catch_up_ended", core.catch_ups_ended),
            ("term_finished", core.terms_finished),
            ("write_back", core.write_backs),
        ] {
            set(
                "chordal_authority_total",
                vec![Label::new("event", event)],
                n,
            );
        }
        for (state, n) in [
            ("held", core.leases_valid),
            ("pending", core.leases_pending),
            ("unfinished", core.leases_unfinished),
        ] {
            gauge("chordal_leases", vec![Label::new("state", state)], n as f64);
        }
        gauge("chordal_connections", vec![], now.connections as f64);
        gauge("chordal_keys_stored", vec![], now.keys_stored as f64);
        if let Some(n) = now.ring_size_estimate {
            gauge("chordal_ring_size_estimate", vec![], n);
        }
        let members = &now.membership;
        gauge("chordal_membership_entries", vec![], members.entries as f64);
        gauge("chordal_membership_bytes", vec![], members.bytes as f64);
        for (result, n) in [
            ("checked", members.claims_checked),
            ("false", members.claims_false),
            ("dropped", members.claims_dropped),
        ] {
            let labels = vec![Label::new("result", result)];
            set("chordal_membership_claims_total", labels, n);
        }
        for (kind, n) in [
            ("detected", members.events_detected),
            ("received", members.events_received),
            ("sent", members.events_sent),
            ("dropped", members.events_dropped),
        ] {
            set(
                "chordal_membership_events_total",
                vec![Label::new("kind", kind)],
                n,
            );
        }
        set(
            "chordal_membership_messages_total",
            vec![],
            members.messages_sent,
        );
        gauge("chordal_stored_bytes", vec![], now.stored_bytes as f64);
        gauge(
            "chordal_storage_failing",
            vec![],
            f64::from(u8::from(now.storage_failing)),
        );
        gauge(
            "chordal_vnodes",
            vec![Label::new("state", "joined")],
            now.vnodes_joined as f64,
        );
        gauge(
            "chordal_vnodes",
            vec![Label::new("state", "joining")],
            now.vnodes_joining as f64,
        );
        for (listener, open, refused) in &now.listeners {
            let labels = || vec![Label::new("listener", *listener)];
            gauge("chordal_client_connections", labels(), *open as f64);
            set(
                "chordal_client_connections_refused_total",
                labels(),
                *refused,
            );
        }
        self.handle.render()
    }
}

/// What the driver knows at render time.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub connections: usize,
    pub keys_stored: u64,
    pub ring_size_estimate: Option<f64>,
    pub membership: chordal_core::OneHopStats,
    pub stored_bytes: u64,
    pub storage_failing: bool,
    pub vnodes_joined: usize,
    pub vnodes_joining: usize,
    pub bad_handshakes: u64,
    pub bad_frames: u64,
    pub tls_refused: u64,
    pub wrong_ids: u64,
    pub client_role: u64,
    pub dropped_out: u64,
    pub app_refused: u64,
    pub resp_malformed: u64,
    pub dht_api_malformed: u64,
    pub client_timeouts: u64,
    pub addr_impostors: u64,
    pub not_there: u64,
    /// Per client listener: its name, connections open, refused so far.
    pub listeners: Vec<(&'static str, usize, u64)>,
}

/// Counts one message of `kind` and its bytes in `by_type` (registering
/// the pair of counters `names` for a new type).
fn count(
    r: &PrometheusRecorder,
    by_type: &mut FastMap<&'static str, (Counter, Counter)>,
    names: (&'static str, &'static str),
    kind: &'static str,
    bytes: usize,
) {
    let (n, b) = by_type.entry(kind).or_insert_with(|| {
        let labels = || vec![Label::new("type", kind)];
        (counter(r, names.0, labels()), counter(r, names.1, labels()))
    });
    n.increment(1);
    b.increment(bytes as u64);
}

fn counter(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Counter {
    r.register_counter(&Key::from_parts(name, labels), &META)
}

fn gauge(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Gauge {
    r.register_gauge(&Key::from_parts(name, labels), &META)
}

fn histogram(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Histogram {
    r.register_histogram(&Key::from_parts(name, labels), &META)
}
