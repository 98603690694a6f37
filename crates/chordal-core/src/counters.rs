//! What a node counts about itself, for metrics: plain numbers the core
//! bumps as things happen; the driver reads them ([`Node::counters`]) and
//! drains hop samples ([`Node::take_hop_samples`]) to export them.

use crate::{LookupError, OpError};
use std::collections::BTreeMap;

/// Hop samples kept until the driver takes them; more are dropped.
const MAX_HOP_SAMPLES: usize = 4096;

/// Running totals of one node (all its virtual nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `stabilize` rounds run.
    pub stabilize_rounds: u64,
    /// Successor and predecessor changes.
    pub routing_changes: u64,
    /// Finger changes.
    pub finger_changes: u64,
    /// Lookups this node started (its own and the store's) that found the
    /// owner.
    pub lookups_ok: u64,
    /// Writes an owner versioned again because some copy held a newer
    /// version (a clock behind, or a write it had not seen).
    pub write_rewrites: u64,
    /// Replica copies an owner found stale on a read and brought up to
    /// the newest one (read repair).
    pub read_repairs: u64,
    /// Acknowledged writes that ended with fewer than `R` copies.
    pub writes_under_replicated: u64,
    /// Owned ranges (vnodes) whose successor list offers fewer than
    /// `R - 1` other processes right now.
    pub ranges_under_replicated: u64,
    /// Key-value operations in flight (client, owner and storage), and
    /// their bound: at the bound, requests are answered `Overloaded`.
    pub kv_in_flight: u64,
    /// The bound on operations in flight (`max_kv_ops`).
    pub kv_in_flight_max: u64,
    /// `Replicate`s being stored for others (answered `busy` at 256).
    pub replica_applies: u64,
    /// Bulk transfers (handoff, sync pushes, leave) running or waiting.
    pub transfers_active: u64,
    /// Records and key+value bytes sent by bulk transfers (pages sent
    /// again after a failure count again).
    pub transfer_records: u64,
    /// Bytes of keys and values sent by bulk transfers.
    pub transfer_bytes: u64,
    /// Transfer pages lost, refused or answered busy.
    pub transfer_failures: u64,
    /// Authority (DESIGN §5, "Who decides"): prepares this process's
    /// vnodes started, and those that failed (refused or unanswered in
    /// time) and will be tried again.
    pub prepares_started: u64,
    /// Prepares that failed and will be tried again.
    pub prepares_failed: u64,
    /// Terms our vnodes came to hold.
    pub terms_held: u64,
    /// Terms our vnodes lost to a later term (a renewal refused, a write
    /// fenced).
    pub terms_lost: u64,
    /// Terms our vnodes gave up (a handover: a joiner, a leave, a range
    /// that moved).
    pub terms_released: u64,
    /// Reads (gets, and the reads of conditional writes) of a term still
    /// catching up, which asked the previous configs' copies too.
    pub catch_up_reads: u64,
    /// Terms whose store pulled from a majority of every catch-up config
    /// (their decisions read the store alone from then on).
    pub catch_ups_ended: u64,
    /// Terms that then pushed to a majority of their own config (the
    /// next holder reads nothing older).
    pub terms_finished: u64,
    /// Records a read found that were not known to be on a quorum (an
    /// earlier term's, or one of ours still in flight), written again in
    /// the owner's term before it answered.
    pub write_backs: u64,
    /// Terms this process granted to holders (its own vnodes included).
    pub terms_granted: u64,
    /// Intervals our vnodes hold with a valid lease, and those they own
    /// by Chord but do not (yet) hold: set when counters are read.
    pub leases_valid: u64,
    /// See `leases_valid`.
    pub leases_pending: u64,
    /// Intervals held whose catch-up is not finished yet (decisions there
    /// may still read older configs; the next holder would read them).
    pub leases_unfinished: u64,
    /// Failures by kind: `lookup_timeout`, `kv_quorum_failed`, …
    pub errors: BTreeMap<&'static str, u64>,
}

/// Core-side state behind [`Counters`].
#[derive(Debug, Default)]
pub(crate) struct Counting {
    pub counters: Counters,
    pub hop_samples: Vec<u32>,
}

impl Counting {
    pub fn error(&mut self, kind: &'static str) {
        *self.counters.errors.entry(kind).or_default() += 1;
    }

    pub fn lookup_done(&mut self, result: &Result<crate::LookupResult, LookupError>) {
        match result {
            Ok(r) => {
                self.counters.lookups_ok += 1;
                if self.hop_samples.len() < MAX_HOP_SAMPLES {
                    self.hop_samples.push(r.hops);
                }
            }
            Err(e) => self.error(e.kind()),
        }
    }
}

impl LookupError {
    /// A short name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            LookupError::Timeout => "lookup_timeout",
            LookupError::HopLimit => "lookup_hop_limit",
            LookupError::NoRoute => "lookup_no_route",
            LookupError::NotJoined => "lookup_not_joined",
            LookupError::Overloaded => "lookup_overloaded",
        }
    }
}

impl OpError {
    /// A short name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::Timeout => "kv_timeout",
            OpError::NotJoined => "kv_not_joined",
            OpError::Overloaded => "kv_overloaded",
            OpError::NotReady => "kv_not_ready",
            OpError::TooLarge { .. } => "kv_too_large",
            OpError::Lookup(_) => "kv_lookup_failed",
            OpError::Redirects => "kv_redirects",
            OpError::QuorumFailed { .. } => "kv_quorum_failed",
            OpError::QuorumUnavailable { .. } => "kv_quorum_unavailable",
            OpError::StoreFailed => "kv_store_failed",
            OpError::PreconditionFailed { .. } => "kv_precondition_failed",
            OpError::NotAnInteger => "kv_not_an_integer",
            OpError::NotAFloat => "kv_not_a_float",
            OpError::WrongType => "kv_wrong_type",
            OpError::Overflow => "kv_overflow",
            OpError::Refused => "kv_refused",
            OpError::Unreachable => "kv_unreachable",
            OpError::UnexpectedAnswer => "kv_unexpected_answer",
            OpError::CrossSlot => "kv_cross_slot",
        }
    }
}
