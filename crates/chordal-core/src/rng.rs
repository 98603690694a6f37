//! A small seeded random number generator (SplitMix64).
//!
//! The core needs randomness only for timer jitter and tie-breaking; taking a
//! seed instead of a global RNG keeps every run repeatable.

use std::time::Duration;

/// SplitMix64: tiny, fast and good enough for jitter. Not for cryptography.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is decided by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift keeps the bias negligible for the small `n` used here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// `base` scaled by a random factor in `[1 - fraction, 1 + fraction]`.
    ///
    /// Periodic tasks use this so that nodes started together do not keep
    /// firing together.
    pub fn jitter(&mut self, base: Duration, fraction: f64) -> Duration {
        let fraction = fraction.clamp(0.0, 1.0);
        let unit = self.next_u64() as f64 / u64::MAX as f64; // [0, 1]
        let factor = 1.0 - fraction + 2.0 * fraction * unit;
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut rng = Rng::new(1);
        let base = Duration::from_millis(100);
        for _ in 0..1000 {
            let d = rng.jitter(base, 0.25);
            assert!(
                d >= Duration::from_millis(75) && d <= Duration::from_millis(125),
                "{d:?}"
            );
            assert!(rng.below(10) < 10);
        }
    }
}
