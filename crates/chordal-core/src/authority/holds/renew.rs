//! Renewals: the answers that extend a held term's lease, or say it
//! was deposed.

use super::*;

impl Holds {
    /// An answer to renewal `req` from `from`.
    pub fn renewed(&mut self, cx: &mut ACx<'_>, now: Time, from: NodeRef, req: u64, ok: bool) {
        let Some(&s) = self.reqs.get(&req) else {
            return;
        };
        let Some(h) = self.holds.get_mut(&s) else {
            return;
        };
        let State::Held(held) = &mut h.state else {
            return;
        };
        let mut grantors = h.config.iter().chain(held.settling.iter().flatten());
        if !grantors.any(|n| n.addr == from.addr) {
            // A pending config's member only heard that we may need it.
            return;
        }
        let late = held.last.as_mut().filter(|r| r.req == req);
        if let Some(r) = late
            && ok
        {
            // After the majority: only counted for `all_finished`.
            if !r.acked.contains(&from.addr) {
                r.acked.push(from.addr);
            }
            return;
        }
        let current = held.renewal.as_ref().is_some_and(|r| r.req == req);
        if !ok && !held.grantors.iter().any(|g| g.addr == from.addr) {
            // It never promised us: no sign of a later term (most likely
            // another holder's lease, released to others but not to it,
            // still runs there). Ask it to grant ours again.
            let asked = cx.io.next();
            held.reask = Some(asked);
            self.reqs.insert(asked, s);
            send_prepare(cx, (h.vnode, h.range, h.term, &h.config), asked, from);
            return;
        }
        if !ok {
            // Someone granted a later term here: we were deposed.
            cx.io.counting.counters.terms_lost += 1;
            self.reqs.remove(&req);
            h.previous = None;
            h.state = State::Waiting(now);
            self.tick_at = Some(now);
            return;
        }
        let Some(r) = held.renewal.as_mut().filter(|_| current) else {
            return;
        };
        if !r.acked.contains(&from.addr) {
            r.acked.push(from.addr);
        }
        let settled = held.settling.iter().all(|c| majority_of(c, &r.acked));
        if majority_of(&h.config, &r.acked) && settled {
            held.valid_until = held.valid_until.max(r.sent_at + usable(cx));
            held.settling.clear();
            // The new term decides from now on.
            h.previous = None;
            // Later acknowledgements still count (for `all_finished`):
            // the request stays known until the next one replaces it.
            if let Some(old) = std::mem::replace(&mut held.last, held.renewal.take()) {
                self.reqs.remove(&old.req);
            }
        }
    }
}
