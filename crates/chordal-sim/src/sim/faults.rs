//! Faults: crashes, partitions, message loss and clock steps.

use super::*;

impl Sim {
    /// From now on, each message is lost with probability `loss`.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// Sets node `i`'s wall clock: a step back or forward, as NTP or a VM
    /// resume makes. A running node sees time only go forward (the tokio
    /// driver reads the wall clock once at start, then a monotonic clock):
    /// a step forward shows at once, a step back at its next start.
    pub fn set_clock(&mut self, i: usize, clock: Clock) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if !n.alive || clock.read(now) >= n.clock.read(now) {
            n.clock = clock;
            n.next_clock = None;
            // Its next wake-up moves with the clock.
            n.wake = None;
            if n.alive {
                self.after_input(i);
            }
        } else {
            n.next_clock = Some(clock);
        }
    }

    /// Node `i` crashes: it stops at once and says nothing.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        if self.config.refuse_dead {
            // Its connections close, as a dead process's do (the kernel
            // resets them): what they carried may have arrived, so a
            // later refusal must not pass for "never sent" — in the
            // driver, a closed connection says so before any refusal.
            let addr = self.nodes[i].node.addr();
            for j in 0..self.nodes.len() {
                if j != i && self.nodes[j].alive {
                    self.nodes[j].node.handle_closed(addr);
                }
            }
        }
    }

    /// Cuts the network: node `i` lands in group `group_of(i)`, and from now
    /// on messages between different groups vanish until
    /// [`Sim::heal_partition`]: both sides see timeouts, and the connection
    /// that would have carried each lost message closed (see
    /// `connection_broke`).
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u32) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.group = group_of(i);
        }
    }

    /// Ends a partition: every node can reach every other again.
    pub fn heal_partition(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }
}
