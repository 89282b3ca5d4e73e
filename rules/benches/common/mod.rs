//! What several benches share.

/// A small deterministic generator (xorshift) of bench inputs, so that every
/// run measures the same ones.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
