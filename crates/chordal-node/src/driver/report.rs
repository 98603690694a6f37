//! The driver's reports: the status of the node and its metrics page.

use super::*;

impl Driver {
    /// The metrics text: the recorder's, topped up with the core's
    /// counters and the current state.
    pub(super) fn render_metrics(&self) -> String {
        let stats = &self.ctx.stats;
        let joined = self.core.vnodes().iter().filter(|v| v.is_joined()).count();
        let now = Snapshot {
            connections: self.conns.len(),
            keys_stored: self.store.count().unwrap_or(0),
            ring_size_estimate: self.core.ring_size_estimate(),
            membership: self.core.membership(),
            stored_bytes: self.store.bytes().unwrap_or(0),
            storage_failing: self.store.health().is_some(),
            vnodes_joined: joined,
            vnodes_joining: self.core.vnodes().len() - joined,
            bad_handshakes: stats.bad_handshakes.load(Ordering::Relaxed),
            bad_frames: stats.bad_frames.load(Ordering::Relaxed),
            tls_refused: stats.tls_refused.load(Ordering::Relaxed),
            wrong_ids: stats.wrong_ids.load(Ordering::Relaxed),
            client_role: stats.client_role.load(Ordering::Relaxed),
            dropped_out: stats.dropped_out.load(Ordering::Relaxed),
            app_refused: stats.app_refused.load(Ordering::Relaxed),
            resp_malformed: stats.resp_malformed.load(Ordering::Relaxed),
            dht_api_malformed: stats.dht_api_malformed.load(Ordering::Relaxed),
            addr_impostors: stats.addr_impostors.load(Ordering::Relaxed),
            not_there: stats.not_there.load(Ordering::Relaxed),
            client_timeouts: stats.client_timeouts.load(Ordering::Relaxed),
            listeners: stats
                .listeners
                .lock()
                .expect("listeners lock")
                .iter()
                .map(|(name, gate)| (*name, gate.open(), gate.refused()))
                .collect(),
        };
        self.metrics.render(&self.core.counters(), &now)
    }

    pub(super) fn status(&self) -> Status {
        let vnodes = self
            .core
            .vnodes()
            .iter()
            .map(|v| {
                let t = v.table();
                let mut fingers: Vec<Finger> = Vec::new();
                for (i, f) in t.fingers().iter().enumerate() {
                    let node = f.unwrap_or(v.me());
                    if fingers.last().is_some_and(|l| l.node == node) {
                        continue;
                    }
                    fingers.push(Finger {
                        index: i,
                        start: t.finger_start(i),
                        node,
                    });
                }
                VNodeStatus {
                    me: v.me(),
                    joined: v.is_joined(),
                    predecessor: t.predecessor(),
                    successors: t.successors_or_me(),
                    fingers,
                }
            })
            .collect();
        let stats = &self.ctx.stats;
        Status {
            addr: self.core.addr(),
            api: self.settings.api,
            service: self.settings.service.clone(),
            cluster: self.settings.cluster.clone(),
            vnodes,
            connections: self.conns.len(),
            keys_stored: self.store.count().unwrap_or(0),
            ring_size_estimate: self.core.ring_size_estimate(),
            routing: match self.core.config().routing {
                chordal_core::Routing::OneHop => "onehop",
                chordal_core::Routing::Chord => "chord",
            },
            membership: self.core.membership(),
            frames_in: stats.frames_in.load(Ordering::Relaxed),
            frames_out: stats.frames_out.load(Ordering::Relaxed),
            bad_handshakes: stats.bad_handshakes.load(Ordering::Relaxed),
            bad_frames: stats.bad_frames.load(Ordering::Relaxed),
            dropped_out: stats.dropped_out.load(Ordering::Relaxed),
            storage_problem: self.store.health().map(|e| e.to_string()),
            departed: self.departed_lately(),
        }
    }

    /// `Status::departed`: the processes our vnodes dropped (and how),
    /// then those only the membership table saw go.
    pub(super) fn departed_lately(&self) -> Vec<crate::Departed> {
        let mut out: Vec<crate::Departed> = self
            .departed
            .iter()
            .filter(|(.., at)| at.elapsed() < crate::DEPARTED_FOR)
            .map(|(node, api, left, at)| crate::Departed {
                node: *node,
                api: *api,
                left: Some(*left),
                ago: at.elapsed(),
            })
            .collect();
        let now = wall_clock();
        for (node, at) in self.core.departed() {
            let ago = now.saturating_since(at);
            let known = out.iter().any(|d| d.node.addr == node.addr);
            if known || ago >= crate::DEPARTED_FOR || node.addr == self.core.addr() {
                continue;
            }
            if out.len() >= crate::MAX_DEPARTED {
                break;
            }
            out.push(crate::Departed {
                node,
                api: self.peer_info(node.addr).api,
                left: None,
                ago,
            });
        }
        out
    }
}
