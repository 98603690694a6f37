//! Messages to a virtual node: each handed to the step of the protocol
//! it answers or asks for (stabilization, lookups, failures, merges).

use super::*;

impl VNode {
    /// Handles one message addressed to this virtual node.
    pub fn handle_message(&mut self, now: Time, from: NodeRef, msg: Message) {
        let joined = self.phase == Phase::Joined;
        if self.table.predecessor() == Some(from) {
            self.heard_from_pred = Some(now);
        }
        match msg {
            Message::Ping { req } if joined => self.send(from, Message::Pong { req }),
            Message::GetNeighbors { req } if joined => {
                let n = self.neighbors();
                self.send(
                    from,
                    Message::Neighbors {
                        req,
                        predecessor: n.predecessor,
                        successors: n.successors,
                        keys_stored: n.keys_stored,
                    },
                );
            }
            Message::Notify if joined => self.on_notify(now, from),
            Message::SuccessorHint { candidate } if joined => {
                self.on_successor_hint(now, candidate)
            }
            Message::FindSuccessor {
                req,
                origin,
                lookup,
                key,
                hops,
                claim,
            } if joined => {
                self.on_find_successor(now, origin, lookup, key, hops, claim);
                self.queue_ack(now, from, req);
            }
            Message::ClosestPreceding { req, key } if joined => {
                let (done, nodes) = if self.table.successor_owns(&key) {
                    (true, self.table.successors_or_me())
                } else {
                    (
                        false,
                        self.table.closest_preceding_nodes(&key, ITERATIVE_WIDTH),
                    )
                };
                self.send(from, Message::ClosestPrecedingReply { req, done, nodes });
            }
            Message::Leave {
                predecessor,
                successors,
            } if joined => self.on_leave(now, from, predecessor, successors),
            // Answers are taken in any phase: a joining node needs them.
            Message::Pong { req } => {
                if let Some(Pending {
                    kind:
                        PendingKind::Confirm {
                            lookup,
                            successors,
                            hops,
                            path,
                        },
                    ..
                }) = self.take_pending(req)
                {
                    self.answer_lookup(now, lookup, successors, hops, path);
                }
            }
            Message::LookupAck { reqs } => {
                for req in reqs.into_iter().take(MAX_ACKS) {
                    self.take_pending(req);
                }
            }
            Message::Neighbors {
                req,
                predecessor,
                successors,
                keys_stored,
            } => {
                let successors = self.sanitize(successors);
                match self.take_pending(req).map(|p| p.kind) {
                    Some(PendingKind::Stabilize) => {
                        self.on_stabilize_reply(now, from, predecessor, successors)
                    }
                    Some(PendingKind::Query { query }) => {
                        let result = Some(Neighbors {
                            node: from,
                            predecessor,
                            successors,
                            keys_stored,
                        });
                        self.events
                            .push_back(Event::NeighborsQueried { query, result });
                    }
                    _ => {}
                }
            }
            Message::FoundSuccessor {
                lookup,
                key,
                successors,
                hops,
            } => {
                let successors = self.sanitize(successors);
                if self.lookups.get(&lookup).is_some_and(|l| l.key == key) {
                    self.answer_lookup(now, lookup, successors, hops, Vec::new());
                }
            }
            Message::LookupFailed { lookup, reason } => {
                let err = match reason {
                    LookupFailure::HopLimit => LookupError::HopLimit,
                    LookupFailure::NoRoute => LookupError::NoRoute,
                };
                if self
                    .lookups
                    .get(&lookup)
                    .is_some_and(|l| l.purpose == Purpose::Join)
                {
                    self.next_seed(now);
                } else {
                    self.finish_lookup(lookup, Err(err));
                }
            }
            Message::ClosestPrecedingReply { req, done, nodes } => {
                let nodes = self.sanitize(nodes);
                if let Some(Pending {
                    kind: PendingKind::Step { lookup },
                    ..
                }) = self.take_pending(req)
                {
                    self.on_step_reply(now, lookup, from, done, nodes);
                }
            }
            Message::NotHere { req } => {
                if let Some(p) = self.pending.get(&req) {
                    let to = p.to;
                    self.fail_target(now, to);
                    self.fail_request(now, req);
                }
            }
            // A request while not joined: say so, so the sender routes around us.
            other => {
                if let Some(req) = other.request_id() {
                    self.send(from, Message::NotHere { req });
                }
            }
        }
    }
}
