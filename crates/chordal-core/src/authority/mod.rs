//! Authority: which vnode may decide for which keys, and for how long
//! (DESIGN §5, "Who decides"). Chord routing says who *should* own a key;
//! this machine makes sure that at most one vnode *does*: a vnode decides
//! only under a term granted by a majority of its range's copies and of
//! the previous config's (phase 1 of Paxos, per ring interval), while
//! its lease lasts, and copies refuse writes of a lower term than they
//! promised (the fence).
//!
//! Two roles, in every process:
//! - the **acceptor** keeps the process's [`Promises`] and answers
//!   `Prepare`, `Renew` and `Release` (this file);
//! - the **holder** side runs one [`Hold`](holds) per interval one of our
//!   vnodes owns by Chord: prepares it, renews it, gives it up (`holds/`).
//!
//! The store asks [`Authority::lease`] before it decides anything, and
//! [`Authority::fence`] before it stores an owner's write.

mod holds;
mod promises;
mod ringmap;

pub use promises::{Known, Promises, Refusal, Settled};

use crate::message::{Envelope, Message, NodeRef};
use crate::{Id, KeyRange, Record, Time};
use holds::Holds;
pub(crate) use holds::Unfinished;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What the authority machine's methods get: the configuration, the ring
/// (read only) and the outputs. (Not [`crate::io::Cx`], which lends the
/// authority itself to the other machines.)
pub(crate) struct ACx<'a> {
    pub config: &'a crate::Config,
    pub ring: &'a crate::ring::Ring,
    pub io: &'a mut crate::io::Io,
}
use std::time::Duration;

/// The authority of one process: its promises and its vnodes' holds.
#[derive(Debug, Default)]
pub(crate) struct Authority {
    promises: Promises,
    holds: Holds,
    /// Live terms that may still need to read our copies — their holder's
    /// last renewal named a config of ours among its pending ones — by
    /// (holder, interval), until when (see [`Authority::may_leave`]).
    needed: BTreeMap<(Id, Id, Id), Time>,
    /// After a restart, until when we assume some term needs us (we
    /// cannot know which did).
    needed_until: Time,
    /// Processes draining for a graceful leave (`Message::Leaving`) →
    /// until when our configs leave them out (the notice is repeated
    /// while the leave waits).
    leaving: BTreeMap<SocketAddr, (NodeRef, Time)>,
    /// When we last told holders that we are leaving.
    announced_at: Option<Time>,
    /// When we last sent lineage notices (see [`Authority::tell_lineage`]).
    lineage_told_at: Option<Time>,
    /// The last save of our promise table failed (a full disk): we grant
    /// nothing, so no term of ours can begin, and a key we cannot decide
    /// for is refused as a storage failure rather than a wait.
    saves_failing: bool,
}

/// How long a `Leaving` notice keeps its sender out of our configs.
const LEAVING_TTL: Duration = Duration::from_secs(5);
/// How often a leave waiting for the authority repeats its notices.
const LEAVING_EVERY: Duration = Duration::from_millis(500);
/// How often a process tells owners the lineage only it may know.
const LINEAGE_EVERY: Duration = Duration::from_secs(1);
/// Most lineage notices a process sends at a time.
const MAX_LINEAGE: usize = 16;

/// What the store needs to decide for a key: the term to version writes
/// with, who holds the copies, and from whom to catch up first.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    /// The term the holder decides in.
    pub term: u64,
    /// The ring interval the term holds (the key is in it).
    pub range: KeyRange,
    /// The copies other than the holder's process.
    pub replicas: &'a [NodeRef],
    /// Previous configs whose majority (among the grantors) a decision
    /// must read before it decides; empty once caught up.
    pub catch_up: &'a [Vec<NodeRef>],
}

/// Why a vnode may not decide for a key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotReady {
    /// It holds no valid lease there (preparing, waiting out another
    /// holder's lease, renewing, or a minority).
    NoLease,
}

impl Authority {
    /// A ring is created here: the whole ring's lineage starts with this
    /// process, in term 1, with itself as the only copy.
    pub fn found(&mut self, cx: &mut ACx<'_>, now: Time) {
        if !cx.config.authority {
            return;
        }
        let me = cx.ring.primary().me();
        let whole = KeyRange {
            start: me.id,
            end: me.id,
        };
        // A process restarted on its data (alone, or told to re-form a
        // ring from what survived) keeps the lineage it knows: term 1
        // would be below it. Points with no term there stay untaken
        // unless forced (see `Config::force_new_ring_above`).
        if !self.promises.known(whole).is_empty() {
            return;
        }
        let granted = self
            .promises
            .grant(now, whole, 1, me, vec![me], Duration::ZERO);
        debug_assert!(granted.is_ok());
        // Settled at once: the lineage of every point starts here.
        self.promises.renew(now, whole, 1, &me, Duration::ZERO, &[]);
        self.save(cx, Vec::new());
    }

    /// A converged ring is started at once (simulations): every process
    /// records, for every vnode's range, a lapsed term-1 promise to that
    /// vnode with its config, so that each lineage starts where the
    /// vnodes will prepare.
    pub fn found_converged(
        &mut self,
        cx: &mut ACx<'_>,
        now: Time,
        ranges: &[(NodeRef, KeyRange, Vec<NodeRef>)],
    ) {
        if !cx.config.authority {
            return;
        }
        for (holder, range, config) in ranges {
            let granted =
                self.promises
                    .grant(now, *range, 1, *holder, config.clone(), Duration::ZERO);
            debug_assert!(granted.is_ok());
            self.promises
                .renew(now, *range, 1, holder, Duration::ZERO, &[]);
        }
        self.save(cx, Vec::new());
    }

    /// After a restart: the promises the store kept (`None`: none). Every
    /// one counts as live for one lease from now — we cannot know which
    /// leases we granted just before we stopped. Our vnodes (`ours`, by
    /// id) are at `addr` now, whatever address they had before.
    pub fn restore(
        &mut self,
        config: &crate::Config,
        now: Time,
        saved: Option<&[u8]>,
        (ours, addr): (&[Id], SocketAddr),
    ) -> bool {
        let Some(bytes) = saved else { return true };
        match Promises::from_bytes(bytes) {
            Some(mut p) => {
                p.readdress(ours, addr);
                p.hold_all_until(now + config.lease);
                self.promises = p;
                // Nor which terms named us pending.
                self.needed_until = now + config.lease;
                true
            }
            None => false,
        }
    }

    /// The store saved our promise table (`ok`), or could not: see
    /// [`Authority::saves_failing`].
    pub fn saved(&mut self, ok: bool) {
        self.saves_failing = !ok;
    }

    /// Does our storage refuse our promises (the last save failed)? Until
    /// one succeeds, no term of ours can begin: a key without one is
    /// answered `StoreFailed` (HTTP 507) rather than `NotReady`.
    pub fn saves_failing(&self) -> bool {
        self.saves_failing
    }

    /// May our vnode `vnode` decide for `key` now? The lease it holds
    /// there, or why not.
    pub fn lease(&self, vnode: &NodeRef, key: &Id, now: Time) -> Result<Lease<'_>, NotReady> {
        self.holds.lease(vnode, key, now).ok_or(NotReady::NoLease)
    }

    /// May a write our vnode `vnode` decided at `key` in `term` still be
    /// acknowledged (its quorum counts)? While `term` belongs to the
    /// unbroken run of our terms that decides there now (see
    /// `Holds::decides_in`).
    pub fn decides_in(&self, vnode: &NodeRef, key: &Id, term: u64, now: Time) -> bool {
        self.holds.decides_in(vnode, key, term, now)
    }

    /// The parts of our holds given up to joiners and not yet released:
    /// the store calls [`Authority::drained`] for each once its writes
    /// there ended.
    pub fn releasing(&self) -> Vec<(NodeRef, KeyRange)> {
        self.holds.releasing()
    }

    /// No write of ours in `vnode`'s given-up part `range` is under way
    /// any more: release it to the joiner.
    pub fn drained(&mut self, cx: &mut ACx<'_>, vnode: &NodeRef, range: KeyRange) {
        self.holds.drained(cx, vnode, range);
    }

    /// The fence for `writer`'s write of `records` decided in `term` (0:
    /// not an owner's decision): the higher term we promised another
    /// vnode for one of their keys, or 0 if none (see
    /// [`Promises::fencing_term`]).
    pub fn fence(&self, term: u64, records: &[Record], writer: &NodeRef) -> u64 {
        let keys: Vec<Id> = records.iter().map(|r| r.key_id).collect();
        self.fence_keys(term, &keys, writer)
    }

    /// [`Authority::fence`] by key ids.
    pub fn fence_keys(&self, term: u64, keys: &[Id], writer: &NodeRef) -> u64 {
        if term == 0 {
            return 0;
        }
        keys.iter()
            .map(|k| self.promises.fencing_term(k, term, writer))
            .max()
            .unwrap_or(0)
    }

    /// A copy refused our vnode `vnode`'s write at `key` for a higher
    /// `term`: we were deposed there; stop deciding and prepare again.
    pub fn deposed(&mut self, vnode: &NodeRef, key: &Id, term: u64, now: Time) {
        self.holds.deposed(vnode, key, term, now);
    }

    /// A message of this machine ([`crate::Family::Authority`]).
    pub fn handle_message(&mut self, cx: &mut ACx<'_>, now: Time, env: Envelope) {
        let Envelope { from, to, msg } = env;
        let me = cx.ring.addressee(to.id);
        let lease = cx.config.lease;
        match msg {
            // After our farewell we stay an acceptor of the configs we
            // were in (see `may_leave`), but join none: a config that
            // names us would lose a copy when we go.
            Message::Prepare { ref config, .. }
                if self.holds.released() && config.iter().any(|n| n.addr == cx.ring.addr()) => {}
            Message::Prepare {
                req,
                range,
                term,
                config,
            } => {
                let answer = self.promises.grant(now, range, term, from, config, lease);
                let reply = Envelope {
                    from: me,
                    to: from.into(),
                    msg: Message::Promise {
                        req,
                        answer: answer.clone(),
                    },
                };
                if answer.is_ok() {
                    // Durable before the holder counts on it.
                    cx.io.counting.counters.terms_granted += 1;
                    self.save(cx, vec![reply]);
                } else {
                    cx.io.out.push_back(reply);
                }
            }
            Message::Renew {
                req,
                range,
                term,
                pending,
                config,
            } => {
                // A holder still reading (or telling the next holder to
                // read) a config of ours: a graceful leave waits.
                let us = cx.ring.addr();
                let key = (from.id, range.start, range.end);
                if pending.iter().flatten().any(|n| n.addr == us) {
                    self.needed.insert(key, now + lease);
                } else {
                    self.needed.remove(&key);
                }
                let renewed = self
                    .promises
                    .renew(now, range, term, &from, lease, &pending);
                if renewed.is_none() {
                    // Not a term we granted: still news of a settled term.
                    self.promises.observe(range, term, from, config, pending);
                }
                let reply = Envelope {
                    from: me,
                    to: from.into(),
                    msg: Message::Renewed {
                        req,
                        ok: renewed.is_some(),
                    },
                };
                if renewed == Some(true) {
                    // Newly settled (or less pending): durable before the
                    // holder counts on it.
                    self.save(cx, vec![reply]);
                } else {
                    cx.io.out.push_back(reply);
                }
            }
            Message::Release { range, term } => self.promises.release(range, term, &from),
            Message::Handover { range, term, known } if cx.config.authority => {
                self.holds.handed(now, from, range, term, known);
                self.holds.reconcile(cx, now, &self.promises, &self.leaving);
            }
            Message::Lineage {
                range,
                term,
                config,
                pending,
            } => {
                // Where we know a newer settled term, say so: the teller
                // records it and stops telling.
                let newer = self.promises.newer_settled(range, term);
                for (piece, st) in newer.into_iter().take(MAX_LINEAGE) {
                    let msg = Message::Lineage {
                        range: piece,
                        term: st.term,
                        config: st.config,
                        pending: st.pending,
                    };
                    cx.io.send(me, from, msg);
                }
                if let Some(&holder) = config.first() {
                    self.promises.observe(range, term, holder, config, pending);
                }
            }
            Message::Leaving => {
                let until = now + LEAVING_TTL;
                let fresh = self.leaving.insert(from.addr, (from, until)).is_none();
                if fresh && cx.config.authority {
                    // New configs without it, at once.
                    self.holds.reconcile(cx, now, &self.promises, &self.leaving);
                }
            }
            Message::Promise { req, answer } => {
                self.holds
                    .promised(cx, now, from, req, answer, &self.promises)
            }
            Message::Renewed { req, ok } => self.holds.renewed(cx, now, from, req, ok),
            _ => {}
        }
    }

    /// Brings the holds in line with what Chord says our vnodes own;
    /// renews, retries and times out. Call on every timeout and after the
    /// ring changed.
    pub fn tick(&mut self, cx: &mut ACx<'_>, now: Time) {
        if !cx.config.authority {
            return;
        }
        self.leaving.retain(|_, (_, until)| *until > now);
        self.needed.retain(|_, until| *until > now);
        self.holds.reconcile(cx, now, &self.promises, &self.leaving);
        self.tell_lineage(cx, now);
    }

    /// Tells the owner of each interval whose newest settled term we know
    /// names us in its config, and where nobody renews a lease with us,
    /// that term and its config (`Message::Lineage`; every
    /// [`LINEAGE_EVERY`]). An owner that knows a newer term answers with
    /// it, and we stop.
    ///
    /// A prepare must ask the last settled term's config, but finds it
    /// only among the configs its askees know, its successor and (when
    /// that fails) the nodes its routing knows. A piece the ring's creator
    /// gave up while joins came quickly may never have been held since,
    /// and under Chord routing its owner knows only its neighbours and
    /// fingers: without this notice it prepared forever, its keys
    /// answered `NotReady`, and the creator's graceful leave waited for
    /// its bound (`may_leave` counts on the next holder). Our best guess
    /// at the owner may be a node before it; told, that node answers the
    /// owner's prepare with the lineage.
    fn tell_lineage(&mut self, cx: &mut ACx<'_>, now: Time) {
        if self
            .lineage_told_at
            .is_some_and(|t| now < t + LINEAGE_EVERY)
        {
            return;
        }
        self.lineage_told_at = Some(now);
        let us = cx.ring.addr();
        let me = cx.ring.primary().me();
        // The nodes we know of, gathered once a round (a membership
        // table may name thousands), and only if there is news to tell.
        let mut known: Option<Vec<NodeRef>> = None;
        let mut told = 0;
        for (range, st) in self.promises.lineage_of(us, now) {
            // Ours to prepare, or still ours: nobody to tell.
            if self.holds.holds_term(&st.holder, st.term, range)
                || cx.ring.owning_vnode(&range.end).is_some()
            {
                continue;
            }
            let known = known.get_or_insert_with(|| holds::known_nodes(cx));
            for owner in holds::known_owners(known, range) {
                if told == MAX_LINEAGE {
                    return;
                }
                // A member of the config granted the term: it knows.
                if owner.addr == us || st.config.iter().any(|n| n.addr == owner.addr) {
                    continue;
                }
                let msg = Message::Lineage {
                    range,
                    term: st.term,
                    config: st.config.clone(),
                    pending: st.pending.clone(),
                };
                cx.io.send(me, owner, msg);
                told += 1;
            }
        }
    }

    /// May a graceful leave say goodbye now without stranding a write?
    /// Only once every term we hold is finished and its grantors know it
    /// (the next holder then reads our config's majority alone, which
    /// survives our going), and no live term names a config of ours among
    /// its pending ones (its catch-up may need our copies to reach that
    /// config's majority) — or nobody is left to take over (see
    /// `last_standing`). Always true without authority.
    ///
    /// Asked again after the farewell, while the process stays on as an
    /// acceptor (`Node::left` waits for it): then our own terms are given
    /// up, and what remains is the newest settled term over each range we
    /// held, whose config names us until the next holder settles and
    /// finishes a term without us. Until then that holder — our successor,
    /// or whoever follows it if it dies — needs our grant and our copies:
    /// with one more member of our config gone, no majority of it is left
    /// without us.
    pub fn may_leave(&self, cx: &ACx<'_>, now: Time) -> bool {
        if !cx.config.authority || self.last_standing(cx) {
            return true;
        }
        self.holds.all_finished()
            && self.needed_until <= now
            && self.needed.values().all(|until| *until <= now)
            && self.counting_on_us(cx, now).is_empty()
    }

    /// Is nobody left to take anything over? Every successor we know is
    /// us, or draining for a leave of its own: the last node of a ring
    /// (or every node of a ring stopped at once) would wait for nobody.
    /// Its data and promises stay on disk for a restart.
    fn last_standing(&self, cx: &ACx<'_>) -> bool {
        let us = cx.ring.addr();
        cx.ring.vnodes().iter().all(|v| {
            v.table()
                .successors()
                .iter()
                .all(|n| n.addr == us || self.leaving.contains_key(&n.addr))
        })
    }

    /// The holders of promises that count on us (see
    /// [`Promises::naming`]) outside the terms we hold ourselves (those
    /// wait in `Holds::all_finished`): each must get a term whose config
    /// leaves us out — or, for a term we held and gave up, the next
    /// holder must settle its own — before we go.
    fn counting_on_us(&self, cx: &ACx<'_>, now: Time) -> Vec<NodeRef> {
        let mut out: Vec<NodeRef> = Vec::new();
        for (range, p) in self.promises.naming(cx.ring.addr(), now) {
            if !self.holds.holds_term(&p.holder, p.term, range) && !out.contains(&p.holder) {
                out.push(p.holder);
            }
        }
        out
    }

    /// While a graceful leave waits: tell every holder whose live config
    /// names us to prepare a config without us (every [`LEAVING_EVERY`]).
    pub fn announce_leaving(&mut self, cx: &mut ACx<'_>, now: Time) {
        if !cx.config.authority || self.announced_at.is_some_and(|t| now < t + LEAVING_EVERY) {
            return;
        }
        self.announced_at = Some(now);
        let me = cx.ring.primary().me();
        let us = cx.ring.addr();
        for holder in self.counting_on_us(cx, now) {
            if holder.addr != us {
                cx.io.send(me, holder, Message::Leaving);
            }
        }
    }

    /// A graceful leave begins (see [`Authority::release_all`]).
    pub fn begin_leave(&mut self, now: Time) {
        self.holds.begin_leave(now);
    }

    /// The farewell of a graceful leave: give every interval up (the
    /// successors prepare at once), hand each term over to the successor
    /// that took every record of its interval (`handed`, from the
    /// store's leave), and hold and grant nothing again.
    pub fn release_all(&mut self, cx: &mut ACx<'_>, handed: &[(KeyRange, NodeRef)]) {
        self.holds.release_all(cx, &self.promises, handed);
    }

    /// Is some term of ours still to finish its catch-up? (Cheap.)
    pub fn has_unfinished(&self) -> bool {
        self.holds.has_unfinished()
    }

    /// Our terms whose catch-up the store must still finish (pull from
    /// older configs, then push to a majority of the term's own).
    pub fn unfinished(&self) -> Vec<Unfinished> {
        self.holds.unfinished()
    }

    /// The store pulled `range` from a read quorum of each of the term's
    /// catch-up configs: decide from our store alone from now on.
    pub fn caught_up(&mut self, vnode: &NodeRef, range: KeyRange, term: u64, now: Time) {
        self.holds.caught_up(vnode, range, term, now);
    }

    /// The store, caught up, pushed `range` to a majority of the term's
    /// config: the next holder need read nothing older.
    pub fn finished(&mut self, vnode: &NodeRef, range: KeyRange, term: u64, now: Time) {
        self.holds.finished(vnode, range, term, now);
    }

    /// When `tick` must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.holds.poll_timeout()
    }

    /// (Intervals held, intervals wanted but not held), for counters.
    pub fn hold_counts(&self) -> (u64, u64) {
        self.holds.counts()
    }

    /// Asks the store to keep the promise table, then sends `then`.
    fn save(&mut self, cx: &mut ACx<'_>, then: Vec<Envelope>) {
        cx.io.saves.push_back((self.promises.to_bytes(), then));
    }
}

/// A majority of `n`: how many of a config's `n` processes must grant a
/// term, and hold a write before it is acknowledged.
pub(crate) fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The fewest of a config's `n` processes that meet every majority of
/// it: reading that many sees every write the config's term
/// acknowledged. One fewer than a majority when `n` is even — so a
/// two-process config whose other process died can still be caught up
/// from the survivor, which holds every write it acknowledged. (Grants
/// still need a majority: two terms granted by disjoint halves could
/// both decide.)
pub(crate) fn read_quorum(n: usize) -> usize {
    n - majority(n) + 1
}
