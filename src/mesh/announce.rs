//! Provider announcements in sweeps: how a storage node tells the DHT which shards it
//! holds, at a cost per *batch* of shards instead of per shard.
//!
//! # Why not `kad::Behaviour::start_providing`
//!
//! Kademlia's own announcement walks the DHT for the closest peers of *each* key and
//! then sends each of them one ADD_PROVIDER message, every one on a fresh negotiated
//! stream. A 1 GiB put makes ~6,000 shards, so ~6,000 walks and ~100,000 small messages:
//! measured on the six-node loopback mesh, half of every storage node's CPU went there
//! (docs/design/mesh.md). A *sweep* (the idea of Kubo's "sweeping provider") shares
//! the work between keys that live in the same part of the key space.
//!
//! # Model
//!
//! * Shards to announce wait in a bounded queue ([`MAX_QUEUE`]). One sweep runs at a
//!   time and takes up to [`SWEEP_BATCH`] of them: at once when that many wait, else
//!   [`SWEEP_DELAY`] after the first of them arrived, so a burst of puts is announced in
//!   a few large sweeps rather than many small ones.
//! * The node first records itself as a provider in its own Kademlia store, so lookups
//!   that reach it find it.
//! * **Targets.** When the routing table holds fewer than [`REPLICATION`] peers, the node
//!   knows the whole neighbourhood of every key, and the targets of a shard are simply
//!   the known storage peers. Otherwise the batch is split into *regions* (the first
//!   byte of the Kademlia key hash, so 256 at most) and one `get_closest_peers` walk per
//!   region finds the peers closest to it; they are the targets of every shard in it.
//! * Each target gets one [`Request::Announce`] per [`MAX_ANNOUNCE_IDS`] shards of its
//!   list over the shard protocol; it keeps a provider record naming the *sender*
//!   (authenticated by the connection, so no one can announce for someone else), with
//!   an expiry of [`PROVIDER_TTL`]. Standard GET_PROVIDERS lookups then find them.
//! * Storage nodes re-announce everything they hold after they join and every
//!   [`REANNOUNCE_EVERY`], well inside the records' lifetime.
//!
//! # Invariants
//!
//! * Announcing is best effort and never blocks storing or serving: a shard whose
//!   announcement is lost is still found through the catalog's recorded holder, and is
//!   announced again by the next periodic sweep.
//! * Memory is bounded: the queue by [`MAX_QUEUE`] ids, a sweep by [`SWEEP_BATCH`] ids
//!   and the targets' lists by `SWEEP_BATCH * REPLICATION` ids.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, KBucketKey, ProviderRecord, QueryId};
use tokio::sync::{mpsc, oneshot};

use super::node::EventLoop;
use super::placement::record_key;
use super::wire::{MAX_ANNOUNCE_IDS, Request, Response};
use crate::ids::ShardId;

/// Shards taken by one sweep.
pub const SWEEP_BATCH: usize = MAX_ANNOUNCE_IDS;
/// Peers that keep a provider record of each shard (Kademlia's k).
pub const REPLICATION: usize = kad::K_VALUE.get();
/// Longest a queued shard waits for its sweep to start (unless the queue is full
/// enough for a whole batch first).
pub const SWEEP_DELAY: Duration = Duration::from_millis(500);
/// Shards waiting to be announced at most (32 bytes each).
pub const MAX_QUEUE: usize = 1 << 20;
/// How long a provider record is kept by the peers that received it.
pub const PROVIDER_TTL: Duration = Duration::from_secs(48 * 3600);
/// How often a storage node announces everything it holds again.
pub const REANNOUNCE_EVERY: Duration = Duration::from_secs(12 * 3600);

/// The announcer's state, owned by the event loop.
pub(super) struct Announcer {
    queue: VecDeque<ShardId>,
    /// Walks of the running sweep still out, with the shards of their region.
    walks: HashMap<QueryId, Vec<ShardId>>,
    /// The running sweep's shards per target peer.
    targets: HashMap<PeerId, Vec<ShardId>>,
    running: bool,
    /// When the next sweep starts, if shards wait and none runs.
    pub due: Option<tokio::time::Instant>,
    /// When the node last queued everything it holds.
    pub last_full: Option<Instant>,
    done_tx: mpsc::Sender<SweepDone>,
    /// Sweeps whose announce requests have all been answered.
    pub done_rx: mpsc::Receiver<SweepDone>,
    warned_full: bool,
}

/// How a sweep went.
#[derive(Debug)]
pub(super) struct SweepDone {
    /// Peers sent announcements.
    pub targets: usize,
    /// Provider records the targets said they kept.
    pub kept: u64,
}

impl Announcer {
    pub fn new() -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Announcer {
            queue: VecDeque::new(),
            walks: HashMap::new(),
            targets: HashMap::new(),
            running: false,
            due: None,
            last_full: None,
            done_tx,
            done_rx,
            warned_full: false,
        }
    }

    /// Queues `id`; drops it (with one warning) when the queue is full.
    pub fn queue(&mut self, id: ShardId) {
        if self.queue.len() < MAX_QUEUE {
            self.queue.push_back(id);
        } else if !std::mem::replace(&mut self.warned_full, true) {
            tracing::warn!(
                "provider announcement queue full; shards are found through the catalog until the next periodic announcement"
            );
        }
    }

    /// Whether a walk belongs to the running sweep.
    pub fn owns(&self, query: &QueryId) -> bool {
        self.walks.contains_key(query)
    }

    /// Shards waiting, for tests and logs.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The region of a shard: the first byte of its Kademlia key hash.
pub fn region(id: &ShardId) -> u8 {
    KBucketKey::new(record_key(id)).hashed_bytes()[0]
}

/// Splits `ids` by [`region`], keeping their order within each.
pub fn by_region(ids: Vec<ShardId>) -> Vec<Vec<ShardId>> {
    let mut groups: HashMap<u8, Vec<ShardId>> = HashMap::new();
    for id in ids {
        groups.entry(region(&id)).or_default().push(id);
    }
    let mut out: Vec<(u8, Vec<ShardId>)> = groups.into_iter().collect();
    out.sort_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, g)| g).collect()
}

impl EventLoop {
    /// Queues shards to announce and starts a sweep if none runs.
    pub(super) fn announce(&mut self, ids: impl IntoIterator<Item = ShardId>) {
        for id in ids {
            self.announcer.queue(id);
        }
        self.pump_announcements();
    }

    /// Starts the next sweep when none runs and a batch waits; with fewer shards
    /// waiting, schedules it [`SWEEP_DELAY`] ahead (see the module docs).
    pub(super) fn pump_announcements(&mut self) {
        if self.announcer.running || self.announcer.queue.is_empty() {
            return;
        }
        if self.announcer.queue.len() < SWEEP_BATCH {
            if self.announcer.due.is_none() {
                self.announcer.due = Some(tokio::time::Instant::now() + SWEEP_DELAY);
            }
            return;
        }
        self.start_sweep();
    }

    /// The delay of the waiting shards is over: sweep them now.
    pub(super) fn on_sweep_due(&mut self) {
        self.announcer.due = None;
        if !self.announcer.running && !self.announcer.queue.is_empty() {
            self.start_sweep();
        }
    }

    fn start_sweep(&mut self) {
        self.announcer.due = None;
        let take = self.announcer.queue.len().min(SWEEP_BATCH);
        let batch: Vec<ShardId> = self.announcer.queue.drain(..take).collect();
        self.announcer.running = true;
        let me = *self.swarm.local_peer_id();
        let kad = &mut self.swarm.behaviour_mut().kad;
        for id in &batch {
            // Our own record: lookups that reach us find us. Kademlia's republishing of
            // local records is off (behaviour.rs); sweeps do it.
            let _ =
                kad.store_mut()
                    .add_provider(ProviderRecord::new(record_key(id), me, Vec::new()));
        }
        let routing: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        if routing < REPLICATION {
            let storage = self.peers.storage_peers(Instant::now());
            for id in batch {
                for p in &storage {
                    self.announcer.targets.entry(*p).or_default().push(id);
                }
            }
            self.send_announcements();
            return;
        }
        for group in by_region(batch) {
            let target = record_key(&group[0]).to_vec();
            let q = self.swarm.behaviour_mut().kad.get_closest_peers(target);
            self.announcer.walks.insert(q, group);
        }
    }

    /// A region's walk finished with `closest` (possibly partial after a timeout).
    pub(super) fn on_announce_walk(&mut self, query: QueryId, closest: Vec<PeerId>) {
        let Some(group) = self.announcer.walks.remove(&query) else {
            return;
        };
        let me = *self.swarm.local_peer_id();
        for p in closest
            .into_iter()
            .filter(|p| *p != me && !self.peers.known_non_storage(p))
            .take(REPLICATION)
        {
            self.announcer
                .targets
                .entry(p)
                .or_default()
                .extend_from_slice(&group);
        }
        if self.announcer.walks.is_empty() {
            self.send_announcements();
        }
    }

    /// Sends the running sweep's announcements; a task awaits the answers and reports
    /// the sweep done to the loop.
    fn send_announcements(&mut self) {
        let targets = std::mem::take(&mut self.announcer.targets);
        let mut answers = Vec::new();
        for (peer, ids) in &targets {
            for part in ids.chunks(MAX_ANNOUNCE_IDS) {
                let (tx, rx) = oneshot::channel();
                let rid = self
                    .swarm
                    .behaviour_mut()
                    .shard
                    .send_request(peer, Request::Announce(part.to_vec()));
                self.requests.insert(rid, (*peer, tx));
                answers.push(rx);
            }
        }
        let done = self.announcer.done_tx.clone();
        let peers = targets.len();
        tokio::spawn(async move {
            let mut kept = 0u64;
            for rx in answers {
                match rx.await {
                    Ok(Ok(Response::Announced(n))) => kept += u64::from(n),
                    Ok(Ok(other)) => tracing::debug!("announce answered {other:?}"),
                    Ok(Err(e)) => tracing::debug!("announce failed: {e}"),
                    Err(_) => {}
                }
            }
            let _ = done
                .send(SweepDone {
                    targets: peers,
                    kept,
                })
                .await;
        });
    }

    /// The running sweep is over: start the next one.
    pub(super) fn on_sweep_done(&mut self, done: SweepDone) {
        tracing::debug!(
            targets = done.targets,
            kept = done.kept,
            left = self.announcer.queued(),
            "announcement sweep done"
        );
        self.announcer.running = false;
        self.pump_announcements();
    }

    /// Queues every shard this storage node holds (listed off the loop).
    pub(super) fn announce_held(&mut self) {
        self.announcer.last_full = Some(Instant::now());
        let Some(server) = &self.server else {
            return;
        };
        let store = server.store().clone();
        let tx = self.listed_tx.clone();
        tokio::spawn(async move {
            match store.list().await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(shards = ids.len(), "announcing held shards");
                    let _ = tx.send(ids).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot list held shards to announce: {e}"),
            }
        });
    }

    /// An announce from `peer`: keeps a provider record naming it for each shard.
    pub(super) fn on_inbound_announce(&mut self, peer: PeerId, ids: Vec<ShardId>) -> Response {
        let expires = Instant::now() + PROVIDER_TTL;
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let mut kept = 0u32;
        for id in ids {
            let mut record = ProviderRecord::new(record_key(&id), peer, Vec::new());
            record.expires = Some(expires);
            if store.add_provider(record).is_ok() {
                kept += 1;
            }
        }
        Response::Announced(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_partition_a_batch_without_losing_or_repeating_a_shard() {
        let ids: Vec<ShardId> = (0..5000u32)
            .map(|i| ShardId::of(&i.to_be_bytes()))
            .collect();
        let groups = by_region(ids.clone());
        assert!(
            groups.len() <= 256 && groups.len() > 200,
            "{}",
            groups.len()
        );
        let mut seen: Vec<ShardId> = groups.iter().flatten().copied().collect();
        assert_eq!(seen.len(), ids.len());
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), ids.len());
        for g in &groups {
            assert!(g.iter().all(|id| region(id) == region(&g[0])));
        }
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut a = Announcer::new();
        let id = ShardId::of(b"x");
        for _ in 0..MAX_QUEUE + 10 {
            a.queue(id);
        }
        assert_eq!(a.queued(), MAX_QUEUE);
    }
}
