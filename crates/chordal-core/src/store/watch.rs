//! Watches at a key's owner (`Operation::Watch`): "answer me the first
//! change newer than version `after`" of one key, or of every key of a
//! hash tag's group. The HTTP watch (`GET /v1/watch/{key}`) and the
//! blocking pops (BLPOP, BZPOPMIN…) are loops of these.
//!
//! Why a change is never missed: the watcher is registered *before* the
//! owner reads what its store holds newer than `after`, so a write
//! acknowledged while that read runs is kept for it (`seen`) and compared
//! with the read's; a write acknowledged later wakes it. The read happens
//! only once the owner's term has caught up (its store then holds every
//! write acknowledged in an earlier term, by whichever owner). A watcher
//! answers one change — every record of one write, the oldest newer than
//! `after` — and the caller watches again from that change's version, so
//! the changes it is told are each newer than the one before, and none
//! acknowledged after `after` is skipped while the owner's store keeps
//! its record (a key written twice between two watches shows its newer
//! version only: a watch reports states, not every overwritten one).

use super::{Deadline, Store, StoreWait};
use crate::collection::key::is_reserved;
use crate::io::Cx;
use crate::request::ReplyTo;
use crate::{Id, NodeRef, OpLog, OpResult, Record, StoreKind, StoreResult, Time, Version};

/// Watchers one process holds at once; more are answered `Overloaded`.
pub const MAX_WATCHES: usize = 10_000;
/// Records of a group one watch reads from its store (a group's changes
/// beyond these wait for the next watch).
const MAX_GROUP_READ: usize = 10_000;
const MAX_GROUP_BYTES: usize = 4 << 20;

/// One waiting watch.
#[derive(Debug)]
pub(super) struct Watcher {
    reply: ReplyTo,
    key: Vec<u8>,
    key_id: Id,
    group: bool,
    after: Option<Version>,
    /// Its store read has not come back yet.
    reading: bool,
    /// Writes acknowledged while it read (compared with the read's).
    seen: Vec<Record>,
    until: Time,
}

impl Watcher {
    /// Is `r` a change this watcher reports? The key's own record (its
    /// collection's header), or any key of the group; never an element
    /// record (every collection write rewrites its header too).
    fn wants(&self, r: &Record) -> bool {
        let mine = if self.group {
            r.key_id == self.key_id
        } else {
            r.key == self.key
        };
        mine && !is_reserved(&r.key) && self.after.is_none_or(|a| r.version > a)
    }
}

/// The watchers of one process.
#[derive(Debug, Default)]
pub(super) struct Watches {
    by_id: crate::fasthash::FastMap<u64, Watcher>,
    /// Watcher ids by the key id they watch (peers choose keys: ordered).
    by_key_id: std::collections::BTreeMap<Id, Vec<u64>>,
}

impl Watches {
    fn remove(&mut self, id: u64) -> Option<Watcher> {
        let w = self.by_id.remove(&id)?;
        if let Some(ids) = self.by_key_id.get_mut(&w.key_id) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_key_id.remove(&w.key_id);
            }
        }
        Some(w)
    }

    /// Does any watcher wait for a write of key id `key_id`? (Checked
    /// before anything is copied for them.)
    pub fn watching(&self, key_id: &Id) -> bool {
        self.by_key_id.contains_key(key_id)
    }

    /// Watchers waiting now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// The oldest change among `records` a watcher wants: every record of
/// the oldest version, as a watch answers them (no log of writes).
fn oldest_change(w: &Watcher, records: impl IntoIterator<Item = Record>) -> Option<OpResult> {
    let wanted: Vec<Record> = records.into_iter().filter(|r| w.wants(r)).collect();
    let version = wanted.iter().map(|r| r.version).min()?;
    let mut records: Vec<Record> = wanted
        .into_iter()
        .filter(|r| r.version == version)
        .map(|mut r| {
            r.ops = OpLog::default();
            r
        })
        .collect();
    records.sort_by(|a, b| a.key.cmp(&b.key));
    records.dedup_by(|a, b| a.key == b.key);
    Some(OpResult::Watched {
        version: Some(version),
        records,
    })
}

/// The answer of a watch that saw nothing newer.
fn nothing() -> OpResult {
    OpResult::Watched {
        version: None,
        records: Vec::new(),
    }
}

impl Store {
    /// Serves `Operation::Watch` as `vnode`, the owner of `key_id`
    /// (checked by the request machine): registers the watcher, then
    /// reads what the store holds newer than `after` (see the module
    /// docs). A term still catching up answers `NotReady`.
    pub fn watch(
        &mut self,
        cx: &mut Cx<'_>,
        now: Time,
        vnode: NodeRef,
        (key_id, key): (Id, Vec<u8>),
        (after, group): (Option<Version>, bool),
        reply: ReplyTo,
    ) {
        if self.closing() {
            cx.io.answer(reply, OpResult::WrongOwner);
            return;
        }
        if self.watches.len() >= MAX_WATCHES {
            cx.io.counting.error("watch_overloaded");
            cx.io.answer(reply, OpResult::Overloaded);
            return;
        }
        if !super::batch::caught_up(cx, now, (&vnode, &key_id)) {
            cx.io.answer(reply, super::owner::not_ready(cx));
            return;
        }
        let until = reply.answer_by(now, cx.config);
        let id = cx.io.next();
        // A group watched from now needs no read: the next write answers.
        let reading = !(group && after.is_none());
        let read = match (group, reading) {
            (_, false) => None,
            (false, true) => Some(StoreKind::Get {
                key_id,
                key: key.clone(),
            }),
            (true, true) => Some(StoreKind::Elements {
                born: after.unwrap_or_default(),
                key_id,
                prefix: Vec::new(),
                after: Vec::new(),
                // User keys sort below the element keys (0xFF 0xFF…).
                to: Some(vec![0xFF, 0xFF]),
                limit: MAX_GROUP_READ,
                max_bytes: MAX_GROUP_BYTES,
                tombstones: true,
            }),
        };
        self.watches.by_id.insert(
            id,
            Watcher {
                reply,
                key,
                key_id,
                group,
                after,
                reading,
                seen: Vec::new(),
                until,
            },
        );
        self.watches.by_key_id.entry(key_id).or_default().push(id);
        self.deadlines.insert((until, Deadline::Watch(id)));
        if let Some(read) = read {
            self.store_op(cx, read, StoreWait::Watch(id));
        }
    }

    /// The store read of watch `id` is back: answer the oldest change
    /// newer than its `after` among what it read and what was
    /// acknowledged meanwhile, or wait for the next write. A key watched
    /// from `None` answers its current record (or none) at once.
    pub(super) fn watch_read(&mut self, cx: &mut Cx<'_>, id: u64, result: StoreResult) {
        let Some(w) = self.watches.by_id.get_mut(&id) else {
            return;
        };
        w.reading = false;
        let read = match result {
            StoreResult::Got(r) => r.into_iter().collect(),
            StoreResult::Scanned(records) => records,
            _ => {
                cx.io.counting.error("kv_store_failed");
                self.watch_answer(cx, id, OpResult::StoreFailed);
                return;
            }
        };
        for r in &read {
            self.hlc.observe(r.version.hlc);
        }
        let seen = std::mem::take(&mut w.seen);
        let current = !w.group && w.after.is_none();
        let answer = oldest_change(w, read.into_iter().chain(seen));
        let answer = match answer {
            Some(a) => a,
            None if current => nothing(),
            None => return,
        };
        self.watch_answer(cx, id, answer);
    }

    /// Answers watch `id` with `answer` and forgets it.
    fn watch_answer(&mut self, cx: &mut Cx<'_>, id: u64, answer: OpResult) {
        if let Some(w) = self.watches.remove(id) {
            self.deadlines.remove(&(w.until, Deadline::Watch(id)));
            cx.io.answer(w.reply, answer);
        }
    }

    /// A write of `records` (one key id, one version) reached its quorum:
    /// answer the watchers waiting for it; keep it for those still
    /// reading.
    pub(super) fn watch_wake(&mut self, cx: &mut Cx<'_>, records: &[Record]) {
        let Some(first) = records.first() else {
            return;
        };
        let Some(ids) = self.watches.by_key_id.get(&first.key_id).cloned() else {
            return;
        };
        for id in ids {
            let Some(w) = self.watches.by_id.get_mut(&id) else {
                continue;
            };
            if w.reading {
                // Only the oldest change can be answered: keep that one.
                let wanted: Vec<Record> = records.iter().filter(|r| w.wants(r)).cloned().collect();
                w.seen.extend(wanted);
                if let Some(oldest) = w.seen.iter().map(|r| r.version).min() {
                    w.seen.retain(|r| r.version == oldest);
                }
                continue;
            }
            let Some(answer) = oldest_change(w, records.iter().cloned()) else {
                continue;
            };
            self.watch_answer(cx, id, answer);
        }
    }

    /// Watch `id` saw nothing newer in its time: say so (the caller
    /// watches again, from the same version).
    pub(super) fn watch_expired(&mut self, cx: &mut Cx<'_>, id: u64) {
        if let Some(w) = self.watches.remove(id) {
            cx.io.answer(w.reply, nothing());
        }
    }
}
