//! Keys with owner work in flight: the newest record the owner sent to its
//! own store and not yet seen applied, and the writes waiting for the key.
//!
//! Two jobs, both about a write not yet visible in the owner's store (the
//! driver's store applies asynchronously, through group commit):
//! - a read takes the newest of its copies and the pending record, so it
//!   never misses a write the owner already versioned (it may already be
//!   acknowledged by the replicas);
//! - a write that needs the current record (a condition, an increment,
//!   a delete) holds the key from its read until it is versioned; later
//!   writes on the key wait in order. That is what makes conditional
//!   writes and increments atomic at the owner.

use crate::request::{OpName, ReplyTo};
use crate::write::Intent;
use crate::{Id, NodeRef, Record, Time};
use std::collections::{BTreeMap, VecDeque};

/// A write waiting for the key.
#[derive(Debug)]
pub(super) struct Waiting {
    pub vnode: NodeRef,
    pub key_id: Id,
    pub intent: Intent,
    /// The operation's id and retry flag (`None`: not named).
    pub name: Option<OpName>,
    pub reply: ReplyTo,
    pub answer_by: Time,
}

/// What waits for a held key: a write, or a batch (by number) that will
/// try to hold all its keys again.
#[derive(Debug)]
pub(super) enum Waiter {
    Write(Box<Waiting>),
    Batch(u64),
}

/// Owner work in flight on one key.
#[derive(Debug, Default)]
pub(super) struct HotKey {
    /// The newest record sent to the owner's store and not yet applied.
    pub latest: Option<Record>,
    /// The owner's own applies of this key in flight.
    pub pending: u32,
    /// A write is reading the key to decide: the others wait.
    pub held: bool,
    pub waiting: VecDeque<Waiter>,
}

/// The hot keys, by key bytes (peers choose keys: an ordered map, never a
/// hash table an attacker could flood).
#[derive(Debug, Default)]
pub(super) struct HotKeys {
    keys: BTreeMap<Vec<u8>, HotKey>,
    /// Writes waiting, over all keys (counted as operations in flight).
    pub waiting: usize,
}

impl HotKeys {
    /// The pending record of `key`, if any.
    pub fn latest(&self, key: &[u8]) -> Option<&Record> {
        self.keys.get(key)?.latest.as_ref()
    }

    /// The pending records whose key ids lie in `[start, end]` (a scan
    /// page's: what its store read may not show yet).
    pub fn pending_between(&self, start: &Id, end: &Id) -> Vec<Record> {
        self.keys
            .values()
            .filter_map(|h| h.latest.as_ref())
            .filter(|r| r.key_id >= *start && r.key_id <= *end)
            .cloned()
            .collect()
    }

    /// The pending records whose keys start with `prefix` (a
    /// collection's elements: what a read of them all may not show yet).
    pub fn pending_with_prefix(&self, prefix: &[u8]) -> Vec<Record> {
        self.keys
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, h)| h.latest.clone())
            .collect()
    }

    /// Is `key` held by a write deciding?
    pub fn held(&self, key: &[u8]) -> bool {
        self.keys.get(key).is_some_and(|h| h.held)
    }

    /// Holds `key` for a write that reads it first.
    pub fn hold(&mut self, key: &[u8]) {
        self.keys.entry(key.to_vec()).or_default().held = true;
    }

    /// Queues `w` behind the write holding its key.
    pub fn wait(&mut self, key: &[u8], w: Waiter) {
        self.keys
            .entry(key.to_vec())
            .or_default()
            .waiting
            .push_back(w);
        self.waiting += 1;
    }

    /// The owner sends `record` to its own store.
    pub fn applying(&mut self, record: &Record) {
        let h = self.keys.entry(record.key.clone()).or_default();
        h.pending += 1;
        if h.latest.as_ref().is_none_or(|l| record.supersedes(l)) {
            h.latest = Some(record.clone());
        }
    }

    /// The owner's store finished an apply of `key` (stored or not).
    pub fn applied(&mut self, key: &[u8]) {
        if let Some(h) = self.keys.get_mut(key) {
            h.pending = h.pending.saturating_sub(1);
            if h.pending == 0 {
                h.latest = None;
            }
        }
        self.forget_if_idle(key);
    }

    /// Releases `key` after its write decided; returns the next waiting
    /// write, if any (the caller releases again for a waiter that does not
    /// hold the key).
    pub fn release(&mut self, key: &[u8]) -> Option<Waiter> {
        let h = self.keys.get_mut(key)?;
        h.held = false;
        let next = h.waiting.pop_front();
        if next.is_some() {
            self.waiting -= 1;
        }
        self.forget_if_idle(key);
        next
    }

    fn forget_if_idle(&mut self, key: &[u8]) {
        if self
            .keys
            .get(key)
            .is_some_and(|h| h.pending == 0 && !h.held && h.waiting.is_empty())
        {
            self.keys.remove(key);
        }
    }
}
