//! Core messages to protobuf and back. Decoding checks every field that
//! came from the network and never panics.
//!
//! `envelope.rs` holds the envelope and its frame; `kv.rs` key-value
//! requests and replies; `authority.rs` promises and configs; `record.rs`
//! records. Here are the limits and the node and id forms all use.

use crate::WireError;
use crate::pb::{self, Body};
use bytes::Bytes;
use chordal_core::{Change, Condition, Consistency, ExpireWhen, Kind, OpLog, WriteOptions};
use chordal_core::{
    Envelope, Id, KeyRange, Known, LookupFailure, Message, NodeRef, OpResult, Operation,
    OwnerClaim, Publication, Record, Refusal, Settled, Target, Time, Version,
};
use chordal_core::{
    MAX_EVENTS_PER_MESSAGE, MEMBER_SLICES, MEMBERS_PAGE, MemberEvent, MembersDigest,
};
use prost::Message as _;
use std::mem::take;
use std::net::SocketAddr;

mod authority;
mod envelope;
mod kv;
mod record;

use authority::*;
pub use envelope::{
    decode_envelope, encode_envelope, encode_frame, envelope_from_pb, envelope_to_pb, frame_len,
};
use kv::*;
use record::*;

/// Most nodes a list in one message may carry (successor lists, candidates).
pub const MAX_LIST: usize = 64;
/// Most request numbers one `LookupAck` may carry.
pub const MAX_ACKS: usize = 1024;

/// Nodes, and ids, whose protobuf form one thread keeps (see `kept`).
const NODE_MEMO: usize = 4096;

/// The protobuf forms this thread made already (see [`node_to_pb`] and
/// [`id_to_pb`]).
#[derive(Default)]
struct Kept {
    nodes: std::collections::HashMap<NodeRef, pb::NodeRef>,
    ids: std::collections::HashMap<Id, Bytes>,
}

thread_local! {
    static KEPT: std::cell::RefCell<Kept> = std::cell::RefCell::new(Kept::default());
}

/// `map[k]`, made by `make` the first time (at most [`NODE_MEMO`] kept:
/// a ring bigger than this starts over). The value kept is a clone of
/// the one returned: `Bytes` made from a slice turn shared at their first
/// clone (an allocation, once here), and later clones only count.
fn kept<K: std::hash::Hash + Eq + Copy, V: Clone>(
    map: &mut std::collections::HashMap<K, V>,
    k: K,
    make: impl FnOnce() -> V,
) -> V {
    if let Some(v) = map.get(&k) {
        return v.clone();
    }
    if map.len() >= NODE_MEMO {
        map.clear();
    }
    let v = make();
    map.insert(k, v.clone());
    v
}

/// The protobuf form of `n`. Kept per thread: a process names the same
/// few nodes (its own vnodes, its peers) in nearly every message, and
/// cloning a kept form costs two reference counts where building one
/// costs two allocations and an address formatted as text.
fn node_to_pb(n: &NodeRef) -> pb::NodeRef {
    KEPT.with(|k| {
        let mut k = k.borrow_mut();
        let id = kept(&mut k.ids, n.id, || Bytes::copy_from_slice(&n.id.0));
        kept(&mut k.nodes, *n, || pb::NodeRef {
            id,
            addr: Bytes::from(n.addr.to_string()),
        })
    })
}

/// The protobuf form of a vnode's id (a message's addressee, a version's
/// writer, a range's bounds), kept per thread like [`node_to_pb`]: a
/// fresh one costs an allocation, and another when prost's encoder
/// clones it.
fn id_to_pb(id: &Id) -> Bytes {
    KEPT.with(|k| {
        kept(&mut k.borrow_mut().ids, *id, || {
            Bytes::copy_from_slice(&id.0)
        })
    })
}

fn nodes_to_pb(ns: &[NodeRef]) -> Vec<pb::NodeRef> {
    ns.iter().map(node_to_pb).collect()
}

fn id_from_pb(bytes: &[u8], field: &'static str) -> Result<Id, WireError> {
    Id::from_slice(bytes).ok_or(WireError::Invalid(field))
}

fn node_from_pb(n: &pb::NodeRef, field: &'static str) -> Result<NodeRef, WireError> {
    let id = id_from_pb(&n.id, field)?;
    let addr: SocketAddr = std::str::from_utf8(&n.addr)
        .ok()
        .and_then(|a| a.parse().ok())
        .ok_or(WireError::Invalid(field))?;
    Ok(NodeRef::new(id, addr))
}

fn required(n: &Option<pb::NodeRef>, field: &'static str) -> Result<NodeRef, WireError> {
    node_from_pb(n.as_ref().ok_or(WireError::Missing(field))?, field)
}

fn optional(n: &Option<pb::NodeRef>, field: &'static str) -> Result<Option<NodeRef>, WireError> {
    n.as_ref().map(|n| node_from_pb(n, field)).transpose()
}

fn nodes_from_pb(ns: &[pb::NodeRef], field: &'static str) -> Result<Vec<NodeRef>, WireError> {
    if ns.len() > MAX_LIST {
        return Err(WireError::Invalid(field));
    }
    ns.iter().map(|n| node_from_pb(n, field)).collect()
}

/// Most buckets a range summary may have.
pub const MAX_BUCKETS: usize = 4096;

/// Most records one `Replicate` may carry.
pub const MAX_RECORDS: usize = 4096;

/// Most promises one grant may say it replaced.
pub const MAX_KNOWN: usize = 4096;

/// Most configs a term may name as pending.
pub const MAX_PENDING: usize = 64;

/// Most records in one watch's answer (one write's: a batch's steps, a
/// collection's header).
pub const MAX_WATCH_RECORDS: usize = 8192;

/// Most steps in one batch (and answers in its reply).
pub const MAX_BATCH_STEPS: usize = 4096;

/// Most publications in one `Notify`, topics in one `TopicReplica`.
pub const MAX_ITEMS: usize = 4096;
/// Most subscriber processes listed for one topic.
pub const MAX_TOPIC_NODES: usize = 65_536;

fn range_from_pb(start: &[u8], end: &[u8]) -> Result<KeyRange, WireError> {
    Ok(KeyRange {
        start: id_from_pb(start, "start")?,
        end: id_from_pb(end, "end")?,
    })
}
