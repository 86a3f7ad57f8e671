//! Where the simulator's choices come from: a seeded PRNG for campaigns, or a fuzzer's
//! bytes. Both feed the same [`Rng`], so a seed and a fuzz input drive the very same world.
//!
//! Everything is integer arithmetic: no floats, no platform maths library, so a seed
//! means the same world on every machine.

use std::time::Duration;

/// A source of raw 64-bit entropy.
pub trait Entropy {
    /// The next 64 bits.
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, passes BigCrush, and every
/// seed — zero included — gives a full-period stream. Fast and small enough to read.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Entropy for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Entropy read from a fuzzer's input, two bytes per draw (every choice the simulator
/// makes needs far fewer than 16 bits, and short inputs keep libFuzzer's mutations
/// meaningful). Once the bytes run out, a SplitMix64 seeded from the input's length
/// carries on, so every input — even an empty one — is a complete, terminating world.
#[derive(Debug, Clone)]
pub struct ByteEntropy<'a> {
    data: &'a [u8],
    fallback: SplitMix64,
}

impl<'a> ByteEntropy<'a> {
    /// Entropy from `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            fallback: SplitMix64::new(0xC1D7_C400 ^ data.len() as u64),
        }
    }
}

impl Entropy for ByteEntropy<'_> {
    fn next_u64(&mut self) -> u64 {
        match *self.data {
            [a, b, ref rest @ ..] => {
                self.data = rest;
                // Spread the 16 bits over the whole word: `Rng::below` uses the high bits.
                u64::from(u16::from_be_bytes([a, b])) * 0x0001_0001_0001_0001
            }
            [a] => {
                self.data = &[];
                u64::from(a) * 0x0101_0101_0101_0101
            }
            [] => self.fallback.next_u64(),
        }
    }
}

/// Typed choices over an [`Entropy`] source.
#[derive(Debug, Clone)]
pub struct Rng<E> {
    source: E,
}

impl<E: Entropy> Rng<E> {
    /// Choices drawn from `source`.
    pub fn new(source: E) -> Self {
        Self { source }
    }

    /// A raw 64-bit draw.
    pub fn u64(&mut self) -> u64 {
        self.source.next_u64()
    }

    /// Uniform in `0..n` (`0` when `n == 0`), by Lemire's multiply-shift: no division, and
    /// a bias below 2⁻³² for the ranges a simulation uses.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi <= lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// A `usize` in `lo..=hi`.
    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < u64::from(per_mille)
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// One element of `(weight, item)` pairs, by weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(u32, T)]) -> T {
        let total: u64 = items.iter().map(|&(w, _)| u64::from(w)).sum();
        let mut roll = self.below(total);
        for &(weight, item) in items {
            if roll < u64::from(weight) {
                return item;
            }
            roll -= u64::from(weight);
        }
        items[items.len() - 1].1
    }

    /// A duration in `0..=max`, with microsecond resolution (readable traces).
    pub fn duration_upto(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.below(max.as_micros() as u64 + 1))
    }

    /// A duration in `lo..=hi` milliseconds, log-uniform: first a power-of-two bucket,
    /// then a point inside it, so 1 ms and 10 s are both common.
    pub fn log_millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.log_range(lo, hi))
    }

    /// An integer in `lo..=hi`, log-uniform (see [`log_millis`](Self::log_millis)).
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let bits = |x: u64| 64 - x.leading_zeros();
        let bucket = self.range(u64::from(bits(lo)), u64::from(bits(hi))) as u32;
        let (from, to) = match bucket {
            0 => (0, 0),
            b => (1u64 << (b - 1), (1u64 << (b - 1)).saturating_mul(2) - 1),
        };
        self.range(from.max(lo), to.min(hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // First outputs for seed 1234567 of the reference C implementation.
        let mut g = SplitMix64::new(1_234_567);
        assert_eq!(g.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(g.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut rng = Rng::new(SplitMix64::new(7));
        for _ in 0..10_000 {
            assert!(rng.range(3, 9) >= 3 && rng.range(3, 9) <= 9);
            let d = rng.log_millis(5, 3000);
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(3000));
            assert!(rng.below(1) == 0);
        }
        assert_eq!(rng.range(4, 4), 4);
        assert_eq!(rng.log_range(0, 0), 0);
    }

    #[test]
    fn bytes_run_out_into_a_deterministic_fallback() {
        let data = [1, 2, 3];
        let mut a = ByteEntropy::new(&data);
        let mut b = ByteEntropy::new(&data);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_eq!(xs[0], 0x0102_0102_0102_0102);
        assert_eq!(xs[1], 0x0303_0303_0303_0303);
    }
}
