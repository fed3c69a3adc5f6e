//! [`MeshStore`]: the mesh as a [`ShardStore`]. The engine sees only the trait; this
//! implementation places shards on peers and reads them back.
//!
//! # Placement (`put_shards`)
//!
//! Candidates are the storage peers the node knows (identify says which peers answer
//! the shard protocol). When it knows [`LOCAL_VIEW_LIMIT`] or more, its view is likely
//! partial, so a Kademlia lookup per shard adds the peers closest to that shard
//! network-wide. Candidates whose breaker is open, that said they are full, that
//! returned bad bytes, or that the caller excludes, are dropped (when the exclusion
//! list would leave nobody, the excluded peers are used rather than failing: a shard on
//! a peer that holds a sibling beats no shard). The rule of `mesh::placement` then
//! gives each shard the least-loaded, XOR-closest candidate, and all puts run at once.
//! A put that fails moves to the next candidate by the same rule, at most
//! [`MAX_PUT_ATTEMPTS`] times per shard. The call returns when every shard is
//! acknowledged stored (the holder fsyncs first), or fails naming the shard that could
//! not be placed. Holders announce themselves as providers in the DHT.
//!
//! # Retrieval (`get`)
//!
//! The recorded holder is asked first, unless its breaker is open or it is
//! misbehaving. If it fails or lacks the shard, a DHT lookup finds the providers, which
//! are asked one at a time, trusted-and-fast first, at most [`MAX_READ_ATTEMPTS`] of
//! them. When no provider is announced (announcements are batched, `mesh::announce`,
//! so a shard stored a moment ago may have none yet), the storage peers closest to the
//! shard id are asked instead, closest first: placement put it on one of them. With `verify_reads` (the default) each answer is hashed on the blocking pool:
//! bytes that do not match the id mark the peer misbehaving and the next one is asked,
//! so wrong bytes never leave this store. Every request has a timeout and dead peers
//! are skipped by their breaker, so a read costs bounded time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::behaviour::{Limits, Role};
use super::client::MeshClient;
use super::config::MeshConfig;
use super::error::MeshError;
use super::health::PeerHealth;
use super::node::{self, NodeConfig};
use super::placement::{self, Loads};
use super::wire::{Request, Response, Status};
use crate::ids::ShardId;
use crate::store::{Holder, Shard, ShardStore, StoreError, StoreStats};

/// Known storage peers from which on placement also asks the DHT (Kademlia's k).
pub const LOCAL_VIEW_LIMIT: usize = 20;
/// Peers one shard's put is tried on at most.
pub const MAX_PUT_ATTEMPTS: usize = 8;
/// Peers one shard's get is tried on at most (recorded holder included).
pub const MAX_READ_ATTEMPTS: usize = 5;
/// How long `connect` waits for the set of known storage peers to settle.
const SETTLE: Duration = Duration::from_millis(300);
/// Longest `connect` waits for storage peers.
const DISCOVERY_WAIT: Duration = Duration::from_secs(5);
/// Longest `connect` waits for a bootstrap peer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Knobs of a [`MeshStore`].
#[derive(Clone, Copy, Debug)]
pub struct MeshStoreOptions {
    /// Timeout of one shard request.
    pub request_timeout: Duration,
    /// Hash every shard read and treat a mismatch as the peer's failure.
    pub verify_reads: bool,
    /// Timeout of one stat request (for `stats`).
    pub stat_timeout: Duration,
}

impl Default for MeshStoreOptions {
    fn default() -> Self {
        MeshStoreOptions {
            request_timeout: Duration::from_secs(30),
            verify_reads: true,
            stat_timeout: Duration::from_secs(5),
        }
    }
}

/// The mesh as a shard store. Cheap to clone.
#[derive(Clone)]
pub struct MeshStore {
    client: MeshClient,
    health: Arc<PeerHealth>,
    options: MeshStoreOptions,
    /// Becomes true once the set of known storage peers has settled (see `connect`).
    settled: tokio::sync::watch::Receiver<bool>,
}

impl MeshStore {
    /// A store over a running node.
    pub fn new(client: MeshClient) -> Self {
        Self::with_options(client, MeshStoreOptions::default())
    }

    /// A store over a running node, with `options`.
    pub fn with_options(client: MeshClient, options: MeshStoreOptions) -> Self {
        let (_, settled) = tokio::sync::watch::channel(true);
        MeshStore {
            client,
            health: Arc::new(PeerHealth::default()),
            options,
            settled,
        }
    }

    /// Starts a client node with `keypair` (the owner's client key), joins the mesh
    /// through `config.mesh.bootstrap` plus `extra_bootstrap`, and returns. The set of
    /// known storage peers keeps settling in the background (at most a few seconds);
    /// placement and the figures that count peers wait for it, reads do not (they go
    /// to recorded holders, whose addresses the join's routing-table refresh learnt), so
    /// a `get` does not pay for discovery it does not need.
    pub async fn connect(
        keypair: Keypair,
        config: &MeshConfig,
        extra_bootstrap: &[String],
    ) -> Result<MeshStore, MeshError> {
        let mut nc = NodeConfig::new(keypair, Role::Client);
        nc.limits = Limits {
            max_connections: config.max_connections,
            request_timeout: config.request_timeout(),
            ..Limits::default()
        };
        let client = node::start(nc).await?;
        client
            .join(&config.bootstrap_with(extra_bootstrap), JOIN_TIMEOUT)
            .await?;
        let (tx, settled) = tokio::sync::watch::channel(false);
        let c = client.clone();
        tokio::spawn(async move {
            if let Err(e) = settle(&c).await {
                tracing::debug!("storage peers did not settle: {e}");
            }
            let _ = tx.send(true);
        });
        let mut store = MeshStore::with_options(
            client,
            MeshStoreOptions {
                request_timeout: config.request_timeout(),
                ..MeshStoreOptions::default()
            },
        );
        store.settled = settled;
        Ok(store)
    }

    /// Waits until the known storage peers have settled (at once when they have; a
    /// settling task that died counts as settled).
    pub async fn wait_settled(&self) {
        let mut rx = self.settled.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The node handle.
    pub fn client(&self) -> &MeshClient {
        &self.client
    }

    /// What this store has learnt about peers.
    pub fn health(&self) -> &PeerHealth {
        &self.health
    }

    /// The engine found that `holder` returned bytes that do not match a shard id:
    /// distrust it (no new shards, asked last).
    pub fn report_bad(&self, holder: &Holder) {
        if let Ok(peer) = holder.as_str().parse::<PeerId>() {
            tracing::warn!(%peer, "peer returned bad shard bytes; routing around it");
            self.health.bad(&peer, Instant::now());
        }
    }

    /// Sends one request; when no known address of `peer` answers, looks the peer up
    /// in the DHT (it may have restarted on another port) and tries once more.
    async fn send(&self, peer: PeerId, request: Request) -> Result<Response, MeshError> {
        let timeout = self.options.request_timeout;
        match self.client.request(peer, request.clone(), timeout).await {
            Err(MeshError::CannotConnect { .. }) => {
                let found = self
                    .client
                    .closest_peers(peer.to_bytes(), false)
                    .await
                    .unwrap_or_default();
                if !found.contains(&peer) {
                    return Err(MeshError::CannotConnect { peer });
                }
                self.client.request(peer, request, timeout).await
            }
            other => other,
        }
    }

    /// Storage peers that may take shards now.
    async fn placeable(&self) -> Result<Vec<PeerId>, MeshError> {
        self.wait_settled().await;
        let now = Instant::now();
        let me = self.client.peer_id();
        Ok(self
            .client
            .storage_peers()
            .await?
            .into_iter()
            .filter(|p| *p != me && self.health.placeable(p, now))
            .collect())
    }

    /// Candidates for `shards`, see the module docs.
    async fn candidates(
        &self,
        shards: &[Shard],
        exclude: &[Holder],
    ) -> Result<Vec<PeerId>, MeshError> {
        let mut set: HashSet<PeerId> = self.placeable().await?.into_iter().collect();
        if set.len() >= LOCAL_VIEW_LIMIT {
            let lookups = shards
                .iter()
                .map(|s| self.client.closest_peers(s.id.as_bytes().to_vec(), true));
            for found in futures::future::join_all(lookups)
                .await
                .into_iter()
                .flatten()
            {
                set.extend(found);
            }
        }
        let now = Instant::now();
        let me = self.client.peer_id();
        set.retain(|p| *p != me && self.health.placeable(p, now));
        let excluded: HashSet<PeerId> = exclude
            .iter()
            .filter_map(|h| h.as_str().parse().ok())
            .collect();
        let preferred: Vec<PeerId> = set
            .iter()
            .filter(|p| !excluded.contains(p))
            .copied()
            .collect();
        let mut out = if preferred.is_empty() {
            set.into_iter().collect()
        } else {
            preferred
        };
        out.sort(); // deterministic before the distance rule
        Ok(out)
    }

    async fn put_one(&self, peer: PeerId, shard: &Shard) -> Result<(), MeshError> {
        let started = Instant::now();
        let request = Request::Put {
            id: shard.id,
            bytes: shard.bytes.clone(),
        };
        let result = self.send(peer, request).await;
        let now = Instant::now();
        match result {
            Ok(Response::Stored) => {
                self.health.success(&peer, now - started, now);
                Ok(())
            }
            Ok(Response::Error(Status::BadShard, detail)) => {
                // Either our bytes are wrong (a caller bug: no peer will take them) or
                // the peer lies; hashing once tells which.
                let check = shard.bytes.clone();
                let id = shard.id;
                let ours_ok = tokio::task::spawn_blocking(move || ShardId::of(&check) == id)
                    .await
                    .unwrap_or(false);
                if ours_ok {
                    self.health.bad(&peer, now);
                    Err(MeshError::Refused {
                        peer,
                        request: "put",
                        status: Status::BadShard,
                        detail,
                    })
                } else {
                    Err(MeshError::BadShard(id.to_string()))
                }
            }
            Ok(Response::Error(status, detail)) => {
                match status {
                    Status::NoSpace => self.health.full(&peer, now),
                    Status::Busy | Status::NotStorage => {}
                    _ => self.health.failure(&peer, now),
                }
                Err(MeshError::Refused {
                    peer,
                    request: "put",
                    status,
                    detail,
                })
            }
            Ok(other) => {
                self.health.failure(&peer, now);
                Err(MeshError::Unexpected {
                    peer,
                    request: "put",
                    got: response_name(&other),
                })
            }
            Err(e) => {
                if e.is_peer_failure() {
                    self.health.failure(&peer, now);
                }
                Err(e)
            }
        }
    }

    /// Asks `peer` for shard `id`, verifying the answer if configured to.
    async fn get_from(&self, peer: PeerId, id: ShardId) -> Result<Bytes, MeshError> {
        let started = Instant::now();
        let result = self.send(peer, Request::Get(id)).await;
        let now = Instant::now();
        match result {
            Ok(Response::Shard(bytes)) => {
                if self.options.verify_reads {
                    let check = bytes.clone();
                    let ok = tokio::task::spawn_blocking(move || ShardId::of(&check) == id)
                        .await
                        .unwrap_or(false);
                    if !ok {
                        self.health.bad(&peer, Instant::now());
                        return Err(MeshError::Refused {
                            peer,
                            request: "get",
                            status: Status::BadShard,
                            detail: "returned bytes that do not match the shard id".into(),
                        });
                    }
                }
                self.health.success(&peer, now - started, now);
                Ok(bytes)
            }
            Ok(Response::Error(status, detail)) => {
                if !matches!(status, Status::NotFound | Status::Busy) {
                    self.health.failure(&peer, now);
                }
                Err(MeshError::Refused {
                    peer,
                    request: "get",
                    status,
                    detail,
                })
            }
            Ok(other) => {
                self.health.failure(&peer, now);
                Err(MeshError::Unexpected {
                    peer,
                    request: "get",
                    got: response_name(&other),
                })
            }
            Err(e) => {
                if e.is_peer_failure() {
                    self.health.failure(&peer, now);
                }
                Err(e)
            }
        }
    }

    async fn ask_holder(
        &self,
        id: &ShardId,
        holder: &Holder,
        request: Request,
    ) -> Result<Response, StoreError> {
        let peer = parse_holder(holder)?;
        let started = Instant::now();
        let result = self.send(peer, request).await;
        let now = Instant::now();
        match result {
            Ok(Response::Error(Status::NotFound, _)) => Err(StoreError::NotFound(*id)),
            Ok(resp) => {
                self.health.success(&peer, now - started, now);
                Ok(resp)
            }
            Err(e) => {
                if e.is_peer_failure() {
                    self.health.failure(&peer, now);
                }
                Err(e.into())
            }
        }
    }
}

/// Waits until the known storage peers stop changing for [`SETTLE`].
async fn settle(client: &MeshClient) -> Result<(), MeshError> {
    let deadline = Instant::now() + DISCOVERY_WAIT;
    let mut last = client.storage_peers().await?.len();
    let mut stable_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now_known = client.storage_peers().await?.len();
        if now_known != last {
            last = now_known;
            stable_since = Instant::now();
        } else if now_known > 0 && stable_since.elapsed() >= SETTLE {
            break;
        }
    }
    Ok(())
}

fn parse_holder(holder: &Holder) -> Result<PeerId, StoreError> {
    holder.as_str().parse().map_err(|_| StoreError::Rejected {
        holder: holder.to_string(),
        reason: "not a mesh peer id (was this shard stored by the local store?)".into(),
    })
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Stored => "stored",
        Response::Shard(_) => "shard",
        Response::Has(_) => "has",
        Response::Deleted => "deleted",
        Response::Stats(_) => "stats",
        Response::ProbeReceived(_) => "probe",
        Response::Announced(_) => "announced",
        Response::Error(..) => "error",
    }
}

#[async_trait]
impl ShardStore for MeshStore {
    async fn put_shards(
        &self,
        shards: &[Shard],
        exclude: &[Holder],
    ) -> Result<Vec<Holder>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = self.candidates(shards, exclude).await?;
        if candidates.is_empty() {
            return Err(MeshError::NoStoragePeers("no usable storage peer is known".into()).into());
        }
        let mut loads = Loads::default();
        let mut tried: Vec<HashSet<PeerId>> = vec![HashSet::new(); shards.len()];
        let mut holders: Vec<Option<PeerId>> = vec![None; shards.len()];
        // One closure, so that first attempts and retries are futures of one type.
        let attempt = |i: usize, peer: PeerId| {
            let shard = &shards[i];
            async move { (i, peer, self.put_one(peer, shard).await) }
        };
        let mut in_flight = FuturesUnordered::new();
        for (i, shard) in shards.iter().enumerate() {
            let Some(peer) = placement::pick(&shard.id, &candidates, &loads) else {
                return Err(
                    MeshError::NoStoragePeers("no usable storage peer is known".into()).into(),
                );
            };
            loads.add(peer);
            tried[i].insert(peer);
            in_flight.push(attempt(i, peer));
        }
        let mut failure: Option<MeshError> = None;
        while let Some((i, peer, result)) = in_flight.next().await {
            match result {
                Ok(()) => holders[i] = Some(peer),
                Err(e @ MeshError::BadShard(_)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    tracing::debug!(%peer, "put of shard {} failed: {e}", shards[i].id.short());
                    loads.remove(&peer);
                    let now = Instant::now();
                    let left: Vec<PeerId> = candidates
                        .iter()
                        .filter(|p| !tried[i].contains(p) && self.health.placeable(p, now))
                        .copied()
                        .collect();
                    let next = if tried[i].len() < MAX_PUT_ATTEMPTS {
                        placement::pick(&shards[i].id, &left, &loads)
                    } else {
                        None
                    };
                    match next {
                        Some(next) => {
                            loads.add(next);
                            tried[i].insert(next);
                            in_flight.push(attempt(i, next));
                        }
                        None => {
                            failure.get_or_insert(e);
                        }
                    }
                }
            }
        }
        if let Some(e) = failure {
            let placed = holders.iter().filter(|h| h.is_some()).count();
            return Err(match e {
                MeshError::Refused {
                    status: Status::NoSpace,
                    ..
                } => e.into(),
                MeshError::BadShard(id) => StoreError::Rejected {
                    holder: "mesh".into(),
                    reason: format!(
                        "the bytes of shard {id} do not hash to its id; nothing was stored"
                    ),
                },
                other => StoreError::NoHolders(format!(
                    "{placed} of {} shards stored; the last failure: {other}",
                    shards.len()
                )),
            });
        }
        Ok(holders
            .into_iter()
            .map(|h| Holder(h.map(|p| p.to_string()).unwrap_or_default()))
            .collect())
    }

    async fn get(&self, id: &ShardId, holder: &Holder) -> Result<Bytes, StoreError> {
        let recorded = holder.as_str().parse::<PeerId>().ok();
        let mut tried = HashSet::new();
        let mut reasons = Vec::new();
        let mut answered_missing = 0usize;
        let now = Instant::now();
        let mut note = |e: &MeshError, reasons: &mut Vec<String>| {
            if e.status() == Some(Status::NotFound) {
                answered_missing += 1;
            }
            reasons.push(e.to_string());
        };
        if let Some(p) = recorded
            && self.health.reachable(&p, now)
            && !self.health.misbehaving(&p, now)
        {
            tried.insert(p);
            match self.get_from(p, *id).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => note(&e, &mut reasons),
            }
        }
        let mut providers = self.client.providers(*id).await.unwrap_or_default();
        if providers.is_empty() {
            // Not announced (yet, or the records expired): placement put the shard on a
            // peer close to its id, so ask those.
            providers = self
                .client
                .closest_peers(id.as_bytes().to_vec(), true)
                .await
                .unwrap_or_default();
            providers.retain(|p| *p != self.client.peer_id());
            providers = placement::closest(&providers, id);
        }
        let now = Instant::now();
        providers.retain(|p| !tried.contains(p) && self.health.reachable(p, now));
        providers.sort_by_key(|p| self.health.read_rank(p, now));
        let budget = MAX_READ_ATTEMPTS - tried.len().min(1);
        // A distrusted recorded holder is still worth a last try within the budget: its
        // answer is checked, and its failure says more than the others' "not found".
        if let Some(p) = recorded
            && !tried.contains(&p)
            && self.health.reachable(&p, now)
        {
            providers.retain(|q| *q != p);
            providers.truncate(budget - 1);
            providers.push(p);
        }
        for p in providers.into_iter().take(budget) {
            tried.insert(p);
            match self.get_from(p, *id).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => note(&e, &mut reasons),
            }
        }
        if tried.is_empty() {
            return Err(StoreError::Unreachable {
                holder: holder.to_string(),
                reason: "the holder failed recently (retrying later) and no other peer announces the shard".into(),
            });
        }
        if answered_missing == reasons.len() {
            return Err(StoreError::NotFound(*id));
        }
        Err(StoreError::Unreachable {
            holder: holder.to_string(),
            reason: reasons.join("; "),
        })
    }

    async fn delete(&self, id: &ShardId, holder: &Holder) -> Result<(), StoreError> {
        match self.ask_holder(id, holder, Request::Delete(*id)).await {
            Ok(Response::Deleted) | Err(StoreError::NotFound(_)) => Ok(()),
            Ok(Response::Error(_, reason)) => Err(StoreError::Rejected {
                holder: holder.to_string(),
                reason,
            }),
            Ok(other) => Err(StoreError::Rejected {
                holder: holder.to_string(),
                reason: format!("unexpected {} answer to delete", response_name(&other)),
            }),
            Err(e) => Err(e),
        }
    }

    async fn has(&self, id: &ShardId, holder: &Holder) -> Result<bool, StoreError> {
        match self.ask_holder(id, holder, Request::Has(*id)).await {
            Ok(Response::Has(yes)) => Ok(yes),
            Err(StoreError::NotFound(_)) => Ok(false),
            Ok(Response::Error(_, reason)) => Err(StoreError::Rejected {
                holder: holder.to_string(),
                reason,
            }),
            Ok(other) => Err(StoreError::Rejected {
                holder: holder.to_string(),
                reason: format!("unexpected {} answer to has", response_name(&other)),
            }),
            Err(e) => Err(e),
        }
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.wait_settled().await;
        let peers = self
            .client
            .storage_peers()
            .await
            .map_err(StoreError::from)?;
        let asks = peers.iter().map(|p| {
            self.client
                .request(*p, Request::Stat, self.options.stat_timeout)
        });
        let mut total = StoreStats::default();
        for answer in futures::future::join_all(asks).await {
            if let Ok(Response::Stats(s)) = answer {
                total.shards += s.shards;
                total.bytes += s.bytes;
                total.available = total.available.saturating_add(s.available);
                total.holders += 1;
            }
        }
        if total.holders == 0 {
            return Err(MeshError::NoStoragePeers("no storage peer answered".into()).into());
        }
        Ok(total)
    }

    async fn distinct_holders(&self) -> usize {
        self.placeable().await.map(|v| v.len()).unwrap_or(0)
    }

    fn verifies_reads(&self, _holder: &Holder) -> bool {
        self.options.verify_reads
    }

    fn spreads(&self) -> bool {
        true
    }
}
