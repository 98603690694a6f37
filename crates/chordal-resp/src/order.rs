//! Per-key order inside one connection's pipeline.
//!
//! A pipeline's data commands run concurrently (that is its throughput),
//! but Redis clients rely on them taking effect in order: a `GET` after a
//! `SET` of the same key sees it, an `INCR` after a `GET` is not seen by
//! the `GET`. So, per key, a read waits for the last write before it, and
//! a write waits for that write and for every read since; reads of one
//! key run together, and commands on different keys never wait for each
//! other. Each key keeps one [`Group`] per run of reads and one per write,
//! so a read costs an atomic increment, not an allocation.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Commands of one group still running, and a wake-up when none is.
#[derive(Default)]
pub struct Group {
    running: AtomicUsize,
    idle: Notify,
}

impl Group {
    /// Counts a command in (until the returned guard drops).
    fn enter(self: &Arc<Group>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }

    /// Completes once no command of the group is running.
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a last exit in between is
            // not missed.
            notified.as_mut().enable();
            if self.is_idle() {
                return;
            }
            notified.await;
        }
    }
}

/// A command counted in a group; leaving it may make the group idle.
pub struct Running(Arc<Group>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What one command waits for before it runs, and the places it holds
/// while it runs (dropped when it finishes).
#[derive(Default)]
pub struct Turn {
    after: Vec<Arc<Group>>,
    holds: Vec<Running>,
}

impl Turn {
    /// Waits until the command may run. (Cancel-safe: a group is let go
    /// only once it was idle.)
    pub async fn wait(&mut self) {
        while let Some(group) = self.after.last() {
            group.wait_idle().await;
            self.after.pop();
        }
    }
}

/// The pending commands of one key.
struct KeyTail {
    /// The last write, while it runs.
    write: Option<Arc<Group>>,
    /// The reads since it.
    reads: Arc<Group>,
}

/// The per-key order of one connection.
#[derive(Default)]
pub struct Order {
    keys: HashMap<Bytes, KeyTail>,
}

impl Order {
    /// Takes the turn of a command (`write` or a read) on `keys`, the
    /// commands before it having taken theirs. Keys with nothing running
    /// are forgotten now and then, so the map holds only live ones (and
    /// at most `max_keys` before such a sweep).
    pub fn turn<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a Bytes>,
        write: bool,
        max_keys: usize,
    ) -> Turn {
        if self.keys.len() >= max_keys {
            self.keys.retain(|_, t| {
                !t.reads.is_idle() || t.write.as_ref().is_some_and(|w| !w.is_idle())
            });
        }
        let mut turn = Turn::default();
        let mut taken: Vec<&Bytes> = Vec::new();
        for key in keys {
            // A key named twice (`MSET k 1 k 2`) takes one turn: a second
            // would wait for the first, its own.
            if taken.contains(&key) {
                continue;
            }
            taken.push(key);
            let tail = self.keys.entry(key.clone()).or_insert_with(|| KeyTail {
                write: None,
                reads: Arc::default(),
            });
            if let Some(w) = &tail.write {
                if w.is_idle() {
                    tail.write = None;
                } else {
                    turn.after.push(w.clone());
                }
            }
            if write {
                if !tail.reads.is_idle() {
                    turn.after.push(std::mem::take(&mut tail.reads));
                }
                let mine = Arc::new(Group::default());
                turn.holds.push(mine.enter());
                tail.write = Some(mine);
            } else {
                turn.holds.push(tail.reads.enter());
            }
        }
        turn
    }

    /// Nothing is pending on the connection: forget every key.
    pub fn clear(&mut self) {
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether `turn`'s wait completes within a few polls.
    async fn ready(turn: &mut Turn) -> bool {
        tokio::time::timeout(Duration::from_millis(20), turn.wait())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn reads_wait_for_the_write_before_them_and_writes_for_everything_before() {
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let mut order = Order::default();
        let mut set_a = order.turn([&a], true, 64);
        let mut get_a = order.turn([&a], false, 64);
        let mut get_a2 = order.turn([&a], false, 64);
        let mut set_b = order.turn([&b], true, 64);
        let mut incr_a = order.turn([&a], true, 64);
        assert!(ready(&mut set_a).await);
        assert!(ready(&mut set_b).await, "another key waits for nothing");
        assert!(
            !ready(&mut get_a).await,
            "a read waits for the write before it"
        );
        drop(set_a);
        assert!(ready(&mut get_a).await);
        assert!(ready(&mut get_a2).await, "reads run together");
        assert!(
            !ready(&mut incr_a).await,
            "a write waits for the reads before it"
        );
        drop(get_a);
        assert!(!ready(&mut incr_a).await);
        drop(get_a2);
        assert!(ready(&mut incr_a).await);
    }

    #[tokio::test]
    async fn a_command_naming_a_key_twice_does_not_wait_for_itself() {
        let a = Bytes::from_static(b"a");
        let mut order = Order::default();
        let mut mset = order.turn([&a, &a], true, 64);
        assert!(ready(&mut mset).await, "MSET a 1 a 2 waits for nothing");
        let mut get = order.turn([&a], false, 64);
        assert!(!ready(&mut get).await);
        drop(mset);
        assert!(ready(&mut get).await);
    }

    #[tokio::test]
    async fn keys_with_nothing_running_are_forgotten() {
        let mut order = Order::default();
        let keys: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("k{i}"))).collect();
        for k in &keys {
            drop(order.turn([k], true, 16));
        }
        assert!(order.keys.len() <= 16 + 1, "{}", order.keys.len());
    }
}
