//! Peer connections: frames read, handshakes admitted, connections
//! closed, and what each peer declared.

use super::*;

/// An established connection the driver reads.
pub(super) struct Conn {
    pub(super) addr: SocketAddr,
    pub(super) close: CancellationToken,
    pub(super) last_active: Instant,
    /// What the peer may send.
    pub(super) standing: Standing,
    /// When the peer's certificate expires (TLS only).
    pub(super) expires: Option<std::time::SystemTime>,
    /// We dialled it (else the peer did).
    pub(super) outbound: bool,
}

impl Driver {
    /// A frame (or the end) of one connection.
    pub(super) fn read(&mut self, (addr, conn_id, frame): ReadItem) {
        let now = self.now();
        let stats = self.ctx.stats.clone();
        match frame {
            Some(Ok(bytes)) => {
                let size = bytes.len();
                // Frozen, the ids the envelope carries are slices of the
                // frame, not copies.
                match chordal_wire::decode_envelope(bytes.freeze(), self.core.addr()) {
                    Ok(env) if env.from.addr == addr => {
                        let Some(c) = self.conns.get_mut(&conn_id) else {
                            return;
                        };
                        if !c.standing.may_send(&env) {
                            // A client speaking for the ring, or a member
                            // speaking for a vnode its certificate does not
                            // give: refused, and the connection dropped.
                            let counter = match c.standing {
                                Standing::Client => &stats.client_role,
                                Standing::Member { .. } => &stats.wrong_ids,
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            debug!(peer = %addr, kind = env.msg.kind(), "message refused for the sender's standing");
                            self.close(conn_id, false);
                            return;
                        }
                        c.last_active = Instant::now();
                        stats.frames_in.fetch_add(1, Ordering::Relaxed);
                        self.metrics.received(env.msg.kind(), size);
                        self.core.handle_message(now, env);
                    }
                    _ => {
                        // A frame that does not decode or lies about its sender:
                        // this peer is broken; drop the connection.
                        stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                        self.close(conn_id, true);
                    }
                }
            }
            Some(Err(e)) => {
                // Oversized frame or an I/O error.
                if e.kind() != std::io::ErrorKind::ConnectionReset {
                    stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                }
                debug!(peer = %addr, error = %e, "connection failed");
                self.close(conn_id, true);
            }
            None => self.close(conn_id, true),
        }
    }

    /// Closes connection `conn_id`; `lost` tells the core the peer may be gone.
    pub(super) fn close(&mut self, conn_id: u64, lost: bool) {
        let Some(c) = self.conns.remove(&conn_id) else {
            return;
        };
        c.close.cancel();
        self.pool.remove(c.addr, conn_id);
        let now = self.now();
        if lost {
            self.core.handle_disconnect(now, c.addr);
        } else {
            self.core.handle_closed(c.addr);
        }
    }

    /// Closes connections with no traffic for `idle_timeout`, and those
    /// whose peer's certificate has expired (TLS checks validity only at
    /// the handshake; a member whose certificate was not renewed drops out
    /// here, and cannot come back).
    pub(super) fn close_idle(&mut self) {
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        let mut expired = Vec::new();
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                if c.expires.is_some_and(|t| t <= wall) {
                    expired.push(**id);
                    return false;
                }
                let used = self.pool.last_used(c.addr, **id).unwrap_or(c.last_active);
                now.duration_since(c.last_active.max(used)) >= self.settings.idle_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in idle {
            self.close(id, false);
        }
        for id in expired {
            if let Some(c) = self.conns.get(&id) {
                info!(peer = %c.addr, "closing a connection: the peer's certificate expired");
            }
            self.close(id, true);
        }
    }

    pub(super) fn inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Established(est) => self.established(est),
            Inbound::ConnectFailed { addr, conn_id } => {
                // What waited for this dial to prove its address cannot be
                // proven.
                for held in self.bindings.dial_failed(&addr) {
                    held.close.cancel();
                }
                self.pool.remove(addr, conn_id);
                self.pool.connect_failed(addr, Instant::now());
                let now = self.now();
                self.core.handle_unreachable(now, addr);
            }
        }
    }

    /// A connection passed its handshake. Under TLS a member's is used
    /// only once its address is proven (see `bindings.rs`): a dial of ours
    /// proves it, and settles the inbound connections that waited for it.
    pub(super) fn established(&mut self, est: Established) {
        let Some(ids) = bindings::certified(&est.standing).map(<[Id]>::to_vec) else {
            self.admit(est);
            return;
        };
        let addr = est.addr;
        // How many places a member holds is the ring's setting (`--vnodes`,
        // the same on every node), not the member's choice: a certificate
        // allows up to 64 derived ids, which would buy most of a small
        // ring's key space.
        if ids.len() > self.core.vnodes().len() {
            self.ctx.stats.wrong_ids.fetch_add(1, Ordering::Relaxed);
            warn!(%addr, claimed = ids.len(), ring = self.core.vnodes().len(), "a member claimed more virtual nodes than the ring's setting; refused");
            est.close.cancel();
            if est.outbound {
                self.pool.remove(addr, est.conn_id);
            }
            return;
        }
        if est.outbound {
            let conns = &self.conns;
            let open = |a: &SocketAddr| conns.values().any(|c| c.addr == *a);
            let max = 4 * self.ctx.max_connections;
            let (proven, impostors) = self.bindings.proven(addr, ids.clone(), max, open);
            // Connections already read that claimed this address with
            // other ids lied (or the address changed hands): closed.
            let stale: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    c.addr == addr
                        && !c.outbound
                        && bindings::certified(&c.standing) != Some(&ids[..])
                })
                .map(|(id, _)| *id)
                .collect();
            for conn_id in stale {
                self.impostor(addr);
                self.close(conn_id, false);
            }
            for e in impostors {
                self.impostor(addr);
                e.close.cancel();
            }
            self.admit(est);
            for e in proven {
                self.admit(e);
            }
            return;
        }
        // A connection in use at that address under the ids our dial met
        // there shows the holder is there now.
        let bound = self.bindings.ids_at(&addr);
        let holder_open = self.conns.values().any(|c| {
            c.addr == addr && bound.is_some() && bindings::certified(&c.standing) == bound
        });
        match self.bindings.verdict(&addr, &ids, holder_open) {
            Verdict::Proven => self.admit(est),
            Verdict::Impostor => {
                self.impostor(addr);
                est.close.cancel();
            }
            Verdict::Unproven => {
                if self.bindings.held() >= self.ctx.max_connections {
                    est.close.cancel();
                    return;
                }
                if let Some(extra) = self.bindings.hold(est) {
                    extra.close.cancel();
                }
                self.prove(addr);
            }
        }
    }

    /// Dials `addr` (unless a dial is open or under way) so that the
    /// connections held for it are settled; if `addr` refused us lately,
    /// they cannot be.
    pub(super) fn prove(&mut self, addr: SocketAddr) {
        match self.pool.route(addr, Instant::now()) {
            Route::Send(_) => {}
            Route::BackingOff => {
                for held in self.bindings.dial_failed(&addr) {
                    held.close.cancel();
                }
            }
            Route::Connect => self.connect(addr, &Batch::default()),
        }
    }

    /// A member claimed `addr` that our dial found held by other ids.
    pub(super) fn impostor(&self, addr: SocketAddr) {
        self.ctx
            .stats
            .addr_impostors
            .fetch_add(1, Ordering::Relaxed);
        warn!(%addr, "a member claimed a peer address whose certificate holds other ids; refused");
    }

    /// Takes a connection into use: its Hello's API recorded, its frames
    /// read, and (inbound) writes to its address sent over it.
    pub(super) fn admit(&mut self, est: Established) {
        if self.conns.len() >= self.ctx.max_connections {
            debug!(peer = %est.addr, "too many connections; closing the new one");
            est.close.cancel();
            if est.outbound {
                self.pool.remove(est.addr, est.conn_id);
            }
            return;
        }
        // Peers declare their API and service in their Hello; bounded by
        // the connection limit's churn (one entry per peer address).
        if self.peers.len() < 4 * self.ctx.max_connections || self.peers.contains_key(&est.addr) {
            self.peers.insert(
                est.addr,
                crate::PeerInfo {
                    api: est.api,
                    service: est.service.clone(),
                    resp: est.resp,
                },
            );
        }
        if est.outbound {
            self.pool.connected(est.addr);
        } else {
            let peer = Peer {
                conn_id: est.conn_id,
                outbox: est.outbox,
                last_used: Instant::now(),
            };
            if let Some(evicted) = self.pool.insert(est.addr, peer, self.ctx.max_connections) {
                self.close(evicted, false);
            }
        }
        self.conns.insert(
            est.conn_id,
            Conn {
                addr: est.addr,
                close: est.close,
                last_active: Instant::now(),
                standing: est.standing,
                expires: est.expires,
                outbound: est.outbound,
            },
        );
        self.readers.push(est.reader);
    }

    /// Remembers that the process of `peer` failed (or `left`), for
    /// `Status::departed`: once per process (the newest word wins), at
    /// most `MAX_DEPARTED`, for `DEPARTED_FOR`.
    pub(super) fn remember_departed(&mut self, peer: NodeRef, left: bool) {
        if peer.addr == self.core.addr() {
            return;
        }
        let api = self.peer_info(peer.addr).api;
        let now = Instant::now();
        // A process that said goodbye stays "left" when its stale entries
        // elsewhere in our tables time out after it (a minute's grace).
        let said_goodbye = self.departed.iter().any(|(n, _, was_left, at)| {
            n.addr == peer.addr && *was_left && now - *at < Duration::from_secs(60)
        });
        self.departed
            .retain(|(n, _, _, at)| n.addr != peer.addr && now - *at < crate::DEPARTED_FOR);
        self.departed
            .push_back((peer, api, left || said_goodbye, now));
        while self.departed.len() > crate::MAX_DEPARTED {
            self.departed.pop_front();
        }
    }

    /// What the process at peer address `addr` declared (this process's
    /// own settings for its own address).
    pub(super) fn peer_info(&self, addr: SocketAddr) -> crate::PeerInfo {
        if addr == self.core.addr() {
            crate::PeerInfo {
                api: self.settings.api,
                service: self.settings.service.clone(),
                resp: self.settings.resp,
            }
        } else {
            self.peers.get(&addr).cloned().unwrap_or_default()
        }
    }
}
