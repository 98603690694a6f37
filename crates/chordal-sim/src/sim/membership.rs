//! Nodes in and out of the ring: added, created, joined, left, restarted,
//! and whole rings built for a test.

use super::*;

impl Sim {
    /// Adds a node with `vnodes` virtual nodes and random ids; it does
    /// nothing until `create` or `join`. Returns its index.
    pub fn add_node(&mut self, vnodes: usize) -> usize {
        let ids: Vec<Id> = (0..vnodes.max(1)).map(|_| self.random_id()).collect();
        self.add_node_with_ids(&ids)
    }

    /// Adds a node hosting exactly `ids`.
    pub fn add_node_with_ids(&mut self, ids: &[Id]) -> usize {
        let index = self.nodes.len();
        let addr = address_of(index);
        let seed = self.rng.next_u64();
        let node = Node::new(self.config.node.clone(), addr, ids, seed);
        self.nodes.push(SimNode {
            node,
            store: MemoryStore::new(),
            alive: true,
            wake: None,
            group: 0,
            clock: Clock::default(),
            next_clock: None,
        });
        index
    }

    /// Adds `n` nodes of `vnodes` virtual nodes each (random ids) that start
    /// as an already converged ring: exact successor lists, predecessors
    /// and fingers. Returns their indices. Builds rings of 10^5 nodes in
    /// seconds, where running every join would take far longer.
    pub fn build_converged(&mut self, n: usize, vnodes: usize) -> Vec<usize> {
        let indices: Vec<usize> = (0..n).map(|_| self.add_node(vnodes)).collect();
        let refs: HashMap<Id, chordal_core::NodeRef> = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .flat_map(|n| n.node.vnodes().iter().map(|v| (v.me().id, v.me())))
            .collect();
        let oracle = self.oracle();
        let r = self.config.node.successors;
        for &i in &indices {
            let state = |me: chordal_core::NodeRef| {
                let pred = refs[&oracle.prev(&me.id)];
                let succs = oracle
                    .successors(&me.id, r)
                    .iter()
                    .map(|id| refs[id])
                    .collect();
                let fingers = (0..chordal_core::ID_BITS)
                    .map(|k| refs[&oracle.successor(&me.id.add_pow2(k))])
                    .collect();
                (pred, succs, fingers)
            };
            let now = self.clock_now(i);
            let members = refs.values().copied();
            self.nodes[i].node.start_converged(now, state, members);
            self.after_input(i);
        }
        indices
    }

    /// A new simulation of a ring of `n` single-vnode nodes grown the way
    /// a real one is: node 0 creates it, the others join through it `gap`
    /// apart (zero: all at once). Returned as soon as every successor and
    /// predecessor is right — under authority, the terms of its first
    /// configs may still be catching up. Panics if the ring does not
    /// converge within a minute.
    pub fn grown(config: SimConfig, n: usize, gap: Duration) -> Sim {
        let seed = config.seed;
        let mut s = Sim::new(config);
        let first = s.add_node(1);
        s.create(first);
        s.run_for(Duration::from_millis(500));
        for _ in 1..n {
            let i = s.add_node(1);
            s.join(i, first);
            s.run_for(gap);
        }
        s.run_until_true(Duration::from_millis(100), Duration::from_secs(60), |s| {
            s.ring_errors(true) == 0
        })
        .unwrap_or_else(|| panic!("seed {seed}: ring did not converge"));
        s
    }

    /// Node `i` starts a new ring.
    pub fn create(&mut self, i: usize) {
        let now = self.clock_now(i);
        self.nodes[i].node.create(now);
        self.after_input(i);
    }

    /// Node `i` joins through node `seed`.
    pub fn join(&mut self, i: usize, seed: usize) {
        let now = self.clock_now(i);
        let seed_addr = self.nodes[seed].node.addr();
        self.nodes[i].node.join(now, vec![seed_addr]);
        self.after_input(i);
    }

    /// Node `i` joins through several seeds, tried in turn.
    pub fn join_via(&mut self, i: usize, seeds: &[usize]) {
        let now = self.clock_now(i);
        let addrs = seeds.iter().map(|s| self.nodes[*s].node.addr()).collect();
        self.nodes[i].node.join(now, addrs);
        self.after_input(i);
    }

    /// Node `i` starts a graceful leave: it hands its ranges over, says
    /// goodbye once they are acknowledged, then stops (see
    /// [`Sim::is_alive`]).
    pub fn leave(&mut self, i: usize) {
        let now = self.clock_now(i);
        self.nodes[i].node.leave(now);
        self.after_input(i);
    }

    /// Node `i` (killed) starts again with its ids, address and store (its
    /// disk), and joins through node `seed`.
    pub fn restart(&mut self, i: usize, seed: usize) {
        self.restart_via(i, &[seed]);
    }

    /// Node `i` (killed) starts again with its ids, address and store, and
    /// joins through several seeds, tried in turn.
    pub fn restart_via(&mut self, i: usize, seeds: &[usize]) {
        self.reboot(i);
        self.join_via(i, seeds);
    }

    /// Node `i` (killed) starts again with its ids, address and store, as
    /// a ring of its own.
    pub fn restart_alone(&mut self, i: usize) {
        self.reboot(i);
        self.create(i);
    }

    /// A fresh core for node `i`, as a process start gives it.
    pub(super) fn reboot(&mut self, i: usize) {
        let addr = self.nodes[i].node.addr();
        let ids: Vec<Id> = self.nodes[i]
            .node
            .vnodes()
            .iter()
            .map(|v| v.me().id)
            .collect();
        let rng_seed = self.rng.next_u64();
        self.nodes[i].node = Node::new(self.config.node.clone(), addr, &ids, rng_seed);
        // The new incarnation numbers its operations from the start again:
        // results of the old one nobody took must not pass for its own.
        self.kv_results.retain(|(n, _), _| *n != i);
        // As the driver does: versions go above what the disk holds.
        let stored = self.nodes[i].store.max_hlc().unwrap_or(0);
        self.nodes[i].node.seed_clock(stored);
        if let Some(clock) = self.nodes[i].next_clock.take() {
            self.nodes[i].clock = clock;
        }
        // As the driver does: the promises kept (authority), every lease
        // counted live for one more lease.
        let promises = self.nodes[i]
            .store
            .meta(chordal_store::PROMISES)
            .ok()
            .flatten();
        let now = self.clock_now(i);
        let restored = self.nodes[i]
            .node
            .restore_promises(now, promises.as_deref());
        assert!(restored, "a promise table the simulator kept is damaged");
        self.nodes[i].alive = true;
        self.nodes[i].wake = None;
    }
}
