//! Helpers shared by the fuzz targets: input splitting and a scripted driver for `C2s`.
//!
//! Inputs start with one control byte; the rest is what the peer sends. The control byte seeds
//! [`Chunks`], which cuts the rest into reads of 1 to 64 bytes, so the fuzzer explores every
//! split of the same stream while seeds stay readable (one leading byte, then plain XML).

pub mod c2s;

/// Deterministic xorshift generator seeded from the control byte.
pub struct Rng(u32);

impl Rng {
    /// A generator for `seed` (never the all-zero state, which xorshift cannot leave).
    pub fn new(seed: u8) -> Rng {
        Rng(0x9E37_79B9 ^ u32::from(seed).wrapping_mul(0x0101_0101))
    }

    /// The next 32 random bits.
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `1..=max`.
    pub fn upto(&mut self, max: usize) -> usize {
        1 + self.next() as usize % max
    }
}

/// Splits `data` into reads of random sizes.
pub struct Chunks<'a> {
    data: &'a [u8],
    rng: Rng,
    /// Seed 0 feeds everything in one read (the common one-read-one-stanza case).
    whole: bool,
}

impl<'a> Chunks<'a> {
    /// Reads of `data` cut by a generator seeded with `seed`.
    pub fn new(seed: u8, data: &'a [u8]) -> Chunks<'a> {
        Chunks {
            data,
            rng: Rng::new(seed),
            whole: seed == 0,
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        let n = if self.whole {
            self.data.len()
        } else {
            self.rng.upto(64).min(self.data.len())
        };
        let (chunk, rest) = self.data.split_at(n);
        self.data = rest;
        Some(chunk)
    }
}

/// Splits an input into its control byte and the peer's bytes (`None` for an empty input).
pub fn control(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(c, rest)| (*c, rest))
}
