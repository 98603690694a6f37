//! What one process has promised about the ring's intervals: per point,
//! the highest term it granted, to which holder, with which config, and
//! until when no other holder may be granted it (DESIGN §5, "Who
//! decides"). Phase 1's acceptor state, per interval.
//!
//! Call [`Promises::grant`] for a `Prepare`, [`Promises::renew`] for a
//! holder's `Renew`, [`Promises::release`] for its `Release`, and
//! [`Promises::fencing_term`] before storing an owner's write (the fence).

use super::ringmap::RingMap;
use crate::{Id, KeyRange, NodeRef, Time};
use std::net::SocketAddr;

/// One promise over some interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promise {
    /// The term granted.
    pub term: u64,
    /// The vnode that holds the interval in that term.
    pub holder: NodeRef,
    /// The processes holding the copies in that term (the holder's first).
    pub config: Vec<NodeRef>,
    /// Until when (our clock) we grant no other holder; `Time::ZERO` once
    /// released.
    pub until: Time,
    /// The newest term we know was *settled* here: its holder's prepare
    /// completed and its first renewal reached us. Only a settled term
    /// may have decided anything, so only its config is a new term's
    /// predecessor (a prepare that failed promised too, and must not
    /// count: an isolated node's config of itself alone would).
    pub settled: Option<Settled>,
}

/// A term known settled: its holder may have decided in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The term.
    pub term: u64,
    /// Its holder vnode.
    pub holder: NodeRef,
    /// Its config (processes, the holder's first).
    pub config: Vec<NodeRef>,
    /// Older configs whose majorities may hold writes acknowledged before
    /// this term that are not yet on a majority of `config`: the next
    /// holder must read them too. Empty once the holder finished its
    /// catch-up (pulled from those majorities and pushed to a majority of
    /// its own config). Only ever shrinks.
    pub pending: Vec<Vec<NodeRef>>,
}

/// A promise as told to a holder-to-be: what its grant replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The interval the promise covers (within the prepared one).
    pub range: KeyRange,
    /// Its term.
    pub term: u64,
    /// Its holder vnode.
    pub holder: NodeRef,
    /// Its config (processes, the holder's first).
    pub config: Vec<NodeRef>,
    /// The newest term known settled there.
    pub settled: Option<Settled>,
}

/// Why a prepare was refused; either way the promise that refused it
/// (the holder-to-be must learn of it: its config's majority must grant
/// before the new term may be taken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A term at least as high is promised here: prepare above it.
    Outdated {
        /// The promise, clipped to the prepared interval.
        promise: Box<Known>,
    },
    /// Another holder's lease is live here for `wait` more.
    Held {
        /// The promise, clipped to the prepared interval.
        promise: Box<Known>,
        /// How much longer its lease lasts here.
        wait: std::time::Duration,
    },
}

/// A process's promise table.
#[derive(Clone, Debug, Default)]
pub struct Promises {
    map: RingMap<Promise>,
}

impl Promises {
    /// Grants `term` over `range` to `holder` with `config` if no promise
    /// there forbids it, promising to grant no one else until `now +
    /// lease`. Returns what the grant replaced (every earlier promise in
    /// the range, clipped), or why not. The caller saves the table before
    /// answering (a restarted process must not grant an older term).
    ///
    /// A promise forbids it when its term is higher, or equal for another
    /// holder, or when it belongs to another holder and its lease is live.
    pub fn grant(
        &mut self,
        now: Time,
        range: KeyRange,
        term: u64,
        holder: NodeRef,
        config: Vec<NodeRef>,
        lease: std::time::Duration,
    ) -> Result<Vec<Known>, Refusal> {
        let mut known = Vec::new();
        let mut pieces = Vec::new();
        for (piece, p) in self.map.pieces(range) {
            pieces.push((piece, p.and_then(|p| p.settled.clone())));
            let Some(p) = p else { continue };
            let same = p.holder == holder;
            let promise = Known {
                range: piece,
                term: p.term,
                holder: p.holder,
                config: p.config.clone(),
                settled: p.settled.clone(),
            };
            if p.term > term || (p.term == term && !same) {
                let promise = Box::new(promise);
                return Err(Refusal::Outdated { promise });
            }
            if !same && p.until > now {
                let (promise, wait) = (Box::new(promise), p.until - now);
                return Err(Refusal::Held { promise, wait });
            }
            known.push(promise);
        }
        // Each piece keeps what it knew settled.
        for (piece, settled) in pieces {
            let promise = Promise {
                term,
                holder,
                config: config.clone(),
                until: now + lease,
                settled,
            };
            self.map.set(piece, Some(promise));
        }
        Ok(known)
    }

    /// Extends `holder`'s lease of `term` over `range` to `now + lease`,
    /// and records the term settled there with its `pending` configs.
    /// `None` if some point of the range is no longer promised to it in
    /// that term (it lost some of it and must stop); else whether this
    /// changed what is known settled anywhere (a newly settled term, or
    /// fewer pending configs) — then the caller saves the table before
    /// answering (a restarted process must still report the newest
    /// settled term, and must not report more pending than it did).
    pub fn renew(
        &mut self,
        now: Time,
        range: KeyRange,
        term: u64,
        holder: &NodeRef,
        lease: std::time::Duration,
        pending: &[Vec<NodeRef>],
    ) -> Option<bool> {
        let pieces = self.map.pieces(range);
        let all_ours = pieces
            .iter()
            .all(|(_, p)| p.is_some_and(|p| p.term == term && p.holder == *holder));
        if !all_ours {
            return None;
        }
        let news = pieces.iter().any(|(_, p)| {
            p.is_some_and(|p| {
                p.settled
                    .as_ref()
                    .is_none_or(|st| st.term != term || st.pending != pending)
            })
        });
        self.map.update(range, |p| {
            p.until = now + lease;
            p.settled = Some(Settled {
                term: p.term,
                holder: p.holder,
                config: p.config.clone(),
                pending: pending.to_vec(),
            });
        });
        Some(news)
    }

    /// A renewal of a term we did not grant (a leaving process hears the
    /// renewals of the holders it told, a pending config's member those
    /// of terms that may need it): the term is settled — its holder
    /// renews only once its prepare completed — so where we knew only an
    /// older settled term (or the same with more pending), record it. Our
    /// promises stay as they were.
    pub fn observe(
        &mut self,
        range: KeyRange,
        term: u64,
        holder: NodeRef,
        config: Vec<NodeRef>,
        pending: Vec<Vec<NodeRef>>,
    ) {
        if config.first().is_none_or(|c| c.addr != holder.addr) {
            return; // Not a config of that holder: ignore.
        }
        self.map.update(range, |p| {
            // A newer term, or the same with fewer pending (its holder
            // only ever drops some).
            let news = p.settled.as_ref().is_none_or(|st| {
                st.term < term
                    || (st.term == term && st.holder == holder && st.pending.len() > pending.len())
            });
            if news {
                p.settled = Some(Settled {
                    term,
                    holder,
                    config: config.clone(),
                    pending: pending.clone(),
                });
            }
        });
    }

    /// The pieces whose newest settled term we know has a config naming
    /// process `us`, where no lease we promised is live: nobody renews
    /// that term to us any more, and its next holder may not know it (see
    /// `Authority::tell_lineage`).
    pub fn lineage_of(&self, us: SocketAddr, now: Time) -> Vec<(KeyRange, Settled)> {
        self.map
            .entries()
            .into_iter()
            .filter(|(_, p)| p.until <= now)
            .filter_map(|(range, p)| {
                let st = p.settled.as_ref()?;
                st.config
                    .iter()
                    .any(|n| n.addr == us)
                    .then(|| (range, st.clone()))
            })
            .collect()
    }

    /// The settled terms we know over pieces of `range` newer than
    /// `term`: what a lineage notice of `term` missed.
    pub fn newer_settled(&self, range: KeyRange, term: u64) -> Vec<(KeyRange, Settled)> {
        self.map
            .pieces(range)
            .into_iter()
            .filter_map(|(piece, p)| {
                let st = p?.settled.as_ref()?;
                (st.term > term).then(|| (piece, st.clone()))
            })
            .collect()
    }

    /// `holder` gives up `term` over `range`: others may be granted it at
    /// once (a handover).
    pub fn release(&mut self, range: KeyRange, term: u64, holder: &NodeRef) {
        self.map.update(range, |p| {
            if p.term == term && p.holder == *holder {
                p.until = Time::ZERO;
            }
        });
    }

    /// The promises that still count on process `us`: a live lease whose
    /// config names it, or a newest settled term whose config or pending
    /// configs do (the next term there must be granted by, or read, a
    /// majority of them). What a graceful leave of `us` waits for. The
    /// entries stay current because a holder renews to its pending
    /// configs' members too (and once more when nothing is pending), and
    /// [`Promises::observe`] records renewals of terms we did not grant.
    pub fn naming(&self, us: SocketAddr, now: Time) -> Vec<(KeyRange, &Promise)> {
        let names = |c: &[NodeRef]| c.iter().any(|n| n.addr == us);
        self.map
            .entries()
            .into_iter()
            .filter(|(_, p)| {
                (p.until > now && names(&p.config))
                    || p.settled
                        .as_ref()
                        .is_some_and(|st| names(&st.config) || st.pending.iter().any(|c| names(c)))
            })
            .collect()
    }

    /// The term that fences `writer`'s write at `key` decided in `term`:
    /// the promised term if it is higher and another vnode's, else 0.
    ///
    /// A higher term promised to the writer itself does not fence: it is
    /// the writer's next term over a new config, prepared while the old
    /// one still decides (make-before-break). Its process decides both
    /// from one store, in order, so the older write cannot undo a newer
    /// decision; whether the older write may still be acknowledged is the
    /// writer's call (it acknowledges only while its terms ran unbroken
    /// from the write's, see `Holds::decides_in`).
    pub fn fencing_term(&self, key: &Id, term: u64, writer: &NodeRef) -> u64 {
        match self.map.get(key) {
            Some(p) if p.term > term && p.holder != *writer => p.term,
            _ => 0,
        }
    }

    /// The promises over `range`, clipped to it.
    pub fn known(&self, range: KeyRange) -> Vec<Known> {
        self.map
            .pieces(range)
            .into_iter()
            .filter_map(|(piece, p)| {
                p.map(|p| Known {
                    range: piece,
                    term: p.term,
                    holder: p.holder,
                    config: p.config.clone(),
                    settled: p.settled.clone(),
                })
            })
            .collect()
    }

    /// After a restart: every promise counts as live until `until`, since
    /// we cannot know which leases we granted just before we stopped.
    pub fn hold_all_until(&mut self, until: Time) {
        let all = KeyRange {
            start: Id::ZERO,
            end: Id::ZERO,
        };
        self.map.update(all, |p| p.until = until);
    }

    /// After a restart on another address: our own vnodes (`ours`, by
    /// id) are at `addr` now. Every holder and config member that is one
    /// of them takes the new address — they are still this process, with
    /// its store — so a config naming our old address is not waiting for
    /// a process that no longer answers there (a node alone, restarted
    /// on another port, would wait forever for its own old self).
    pub fn readdress(&mut self, ours: &[Id], addr: SocketAddr) {
        let fix = |n: &mut NodeRef| {
            if ours.contains(&n.id) {
                n.addr = addr;
            }
        };
        let all = KeyRange {
            start: Id::ZERO,
            end: Id::ZERO,
        };
        self.map.update(all, |p| {
            fix(&mut p.holder);
            p.config.iter_mut().for_each(fix);
            if let Some(st) = &mut p.settled {
                fix(&mut st.holder);
                st.config.iter_mut().for_each(fix);
                st.pending.iter_mut().flatten().for_each(fix);
            }
        });
    }

    /// The table as bytes, for the store's meta table (terms, holders and
    /// configs; lease ends are not kept).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        let entries = self.map.entries();
        put_u32(&mut out, entries.len() as u32);
        for (range, p) in entries {
            out.extend_from_slice(&range.start.0);
            out.extend_from_slice(&range.end.0);
            out.extend_from_slice(&p.term.to_be_bytes());
            put_node(&mut out, &p.holder);
            put_nodes(&mut out, &p.config);
            match &p.settled {
                None => out.push(0),
                Some(st) => {
                    out.push(1);
                    out.extend_from_slice(&st.term.to_be_bytes());
                    put_node(&mut out, &st.holder);
                    put_nodes(&mut out, &st.config);
                    put_u32(&mut out, st.pending.len() as u32);
                    for c in &st.pending {
                        put_nodes(&mut out, c);
                    }
                }
            }
        }
        out
    }

    /// A table saved by [`Promises::to_bytes`]; `None` if the bytes are
    /// damaged. Every lease counts as ended: call
    /// [`Promises::hold_all_until`] next.
    pub fn from_bytes(bytes: &[u8]) -> Option<Promises> {
        let mut r = Reader(bytes);
        let format = r.take(1)?[0];
        if format != FORMAT && format != 2 {
            return None;
        }
        let mut map = RingMap::default();
        for _ in 0..r.u32()? {
            let start = Id::from_slice(r.take(20)?)?;
            let end = Id::from_slice(r.take(20)?)?;
            let term = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
            let holder = r.node()?;
            let config = r.nodes()?;
            let settled = match r.take(1)?[0] {
                0 => None,
                1 => Some(Settled {
                    term: u64::from_be_bytes(r.take(8)?.try_into().ok()?),
                    holder: r.node()?,
                    config: r.nodes()?,
                    // Format 2 (before pending configs) never ended a
                    // catch-up, and read only the settled config.
                    pending: match format {
                        2 => Vec::new(),
                        _ => {
                            let n = r.u32()? as usize;
                            let mut pending = Vec::with_capacity(n.min(16));
                            for _ in 0..n {
                                pending.push(r.nodes()?);
                            }
                            pending
                        }
                    },
                }),
                _ => return None,
            };
            let promise = Promise {
                term,
                holder,
                config,
                until: Time::ZERO,
                settled,
            };
            map.set(KeyRange { start, end }, Some(promise));
        }
        r.0.is_empty().then_some(Promises { map })
    }
}

/// The version of [`Promises::to_bytes`]'s form.
const FORMAT: u8 = 3;

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_nodes(out: &mut Vec<u8>, nodes: &[NodeRef]) {
    put_u32(out, nodes.len() as u32);
    for n in nodes {
        put_node(out, n);
    }
}

fn put_node(out: &mut Vec<u8>, n: &NodeRef) {
    out.extend_from_slice(&n.id.0);
    let addr = n.addr.to_string();
    out.push(addr.len() as u8);
    out.extend_from_slice(addr.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn nodes(&mut self) -> Option<Vec<NodeRef>> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            out.push(self.node()?);
        }
        Some(out)
    }

    fn node(&mut self) -> Option<NodeRef> {
        let id = Id::from_slice(self.take(20)?)?;
        let len = self.take(1)?[0] as usize;
        let addr: SocketAddr = std::str::from_utf8(self.take(len)?).ok()?.parse().ok()?;
        Some(NodeRef { id, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LEASE: Duration = Duration::from_secs(2);

    fn node(n: u64) -> NodeRef {
        NodeRef::new(
            Id::from_u64(n * 100),
            format!("127.0.0.{n}:7000").parse().unwrap(),
        )
    }

    fn range(a: u64, b: u64) -> KeyRange {
        KeyRange {
            start: Id::from_u64(a),
            end: Id::from_u64(b),
        }
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    /// A process restarted on another port is still the holder and the
    /// config member its saved table names; others keep their addresses.
    #[test]
    fn a_restart_on_another_address_readdresses_our_own_vnodes() {
        let mut p = Promises::default();
        let (a, b) = (node(1), node(2));
        p.grant(at(0), range(10, 20), 1, a, vec![a, b], LEASE)
            .unwrap();
        p.renew(at(0), range(10, 20), 1, &a, LEASE, &[vec![a]]);
        let moved: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let mut back = Promises::from_bytes(&p.to_bytes()).unwrap();
        back.readdress(&[a.id], moved);
        let known = back.known(range(10, 20));
        let a2 = NodeRef::new(a.id, moved);
        assert_eq!(known[0].holder, a2);
        assert_eq!(known[0].config, vec![a2, b]);
        let st = known[0].settled.as_ref().expect("settled");
        assert_eq!((st.holder, st.config.clone()), (a2, vec![a2, b]));
        assert!(st.pending.iter().flatten().all(|n| n.addr != a.addr));
        assert!(
            back.naming(a.addr, at(0)).is_empty(),
            "the old address is nobody"
        );
        assert!(!back.naming(moved, at(0)).is_empty());
    }

    #[test]
    fn a_live_lease_keeps_others_out_until_it_ends_or_is_released() {
        let mut p = Promises::default();
        let (a, b) = (node(1), node(2));
        let known = p
            .grant(at(0), range(10, 20), 1, a, vec![a, b], LEASE)
            .unwrap();
        assert!(known.is_empty());
        // Another holder, higher term, overlapping: refused while live.
        let refused = p.grant(at(1_000), range(15, 30), 2, b, vec![b], LEASE);
        let promise = Known {
            range: range(15, 20),
            term: 1,
            holder: a,
            config: vec![a, b],
            settled: None,
        };
        let (promise, wait) = (Box::new(promise), Duration::from_secs(1));
        assert_eq!(refused, Err(Refusal::Held { promise, wait }));
        // A renewal moves the end; after it, the same prepare succeeds
        // and says what it replaced.
        assert_eq!(
            p.renew(at(1_500), range(10, 20), 1, &a, LEASE, &[]),
            Some(true)
        );
        assert_eq!(
            p.renew(at(1_500), range(10, 20), 1, &a, LEASE, &[]),
            Some(false)
        );
        assert!(
            p.grant(at(3_000), range(15, 30), 2, b, vec![b], LEASE)
                .is_err()
        );
        let known = p
            .grant(at(3_500), range(15, 30), 2, b, vec![b], LEASE)
            .unwrap();
        assert_eq!(known.len(), 1);
        assert_eq!(
            (known[0].range, known[0].term, known[0].holder),
            (range(15, 20), 1, a)
        );
        // The old holder lost part of its range: its renewal says so.
        assert_eq!(p.renew(at(3_600), range(10, 20), 1, &a, LEASE, &[]), None);
        // The fence: a's term-1 write at 17 is fenced by b's term 2, not
        // at 12 (a's own); b's own older write is not fenced by b's term
        // (make-before-break); nothing is promised at 40.
        let fence = |key: u64, term: u64, writer: &NodeRef| {
            p.fencing_term(&Id::from_u64(key), term, writer)
        };
        assert_eq!(fence(12, 1, &a), 0);
        assert_eq!(fence(17, 1, &a), 2);
        assert_eq!(fence(17, 1, &b), 0);
        assert_eq!(fence(17, 2, &a), 0);
        assert_eq!(fence(40, 1, &a), 0);
        // A release hands over at once.
        p.release(range(15, 30), 2, &b);
        assert!(
            p.grant(at(3_700), range(25, 30), 3, a, vec![a], LEASE)
                .is_ok()
        );
    }

    #[test]
    fn an_older_or_equal_term_of_another_holder_is_refused_even_when_expired() {
        let mut p = Promises::default();
        let (a, b) = (node(1), node(2));
        p.grant(at(0), range(0, 0), 5, a, vec![a], LEASE).unwrap();
        let late = at(60_000);
        let outdated = |r: Result<Vec<Known>, Refusal>| match r {
            Err(Refusal::Outdated { promise }) => promise.term,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            outdated(p.grant(late, range(1, 2), 4, b, vec![b], LEASE)),
            5
        );
        assert_eq!(
            outdated(p.grant(late, range(1, 2), 5, b, vec![b], LEASE)),
            5
        );
        // The same holder may prepare its own term again (a lost answer).
        assert!(p.grant(late, range(1, 2), 5, a, vec![a], LEASE).is_ok());
    }

    #[test]
    fn only_a_renewal_settles_a_term_and_grants_keep_what_was_settled() {
        let mut p = Promises::default();
        let (a, b) = (node(1), node(2));
        p.grant(at(0), range(10, 20), 3, a, vec![a, b], LEASE)
            .unwrap();
        assert_eq!(
            p.renew(at(10), range(10, 20), 3, &a, LEASE, &[]),
            Some(true)
        );
        // A prepare of a higher term (which may yet fail) replaces the
        // promise but reports — and keeps — term 3 as the settled one.
        let known = p
            .grant(at(5_000), range(10, 15), 4, b, vec![b], LEASE)
            .unwrap();
        let settled = known[0].settled.as_ref().map(|s| (s.term, s.holder));
        assert_eq!(settled, Some((3, a)));
        let known = p.known(range(10, 20));
        let settled: Vec<_> = known
            .iter()
            .map(|k| (k.term, k.settled.as_ref().map(|s| s.term)))
            .collect();
        assert_eq!(settled, vec![(4, Some(3)), (3, Some(3))]);
        // Its first renewal settles term 4 where it holds it, with the
        // configs it has yet to catch up from; a renewal that says it
        // finished is news too (saved), one that repeats it is not.
        let older = vec![vec![a, b]];
        assert_eq!(
            p.renew(at(5_010), range(10, 15), 4, &b, LEASE, &older),
            Some(true)
        );
        let settled = |p: &Promises| p.known(range(10, 15))[0].settled.clone().unwrap();
        assert_eq!((settled(&p).term, settled(&p).pending), (4, older.clone()));
        assert_eq!(
            p.renew(at(5_020), range(10, 15), 4, &b, LEASE, &older),
            Some(false)
        );
        assert_eq!(
            p.renew(at(5_030), range(10, 15), 4, &b, LEASE, &[]),
            Some(true)
        );
        assert!(settled(&p).pending.is_empty());
    }

    #[test]
    fn the_table_survives_a_restart_with_every_lease_held_for_one_more_lease() {
        let mut p = Promises::default();
        let (a, b, c) = (node(1), node(2), node(3));
        p.grant(at(0), range(10, 20), 3, a, vec![a, b, c], LEASE)
            .unwrap();
        p.grant(at(0), range(50, 5), 7, c, vec![c, a], LEASE)
            .unwrap();
        let older = vec![vec![b, c], vec![a]];
        assert_eq!(
            p.renew(at(1), range(60, 70), 7, &c, LEASE, &older),
            Some(true)
        );
        let bytes = p.to_bytes();
        let mut q = Promises::from_bytes(&bytes).expect("round trip");
        assert_eq!(q.known(range(0, 0)), p.known(range(0, 0)));
        q.hold_all_until(at(2_000));
        assert!(matches!(
            q.grant(at(1_000), range(15, 16), 9, b, vec![b], LEASE),
            Err(Refusal::Held { .. })
        ));
        assert!(
            q.grant(at(2_000), range(15, 16), 9, b, vec![b], LEASE)
                .is_ok()
        );
        for cut in 0..bytes.len() {
            assert!(
                Promises::from_bytes(&bytes[..cut]).is_none(),
                "cut at {cut}"
            );
        }
    }
}
