//! Probe order: a keyed pseudo-random permutation of the index space
//! `0..targets*ports`, in the spirit of masscan's BlackRock. Memory is O(1) in the
//! number of probes, every index comes out exactly once, and consecutive probes
//! land on different hosts and ports so no host sees a burst.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// A bijection on `0..n` from a 4-round Feistel network over the next even power
/// of two, with cycle walking to stay inside `0..n`.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    mask: u64,
    keys: [u64; 4],
}

impl Permutation {
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let keys = [0u64, 1, 2, 3].map(|i| {
            let mut h = SipHasher13::new_with_keys(seed, 0x5ca9_f1ee_7000 + i);
            h.write_u64(i);
            h.finish()
        });
        Permutation {
            n,
            half_bits,
            mask: (1u64 << half_bits) - 1,
            keys,
        }
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn round(&self, key: u64, x: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(key, key.rotate_left(17));
        h.write_u64(x);
        h.finish() & self.mask
    }

    fn feistel(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> self.half_bits, x & self.mask);
        for k in self.keys {
            let t = l ^ self.round(k, r);
            l = r;
            r = t;
        }
        (l << self.half_bits) | r
    }

    /// The image of `i` (for `i < n`).
    pub fn at(&self, i: u64) -> u64 {
        let mut x = self.feistel(i);
        // The Feistel domain is at most 4n, so the walk is short on average.
        while x >= self.n {
            x = self.feistel(x);
        }
        x
    }

    /// All of `0..n` in permuted order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.n).map(move |i| self.at(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn is_a_bijection(n in 0u64..5000, seed in any::<u64>()) {
            let p = Permutation::new(n, seed);
            let mut seen = vec![false; n as usize];
            for x in p.iter() {
                prop_assert!(x < n);
                prop_assert!(!seen[x as usize], "{} twice", x);
                seen[x as usize] = true;
            }
            prop_assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn spreads_consecutive_indices() {
        let p = Permutation::new(65535 * 4, 7);
        let first: Vec<u64> = (0..64).map(|i| p.at(i)).collect();
        let sorted_run = first.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(sorted_run < 4, "order looks sequential: {first:?}");
    }
}
