//! Per-peer request rate limiting for storage nodes: a token bucket per peer.
//!
//! Each peer may make `rate` shard requests per second on average and bursts of
//! `2 · rate`. A request that finds the bucket empty is answered "busy" at once, costing
//! the node nothing but the answer. Buckets of peers that went quiet are dropped when
//! the table grows past [`MAX_PEERS`], so memory stays bounded whatever peer ids a flood
//! of connections uses (connection limits bound that flood too).

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

/// Buckets kept before idle ones are swept.
pub const MAX_PEERS: usize = 4096;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by peer.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, Bucket>,
}

impl RateLimiter {
    /// `rate` requests per second per peer (0 disables limiting).
    pub fn new(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(rate) * 2.0,
            buckets: HashMap::new(),
        }
    }

    /// Whether `peer` may make one more request at `now` (and counts it if so).
    pub fn allow(&mut self, peer: &PeerId, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_PEERS && !self.buckets.contains_key(peer) {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(*peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops buckets that have refilled (their peers were quiet): forgetting them
    /// changes nothing, since a new bucket starts full.
    fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= MAX_PEERS {
            // Everyone is busy: drop the oldest half rather than grow.
            let mut lasts: Vec<Instant> = self.buckets.values().map(|b| b.last).collect();
            lasts.sort();
            let cutoff = lasts[lasts.len() / 2];
            self.buckets.retain(|_, b| b.last > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_the_steady_rate() {
        let mut rl = RateLimiter::new(10);
        let p = PeerId::random();
        let t = Instant::now();
        let burst = (0..100).filter(|_| rl.allow(&p, t)).count();
        assert_eq!(burst, 20, "a burst of twice the rate");
        assert!(!rl.allow(&p, t + Duration::from_millis(50)));
        assert!(
            rl.allow(&p, t + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        // Another peer is unaffected.
        assert!(rl.allow(&PeerId::random(), t));
    }

    #[test]
    fn zero_disables() {
        let mut rl = RateLimiter::new(0);
        let p = PeerId::random();
        let t = Instant::now();
        assert!((0..10_000).all(|_| rl.allow(&p, t)));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut rl = RateLimiter::new(1);
        let t = Instant::now();
        for i in 0..3 * MAX_PEERS {
            rl.allow(&PeerId::random(), t + Duration::from_micros(i as u64));
        }
        assert!(rl.buckets.len() <= MAX_PEERS);
    }
}
