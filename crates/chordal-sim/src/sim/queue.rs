//! The event queue and the loop that runs it: each item is handed to its
//! node, whose output (messages, storage, events, its next wake-up) is
//! collected at once.

use super::*;

/// What a queue entry does. Messages wait in [`Sim`]'s parcel slab, so
/// that the heap moves small entries only. (Unboxed: nearly every entry is
/// a message, and boxing each would add an allocation per message.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Item {
    /// A message for node `.0`.
    Deliver(usize, Envelope),
    Wake(usize),
    Unreachable {
        at: usize,
        addr: SocketAddr,
    },
}

/// A queue entry, ordered by (time, sequence): ties keep their order.
/// `parcel` indexes the slab of items, except for wake-ups (`WAKE`), which
/// carry their node in `node`.
#[derive(Debug)]
pub(super) struct Queued {
    at: Time,
    seq: u64,
    node: u32,
    parcel: u32,
}

/// `Queued::parcel` of a wake-up.
const WAKE: u32 = u32::MAX;

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl Sim {
    /// Advances virtual time by `d`, processing everything due.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Processes everything due up to `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Time) {
        while let Some(Reverse(Queued { at, .. })) = self.queue.peek() {
            if *at > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until `done(self)` holds, checking every `every`; gives up after
    /// `limit`. Returns the virtual time it took, or `None`.
    pub fn run_until_true(
        &mut self,
        every: Duration,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(every);
        }
    }

    /// Processes the next queued item. Returns false when nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(Queued {
            at, node, parcel, ..
        })) = self.queue.pop()
        else {
            return false;
        };
        let item = if parcel == WAKE {
            Item::Wake(node as usize)
        } else {
            self.free_parcels.push(parcel);
            self.parcels[parcel as usize]
                .take()
                .expect("a queued parcel is present")
        };
        self.now = self.now.max(at);
        self.events_processed += 1;
        match item {
            Item::Deliver(i, env) => {
                if self.nodes[i].alive {
                    let now = self.clock_now(i);
                    self.nodes[i].node.handle_message(now, env);
                    self.after_input(i);
                }
            }
            Item::Wake(i) => {
                if self.nodes[i].wake == Some(at) {
                    self.nodes[i].wake = None;
                }
                if self.nodes[i].alive {
                    let now = self.clock_now(i);
                    self.nodes[i].node.handle_timeout(now);
                    self.after_input(i);
                }
            }
            Item::Unreachable { at: i, addr } => {
                if self.nodes[i].alive {
                    let now = self.clock_now(i);
                    self.nodes[i].node.handle_unreachable(now, addr);
                    self.after_input(i);
                }
            }
        }
        true
    }

    /// A message from node `i` to node `dest` vanished (a partition, a
    /// loss). Over TCP a message is never lost on a connection that stays
    /// up: it arrives late or its connection closes. So both ends see
    /// their connection to the other close — what it carried may have
    /// arrived (a request applied whose answer is lost), and a later
    /// refusal or farewell must not pass for "never got there".
    fn connection_broke(&mut self, i: usize, dest: Option<usize>) {
        let Some(d) = dest.filter(|d| self.nodes[*d].alive) else {
            return;
        };
        let (from, to) = (self.nodes[i].node.addr(), self.nodes[d].node.addr());
        self.nodes[i].node.handle_closed(to);
        self.nodes[d].node.handle_closed(from);
    }

    pub(super) fn push(&mut self, at: Time, item: Item) {
        self.seq += 1;
        let (node, parcel) = match item {
            Item::Wake(i) => (i as u32, WAKE),
            item => {
                let slot = match self.free_parcels.pop() {
                    Some(slot) => {
                        self.parcels[slot as usize] = Some(item);
                        slot
                    }
                    None => {
                        self.parcels.push(Some(item));
                        (self.parcels.len() - 1) as u32
                    }
                };
                (0, slot)
            }
        };
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            node,
            parcel,
        }));
    }

    /// Collects node `i`'s output: messages onto the network, events into
    /// the results, and its next wake-up.
    pub(super) fn after_input(&mut self, i: usize) {
        // Storage is instantaneous here: perform each request at once.
        while let Some(req) = self.nodes[i].node.poll_store() {
            let result = chordal_store::perform(&self.nodes[i].store, req.kind);
            let now = self.clock_now(i);
            self.nodes[i].node.handle_store(now, req.op, result);
        }
        while let Some(env) = self.nodes[i].node.poll_transmit() {
            let bytes = if self.config.measure_bytes {
                chordal_wire::frame_len(&env)
            } else {
                0
            };
            self.traffic.add(Purpose::of(&env.msg), bytes);
            let dest = self.index_of(&env.to.addr);
            let cut_off = dest.is_some_and(|d| self.nodes[d].group != self.nodes[i].group);
            let dead = dest.is_none_or(|d| !self.nodes[d].alive);
            if dead || cut_off {
                self.count_lookup_timeout(&env);
            }
            if cut_off {
                self.connection_broke(i, dest);
                continue;
            }
            let latency = match dest {
                Some(d) => self.config.latency.between(i, d, self.config.seed),
                None => Duration::from_millis(1),
            };
            if dead && self.config.refuse_dead {
                let addr = env.to.addr;
                self.push(self.now + latency, Item::Unreachable { at: i, addr });
                continue;
            }
            if self.config.loss > 0.0 {
                let draw = self.rng.next_u64() as f64 / u64::MAX as f64;
                if draw < self.config.loss {
                    self.connection_broke(i, dest);
                    continue;
                }
            }
            // Messages to an address nobody ever had vanish (tests that
            // play a peer from outside may keep them).
            match dest {
                Some(d) => self.push(self.now + latency, Item::Deliver(d, env)),
                None if self.keep_outside => self.outside.push(env),
                None => {}
            }
        }
        let mut answers = Vec::new();
        while let Some(e) = self.nodes[i].node.poll_event() {
            match &e {
                Event::AppMessage {
                    msg, key, payload, ..
                } => {
                    let key = key.clone().unwrap_or_default();
                    if let Some(handler) = self.app_handler.as_mut() {
                        answers.push((*msg, handler(i, &key, payload)));
                    }
                    self.app_received.push((i, key));
                }
                Event::LookupDone { lookup, result } => {
                    self.user_lookups
                        .remove(&(self.nodes[i].node.addr(), lookup.0));
                    self.results.insert((i, *lookup), result.clone());
                }
                Event::OpDone { op, result } => {
                    self.kv_results.insert((i, *op), result.clone());
                }
                Event::Publication {
                    topic,
                    publisher,
                    payload,
                } => {
                    let p = (i, topic.clone(), *publisher, payload.clone());
                    self.publications.push(p);
                }
                _ => {}
            }
            if self.record_events {
                self.events.push((i, e));
            }
        }
        if !answers.is_empty() {
            let now = self.clock_now(i);
            for (msg, answer) in answers {
                match answer {
                    Some(payload) => self.nodes[i].node.app_reply(now, msg, payload),
                    None => self.nodes[i].node.app_refuse(now, msg),
                }
            }
            // The answers are new output: collect it (and the wake-up).
            return self.after_input(i);
        }
        if self.nodes[i].node.left().is_some() {
            // Its farewells are on their way: it stops.
            self.nodes[i].alive = false;
            return;
        }
        if let Some(t) = self.nodes[i].node.poll_timeout() {
            let t = self.nodes[i].clock.to_virtual(t).max(self.now);
            if self.nodes[i].wake.is_none_or(|w| t < w) {
                self.nodes[i].wake = Some(t);
                self.push(t, Item::Wake(i));
            }
        }
    }

    /// If `env` is a hop of a user lookup going nowhere, counts the timeout
    /// it will cost (once per hop, not per retransmission).
    pub(super) fn count_lookup_timeout(&mut self, env: &Envelope) {
        if let Message::FindSuccessor {
            req,
            origin,
            lookup,
            ..
        } = env.msg
            && self.user_lookups.contains_key(&(origin.addr, lookup))
            && self.timed_out_hops.insert((env.from.id, req), ()).is_none()
        {
            self.lookup_timeouts += 1;
        }
    }
}
