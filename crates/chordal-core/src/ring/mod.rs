//! The ring sub-machine: this process's virtual nodes running Chord
//! (Stoica et al.), and the answers every other part of the core asks of
//! them — which of our vnodes owns a key, where its replicas go, which
//! ranges we own.
//!
//! [`VNode`] is one ring member (create/join, `stabilize`, `notify`,
//! `fix_fingers`, `check_predecessor`, lookups, leave); [`RoutingTable`]
//! its predecessor, successor list and fingers; [`placement`] the one rule
//! of where copies go. [`Ring`] hosts the vnodes of one process and knows
//! nothing of keys, stores or applications.

mod estimate;
mod members;
mod onehop;
mod placement;
mod routing;
mod vnode;

pub use estimate::ring_size;
pub use members::Digest as MembersDigest;
pub use members::SLICES as MEMBER_SLICES;
pub use onehop::{MAX_EVENTS_PER_MESSAGE, OneHopStats, PAGE as MEMBERS_PAGE};
pub use placement::{replica_set, replica_set_where, successor_index};
pub use routing::RoutingTable;
pub use vnode::{Phase, VNode};

use crate::config::{Config, LookupMode, Routing};
use crate::event::{Event, KeyRange, LookupId, QueryId};
use crate::message::{Envelope, Message, NodeRef};
use crate::{Id, Time};
use std::net::SocketAddr;

/// Whether a vnode owns a key (see [`Ring::takes_key`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Ownership {
    /// The key is in the vnode's range `(predecessor, me]`.
    Yes,
    /// The vnode has joined but heard from no predecessor yet (a join or
    /// a restart a moment ago), so it cannot tell which keys are its own:
    /// the key is read (with the replicas' copies, as its own may be
    /// stale), but a write waits (`NotReady`) — taken here, it would land
    /// on the wrong copies whenever a stale route sent it, and the owner's
    /// reads would miss it.
    Unknown,
    /// The vnode knows no predecessor (it just failed): the key is ours if
    /// the dead predecessor owned it — or a live node's between, which we
    /// cannot tell yet.
    Maybe,
    No,
}

/// The virtual nodes of one process, and its membership table when
/// routing one hop.
#[derive(Debug)]
pub(crate) struct Ring {
    addr: SocketAddr,
    vnodes: Vec<VNode>,
    onehop: onehop::OneHop,
    next_lookup: u64,
    next_query: u64,
}

impl Ring {
    /// One virtual node per id in `ids` (at least one), all at peer address
    /// `addr`; `seed` makes their timer jitter repeatable.
    pub fn new(config: &Config, addr: SocketAddr, ids: &[Id], seed: u64) -> Ring {
        assert!(!ids.is_empty(), "a node hosts at least one virtual node");
        let vnodes = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                VNode::new(
                    config.clone(),
                    NodeRef::new(*id, addr),
                    seed.wrapping_add(i as u64),
                )
            })
            .collect();
        let onehop = onehop::OneHop::new(
            config.routing == Routing::OneHop,
            config.verify_members,
            addr,
            config.max_members,
            (
                config.membership_interval,
                config.membership_refresh,
                config.request_timeout,
            ),
        );
        Ring {
            addr,
            vnodes,
            onehop,
            next_lookup: 1,
            next_query: 1,
        }
    }

    /// Our peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the membership table says owns `key` (one-hop routing only):
    /// the vnode to send a request for it to. A hint; the owner confirms.
    pub fn onehop_owner(&self, key: &Id) -> Option<NodeRef> {
        self.onehop.owner(key)
    }

    /// Every entry of the membership table, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeRef> + '_ {
        self.onehop.entries()
    }

    /// One-hop routing's table size and traffic.
    pub fn onehop_stats(&self) -> OneHopStats {
        self.onehop.stats()
    }

    /// The vnodes the membership table saw depart lately, with when
    /// (empty under Chord routing).
    pub fn departed(&self) -> Vec<(NodeRef, Time)> {
        self.onehop.departed().collect()
    }

    /// `node` just answered us itself: keep it in the membership table.
    pub fn learn(&mut self, now: Time, node: NodeRef) {
        self.onehop.learn(now, node, true);
    }

    /// `node` did not answer: out of the membership table.
    pub fn forget(&mut self, now: Time, node: &NodeRef) {
        self.onehop.forget(now, node);
    }

    /// The virtual nodes, first one first.
    pub fn vnodes(&self) -> &[VNode] {
        &self.vnodes
    }

    /// The first virtual node: the one seeds, lookups without a better
    /// start and the process's own messages use.
    pub fn primary(&self) -> &VNode {
        &self.vnodes[0]
    }

    /// Our vnode `node`, if it is ours.
    pub fn vnode(&self, node: &NodeRef) -> Option<&VNode> {
        self.vnodes.iter().find(|v| v.me() == *node)
    }

    /// Our vnode with id `id`, if any.
    pub fn vnode_by_id(&self, id: &Id) -> Option<&VNode> {
        self.vnodes.iter().find(|v| v.me().id == *id)
    }

    /// The vnode of ours a message was addressed to (the first if unknown):
    /// the sender of our answer.
    pub fn addressee(&self, to: Option<Id>) -> NodeRef {
        to.and_then(|id| self.vnode_by_id(&id))
            .unwrap_or(&self.vnodes[0])
            .me()
    }

    /// Have all virtual nodes joined?
    pub fn is_joined(&self) -> bool {
        self.vnodes.iter().all(|v| v.is_joined())
    }

    /// Has at least one virtual node joined (can we route anything)?
    pub fn any_joined(&self) -> bool {
        self.vnodes.iter().any(|v| v.is_joined())
    }

    /// A joined virtual node of ours that owns `key_id` (the key is in its
    /// range `(predecessor, self]`).
    pub fn owning_vnode(&self, key_id: &Id) -> Option<NodeRef> {
        self.vnodes
            .iter()
            .filter(|v| v.is_joined())
            .find(|v| v.range().is_some_and(|r| r.contains(key_id)))
            .map(|v| v.me())
    }

    /// Does our vnode `vnode` own `key_id`? A `Maybe` key is read (a copy
    /// found is the newest we have) but never written, and a miss answers
    /// `WrongOwner` rather than a false `NotFound`; an `Unknown` one is
    /// read, and written once the range is known.
    pub fn takes_key(&self, vnode: &NodeRef, key_id: &Id) -> Ownership {
        let Some(v) = self.vnode(vnode) else {
            return Ownership::No;
        };
        if !v.is_joined() {
            Ownership::No
        } else if v.range().is_none() {
            Ownership::Unknown
        } else if v.range().is_some_and(|r| r.contains(key_id)) {
            Ownership::Yes
        } else if v.table().predecessor().is_none() {
            Ownership::Maybe
        } else {
            Ownership::No
        }
    }

    /// Where copies of our vnode `owner`'s keys go besides the owner: the
    /// next `r - 1` successors on distinct processes other than ours
    /// ([`replica_set`]).
    pub fn replica_targets(&self, owner: &NodeRef, r: usize) -> Vec<NodeRef> {
        match self.vnode(owner) {
            Some(v) => replica_set(owner, v.table().successors(), r),
            None => Vec::new(),
        }
    }

    /// [`Ring::replica_targets`] among the successors `usable` allows.
    pub fn replica_targets_where(
        &self,
        owner: &NodeRef,
        r: usize,
        usable: impl Fn(&NodeRef) -> bool,
    ) -> Vec<NodeRef> {
        match self.vnode(owner) {
            Some(v) => replica_set_where(owner, v.table().successors(), r, usable),
            None => Vec::new(),
        }
    }

    /// Distinct processes other than ours in `v`'s successor list.
    pub fn distinct_successor_processes(&self, v: &VNode) -> usize {
        replica_set(&v.me(), v.table().successors(), usize::MAX).len()
    }

    /// Each joined virtual node of ours with the range it owns.
    pub fn owned_ranges(&self) -> Vec<(NodeRef, KeyRange)> {
        self.vnodes
            .iter()
            .filter(|v| v.is_joined())
            .filter_map(|v| v.range().map(|r| (v.me(), r)))
            .collect()
    }

    /// The range our vnode `node` owns, if it is ours and knows it.
    pub fn range_of(&self, node: &NodeRef) -> Option<KeyRange> {
        self.vnode(node).and_then(|v| v.range())
    }

    /// The sum of the vnode count and every successor-list change count:
    /// moves whenever some successor list changed.
    pub fn successor_changes(&self) -> u64 {
        self.vnodes.iter().fold(self.vnodes.len() as u64, |t, v| {
            t.wrapping_add(v.table().successor_changes())
        })
    }

    /// Tells every vnode how many records the store holds (reported to
    /// ring walks in `Neighbors` answers).
    pub fn set_keys_stored(&mut self, n: u64) {
        for v in &mut self.vnodes {
            v.set_keys_stored(n);
        }
    }

    /// Starts a new ring: the first vnode creates it, the others join
    /// through it.
    pub fn create(&mut self, now: Time) {
        self.vnodes[0].create(now);
        let addr = self.addr;
        for v in &mut self.vnodes[1..] {
            v.join(now, vec![addr]);
        }
    }

    /// Starts every vnode as a member of an already converged ring;
    /// `state(vnode)` gives each one's predecessor, successor list and
    /// fingers (160 entries).
    pub fn start_converged(
        &mut self,
        now: Time,
        state: impl Fn(NodeRef) -> (NodeRef, Vec<NodeRef>, Vec<NodeRef>),
        members: impl IntoIterator<Item = NodeRef>,
    ) {
        for v in &mut self.vnodes {
            let (pred, succs, fingers) = state(v.me());
            v.start_converged(now, pred, &succs, |i| fingers[i]);
        }
        let ours: Vec<NodeRef> = self.vnodes.iter().map(|v| v.me()).collect();
        self.onehop
            .start_converged(now, ours.into_iter().chain(members));
    }

    /// Joins an existing ring through `seeds` (tried in turn).
    pub fn join(&mut self, now: Time, seeds: Vec<SocketAddr>) {
        for v in &mut self.vnodes {
            v.join(now, seeds.clone());
        }
    }

    /// Every vnode says goodbye to its neighbours (the store has drained).
    pub fn leave(&mut self) {
        for v in &mut self.vnodes {
            v.leave();
        }
        self.onehop.left();
    }

    /// Starts `find_successor(key)` at our vnode that owns the key (which
    /// answers at once), else at the joined vnode closest before the key
    /// (fewest hops); the answer comes as `Event::LookupDone`. Routing
    /// one hop, a recursive lookup goes first to the key's owner in the
    /// membership table, which answers if the key is in its range (or
    /// routes on by Chord when the table was wrong).
    pub fn start_lookup(&mut self, now: Time, key: Id, mode: LookupMode) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        // One of ours owns the key: it answers at once (0 hops).
        let owner = (0..self.vnodes.len()).find(|i| {
            let v = &self.vnodes[*i];
            v.is_joined() && v.range().is_some_and(|r| r.contains(&key))
        });
        let best = owner
            .or_else(|| {
                (0..self.vnodes.len())
                    .filter(|i| self.vnodes[*i].is_joined())
                    .min_by_key(|i| self.vnodes[*i].me().id.distance(&key))
            })
            .unwrap_or(0);
        let via = self
            .onehop
            .owner(&key)
            .filter(|_| mode == LookupMode::Recursive);
        self.vnodes[best].start_lookup(now, id, key, mode, via);
        id
    }

    /// Asks `node` for its predecessor and successor list (through that
    /// vnode itself if it is ours); the answer comes as
    /// `Event::NeighborsQueried`.
    pub fn query_neighbors(&mut self, now: Time, node: NodeRef) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        let i = self.vnodes.iter().position(|v| v.me() == node).unwrap_or(0);
        self.vnodes[i].query_neighbors(now, id, node);
        id
    }

    /// Hands a ring message to the vnode it names (the first one for a
    /// message to a bare address). A request for an id we do not host gets
    /// `NotHere` (returned for sending); anything else for it is dropped
    /// (`None`, `false`).
    pub fn handle_message(
        &mut self,
        now: Time,
        env: Envelope,
    ) -> Result<(), Option<Box<Envelope>>> {
        if env.msg.family() == crate::Family::Members {
            let vnodes = &self.vnodes;
            let live = |n: &NodeRef| vnodes.iter().any(|v| v.me() == *n && v.is_joined());
            self.onehop.handle_message(now, env.from, env.msg, live);
            return Ok(());
        }
        if let Message::Pong { req } | Message::NotHere { req } = env.msg
            && self.onehop.is_probe(req)
        {
            let alive = matches!(env.msg, Message::Pong { .. });
            self.onehop.probe_answered(now, req, env.from, alive);
            return Ok(());
        }
        let index = match env.to.id {
            None => Some(0),
            Some(id) => self.vnodes.iter().position(|v| v.me().id == id),
        };
        if let Some(i) = index {
            self.vnodes[i].handle_message(now, env.from, env.msg);
            return Ok(());
        }
        Err(env.msg.request_id().map(|req| {
            Box::new(Envelope {
                from: self.vnodes[0].me(),
                to: env.from.into(),
                msg: Message::NotHere { req },
            })
        }))
    }

    /// Runs every vnode timer due at `now`, and one-hop routing's.
    pub fn handle_timeout(&mut self, now: Time) {
        for v in &mut self.vnodes {
            if v.poll_timeout().is_some_and(|t| t <= now) {
                v.handle_timeout(now);
            }
        }
        if self.onehop.poll_timeout().is_some_and(|t| t <= now) {
            let primary = &self.vnodes[0];
            let successor = primary.is_joined().then(|| primary.table().successor());
            self.onehop.handle_timeout(now, successor);
        }
    }

    /// The driver could not connect to `addr`: every vnode there is dead.
    pub fn handle_unreachable(&mut self, now: Time, addr: SocketAddr) {
        self.onehop.forget_process(now, &addr);
        for v in &mut self.vnodes {
            v.handle_unreachable(now, addr);
        }
    }

    /// The driver lost an established connection to `addr`.
    pub fn handle_disconnect(&mut self, now: Time, addr: SocketAddr) {
        for v in &mut self.vnodes {
            v.handle_disconnect(now, addr);
        }
    }

    /// When the next vnode timer is due.
    pub fn poll_timeout(&self) -> Option<Time> {
        let vnodes = self.vnodes.iter().filter_map(|v| v.poll_timeout());
        vnodes.chain(self.onehop.poll_timeout()).min()
    }

    /// Does some vnode (or one-hop routing) have messages or events to
    /// drain?
    pub fn has_output(&self) -> bool {
        self.vnodes.iter().any(VNode::has_output) || self.onehop.has_output()
    }

    /// Drains every vnode's messages (to `send`) and events (returned), in
    /// vnode order, then one-hop routing's messages. The events also keep
    /// the membership table current: predecessor changes are detected
    /// joins and departures, lookup answers and failures are learned.
    pub fn drain(&mut self, now: Time, mut send: impl FnMut(Envelope)) -> Vec<Event> {
        let mut events = Vec::new();
        for v in &mut self.vnodes {
            while let Some(env) = v.poll_transmit() {
                send(env);
            }
            while let Some(e) = v.poll_event() {
                events.push(e);
            }
        }
        if self.onehop.enabled() {
            for e in &events {
                self.track_membership(now, e);
            }
        }
        let from = self.vnodes[0].me();
        while let Some((to, msg)) = self.onehop.poll_transmit() {
            send(Envelope { from, to, msg });
        }
        events
    }

    /// What event `e` of a vnode tells the membership table.
    fn track_membership(&mut self, now: Time, e: &Event) {
        let me = |id: &Id| NodeRef::new(*id, self.addr);
        match e {
            Event::PredecessorChanged { vnode, old, new } => {
                self.onehop.predecessor_changed(now, me(vnode), *old, *new);
            }
            Event::Joined { vnode, successor } => {
                self.onehop.joined(now, me(vnode), *successor);
            }
            Event::SuccessorChanged { new, .. } => self.onehop.learn(now, *new, false),
            Event::PeerFailed { peer, .. } => self.onehop.forget(now, peer),
            Event::LookupDone { result: Ok(r), .. } => self.onehop.learn(now, r.owner, false),
            _ => {}
        }
    }
}
