//! Network latency models. A pair of nodes has one fixed one-way latency
//! (drawn from the model by hashing the pair and the seed, so nothing of
//! size N² is stored), like hosts at fixed places in a network.

use std::time::Duration;

/// How long a message takes from one node to another.
#[derive(Clone, Debug, PartialEq)]
pub enum Latency {
    /// Every pair the same.
    Constant(Duration),
    /// Per pair, uniform in `[low, high]`.
    Uniform(Duration, Duration),
    /// Per pair, log-normal with this median and shape `sigma`.
    LogNormal {
        /// Median one-way delay.
        median: Duration,
        /// Standard deviation of the delay's logarithm.
        sigma: f64,
    },
}

impl Latency {
    /// A wide-area network: log-normal one-way latency with a 75 ms median
    /// (~150 ms round trip), like the Internet hosts of the Chord papers.
    pub fn wide_area() -> Latency {
        Latency::LogNormal {
            median: Duration::from_millis(75),
            sigma: 0.5,
        }
    }

    /// A datacenter: 0.15–1 ms one way (0.3–2 ms round trip).
    pub fn datacenter() -> Latency {
        Latency::Uniform(Duration::from_micros(150), Duration::from_micros(1000))
    }

    /// The one-way latency between nodes `a` and `b` under `seed`.
    pub fn between(&self, a: usize, b: usize, seed: u64) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h = mix(seed ^ mix(lo as u64) ^ mix((hi as u64).rotate_left(32)));
        match self {
            Latency::Constant(d) => *d,
            Latency::Uniform(low, high) => {
                let span = high.as_micros().saturating_sub(low.as_micros()) as u64;
                *low + Duration::from_micros(if span == 0 { 0 } else { h % (span + 1) })
            }
            Latency::LogNormal { median, sigma } => {
                // Box-Muller on two uniforms from the hash.
                let u1 = ((h >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
                let u2 = (mix(h) >> 11) as f64 / (1u64 << 53) as f64;
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let micros = median.as_micros() as f64 * (sigma * z).exp();
                Duration::from_micros(micros.clamp(1.0, 60e6) as u64)
            }
        }
    }
}

/// SplitMix64's finalizer: a good 64-bit hash of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_pair_latency_is_fixed_and_symmetric() {
        let m = Latency::wide_area();
        assert_eq!(m.between(3, 9, 1), m.between(9, 3, 1));
        assert_eq!(m.between(3, 9, 1), m.between(3, 9, 1));
        assert_ne!(m.between(3, 9, 1), m.between(3, 10, 1));
    }

    #[test]
    fn log_normal_median_is_about_right() {
        let m = Latency::wide_area();
        let mut v: Vec<Duration> = (0..2000).map(|i| m.between(i, i + 1, 7)).collect();
        v.sort();
        let median = v[1000].as_millis();
        assert!((60..=90).contains(&median), "median {median} ms");
        let u = Latency::datacenter();
        assert!((0..500).all(|i| {
            let d = u.between(i, i + 7, 3);
            d >= Duration::from_micros(150) && d <= Duration::from_micros(1000)
        }));
    }
}
