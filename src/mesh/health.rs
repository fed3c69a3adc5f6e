//! What a client has learnt about each peer: a circuit breaker, latency, fullness and
//! misbehaviour. `MeshStore` consults it to choose holders and readers.
//!
//! # Model
//!
//! * **Circuit breaker.** Each consecutive failure (unreachable, timed out, protocol
//!   nonsense) opens the peer's breaker for `1 s · 2^(failures-1)`, capped at
//!   [`MAX_BACKOFF`]: 1 s, 2 s, 4 s … 60 s. While open, the peer is skipped without a
//!   request, so a dead peer costs one timeout, then nothing until the backoff expires.
//!   When it expires one request is let through (half-open); success closes the breaker
//!   and resets the count.
//! * **Latency.** An exponentially weighted moving average (weight 1/4) of successful
//!   request times; readers prefer the fastest peers.
//! * **Full.** A peer that answered "no space" is not offered new shards for
//!   [`FULL_BACKOFF`].
//! * **Misbehaving.** A peer that returned bytes that do not hash to the shard id (seen
//!   here or reported by the engine through `MeshStore::report_bad`) is not given new
//!   shards and is asked last when reading, for [`BAD_BACKOFF`] doubling with each new
//!   report, capped at a day.
//!
//! The table holds at most [`MAX_TRACKED`] peers; the least recently touched entry is
//! forgotten first. Time is passed in, so that tests step a clock instead of sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Longest a breaker stays open.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// First backoff after a failure.
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// How long a full peer is left alone.
pub const FULL_BACKOFF: Duration = Duration::from_secs(60);
/// How long a misbehaving peer is distrusted after its first report.
pub const BAD_BACKOFF: Duration = Duration::from_secs(600);
/// Longest distrust.
const MAX_BAD_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// Peers tracked at most.
pub const MAX_TRACKED: usize = 4096;

#[derive(Clone, Debug, Default)]
struct PeerState {
    failures: u32,
    open_until: Option<Instant>,
    latency: Option<Duration>,
    ok: u64,
    failed: u64,
    bad_reports: u32,
    bad_until: Option<Instant>,
    full_until: Option<Instant>,
    touched: Option<Instant>,
}

/// A peer's health as shown to users.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HealthView {
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Average latency of successful requests, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Whether the breaker is open now (requests are skipped).
    pub breaker_open: bool,
    /// Whether the peer is distrusted for returning bad bytes.
    pub misbehaving: bool,
    /// Whether the peer recently said it is full.
    pub full: bool,
}

/// The per-peer table. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct PeerHealth {
    peers: Mutex<HashMap<PeerId, PeerState>>,
}

impl PeerHealth {
    fn with<R>(&self, peer: &PeerId, now: Instant, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if !peers.contains_key(peer) && peers.len() >= MAX_TRACKED {
            let oldest = peers.iter().min_by_key(|(_, s)| s.touched).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                peers.remove(&oldest);
            }
        }
        let state = peers.entry(*peer).or_default();
        state.touched = Some(now);
        f(state)
    }

    fn read<R>(&self, peer: &PeerId, f: impl FnOnce(&PeerState) -> R) -> Option<R> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(peer).map(f)
    }

    /// Whether a request may be sent to `peer` now (breaker closed or half-open).
    pub fn reachable(&self, peer: &PeerId, now: Instant) -> bool {
        self.read(peer, |s| s.open_until.is_none_or(|t| now >= t))
            .unwrap_or(true)
    }

    /// Whether `peer` may be given new shards now.
    pub fn placeable(&self, peer: &PeerId, now: Instant) -> bool {
        self.read(peer, |s| {
            s.open_until.is_none_or(|t| now >= t)
                && s.bad_until.is_none_or(|t| now >= t)
                && s.full_until.is_none_or(|t| now >= t)
        })
        .unwrap_or(true)
    }

    /// Whether `peer` is distrusted now.
    pub fn misbehaving(&self, peer: &PeerId, now: Instant) -> bool {
        self.read(peer, |s| s.bad_until.is_some_and(|t| now < t))
            .unwrap_or(false)
    }

    /// A request to `peer` succeeded after `elapsed`.
    pub fn success(&self, peer: &PeerId, elapsed: Duration, now: Instant) {
        self.with(peer, now, |s| {
            s.failures = 0;
            s.open_until = None;
            s.ok += 1;
            s.latency = Some(match s.latency {
                None => elapsed,
                Some(avg) => (avg * 3 + elapsed) / 4,
            });
        });
    }

    /// A request to `peer` failed (unreachable, timeout, nonsense): open its breaker.
    pub fn failure(&self, peer: &PeerId, now: Instant) {
        self.with(peer, now, |s| {
            s.failed += 1;
            s.failures = s.failures.saturating_add(1);
            let exp = (s.failures - 1).min(16);
            let backoff = BASE_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF);
            s.open_until = Some(now + backoff);
        });
    }

    /// `peer` answered that it is full.
    pub fn full(&self, peer: &PeerId, now: Instant) {
        self.with(peer, now, |s| s.full_until = Some(now + FULL_BACKOFF));
    }

    /// `peer` returned bytes that do not match the shard id.
    pub fn bad(&self, peer: &PeerId, now: Instant) {
        self.with(peer, now, |s| {
            s.bad_reports = s.bad_reports.saturating_add(1);
            let exp = (s.bad_reports - 1).min(16);
            let backoff = BAD_BACKOFF.saturating_mul(1 << exp).min(MAX_BAD_BACKOFF);
            s.bad_until = Some(now + backoff);
        });
    }

    /// Sort key for choosing whom to read from: trusted before distrusted, closed
    /// breakers before open ones, known-fast before unknown before slow.
    pub fn read_rank(&self, peer: &PeerId, now: Instant) -> (bool, bool, Duration) {
        self.read(peer, |s| {
            (
                s.bad_until.is_some_and(|t| now < t),
                s.open_until.is_some_and(|t| now < t),
                // Unknown latency ranks like a middling 50 ms peer: worth trying.
                s.latency.unwrap_or(Duration::from_millis(50)),
            )
        })
        .unwrap_or((false, false, Duration::from_millis(50)))
    }

    /// The user-facing view of `peer`, if anything is known.
    pub fn view(&self, peer: &PeerId, now: Instant) -> Option<HealthView> {
        self.read(peer, |s| HealthView {
            ok: s.ok,
            failed: s.failed,
            latency_ms: s.latency.map(|d| d.as_secs_f64() * 1000.0),
            breaker_open: s.open_until.is_some_and(|t| now < t),
            misbehaving: s.bad_until.is_some_and(|t| now < t),
            full: s.full_until.is_some_and(|t| now < t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn breaker_backs_off_exponentially_and_closes_on_success() {
        let h = PeerHealth::default();
        let p = peer();
        let t0 = Instant::now();
        assert!(h.reachable(&p, t0), "unknown peers are worth a try");
        h.failure(&p, t0);
        assert!(!h.reachable(&p, t0 + Duration::from_millis(999)));
        assert!(
            h.reachable(&p, t0 + Duration::from_secs(1)),
            "half-open after 1 s"
        );
        let t1 = t0 + Duration::from_secs(1);
        h.failure(&p, t1);
        assert!(!h.reachable(&p, t1 + Duration::from_millis(1999)));
        assert!(h.reachable(&p, t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        h.failure(&p, t2);
        assert!(!h.reachable(&p, t2 + Duration::from_millis(3999)));
        assert!(h.reachable(&p, t2 + Duration::from_secs(4)));
        // Capped.
        let mut t = t2;
        for _ in 0..40 {
            h.failure(&p, t);
            t += Duration::from_millis(1);
        }
        assert!(!h.reachable(&p, t + MAX_BACKOFF - Duration::from_millis(2)));
        assert!(h.reachable(&p, t + MAX_BACKOFF));
        // Success resets: the next failure backs off 1 s again.
        h.success(&p, Duration::from_millis(5), t + MAX_BACKOFF);
        let t3 = t + MAX_BACKOFF;
        h.failure(&p, t3);
        assert!(h.reachable(&p, t3 + Duration::from_secs(1)));
    }

    #[test]
    fn bad_and_full_peers_are_not_placeable_but_bad_ones_stay_readable() {
        let h = PeerHealth::default();
        let (bad, full) = (peer(), peer());
        let t = Instant::now();
        h.bad(&bad, t);
        h.full(&full, t);
        assert!(!h.placeable(&bad, t) && h.reachable(&bad, t));
        assert!(!h.placeable(&full, t) && h.reachable(&full, t));
        assert!(h.misbehaving(&bad, t));
        assert!(h.placeable(&full, t + FULL_BACKOFF));
        assert!(!h.placeable(&bad, t + FULL_BACKOFF));
        assert!(h.placeable(&bad, t + BAD_BACKOFF));
        // A second report doubles the distrust.
        h.bad(&bad, t + BAD_BACKOFF);
        assert!(!h.placeable(&bad, t + BAD_BACKOFF * 2));
        assert!(h.placeable(&bad, t + BAD_BACKOFF * 3));
    }

    #[test]
    fn readers_prefer_trusted_fast_peers() {
        let h = PeerHealth::default();
        let t = Instant::now();
        let (fast, slow, bad, dead, unknown) = (peer(), peer(), peer(), peer(), peer());
        h.success(&fast, Duration::from_millis(2), t);
        h.success(&slow, Duration::from_millis(400), t);
        h.success(&bad, Duration::from_millis(1), t);
        h.bad(&bad, t);
        h.failure(&dead, t);
        let mut order = vec![bad, dead, slow, unknown, fast];
        order.sort_by_key(|p| h.read_rank(p, t));
        assert_eq!(order, vec![fast, unknown, slow, dead, bad]);
    }

    #[test]
    fn latency_is_a_moving_average() {
        let h = PeerHealth::default();
        let p = peer();
        let t = Instant::now();
        h.success(&p, Duration::from_millis(100), t);
        h.success(&p, Duration::from_millis(20), t);
        let v = h.view(&p, t).unwrap();
        assert_eq!(v.latency_ms, Some(80.0));
        assert_eq!((v.ok, v.failed), (2, 0));
    }

    #[test]
    fn the_table_is_bounded() {
        let h = PeerHealth::default();
        let t = Instant::now();
        let first = peer();
        h.failure(&first, t);
        for i in 0..MAX_TRACKED {
            h.success(
                &peer(),
                Duration::from_millis(1),
                t + Duration::from_millis(i as u64 + 1),
            );
        }
        assert_eq!(h.peers.lock().unwrap().len(), MAX_TRACKED);
        assert!(
            h.view(&first, t).is_none(),
            "the oldest entry was forgotten"
        );
    }
}
