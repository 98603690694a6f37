//! The core's events, fanned out to the handle's waiters, the
//! application and the subscribers.

use super::*;

impl Driver {
    /// A lookup's result with the declarations of the owner, its
    /// successors and the path.
    pub(super) fn located(&self, result: LookupResult) -> crate::Located {
        let named = std::iter::once(&result.owner)
            .chain(&result.successors)
            .chain(&result.path);
        let infos = named.map(|n| (n.addr, self.peer_info(n.addr))).collect();
        crate::Located { result, infos }
    }

    pub(super) fn event(&mut self, event: Event) {
        match &event {
            Event::LookupDone { lookup, result } => {
                if let Some((reply, started)) = self.lookups.remove(lookup) {
                    self.metrics.lookup(started.elapsed());
                    let _ = reply.send(result.clone().map(|r| self.located(r)));
                }
            }
            Event::OpDone { op, result } => {
                if let Some((reply, started, name)) = self.kv_ops.remove(op) {
                    self.metrics.request(name, started.elapsed());
                    let _ = reply.send(result.clone());
                }
            }
            Event::NeighborsQueried { query, result } => {
                if let Some(reply) = self.queries.remove(query) {
                    let _ = reply.send(result.clone());
                }
            }
            Event::Joined { vnode, successor } => {
                info!(vnode = %vnode.short(), successor = %successor.id.short(), "joined the ring");
                if self.core.is_joined()
                    && let Some(w) = self.join_waiter.take()
                {
                    let _ = w.send(Ok(()));
                }
            }
            Event::JoinFailed { vnode } => {
                warn!(vnode = %vnode.short(), "join failed: no seed answered");
                if let Some(w) = self.join_waiter.take() {
                    let _ = w.send(Err(()));
                }
            }
            Event::PeerFailed { vnode, peer, left } => {
                debug!(vnode = %vnode.short(), peer = %peer.addr, "peer dropped");
                self.remember_departed(*peer, *left);
            }
            Event::AppMessage {
                msg,
                from,
                key,
                payload,
                want_reply,
            } => {
                let incoming = Incoming {
                    from: *from,
                    key: key.clone(),
                    payload: payload.clone(),
                    responder: want_reply.then(|| Responder::new(*msg, self.answers_tx.clone())),
                };
                self.deliver_app(*msg, *want_reply, incoming);
                // The message itself goes to the application, not to every
                // event subscriber.
                return;
            }
            Event::Publication {
                topic,
                publisher,
                payload,
            } => {
                let p = Publication {
                    topic: topic.clone(),
                    publisher: *publisher,
                    payload: payload.clone(),
                };
                if self.topics.deliver(p) {
                    let now = self.now();
                    self.core.unsubscribe(now, topic.clone());
                }
                return;
            }
            Event::PublicationsMissed { topic, count } => {
                self.topics.missed(topic, *count);
                return;
            }
            _ => {}
        }
        // Nobody listening is fine; a slow listener loses old events.
        let _ = self.events.send(event);
    }

    /// Hands an application message to the inbox, or refuses it if nobody
    /// listens or the inbox is full (back-pressure on the sender).
    pub(super) fn deliver_app(
        &mut self,
        msg: chordal_core::AppMsgId,
        want_reply: bool,
        incoming: Incoming,
    ) {
        let now = self.now();
        let listening = self.app.listening.load(Ordering::Acquire);
        if !listening {
            self.core.app_refuse(now, msg);
            return;
        }
        match self.inbox.try_send(incoming) {
            Ok(()) if !want_reply => self.core.app_accept(now, msg),
            // A request waits for its `Responder`.
            Ok(()) => {}
            Err(e) => {
                // Refused here: the returned responder must not say it again.
                if let Some(r) = e.into_inner().responder {
                    r.disarm();
                }
                self.ctx.stats.app_refused.fetch_add(1, Ordering::Relaxed);
                self.core.app_refuse(now, msg);
            }
        }
    }
}
