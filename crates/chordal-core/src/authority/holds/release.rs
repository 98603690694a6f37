//! Giving holds up: the part of a hold a joiner took (released once
//! the writes we decided there ended), and everything at a graceful
//! leave's farewell (handed to the successor that took the records, or
//! released).

use super::*;

impl Holds {
    /// The parts of our holds given up to joiners, not yet released.
    pub fn releasing(&self) -> Vec<(NodeRef, KeyRange)> {
        self.releasing.iter().map(|r| (r.vnode, r.range)).collect()
    }

    /// Our writes in `vnode`'s given-up part `range` ended (or our lease
    /// there did): release it, so that the joiner may take it at once.
    pub fn drained(&mut self, cx: &mut ACx<'_>, vnode: &NodeRef, range: KeyRange) {
        self.releasing.retain(|r| {
            if r.vnode != *vnode || r.range != range {
                return true;
            }
            send_release(cx, r);
            false
        });
    }

    /// Our graceful leave begins: a term caught up before now may be
    /// handed over at the farewell.
    pub fn begin_leave(&mut self, now: Time) {
        self.leave_began.get_or_insert(now);
    }

    /// Has our farewell given everything up?
    pub fn released(&self) -> bool {
        self.released
    }

    /// A leaver handed us its term over `range` (`Message::Handover`).
    pub fn handed(
        &mut self,
        now: Time,
        from: NodeRef,
        range: KeyRange,
        term: u64,
        known: Vec<Known>,
    ) {
        self.handovers.retain(|ho| ho.until > now);
        if self.handovers.len() >= MAX_HANDOVERS {
            self.handovers.pop_front();
        }
        let until = now + HANDOVER_TTL;
        self.handovers.push_back(Handover {
            from,
            range,
            term,
            known,
            until,
        });
    }

    /// Gives every hold up (a graceful leave's farewell) and holds
    /// nothing again. A term caught up before the leave began, over a
    /// range whose every record `handed` says a successor acknowledged,
    /// is handed to that successor with our promises there: our grant of
    /// its next term (we grant nothing after this).
    pub fn release_all(
        &mut self,
        cx: &mut ACx<'_>,
        promises: &Promises,
        handed: &[(KeyRange, NodeRef)],
    ) {
        for h in self.holds.values() {
            let State::Held(held) = &h.state else {
                continue;
            };
            let before_leave = match (held.caught_up_at, self.leave_began) {
                (Some(at), Some(began)) => at <= began,
                _ => false,
            };
            if !before_leave || !held.settling.is_empty() {
                continue;
            }
            if let Some((_, to)) = handed.iter().find(|(r, _)| within(&h.range, r)) {
                let msg = Message::Handover {
                    range: h.range,
                    term: h.term,
                    known: promises.known(h.range),
                };
                cx.io.send(h.vnode, *to, msg);
            }
        }
        self.released = true;
        for r in std::mem::take(&mut self.releasing) {
            send_release(cx, &r);
        }
        for (_, h) in std::mem::take(&mut self.holds) {
            release(cx, &h);
        }
        self.reqs.clear();
    }
}

/// Tells `h`'s grantors at once that we give its term (and the term
/// before it, still deciding: see [`Hold::previous`]) up (our farewell).
pub(super) fn release(cx: &mut ACx<'_>, h: &Hold) {
    send_release(cx, &releasing(h, h.range));
}

/// What giving `range` of `h` up releases, and until when our writes
/// there stay under our lease.
pub(super) fn releasing(h: &Hold, range: KeyRange) -> Releasing {
    let mut to = h.config.clone();
    to.extend(h.previous.iter().flat_map(|p| p.replicas.iter().copied()));
    // Everyone the term's prepare asked, granted or not yet heard: a
    // grant still on its way (or one the prepare never counted, as it
    // completed first) would otherwise keep refusing the next holder
    // until its lease ran out.
    match &h.state {
        State::Held(held) => {
            to.extend(held.grantors.iter().copied());
            to.extend(held.asked.iter().copied());
        }
        State::Preparing(a) => to.extend(a.asked.iter().copied()),
        State::Waiting(_) => {}
    }
    let mut terms = vec![h.term];
    terms.extend(h.previous.as_ref().map(|p| p.term));
    terms.retain(|t| *t != 0);
    let (valid_until, since) = match (&h.state, &h.previous) {
        (State::Held(held), _) if held.settling.is_empty() => (held.valid_until, held.since),
        (_, Some(p)) => (p.valid_until, p.since),
        _ => (Time::ZERO, h.term),
    };
    Releasing {
        vnode: h.vnode,
        range,
        terms,
        to: distinct(&to),
        valid_until,
        since,
    }
}

/// Sends `r`'s releases.
pub(super) fn send_release(cx: &mut ACx<'_>, r: &Releasing) {
    for &term in &r.terms {
        for &n in &r.to {
            let msg = Message::Release {
                range: r.range,
                term,
            };
            cx.io.send(r.vnode, n, msg);
        }
    }
}
