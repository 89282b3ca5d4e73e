//! Rate limiting of failed authentications per peer address.
//!
//! Each peer IP has a token bucket: a failed authentication spends a token,
//! tokens come back at a steady rate, and a peer with an empty bucket is
//! refused (429) before its credentials are even checked. The map is
//! bounded: past `max_peers` the least recently seen peer is forgotten (and
//! counted), so a flood of addresses cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits of [`FailureLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct LimiterSettings {
    /// Failures a peer may make in a burst.
    pub burst: u32,
    /// Time for one spent token to come back.
    pub refill: Duration,
    /// Most peers tracked.
    pub max_peers: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Failure buckets by peer IP.
pub struct FailureLimiter {
    settings: LimiterSettings,
    peers: Mutex<HashMap<IpAddr, Bucket>>,
}

/// What [`FailureLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; retry after this many seconds.
    Limited(u64),
}

impl FailureLimiter {
    pub fn new(settings: LimiterSettings) -> FailureLimiter {
        FailureLimiter {
            settings,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let per = self.settings.refill.as_secs_f64().max(1e-6);
        let gained = now.saturating_duration_since(b.last).as_secs_f64() / per;
        b.tokens = (b.tokens + gained).min(f64::from(self.settings.burst));
        b.last = now;
    }

    /// Whether `peer` may try to authenticate now.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Verdict {
        let Ok(mut peers) = self.peers.lock() else {
            return Verdict::Allowed;
        };
        let Some(b) = peers.get_mut(&peer) else {
            return Verdict::Allowed;
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            Verdict::Allowed
        } else {
            let wait = (1.0 - b.tokens) * self.settings.refill.as_secs_f64();
            Verdict::Limited(wait.ceil().max(1.0) as u64)
        }
    }

    /// Spends one token of `peer` for a failed authentication. Returns
    /// whether a tracked peer had to be forgotten to make room.
    pub fn failed(&self, peer: IpAddr, now: Instant) -> bool {
        let Ok(mut peers) = self.peers.lock() else {
            return false;
        };
        let mut evicted = false;
        if !peers.contains_key(&peer)
            && peers.len() >= self.settings.max_peers
            && let Some(oldest) = peers.iter().min_by_key(|(_, b)| b.last).map(|(ip, _)| *ip)
        {
            peers.remove(&oldest);
            evicted = true;
        }
        let burst = f64::from(self.settings.burst);
        let b = peers.entry(peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
        evicted
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.peers.lock().map_or(0, |p| p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_peers: usize) -> FailureLimiter {
        FailureLimiter::new(LimiterSettings {
            burst: 3,
            refill: Duration::from_secs(10),
            max_peers,
        })
    }

    #[test]
    fn a_peer_is_limited_after_its_burst_and_recovers() {
        let l = limiter(10);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(ip, t0), Verdict::Allowed);
            l.failed(ip, t0);
        }
        assert!(matches!(l.check(ip, t0), Verdict::Limited(s) if (1..=10).contains(&s)));
        assert_eq!(
            l.check(other, t0),
            Verdict::Allowed,
            "others are not affected"
        );
        assert_eq!(l.check(ip, t0 + Duration::from_secs(11)), Verdict::Allowed);
    }

    #[test]
    fn the_map_is_bounded_and_forgets_the_least_recent_peer() {
        let l = limiter(2);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let c: IpAddr = "192.0.2.3".parse().expect("ip");
        assert!(!l.failed(a, t0));
        assert!(!l.failed(b, t0 + Duration::from_millis(1)));
        assert!(l.failed(c, t0 + Duration::from_millis(2)));
        assert_eq!(l.tracked(), 2);
        // `a` was forgotten: it starts with a full bucket again.
        for _ in 0..3 {
            l.failed(a, t0 + Duration::from_millis(3));
        }
        assert!(matches!(
            l.check(a, t0 + Duration::from_millis(3)),
            Verdict::Limited(_)
        ));
    }
}
