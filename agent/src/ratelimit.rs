//! A token bucket: the per-source `max_lines_per_second`.
//!
//! Time comes from the caller, so tests drive it without sleeping. The
//! bucket holds at most one second of lines, so an idle source may burst
//! one second's worth and no more.

use std::time::Instant;

/// Lines a source may still read now.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket refilled at `per_second` lines per second.
    pub fn new(per_second: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(per_second),
            tokens: f64::from(per_second),
            last: None,
        }
    }

    /// Whole lines that may be read at `now`.
    pub fn available(&mut self, now: Instant) -> usize {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        }
        self.last = Some(now);
        // Bounded by the rate, a u32.
        self.tokens.floor() as usize
    }

    /// Spends `n` lines.
    pub fn take(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_at_the_rate_and_caps_at_one_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10);
        assert_eq!(b.available(t0), 10);
        b.take(10);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.available(t0 + Duration::from_millis(500)), 5);
        assert_eq!(b.available(t0 + Duration::from_secs(60)), 10, "capped");
    }
}
