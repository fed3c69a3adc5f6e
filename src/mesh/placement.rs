//! Placement: which peer takes which shard of a stripe.
//!
//! # Rule
//!
//! Shards are assigned in order. Shard `i` goes to the usable candidate with the fewest
//! shards of this call so far, ties broken by the smallest XOR distance between the
//! peer's Kademlia key and the shard's (both SHA-256 of the id bytes, exactly as the DHT
//! measures distance, so the chosen holders are the ones a DHT lookup for the shard
//! finds first). With at least as many usable candidates as shards this puts every shard
//! on a distinct peer, the closest one not yet used; with fewer, the load differs by at
//! most one between peers.
//!
//! "Usable" is decided by the caller (breaker closed, not full, not misbehaving, not in
//! the caller's exclusion list): this module is pure and deterministic.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::kad::{KBucketDistance, KBucketKey, RecordKey};

use crate::ids::ShardId;

/// The DHT key of a shard (its provider-record key).
pub fn record_key(id: &ShardId) -> RecordKey {
    RecordKey::new(id.as_bytes())
}

/// XOR distance between a peer and a shard in the DHT's key space.
pub fn distance(peer: &PeerId, id: &ShardId) -> KBucketDistance {
    KBucketKey::from(*peer).distance(&KBucketKey::new(record_key(id)))
}

/// `peers` ordered by distance to `id`, closest first.
pub fn closest(peers: &[PeerId], id: &ShardId) -> Vec<PeerId> {
    let mut v = peers.to_vec();
    v.sort_by_cached_key(|p| distance(p, id));
    v
}

/// Tracks how many shards of one call each peer took.
#[derive(Debug, Default)]
pub struct Loads {
    taken: HashMap<PeerId, usize>,
}

impl Loads {
    /// Records that `peer` took one more shard.
    pub fn add(&mut self, peer: PeerId) {
        *self.taken.entry(peer).or_default() += 1;
    }

    /// Forgets one shard of `peer` (its put failed and goes elsewhere).
    pub fn remove(&mut self, peer: &PeerId) {
        if let Some(n) = self.taken.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
    }

    /// Shards of this call at `peer`.
    pub fn of(&self, peer: &PeerId) -> usize {
        self.taken.get(peer).copied().unwrap_or(0)
    }
}

/// The candidate for `id` with the least load, closest first; `None` when there is no
/// candidate.
pub fn pick(id: &ShardId, candidates: &[PeerId], loads: &Loads) -> Option<PeerId> {
    candidates
        .iter()
        .min_by_key(|p| (loads.of(p), distance(p, id)))
        .copied()
}

/// Assigns every shard of `ids` to one of `candidates` by the rule in the module docs.
/// Empty when there are no candidates.
pub fn assign(ids: &[ShardId], candidates: &[PeerId]) -> Vec<PeerId> {
    let mut loads = Loads::default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(p) = pick(id, candidates, &loads) else {
            return Vec::new();
        };
        loads.add(p);
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn ids(n: usize, seed: u8) -> Vec<ShardId> {
        (0..n).map(|i| ShardId::of(&[seed, i as u8])).collect()
    }

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn distinct_closest_peers_when_there_are_enough() {
        let peers = peers(20);
        let shards = ids(6, 1);
        let got = assign(&shards, &peers);
        assert_eq!(got.len(), 6);
        assert_eq!(
            got.iter().collect::<HashSet<_>>().len(),
            6,
            "pairwise distinct"
        );
        // Each shard's holder is the closest peer to it not taken by an earlier shard.
        let mut used = HashSet::new();
        for (id, holder) in shards.iter().zip(&got) {
            let expected = closest(&peers, id)
                .into_iter()
                .find(|p| !used.contains(p))
                .unwrap();
            assert_eq!(*holder, expected);
            used.insert(*holder);
        }
    }

    #[test]
    fn no_candidates_no_assignment() {
        assert!(assign(&ids(3, 0), &[]).is_empty());
    }

    #[test]
    fn distance_matches_the_dht_key_space() {
        // The provider key hashes the raw id bytes: the same point a kad lookup for the
        // shard targets, so the peer a lookup finds first is the one placement picks.
        let p = PeerId::random();
        let id = ShardId::of(b"x");
        let via_vec = KBucketKey::from(p).distance(&KBucketKey::from(id.as_bytes().to_vec()));
        assert_eq!(distance(&p, &id), via_vec);
    }

    proptest! {
        #[test]
        fn spread_is_as_even_as_possible(n_peers in 1usize..10, n_shards in 1usize..20, seed in any::<u8>()) {
            let peers = peers(n_peers);
            let got = assign(&ids(n_shards, seed), &peers);
            prop_assert_eq!(got.len(), n_shards);
            let mut loads = Loads::default();
            for p in &got { loads.add(*p); }
            let counts: Vec<usize> = peers.iter().map(|p| loads.of(p)).collect();
            let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            prop_assert!(max - min <= 1, "loads {:?}", counts);
            if n_shards <= n_peers {
                prop_assert_eq!(got.iter().collect::<HashSet<_>>().len(), n_shards);
            }
        }
    }
}
