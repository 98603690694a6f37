//! An in-process ring on loopback: many [`Node`]s in one process, with
//! checks against the [`Oracle`]. Used by `chordal cluster`, `chordal bench`
//! and the tests.

use crate::{Node, NodeBuilder, StartError, VNodeStatus};
use chordal_core::{ID_BITS, Id, Oracle};
use std::time::Duration;
use tokio::time::Instant;

/// What [`LocalRing::wait_for`] checks against the oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Successor and predecessor of every virtual node.
    Neighbours,
    /// Successor of every virtual node (what lookup correctness needs).
    Successors,
    /// All 160 fingers of every virtual node.
    Fingers,
    /// The whole successor list of every virtual node (as long as the
    /// ring allows): what writes that need `R` copies wait for after a
    /// ring forms.
    SuccessorLists,
    /// Under authority, every node holds a term over what it owns, none
    /// preparing or waiting one out: what operations wait for after a
    /// ring forms or a member crashed (its successor waits out its lease
    /// first). Always true without authority.
    Decides,
}

/// A series' value in `/metrics` text (`name{labels}` exactly as
/// printed; 0 if absent).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Does a node whose `/metrics` text is `text` decide for all it owns?
/// No lease pending, and one held once a prepare began (a node without
/// authority has neither, and decides). See [`Check::Decides`].
pub fn decides_by_metrics(text: &str) -> bool {
    let pending = metric_value(text, "chordal_leases{state=\"pending\"}");
    let held = metric_value(text, "chordal_leases{state=\"held\"}");
    let started = metric_value(text, "chordal_authority_total{event=\"prepare_started\"}");
    pending == 0.0 && (held >= 1.0 || started == 0.0)
}

/// A node builder whose maintenance runs every 100 ms: rings that settle
/// in well under a second (tests, demos).
pub fn quick() -> NodeBuilder {
    Node::builder().maintenance_interval(Duration::from_millis(100))
}

/// Nodes started in this process.
pub struct LocalRing {
    /// The nodes, in the order they started (the first created the ring).
    pub nodes: Vec<Node>,
}

impl LocalRing {
    /// Starts `n` nodes from `builder` (its seeds are replaced): the first
    /// creates the ring, the others join through it one after another.
    pub async fn start(n: usize, builder: NodeBuilder) -> Result<LocalRing, StartError> {
        LocalRing::start_each(n, |_| builder.clone()).await
    }

    /// Like `start`, node `i` from `builder_of(i)` (e.g. with its own data
    /// directory); its seeds are replaced.
    pub async fn start_each(
        n: usize,
        mut builder_of: impl FnMut(usize) -> NodeBuilder,
    ) -> Result<LocalRing, StartError> {
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for i in 0..n {
            let seeds = nodes
                .first()
                .map(|f| vec![f.addr().to_string()])
                .unwrap_or_default();
            nodes.push(builder_of(i).seeds(seeds).start().await?);
        }
        Ok(LocalRing { nodes })
    }

    /// `start`, then waits (up to `limit`) until every successor and
    /// predecessor is right and every range has a decider
    /// ([`Check::Decides`]). `None` if the ring did not settle in time.
    pub async fn start_settled(
        n: usize,
        builder: NodeBuilder,
        limit: Duration,
    ) -> Result<Option<LocalRing>, StartError> {
        let ring = LocalRing::start(n, builder).await?;
        Ok(ring.healed(limit).await.map(|_| ring))
    }

    /// The true ring of all virtual nodes of our nodes.
    pub fn oracle(&self) -> Oracle {
        Oracle::new(self.nodes.iter().flat_map(|n| n.ids().to_vec()).collect())
    }

    /// How many virtual nodes `wrong` finds wrong (all of a node's when it
    /// does not answer).
    async fn count_wrong(&self, wrong: impl Fn(&Node, &VNodeStatus, &Oracle) -> bool) -> usize {
        let oracle = self.oracle();
        let mut count = 0;
        for n in &self.nodes {
            match n.status().await {
                Ok(status) => {
                    count += status
                        .vnodes
                        .iter()
                        .filter(|v| wrong(n, v, &oracle))
                        .count()
                }
                Err(_) => count += n.ids().len(),
            }
        }
        count
    }

    /// How many virtual nodes have a wrong successor or predecessor.
    pub async fn wrong_neighbours(&self) -> usize {
        self.count_wrong(|_, v, oracle| {
            let me = v.me.id;
            let succ_ok = v.successors.first().map(|s| s.id) == Some(oracle.next(&me));
            let pred_ok =
                v.predecessor.map(|p| p.id) == Some(oracle.prev(&me)) || oracle.len() == 1;
            !(succ_ok && pred_ok)
        })
        .await
    }

    /// How many virtual nodes have a wrong successor: exactly the nodes at
    /// which a lookup could end with a wrong answer.
    pub async fn wrong_successors(&self) -> usize {
        self.count_wrong(|_, v, oracle| {
            v.successors.first().map(|s| s.id) != Some(oracle.next(&v.me.id))
        })
        .await
    }

    /// How many virtual nodes have a successor list other than the true
    /// next `min(r, N - 1)` virtual nodes (`r` from the node's config).
    pub async fn wrong_successor_lists(&self) -> usize {
        self.count_wrong(|n, v, oracle| {
            let want = oracle.successors(&v.me.id, n.successor_list_len());
            let have: Vec<Id> = v.successors.iter().map(|s| s.id).collect();
            have != want
        })
        .await
    }

    /// How many nodes do not decide for all they own yet (see
    /// [`Check::Decides`]): a lease pending, or none held after a prepare.
    pub async fn undecided(&self) -> usize {
        let mut count = 0;
        for n in &self.nodes {
            let Ok(text) = n.metrics().await else {
                count += 1;
                continue;
            };
            if !decides_by_metrics(&text) {
                count += 1;
            }
        }
        count
    }

    /// How many finger slots (over all virtual nodes) differ from the truth.
    pub async fn wrong_fingers(&self) -> usize {
        let oracle = self.oracle();
        let mut wrong = 0;
        for n in &self.nodes {
            let Ok(status) = n.status().await else {
                wrong += ID_BITS * n.ids().len();
                continue;
            };
            for v in &status.vnodes {
                // Expand the distinct runs back into 160 slots.
                for i in 0..ID_BITS {
                    let run = v.fingers.iter().rev().find(|f| f.index <= i);
                    let have: Option<Id> = run.map(|f| f.node.id);
                    let truth = oracle.successor(&v.me.id.add_pow2(i));
                    if have != Some(truth) {
                        wrong += 1;
                    }
                }
            }
        }
        wrong
    }

    /// How many entries `check` finds wrong.
    pub async fn wrong(&self, check: Check) -> usize {
        match check {
            Check::Neighbours => self.wrong_neighbours().await,
            Check::Successors => self.wrong_successors().await,
            Check::Fingers => self.wrong_fingers().await,
            Check::SuccessorLists => self.wrong_successor_lists().await,
            Check::Decides => self.undecided().await,
        }
    }

    /// Polls `check` every `every` until nothing is wrong; gives up after
    /// `limit`. Returns how long it took.
    pub async fn wait_for(
        &self,
        check: Check,
        every: Duration,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if self.wrong(check).await == 0 {
                return Some(start.elapsed());
            }
            if start.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// [`LocalRing::wait_for`] polling every 20 ms for at most 20 s:
    /// what tests and demos wait for instead of sleeping.
    pub async fn settle(&self, check: Check) -> Option<Duration> {
        self.wait_for(check, Duration::from_millis(20), Duration::from_secs(20))
            .await
    }

    /// Waits (up to `limit`, polling every 20 ms) until every successor
    /// and predecessor is right, then until every range has a decider
    /// ([`Check::Decides`]): a ring formed, or healed after a crash.
    /// How long it took; `None` past `limit`.
    pub async fn healed(&self, limit: Duration) -> Option<Duration> {
        let every = Duration::from_millis(20);
        let took = self.wait_for(Check::Neighbours, every, limit).await?;
        let left = limit.saturating_sub(took);
        Some(took + self.wait_for(Check::Decides, every, left).await?)
    }

    /// Leaves with every node.
    pub async fn leave_all(self) {
        for n in self.nodes {
            n.leave().await;
        }
    }
}
