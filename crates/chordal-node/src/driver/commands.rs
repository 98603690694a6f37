//! What the `Node` handle asks of the driver, and how the driver does it.

use super::*;

/// What the [`crate::Node`] handle asks of the driver.
pub enum Command {
    Lookup {
        key: chordal_core::Id,
        mode: LookupMode,
        /// The answer with what each node it names declared, so that a
        /// locate needs one trip to the driver.
        reply: oneshot::Sender<Result<crate::Located, LookupError>>,
    },
    QueryNeighbors {
        node: chordal_core::NodeRef,
        reply: oneshot::Sender<Option<Neighbors>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    /// The node's metrics in Prometheus text format.
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// This node's own copy of a key, without routing.
    LocalGet {
        key: Vec<u8>,
        reply: oneshot::Sender<Option<chordal_core::Record>>,
    },
    /// The authority state, for debugging (`chordal_core::Node::debug_authority`).
    DebugAuthority {
        reply: oneshot::Sender<String>,
    },
    /// Every entry of the one-hop membership table, in id order.
    Members {
        reply: oneshot::Sender<Vec<NodeRef>>,
    },
    /// What the processes at these peer addresses declared, in order.
    PeerInfo {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Vec<crate::PeerInfo>>,
    },
    Kv {
        op: KeyOp,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    /// Several store operations started together, so that what they send
    /// to one owner leaves in one write.
    KvMany {
        ops: Vec<(StoreOp, oneshot::Sender<Result<Outcome, OpError>>)>,
    },
    /// An application message to node `to` itself.
    Direct {
        to: chordal_core::NodeRef,
        payload: Vec<u8>,
        want_reply: bool,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    /// Subscribe to a topic, feeding `sub`; answered once the topic's
    /// owner registered this node.
    Subscribe {
        topic: Vec<u8>,
        sub: LocalSub,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    Publish {
        topic: Vec<u8>,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<Outcome, OpError>>,
    },
    /// Leave gracefully and stop: hand every range over (acknowledged),
    /// then say goodbye; answered once farewells are flushed.
    Leave {
        reply: oneshot::Sender<LeaveReport>,
    },
    /// Stop at once without telling anyone, like a crash.
    Abort {
        reply: oneshot::Sender<()>,
    },
}

/// An operation on a key's owner, as the handle asks for it.
#[derive(Debug)]
pub enum KeyOp {
    /// A store operation (its expiry made absolute when it starts).
    Store(StoreOp),
    /// An application message for the owner's application.
    Send { key: Vec<u8>, payload: Vec<u8> },
    /// The same, waiting for the application's answer.
    Request { key: Vec<u8>, payload: Vec<u8> },
}

impl Driver {
    /// Carries out a command of the handle; `Stop` after an abort.
    pub(super) fn command(&mut self, cmd: Command) -> Flow {
        let now = self.now();
        match cmd {
            Command::Lookup { key, mode, reply } => {
                let id = self.core.start_lookup(now, key, mode);
                self.lookups.insert(id, (reply, Instant::now()));
            }
            Command::QueryNeighbors { node, reply } => {
                let id = self.core.query_neighbors(now, node);
                self.queries.insert(id, reply);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.render_metrics());
            }
            Command::LocalGet { key, reply } => {
                let id = chordal_core::Id::of_key(&key);
                let _ = reply.send(self.store.get(&id, &key).ok().flatten());
            }
            Command::Members { reply } => {
                let _ = reply.send(self.core.members().collect());
            }
            Command::DebugAuthority { reply } => {
                let _ = reply.send(self.core.debug_authority());
            }
            Command::PeerInfo { addrs, reply } => {
                let infos = addrs.into_iter().map(|a| self.peer_info(a)).collect();
                let _ = reply.send(infos);
            }
            Command::KvMany { ops } => {
                for (op, reply) in ops {
                    let name = op.name();
                    let id = self.core.store(now, op.at(now));
                    self.kv_ops.insert(id, (reply, Instant::now(), name));
                }
            }
            Command::Kv { op, reply } => {
                let (id, name) = match op {
                    KeyOp::Store(op) => {
                        let name = op.name();
                        (self.core.store(now, op.at(now)), name)
                    }
                    KeyOp::Send { key, payload } => (self.core.send(now, key, payload), "send"),
                    KeyOp::Request { key, payload } => {
                        (self.core.request(now, key, payload), "request")
                    }
                };
                self.kv_ops.insert(id, (reply, Instant::now(), name));
            }
            Command::Direct {
                to,
                payload,
                want_reply,
                reply,
            } => {
                let (id, name) = if want_reply {
                    (self.core.request_to(now, to, payload), "request_to")
                } else {
                    (self.core.send_to(now, to, payload), "send_to")
                };
                self.kv_ops.insert(id, (reply, Instant::now(), name));
            }
            Command::Subscribe { topic, sub, reply } => {
                self.topics.add(topic.clone(), sub);
                let id = self.core.subscribe(now, topic);
                self.kv_ops.insert(id, (reply, Instant::now(), "subscribe"));
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                let id = self.core.publish(now, topic, payload);
                self.kv_ops.insert(id, (reply, Instant::now(), "publish"));
            }
            Command::Leave { reply } => self.begin_leave(Some(reply)),
            Command::Abort { reply } => {
                self.ctx.shutdown.cancel();
                let _ = reply.send(());
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}
