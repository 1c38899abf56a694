//! Test support shared across modules.

/// xorshift64: reproducible pseudo-random choices in tests, without a dependency (the seed must
/// not be 0).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.step() % n
    }

    /// An index below `n` (`n` > 0).
    pub(crate) fn next(&mut self, n: usize) -> usize {
        (self.step() % n as u64) as usize
    }
}
