//! The node's table of peers it has met: role, addresses, connection state and
//! round-trip time, filled from connection events, identify and ping.
//!
//! Bounded by [`MAX_PEERS`]: when full, the disconnected peer seen longest ago is
//! forgotten. A storage peer counts as a placement candidate while it is connected or
//! was seen within [`STORAGE_FRESHNESS`]; older entries stay for display only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::behaviour::Role;

/// Peers remembered at most.
pub const MAX_PEERS: usize = 10_000;
/// How long after it was last seen a disconnected storage peer is still offered shards.
pub const STORAGE_FRESHNESS: Duration = Duration::from_secs(600);
/// Addresses remembered per peer.
const MAX_ADDRS: usize = 16;

#[derive(Clone, Debug)]
struct Entry {
    role: Option<Role>,
    agent: Option<String>,
    addrs: Vec<Multiaddr>,
    connections: u32,
    rtt: Option<Duration>,
    last_seen: Instant,
}

/// One peer as reported to users and to `MeshStore`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerView {
    /// Peer id.
    #[serde(serialize_with = "ser_display")]
    pub peer_id: PeerId,
    /// Role from its identify agent string, when known.
    pub role: Option<Role>,
    /// Its agent string.
    pub agent: Option<String>,
    /// Addresses it listens on (from identify) or we reached it at.
    #[serde(serialize_with = "ser_addrs")]
    pub addrs: Vec<Multiaddr>,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Last ping round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since it was last seen.
    pub last_seen_secs: u64,
}

fn ser_display<S: serde::Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

fn ser_addrs<S: serde::Serializer>(a: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(|a| a.to_string()))
}

/// The table.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerId, Entry>,
}

impl PeerTable {
    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Entry {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            let victim = self
                .peers
                .iter()
                .filter(|(_, e)| e.connections == 0)
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(p, _)| *p);
            if let Some(v) = victim {
                self.peers.remove(&v);
            }
        }
        let e = self.peers.entry(peer).or_insert_with(|| Entry {
            role: None,
            agent: None,
            addrs: Vec::new(),
            connections: 0,
            rtt: None,
            last_seen: now,
        });
        e.last_seen = now;
        e
    }

    /// A connection to `peer` opened, at `addr`.
    pub fn connected(&mut self, peer: PeerId, addr: Option<Multiaddr>, now: Instant) {
        let e = self.entry(peer, now);
        e.connections += 1;
        if let Some(a) = addr
            && !e.addrs.contains(&a)
            && e.addrs.len() < MAX_ADDRS
        {
            e.addrs.push(a);
        }
    }

    /// A connection to `peer` closed; `remaining` are still open.
    pub fn disconnected(&mut self, peer: PeerId, remaining: u32, now: Instant) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.connections = remaining;
            e.last_seen = now;
        }
    }

    /// Identify told us who `peer` is.
    pub fn identified(
        &mut self,
        peer: PeerId,
        agent: &str,
        listen: &[Multiaddr],
        serves_shards: bool,
        now: Instant,
    ) {
        let e = self.entry(peer, now);
        let claimed = Role::from_agent(agent);
        // The protocol list is what counts: a peer that does not answer shard requests
        // is no storage node, whatever its agent string says.
        e.role = match (claimed, serves_shards) {
            (_, true) => Some(Role::Storage),
            (Some(Role::Storage), false) => None,
            (other, false) => other,
        };
        e.agent = Some(agent.chars().take(128).collect());
        if !listen.is_empty() {
            e.addrs = listen.iter().take(MAX_ADDRS).cloned().collect();
        }
    }

    /// `peer` refused the shard protocol: whatever it claimed, it stores nothing.
    pub fn not_storage(&mut self, peer: &PeerId) {
        if let Some(e) = self.peers.get_mut(peer)
            && e.role == Some(Role::Storage)
        {
            e.role = None;
        }
    }

    /// Whether `peer` is known to be a bootstrap or client node (no shards).
    pub fn known_non_storage(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|e| matches!(e.role, Some(Role::Bootstrap | Role::Client)))
    }

    /// A ping round trip.
    pub fn rtt(&mut self, peer: PeerId, rtt: Duration, now: Instant) {
        self.entry(peer, now).rtt = Some(rtt);
    }

    /// Storage peers that are connected or were seen recently.
    pub fn storage_peers(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, e)| {
                e.role == Some(Role::Storage)
                    && (e.connections > 0
                        || now.saturating_duration_since(e.last_seen) < STORAGE_FRESHNESS)
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Number of peers with an open connection.
    pub fn connected_count(&self) -> usize {
        self.peers.values().filter(|e| e.connections > 0).count()
    }

    /// Every peer, for display.
    pub fn views(&self, now: Instant) -> Vec<PeerView> {
        let mut v: Vec<PeerView> = self
            .peers
            .iter()
            .map(|(p, e)| PeerView {
                peer_id: *p,
                role: e.role,
                agent: e.agent.clone(),
                addrs: e.addrs.clone(),
                connected: e.connections > 0,
                rtt_ms: e.rtt.map(|d| d.as_secs_f64() * 1000.0),
                last_seen_secs: now.saturating_duration_since(e.last_seen).as_secs(),
            })
            .collect();
        v.sort_by_key(|p| (!p.connected, p.peer_id.to_string()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_role_comes_from_the_protocol_list() {
        let mut t = PeerTable::default();
        let now = Instant::now();
        let (liar, real, boot) = (PeerId::random(), PeerId::random(), PeerId::random());
        t.identified(liar, "datamesh/0.1.0 storage", &[], false, now);
        t.identified(real, "datamesh/0.1.0 storage", &[], true, now);
        t.identified(boot, "datamesh/0.1.0 bootstrap", &[], false, now);
        assert_eq!(t.storage_peers(now), vec![real]);
        t.not_storage(&real);
        assert!(t.storage_peers(now).is_empty());
    }

    #[test]
    fn stale_disconnected_storage_peers_are_not_candidates() {
        let mut t = PeerTable::default();
        let now = Instant::now();
        let p = PeerId::random();
        t.connected(p, None, now);
        t.identified(p, "datamesh/0.1.0 storage", &[], true, now);
        let later = now + STORAGE_FRESHNESS * 2;
        assert_eq!(t.storage_peers(later), vec![p], "still connected");
        t.disconnected(p, 0, now);
        assert!(t.storage_peers(later).is_empty());
        assert_eq!(t.views(later).len(), 1, "still displayed");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = PeerTable::default();
        let now = Instant::now();
        for i in 0..MAX_PEERS + 10 {
            t.rtt(
                PeerId::random(),
                Duration::from_millis(1),
                now + Duration::from_micros(i as u64),
            );
        }
        assert_eq!(t.views(now).len(), MAX_PEERS);
    }
}
