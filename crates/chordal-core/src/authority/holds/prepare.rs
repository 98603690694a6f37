//! Phase 1: preparing a term over an interval, jointly with the
//! configs that held it before, and completing it from the grants.

use super::*;

impl Holds {
    /// An answer to our prepare `req` from `from`.
    pub fn promised(
        &mut self,
        cx: &mut ACx<'_>,
        now: Time,
        from: NodeRef,
        req: u64,
        answer: Result<Vec<Known>, Refusal>,
        promises: &Promises,
    ) {
        let Some(&s) = self.reqs.get(&req) else {
            return;
        };
        let Some(h) = self.holds.get_mut(&s) else {
            return;
        };
        if let State::Held(held) = &mut h.state {
            // A member that did not grant us before, asked again.
            if held.reask == Some(req) && answer.is_ok() {
                held.reask = None;
                if !held.grantors.iter().any(|g| g.addr == from.addr) {
                    held.grantors.push(from);
                }
            }
            return;
        }
        let State::Preparing(a) = &mut h.state else {
            return;
        };
        if a.req != req {
            return;
        }
        let refused = answer.is_err();
        let (known, wait) = match answer {
            Ok(known) => {
                if !a.granted.contains(&from.addr) {
                    a.granted.push(from.addr);
                    a.grantors.push(from);
                }
                (known, None)
            }
            Err(Refusal::Outdated { promise }) => (vec![*promise], None),
            Err(Refusal::Held { promise, wait }) => (vec![*promise], Some(wait)),
        };
        if refused {
            // Someone holds or held a term here we did not know of.
            a.refused += 1;
            h.above = h.above.max(known[0].term);
            if let Some(wait) = wait {
                a.wait = Some(a.wait.map_or(wait, |w| w.min(wait)));
            }
        }
        for k in known {
            // What they promised before is a config whose majority must
            // grant too (a refusal's included: its majority will refuse
            // until that lease is over): ask whoever we have not.
            learn(&mut a.learned, &k);
            for n in asked_for(&k) {
                if !a.asked.iter().any(|m| m.addr == n.addr) {
                    a.asked.push(n);
                    send_prepare(cx, (h.vnode, h.range, h.term, &h.config), req, n);
                }
            }
        }
        if let Some(Completed {
            catch_up,
            pending,
            settling,
        }) = complete(
            &h.vnode,
            (h.range, &h.config),
            a,
            (&self.clean, &self.handovers),
            cx.config.force_new_ring_above,
        ) {
            let caught_up_at = catch_up.is_empty();
            if caught_up_at {
                remember_clean(&mut self.clean, h.vnode.id, h.term);
            }
            cx.io.counting.counters.terms_held += 1;
            self.reqs.remove(&req);
            h.wide = false;
            // A term prepared while the one before still decided continues
            // its run (nobody else can have decided in between: the
            // acceptors that granted us kept everyone else out).
            let since = h
                .previous
                .as_ref()
                .filter(|p| p.valid_until > now)
                .map_or(h.term, |p| p.since);
            // Settle first (the renewal goes out at once): decide nothing
            // until a majority of the config and of the predecessors know
            // the term completed.
            h.state = State::Held(Held {
                valid_until: Time::ZERO,
                catch_up,
                pending,
                settling,
                renewal: None,
                renew_at: now,
                last: None,
                pending_told: Vec::new(),
                caught_up_at: caught_up_at.then_some(now),
                since,
                grantors: std::mem::take(&mut a.grantors),
                asked: std::mem::take(&mut a.asked),
                reask: None,
            });
            self.step(cx, now, promises);
        } else if a.granted.len() + a.refused >= a.asked.len() {
            // Everyone answered and it is not enough: wait out the
            // shortest lease that refused us (a handover's release
            // usually comes sooner), then prepare above what we heard —
            // asking everyone we know if nobody knew a term somewhere.
            cx.io.counting.counters.prepares_failed += 1;
            h.wide |= a.learned.pieces(h.range).iter().any(|(_, v)| v.is_none());
            let quarter = cx.config.lease / 4;
            let pause = a.wait.map_or(quarter / 8, |w| w.min(quarter / 2));
            self.reqs.remove(&req);
            h.state = State::Waiting(now + pause);
            self.step(cx, now, promises);
        }
    }
}

/// Starts a prepare of `h` in a term above everything we know there;
/// returns its request number.
/// `floor`: a term handed to us there (see [`Holds::handed`]); ours
/// goes above it.
pub(super) fn prepare(
    cx: &mut ACx<'_>,
    now: Time,
    h: &mut Hold,
    promises: &Promises,
    floor: u64,
) -> u64 {
    let known = promises.known(h.range);
    let highest = known.iter().map(|k| k.term).max().unwrap_or(0);
    h.term = h
        .term
        .max(h.above)
        .max(highest)
        .max(floor)
        .max(cx.config.force_new_ring_above)
        + 1;
    let req = cx.io.next();
    // The new config, and every config we know of there (the previous
    // holders', and the settled terms'): their majorities must grant too.
    // And our successor, who owned the interval before we joined: with
    // R = 1 nobody else would tell us its lineage.
    let mut ask = h.config.clone();
    ask.extend(cx.ring.replica_targets(&h.vnode, 2));
    if h.wide {
        ask.extend(wide_ask(cx, h.range));
    }
    let mut ask = distinct(&ask);
    for k in &known {
        for n in asked_for(k) {
            if !ask.iter().any(|a| a.addr == n.addr) {
                ask.push(n);
            }
        }
    }
    for n in &ask {
        send_prepare(cx, (h.vnode, h.range, h.term, &h.config), req, *n);
    }
    cx.io.counting.counters.prepares_started += 1;
    h.state = State::Preparing(Attempt {
        req,
        deadline: now + cx.config.lease / 2,
        asked: ask,
        granted: Vec::new(),
        grantors: Vec::new(),
        refused: 0,
        learned: RingMap::default(),
        wait: None,
    });
    req
}

/// Whom a prepare asks when a narrower one found no lineage at some
/// point of `range`: the processes of our membership table, successor
/// lists, predecessors and fingers nearest to the interval (at most
/// [`MAX_WIDE_ASK`]).
///
/// Who last held a term over a point is not always among the interval's
/// config and successor: with one copy (R = 1) a config is its holder
/// alone, and when several processes join a young ring at once, a piece
/// the creator gave up may never have been held by anyone since — only
/// the creator, anywhere on the ring, knows its term. Without asking it
/// the piece would wait forever (a point nobody knows a term for is not
/// taken: see [`complete`]).
pub(super) fn wide_ask(cx: &ACx<'_>, range: KeyRange) -> Vec<NodeRef> {
    let mut all = known_nodes(cx);
    let near = |n: &NodeRef| {
        let ahead = range.end.distance(&n.id);
        let behind = n.id.distance(&range.end);
        ahead.min(behind)
    };
    all.sort_by_key(near);
    all.truncate(MAX_WIDE_ASK);
    all
}

/// Asks process `to` to grant the term of the hold `(vnode, range,
/// term, config)` (prepare `req`).
pub(super) fn send_prepare(
    cx: &mut ACx<'_>,
    (vnode, range, term, config): (NodeRef, KeyRange, u64, &[NodeRef]),
    req: u64,
    to: NodeRef,
) {
    let config = config.to_vec();
    let msg = Message::Prepare {
        req,
        range,
        term,
        config,
    };
    cx.io.send(vnode, to, msg);
}

/// Whom a prepare must ask because of promise `k`: its config's
/// processes and its settled term's (whose majority must grant; the
/// promise's own term may never have settled).
pub(super) fn asked_for(k: &Known) -> Vec<NodeRef> {
    let mut all = k.config.clone();
    if let Some(st) = &k.settled {
        all.extend(st.config.iter().copied());
    }
    distinct(&all)
}

/// The leavers whose handovers together cover all of `range`, each with
/// its promises there (its grant of our term over `range`).
pub(super) fn handed_for(
    handovers: &VecDeque<Handover>,
    range: KeyRange,
    now: Time,
) -> Vec<(NodeRef, Vec<Known>)> {
    let mut out: Vec<(NodeRef, Vec<Known>)> = Vec::new();
    let live = || handovers.iter().filter(|ho| ho.until > now);
    for first in live() {
        if out.iter().any(|(n, _)| n.addr == first.from.addr) {
            continue;
        }
        let mut covered: RingMap<()> = RingMap::default();
        let mut known = Vec::new();
        for ho in live().filter(|ho| ho.from.addr == first.from.addr) {
            covered.set(ho.range, Some(()));
            known.extend(clip(&ho.known, range));
        }
        if covered.pieces(range).iter().all(|(_, c)| c.is_some()) {
            out.push((first.from, known));
        }
    }
    out
}

/// `known`'s promises clipped to `range` (the pieces inside it).
pub(super) fn clip(known: &[Known], range: KeyRange) -> Vec<Known> {
    let mut map: RingMap<Known> = RingMap::default();
    for k in known {
        map.set(k.range, Some(k.clone()));
    }
    map.pieces(range)
        .into_iter()
        .filter_map(|(piece, k)| {
            k.map(|k| Known {
                range: piece,
                ..k.clone()
            })
        })
        .collect()
}

/// Keeps, per point of `k.range`, the newest settled term heard of —
/// of two reports of one term, the later (fewer pending configs: its
/// holder only ever drops some).
pub(super) fn learn(learned: &mut RingMap<Settled>, k: &Known) {
    let Some(st) = &k.settled else { return };
    let older: Vec<KeyRange> = learned
        .pieces(k.range)
        .into_iter()
        .filter(|(_, v)| {
            v.is_none_or(|v| {
                v.term < st.term || (v.term == st.term && v.pending.len() > st.pending.len())
            })
        })
        .map(|(r, _)| r)
        .collect();
    for piece in older {
        learned.set(piece, Some(st.clone()));
    }
}

/// What a granted prepare leaves the new term to do.
pub(super) struct Completed {
    /// Configs to read a majority of before deciding (see `Held`).
    pub(super) catch_up: Vec<Vec<NodeRef>>,
    /// Configs the next holder must read unless we finish (see `Held`).
    pub(super) pending: Vec<Vec<NodeRef>>,
    /// Predecessor configs that must hear of the term's settling.
    pub(super) settling: Vec<Vec<NodeRef>>,
}

/// Adds `config` to `set` unless a config of the same processes is there.
pub(super) fn add_config(set: &mut Vec<Vec<NodeRef>>, config: &[NodeRef]) {
    let procs = processes(config);
    if !set.iter().any(|c| processes(c) == procs) {
        set.push(config.to_vec());
    }
}

/// Is attempt `a` of `h` granted — a majority of the new config, and of
/// the newest settled config at every point, every point with a lineage?
/// Then what the new term must catch up from, and tell.
pub(super) fn complete(
    vnode: &NodeRef,
    (range, config): (KeyRange, &[NodeRef]),
    a: &Attempt,
    (clean, handovers): (&VecDeque<(Id, u64)>, &VecDeque<Handover>),
    force_above: u64,
) -> Option<Completed> {
    if !majority_of(config, &a.granted) {
        return None;
    }
    let mut done = Completed {
        catch_up: Vec::new(),
        pending: Vec::new(),
        settling: Vec::new(),
    };
    let ours = processes(config);
    for (_, v) in a.learned.pieces(range) {
        // A point nobody knows a term for is not taken: only the process
        // that created the ring starts a lineage — or one told to re-form
        // a ring from what survived, which also gives up the terms
        // settled before it was told (their copies are gone).
        let forced = |term: u64| term < force_above;
        let Some(st) = v.filter(|st| !forced(st.term)) else {
            if force_above > 0 {
                continue;
            }
            return None;
        };
        if !majority_of(&st.config, &a.granted) {
            return None;
        }
        // Every write acknowledged so far is on a majority of the
        // predecessor's config or of one of its pending configs. A
        // predecessor term of ours that caught up in this incarnation
        // left all of them in our store; any other (another holder's, or
        // ours before a restart or still catching up) is read from those
        // copies first. Either way, until we have put them on a majority
        // of our own config, the next holder must read them too.
        // Or a leaver handed it to us: our store took every record of it
        // after it stopped deciding, and it was caught up by then.
        let handed = handovers
            .iter()
            .any(|ho| ho.from == st.holder && ho.term == st.term);
        let ours_and_clean =
            (st.holder.id == vnode.id && clean.contains(&(st.holder.id, st.term))) || handed;
        for old in std::iter::once(&st.config).chain(&st.pending) {
            if !ours_and_clean {
                add_config(&mut done.catch_up, old);
            }
            if processes(old) != ours {
                add_config(&mut done.pending, old);
            }
        }
        add_config(&mut done.settling, &st.config);
    }
    Some(done)
}
