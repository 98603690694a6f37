//! A fast hasher for maps keyed by numbers this process chose itself
//! (request and lookup numbers): a multiply-rotate in the style of FxHash.
//! Not resistant to chosen keys, so never use it for keys that come from
//! the network.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// See the module docs.
#[derive(Default, Clone, Copy, Debug)]
pub struct FastHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_works_and_spreads_sequential_keys() {
        let mut m: FastMap<u64, u64> = FastMap::default();
        for i in 0..10_000 {
            m.insert(i, i * 2);
        }
        assert!((0..10_000).all(|i| m[&i] == i * 2));
        // Sequential keys land in different buckets (low bits differ).
        let low = |k: u64| {
            let mut h = FastHasher::default();
            h.write_u64(k);
            h.finish() >> 57
        };
        let distinct: std::collections::HashSet<u64> = (0..64).map(low).collect();
        assert!(distinct.len() > 32, "{}", distinct.len());
    }
}
