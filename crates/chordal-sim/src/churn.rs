//! Churn: nodes joining and failing while the ring runs.
//!
//! [`Churn`] decides when nodes come and go under a [`ChurnModel`] and
//! carries it out on a [`Sim`]: a failure is a crash (the node stops and
//! says nothing), a join is a fresh node with new ids joining through a
//! random member. Experiments interleave it with their own work by asking
//! [`Churn::next_at`] and calling [`Churn::apply_due`].

use crate::Sim;
use chordal_core::{Rng, Time};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// How nodes come and go.
#[derive(Clone, Debug, PartialEq)]
pub enum ChurnModel {
    /// Joins and failures, each a Poisson process of `rate` per second
    /// (SIGCOMM'01 §6.4): the ring keeps its size on average.
    Poisson {
        /// Events per second.
        rate: f64,
    },
    /// Every node stays for an exponentially distributed session of mean
    /// `mean_secs`, then fails; a new node joins in its place at once.
    Exponential {
        /// Mean session time, in seconds.
        mean_secs: f64,
    },
    /// Sessions drawn from a Weibull distribution (shape `shape`, scale
    /// `scale_secs`); `shape < 1` gives the heavy tail measured in deployed
    /// peer-to-peer systems (many short sessions, a few very long ones).
    /// A new node replaces each failed one at once.
    Weibull {
        /// Weibull shape `k` (below 1: many short sessions and a long tail).
        shape: f64,
        /// Weibull scale `λ`, in seconds.
        scale_secs: f64,
    },
}

impl ChurnModel {
    /// Expected failures per second in a ring of `n` nodes (joins match).
    pub fn failure_rate(&self, n: usize) -> f64 {
        match *self {
            ChurnModel::Poisson { rate } => rate,
            ChurnModel::Exponential { mean_secs } => n as f64 / mean_secs,
            ChurnModel::Weibull { shape, scale_secs } => {
                n as f64 / (scale_secs * gamma(1.0 + 1.0 / shape))
            }
        }
    }
}

/// What [`Churn::apply_due`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChurnEvent {
    /// A new node (this index) started joining.
    Joined(usize),
    /// This node crashed.
    Failed(usize),
}

/// Drives a [`ChurnModel`] on a simulation.
pub struct Churn {
    model: ChurnModel,
    rng: Rng,
    vnodes: usize,
    /// Poisson model: next join and next failure.
    next_join: Time,
    next_fail: Time,
    /// Session models: when each member's session ends.
    deaths: BinaryHeap<Reverse<(Time, usize)>>,
}

impl Churn {
    /// Starts churn at the simulation's current time for the given
    /// members (session models draw their sessions now). New nodes get
    /// `vnodes` virtual nodes.
    pub fn new(model: ChurnModel, seed: u64, sim: &Sim, members: &[usize], vnodes: usize) -> Churn {
        let now = sim.now();
        let mut c = Churn {
            model,
            rng: Rng::new(seed ^ 0x6368_7572_6e00_0000),
            vnodes,
            next_join: now,
            next_fail: now,
            deaths: BinaryHeap::new(),
        };
        if let ChurnModel::Poisson { rate } = c.model {
            c.next_join = now + c.exponential(rate);
            c.next_fail = now + c.exponential(rate);
        }
        for &m in members {
            c.schedule_first_death(now, m);
        }
        c
    }

    /// A member that is already up when churn starts has been up for a
    /// while: what is left of its session follows the stationary residual
    /// life, not a fresh session (with Weibull shape < 1 that matters: a
    /// ring where every session started at once would lose nodes much
    /// faster than the model's mean rate). The residual is U · L, with L a
    /// length-biased session: for Weibull, (L/scale)^shape is
    /// Gamma(1 + 1/shape). Exponential sessions are memoryless.
    fn schedule_first_death(&mut self, now: Time, i: usize) {
        let ChurnModel::Weibull { shape, scale_secs } = self.model else {
            self.schedule_death(now, i);
            return;
        };
        let y = self.gamma_sample(1.0 + 1.0 / shape);
        let length = scale_secs * y.powf(1.0 / shape);
        let residual = self.unit_open() * length;
        self.deaths
            .push(Reverse((now + Duration::from_secs_f64(residual), i)));
    }

    /// A Gamma(`a`, 1) draw, `a` ≥ 1 (Marsaglia and Tsang).
    fn gamma_sample(&mut self, a: f64) -> f64 {
        let d = a - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            // A standard normal by Box-Muller.
            let (u1, u2) = (self.unit_open(), self.unit_open());
            let x = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit_open();
            if u.ln() < x * x / 2.0 + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// When the next join or failure happens.
    pub fn next_at(&self) -> Time {
        match self.model {
            ChurnModel::Poisson { .. } => self.next_join.min(self.next_fail),
            _ => self
                .deaths
                .peek()
                .map(|Reverse((t, _))| *t)
                .unwrap_or(Time::ZERO + Duration::from_secs(u32::MAX as u64)),
        }
    }

    /// Carries out every join and failure due by `sim.now()`.
    pub fn apply_due(&mut self, sim: &mut Sim) -> Vec<ChurnEvent> {
        let now = sim.now();
        let mut done = Vec::new();
        match self.model {
            ChurnModel::Poisson { rate } => {
                while self.next_fail <= now {
                    if let Some(i) = self.fail_random(sim) {
                        done.push(ChurnEvent::Failed(i));
                    }
                    self.next_fail = self.next_fail + self.exponential(rate);
                }
                while self.next_join <= now {
                    if let Some(i) = self.join_new(sim) {
                        done.push(ChurnEvent::Joined(i));
                    }
                    self.next_join = self.next_join + self.exponential(rate);
                }
            }
            _ => {
                while let Some(Reverse((t, i))) = self.deaths.peek().copied() {
                    if t > now {
                        break;
                    }
                    self.deaths.pop();
                    if !sim.is_alive(i) {
                        continue;
                    }
                    sim.kill(i);
                    done.push(ChurnEvent::Failed(i));
                    if let Some(j) = self.join_new(sim) {
                        done.push(ChurnEvent::Joined(j));
                    }
                }
            }
        }
        done
    }

    /// Crashes a random live node (never the last one).
    fn fail_random(&mut self, sim: &mut Sim) -> Option<usize> {
        let alive = sim.alive();
        if alive.len() < 2 {
            return None;
        }
        let i = alive[self.rng.below(alive.len() as u64) as usize];
        sim.kill(i);
        Some(i)
    }

    /// Adds a node that joins through a random member that has joined.
    fn join_new(&mut self, sim: &mut Sim) -> Option<usize> {
        let members: Vec<usize> = sim
            .alive()
            .into_iter()
            .filter(|&i| sim.node(i).is_joined())
            .collect();
        if members.is_empty() {
            return None;
        }
        let seed = members[self.rng.below(members.len() as u64) as usize];
        let i = sim.add_node(self.vnodes);
        sim.join(i, seed);
        let now = sim.now();
        self.schedule_death(now, i);
        Some(i)
    }

    fn schedule_death(&mut self, now: Time, i: usize) {
        let session = match self.model {
            ChurnModel::Poisson { .. } => return,
            ChurnModel::Exponential { mean_secs } => self.exponential(1.0 / mean_secs),
            ChurnModel::Weibull { shape, scale_secs } => {
                // Inverse transform: scale · (−ln U)^(1/shape).
                let u = self.unit_open();
                Duration::from_secs_f64(scale_secs * (-u.ln()).powf(1.0 / shape))
            }
        };
        self.deaths.push(Reverse((now + session, i)));
    }

    /// An exponential gap of rate `rate` per second.
    fn exponential(&mut self, rate: f64) -> Duration {
        if rate <= 0.0 {
            return Duration::from_secs(u32::MAX as u64);
        }
        let u = self.unit_open();
        Duration::from_secs_f64((-u.ln() / rate).min(u32::MAX as f64))
    }

    /// Uniform in (0, 1].
    fn unit_open(&mut self) -> f64 {
        ((self.rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Γ(x) for x > 0 (Lanczos, g = 7): mean of a Weibull session.
pub(crate) fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = G[0] + (1..9).map(|i| G[i] / (x + i as f64)).sum::<f64>();
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_draws_have_the_right_mean() {
        let sim = Sim::new(crate::SimConfig::default());
        let mut c = Churn::new(ChurnModel::Poisson { rate: 1.0 }, 9, &sim, &[], 1);
        for a in [1.0, 2.5, 3.0] {
            let n = 20_000;
            let mean = (0..n).map(|_| c.gamma_sample(a)).sum::<f64>() / n as f64;
            assert!((mean - a).abs() < 0.05 * a, "Gamma({a}) mean {mean}");
        }
    }

    #[test]
    fn gamma_matches_known_values() {
        for (x, want) in [
            (1.0, 1.0),
            (2.0, 1.0),
            (5.0, 24.0),
            (0.5, std::f64::consts::PI.sqrt()),
        ] {
            assert!((gamma(x) - want).abs() < 1e-9, "Γ({x}) = {}", gamma(x));
        }
    }

    #[test]
    fn session_draws_have_the_model_mean() {
        let sim = Sim::new(crate::SimConfig::default());
        for model in [
            ChurnModel::Exponential { mean_secs: 100.0 },
            ChurnModel::Weibull {
                shape: 0.5,
                scale_secs: 50.0,
            },
        ] {
            let mut c = Churn::new(model.clone(), 3, &sim, &[], 1);
            let n = 40_000;
            for i in 0..n {
                c.schedule_death(Time::ZERO, i);
            }
            let mean = c
                .deaths
                .iter()
                .map(|Reverse((t, _))| t.saturating_since(Time::ZERO).as_secs_f64())
                .sum::<f64>()
                / n as f64;
            // Both models have a mean session of 100 s (Γ(3) · 50 = 100).
            let want = 1.0 / model.failure_rate(1);
            assert!((want - 100.0).abs() < 1e-6);
            assert!((mean - 100.0).abs() < 6.0, "{model:?}: mean {mean}");
        }
    }
}
