//! The transmit loop: the core's messages framed per peer and written
//! into their outboxes, connecting where needed.

use super::*;

/// Frames for one peer from one `pump`, by lane (see [`Outbox`]).
#[derive(Default)]
pub(super) struct Batch {
    /// Authority control (`Message::is_urgent`): written ahead of bulk.
    pub(super) urgent: BytesMut,
    pub(super) bulk: BytesMut,
}

/// Destinations whose frame buffers a driver keeps between passes;
/// beyond, it starts afresh.
const KEEP_BATCHES: usize = 1024;

/// Capacity a kept frame buffer may keep (a bulk transfer's megabytes are
/// let go).
const KEEP_BATCH_BYTES: usize = 64 * 1024;

impl Batch {
    pub(super) fn has_frames(&self) -> bool {
        !self.urgent.is_empty() || !self.bulk.is_empty()
    }

    /// Empties both lanes, keeping a small buffer's capacity for the next
    /// pass.
    pub(super) fn clear(&mut self) {
        for buf in [&mut self.urgent, &mut self.bulk] {
            if buf.capacity() > KEEP_BATCH_BYTES {
                *buf = BytesMut::new();
            } else {
                buf.clear();
            }
        }
    }

    /// Queues both lanes in `outbox`; false if either was refused.
    pub(super) fn push_to(&self, outbox: &Outbox) -> bool {
        let urgent = self.urgent.is_empty() || outbox.push_urgent(&self.urgent);
        let bulk = self.bulk.is_empty() || outbox.push(&self.bulk);
        urgent && bulk
    }
}

impl Driver {
    /// Carries out everything the core asked for, then writes the frames.
    pub(super) fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(env) = self.core.poll_transmit() {
                progressed = true;
                if let Some(id) = env.to.id
                    && let Some(there) = self.bindings.ids_at(&env.to.addr)
                    && !there.contains(&id)
                {
                    // The certificate at that address does not hold the
                    // vnode meant: whoever said it lives there was wrong.
                    self.ctx.stats.not_there.fetch_add(1, Ordering::Relaxed);
                    let now = self.now();
                    self.core
                        .handle_not_there(now, NodeRef::new(id, env.to.addr));
                    continue;
                }
                let batch = self.batch.entry(env.to.addr).or_default();
                let buf = match env.msg.is_urgent() {
                    true => &mut batch.urgent,
                    false => &mut batch.bulk,
                };
                let before = buf.len();
                chordal_wire::encode_frame(&env, buf);
                self.metrics.sent(env.msg.kind(), buf.len() - before);
                self.ctx.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            let hops = self.core.take_hop_samples();
            if !hops.is_empty() {
                self.metrics.hops(&hops);
            }
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                self.event(event);
            }
            while let Some(req) = self.core.poll_store() {
                progressed = true;
                self.store_request(req);
            }
            // A store that applied at once (the memory store) has answered
            // already: the core hears it now, so that what the answer
            // causes (an acknowledgement, a reply) leaves in this wake-up's
            // writes instead of after another turn of the run loop.
            while let Ok((op, result)) = self.applied_rx.try_recv() {
                progressed = true;
                let now = self.now();
                self.core.handle_store(now, op, result);
            }
            if !progressed && !self.batch.values().any(Batch::has_frames) {
                break;
            }
            // Writing may report unreachable peers to the core, which then
            // has more to say: loop until it is quiet. (Writing never adds
            // frames: only `poll_transmit` above does.)
            let mut batch = std::mem::take(&mut self.batch);
            for (addr, frames) in batch.iter_mut().filter(|(_, f)| f.has_frames()) {
                self.write(*addr, frames);
                frames.clear();
            }
            // The buffers are kept for the next pass (no allocation per
            // destination per wake-up), for a bounded number of them.
            if batch.len() <= KEEP_BATCHES {
                self.batch = batch;
            }
        }
    }

    /// Writes whole frames for `addr`, connecting first if needed.
    pub(super) fn write(&mut self, addr: SocketAddr, frames: &Batch) {
        match self.pool.route(addr, Instant::now()) {
            Route::Send(peer) => {
                if !frames.push_to(&peer.outbox) {
                    // Full or broken: drop; the core's timeouts and retries
                    // cover it, and a broken connection reports its close.
                    self.ctx.stats.dropped_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            Route::BackingOff => {
                let now = self.now();
                self.core.handle_unreachable(now, addr);
            }
            Route::Connect => self.connect(addr, frames),
        }
    }

    /// Dials `addr` with `bytes` waiting in the new connection's outbox
    /// (written once it is established).
    pub(super) fn connect(&mut self, addr: SocketAddr, frames: &Batch) {
        let outbox = Arc::new(Outbox::new(self.ctx.peer_buffer));
        frames.push_to(&outbox);
        let conn_id = self.pool.next_conn_id();
        let peer = Peer {
            conn_id,
            outbox: outbox.clone(),
            last_used: Instant::now(),
        };
        if let Some(evicted) = self.pool.insert(addr, peer, self.ctx.max_connections) {
            self.close(evicted, false);
        }
        conn::spawn_connect(addr, conn_id, outbox, self.ctx.clone());
    }
}
