//! Dissemination (EDRA rules 1–4): events detected or learned are
//! queued and sent every `membership_interval` down a binomial tree of
//! stretches of the process ring, acknowledged, and sent on to the next
//! process of a stretch when one is silent.

use super::*;

impl OneHop {
    pub(super) fn detected(&mut self, now: Time, node: NodeRef, joined: bool) {
        self.stats.events_detected += 1;
        let ev = MemberEvent {
            node,
            joined,
            by: self.me,
        };
        let whole_ring = process_position(&self.me);
        self.queue(now, whole_ring, ev);
    }

    pub(super) fn queue(&mut self, now: Time, until: Id, ev: MemberEvent) {
        if self.pending.len() >= MAX_PENDING {
            self.stats.events_dropped += 1;
            return;
        }
        self.pending.push((until, ev));
        if self.tick_at.is_none() {
            self.tick_at = Some(now + self.interval);
        }
    }

    /// EDRA rules 1–4, with stretches: the events of each stretch we
    /// cover go to the 1st, 2nd, 4th, … process of it, each covering up
    /// to the next. A process in a stable ring thus gets each event once,
    /// within ⌈log2 P⌉ ticks; and since every receiver splits its own
    /// stretch by its own table, tables that differ (the usual case while
    /// events spread) leave no process out.
    pub(super) fn tick(&mut self, now: Time) {
        let pending = std::mem::take(&mut self.pending);
        let mut by_stretch: std::collections::BTreeMap<Id, Vec<MemberEvent>> = Default::default();
        for (until, ev) in pending {
            by_stretch.entry(until).or_default().push(ev);
        }
        for (until, events) in by_stretch {
            for (to, end) in self.table.dissemination_targets(&self.me, &until) {
                for chunk in events.chunks(MAX_EVENTS_PER_MESSAGE) {
                    self.send_events(now, to, end, chunk.to_vec(), 1);
                }
            }
        }
    }

    /// Sends `events` to `to` for its stretch up to `until`, watched for
    /// its ack (while fewer than `MAX_UNACKED` are).
    pub(super) fn send_events(
        &mut self,
        now: Time,
        to: SocketAddr,
        until: Id,
        events: Vec<MemberEvent>,
        tries: u32,
    ) {
        let req = self.next_req;
        self.next_req += 1;
        self.stats.messages_sent += 1;
        self.stats.events_sent += events.len() as u64;
        let msg = Message::MemberEvents {
            req,
            until,
            events: events.clone(),
        };
        self.out.push_back((Target { addr: to, id: None }, msg));
        if self.unacked.len() < MAX_UNACKED {
            let deadline = now + self.ack_timeout;
            self.unacked.insert(
                req,
                Unacked {
                    to,
                    until,
                    events,
                    deadline,
                    tries,
                },
            );
        }
    }

    /// `MemberEvents` `req` went unacknowledged: the next process of
    /// its target's stretch takes the target's place (the rest of the
    /// stretch), unless it was tried `MAX_TRIES` times.
    pub(super) fn resend(&mut self, now: Time, req: u64) {
        let Some(u) = self.unacked.remove(&req) else {
            return;
        };
        if u.tries >= MAX_TRIES {
            self.stats.events_dropped += u.events.len() as u64;
            return;
        }
        if let Some(next) = self.table.next_process_before(&u.to, &u.until, &self.me) {
            self.send_events(now, next, u.until, u.events, u.tries + 1);
        }
    }
}
