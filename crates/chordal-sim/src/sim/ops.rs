//! What clients ask of the ring: lookups, store operations, messages
//! and pub/sub, started at a node and run to their answer.

use super::*;

impl Sim {
    /// Starts a lookup at node `i`; see [`Sim::lookup_result`].
    pub fn start_lookup(&mut self, i: usize, key: Id, mode: LookupMode) -> LookupId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.start_lookup(now, key, mode);
        // Its messages are still in the node's outbox: `after_input` sees
        // them as this lookup's.
        self.user_lookups
            .insert((self.nodes[i].node.addr(), id.0), ());
        self.after_input(i);
        id
    }

    /// The result of a lookup started at node `i`, once it finished.
    pub fn lookup_result(
        &self,
        i: usize,
        id: LookupId,
    ) -> Option<&Result<LookupResult, LookupError>> {
        self.results.get(&(i, id))
    }

    /// Runs a lookup at node `i` to completion (or `lookup_timeout`).
    pub fn lookup(
        &mut self,
        i: usize,
        key: Id,
        mode: LookupMode,
    ) -> Result<LookupResult, LookupError> {
        let id = self.start_lookup(i, key, mode);
        let deadline = self.now + self.config.node.lookup_timeout + Duration::from_secs(1);
        while !self.results.contains_key(&(i, id)) && self.now < deadline {
            if !self.step() {
                break;
            }
        }
        self.results
            .remove(&(i, id))
            .unwrap_or(Err(LookupError::Timeout))
    }

    /// Runs many lookups at once: each `(node, key)` starts now, and the
    /// simulation runs until all are done (or `lookup_timeout`). Results
    /// come in the order of `queries`. Far cheaper than one after another
    /// when the ring's maintenance runs meanwhile.
    pub fn lookup_all(
        &mut self,
        queries: &[(usize, Id)],
        mode: LookupMode,
    ) -> Vec<Result<LookupResult, LookupError>> {
        let ids: Vec<(usize, LookupId)> = queries
            .iter()
            .map(|&(i, key)| (i, self.start_lookup(i, key, mode)))
            .collect();
        let deadline = self.now + self.config.node.lookup_timeout + Duration::from_secs(1);
        let mut waiting = ids.len();
        while waiting > 0 && self.now < deadline {
            let until = (self.now + Duration::from_millis(10)).min(deadline);
            self.run_until(until);
            waiting = ids.iter().filter(|k| !self.results.contains_key(k)).count();
        }
        ids.iter()
            .map(|k| self.results.remove(k).unwrap_or(Err(LookupError::Timeout)))
            .collect()
    }

    /// Sets the application every node runs (see `app_handler`).
    pub fn set_app_handler(
        &mut self,
        handler: impl FnMut(usize, &[u8], &[u8]) -> Option<Vec<u8>> + 'static,
    ) {
        self.app_handler = Some(Box::new(handler));
    }

    /// `send` at node `i`, run to completion.
    pub fn send(&mut self, i: usize, key: &[u8], payload: &[u8]) -> Result<Outcome, OpError> {
        let (k, p) = (key.to_vec(), payload.to_vec());
        self.kv(i, move |n, now| n.send(now, k, p))
    }

    /// `send_to` from node `i` to node `to`, run to completion.
    pub fn send_to(&mut self, i: usize, to: usize, payload: &[u8]) -> Result<Outcome, OpError> {
        let (target, p) = (self.nodes[to].node.primary().me(), payload.to_vec());
        self.kv(i, move |n, now| n.send_to(now, target, p))
    }

    /// `request` at node `i`, run to completion.
    pub fn request(&mut self, i: usize, key: &[u8], payload: &[u8]) -> Result<Outcome, OpError> {
        let (k, p) = (key.to_vec(), payload.to_vec());
        self.kv(i, move |n, now| n.request(now, k, p))
    }

    /// `subscribe` at node `i`, run until the topic's owner registered it.
    pub fn subscribe(&mut self, i: usize, topic: &[u8]) -> Result<Outcome, OpError> {
        let t = topic.to_vec();
        self.kv(i, move |n, now| n.subscribe(now, t))
    }

    /// `unsubscribe` at node `i`.
    pub fn unsubscribe(&mut self, i: usize, topic: &[u8]) {
        let now = self.clock_now(i);
        self.nodes[i].node.unsubscribe(now, topic.to_vec());
        self.after_input(i);
    }

    /// `publish` at node `i`, run until the topic's owner queued it.
    pub fn publish(&mut self, i: usize, topic: &[u8], payload: &[u8]) -> Result<Outcome, OpError> {
        let (t, p) = (topic.to_vec(), payload.to_vec());
        self.kv(i, move |n, now| n.publish(now, t, p))
    }

    /// Starts `publish` at node `i` without waiting: its result is in
    /// [`Sim::kv_result`] once done.
    pub fn start_publish(&mut self, i: usize, topic: &[u8], payload: &[u8]) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i]
            .node
            .publish(now, topic.to_vec(), payload.to_vec());
        self.after_input(i);
        id
    }

    /// Runs a key-value operation at node `i` to completion.
    pub(super) fn kv(
        &mut self,
        i: usize,
        start: impl FnOnce(&mut Node, Time) -> OpId,
    ) -> Result<Outcome, OpError> {
        let now = self.clock_now(i);
        let id = start(&mut self.nodes[i].node, now);
        self.after_input(i);
        let deadline = self.now + self.config.node.kv_timeout + Duration::from_secs(1);
        while !self.kv_results.contains_key(&(i, id)) && self.now < deadline {
            if !self.step() {
                break;
            }
        }
        self.kv_results
            .remove(&(i, id))
            .unwrap_or(Err(OpError::Timeout))
    }

    /// Starts a `put` at node `i` without waiting; see [`Sim::kv_result`].
    pub fn start_put(&mut self, i: usize, key: &[u8], value: &[u8]) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.put(now, key.to_vec(), value.to_vec());
        self.after_input(i);
        id
    }

    /// Starts a `get` at node `i` without waiting; see [`Sim::kv_result`].
    pub fn start_get(&mut self, i: usize, key: &[u8]) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.get(now, key.to_vec());
        self.after_input(i);
        id
    }

    /// Starts any store operation at node `i` without waiting; see
    /// [`Sim::kv_result`] and [`Sim::take_kv_result`].
    pub fn start_store_op(&mut self, i: usize, op: chordal_core::Operation) -> OpId {
        let now = self.clock_now(i);
        let id = self.nodes[i].node.store(now, op);
        self.after_input(i);
        id
    }

    /// Takes the result of a key-value operation started at node `i`, once
    /// done (a history recorder's way: each result is read once).
    pub fn take_kv_result(&mut self, i: usize, id: OpId) -> Option<Result<Outcome, OpError>> {
        self.kv_results.remove(&(i, id))
    }

    /// The result of a key-value operation started at node `i`, once done.
    pub fn kv_result(&self, i: usize, id: OpId) -> Option<&Result<Outcome, OpError>> {
        self.kv_results.get(&(i, id))
    }

    /// `put` at node `i`, run to completion.
    pub fn put(&mut self, i: usize, key: &[u8], value: &[u8]) -> Result<Outcome, OpError> {
        let (k, v) = (key.to_vec(), value.to_vec());
        self.kv(i, move |n, now| n.put(now, k, v))
    }

    /// `get` at node `i`, run to completion.
    pub fn get(&mut self, i: usize, key: &[u8]) -> Result<Outcome, OpError> {
        let k = key.to_vec();
        self.kv(i, move |n, now| n.get(now, k))
    }

    /// `delete` at node `i`, run to completion.
    pub fn delete(&mut self, i: usize, key: &[u8]) -> Result<Outcome, OpError> {
        let k = key.to_vec();
        self.kv(i, move |n, now| n.delete(now, k))
    }

    /// Any store operation (put, get, delete, update with their options)
    /// at node `i`, run to completion.
    pub fn store_op(&mut self, i: usize, op: chordal_core::Operation) -> Result<Outcome, OpError> {
        self.kv(i, move |n, now| n.store(now, op))
    }
}
