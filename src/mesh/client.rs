//! [`MeshClient`]: the cloneable handle to a running node.
//!
//! Every method sends one command to the node's task over a bounded channel (so a
//! flood of callers waits instead of growing a queue) and awaits its oneshot reply.
//! Every method that involves the network is bounded in time: shard requests by the
//! request timeout of the behaviour, lookups by Kademlia's query timeout, and each
//! method additionally by its own `tokio::time::timeout`, so that no caller can hang
//! even if an event was lost.

use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::behaviour::KAD_QUERY_TIMEOUT;
use super::config::BootstrapEntry;
use super::error::MeshError;
use super::node::{self, BucketView, Command, NodeInfo};
use super::peers::PeerView;
use super::transport::Traffic;
use super::wire::{Request, Response};
use crate::ids::ShardId;

/// Slack on top of the node's own timeouts before a caller gives up on a reply.
const REPLY_SLACK: Duration = Duration::from_secs(5);

/// A handle to a mesh node. Cheap to clone; the node stops when the last handle is
/// dropped or [`MeshClient::shutdown`] is called.
#[derive(Clone)]
pub struct MeshClient {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    traffic: Traffic,
}

impl std::fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MeshClient({})", self.peer_id)
    }
}

impl MeshClient {
    pub(crate) fn new(tx: mpsc::Sender<Command>, peer_id: PeerId, traffic: Traffic) -> Self {
        MeshClient {
            tx,
            peer_id,
            traffic,
        }
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Byte counters of this node's TCP and memory connections.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, MeshError>>) -> Command,
        limit: Duration,
    ) -> Result<T, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| MeshError::NodeStopped)?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(MeshError::NodeStopped),
            Err(_) => Err(MeshError::LookupTimeout(format!(
                "a reply from the node (after {} s)",
                limit.as_secs()
            ))),
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| MeshError::NodeStopped)?;
        tokio::time::timeout(REPLY_SLACK, rx)
            .await
            .map_err(|_| MeshError::NodeStopped)?
            .map_err(|_| MeshError::NodeStopped)
    }

    /// Dials the bootstrap `entries` (lowest priority number first, one priority group
    /// at a time) and returns the number of connected peers once one answered. Fails
    /// when none did within `timeout`. The node remembers the entries and dials them
    /// again whenever it loses every connection.
    pub async fn join(
        &self,
        entries: &[BootstrapEntry],
        timeout: Duration,
    ) -> Result<usize, MeshError> {
        let parsed = entries
            .iter()
            .map(node::parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(MeshError::JoinFailed {
                tried: "(none)".into(),
                reason: "no bootstrap address was given (use --bootstrap or config mesh.bootstrap)"
                    .into(),
            });
        }
        let tried: Vec<String> = parsed.iter().map(|(a, _)| a.to_string()).collect();
        match self
            .call(
                |reply| Command::Join {
                    entries: parsed,
                    reply: Some(reply),
                },
                timeout,
            )
            .await
        {
            Err(MeshError::LookupTimeout(_)) => Err(MeshError::JoinFailed {
                tried: tried.join(", "),
                reason: format!("no answer within {} s", timeout.as_secs()),
            }),
            other => other,
        }
    }

    /// Sends one shard request to `peer` and awaits its response (bounded by the
    /// request timeout the node was built with, plus `limit` as a backstop).
    pub async fn request(
        &self,
        peer: PeerId,
        request: Request,
        limit: Duration,
    ) -> Result<Response, MeshError> {
        let result = self
            .call(
                |reply| Command::Request {
                    peer,
                    request,
                    reply,
                },
                limit,
            )
            .await;
        match result {
            Err(MeshError::LookupTimeout(_)) => Err(MeshError::Unreachable {
                peer,
                reason: format!("no answer within {} s", limit.as_secs_f64()),
            }),
            other => other,
        }
    }

    /// The peers closest to `key` in the DHT (an iterative Kademlia lookup), closest
    /// first; with `storage_only`, without the peers known not to store shards.
    pub async fn closest_peers(
        &self,
        key: Vec<u8>,
        storage_only: bool,
    ) -> Result<Vec<PeerId>, MeshError> {
        self.call(
            |reply| Command::ClosestPeers {
                key,
                storage_only,
                reply,
            },
            KAD_QUERY_TIMEOUT + REPLY_SLACK,
        )
        .await
    }

    /// Peers announcing that they hold shard `id` (empty when none is found).
    pub async fn providers(&self, id: ShardId) -> Result<Vec<PeerId>, MeshError> {
        self.call(
            |reply| Command::Providers { id, reply },
            KAD_QUERY_TIMEOUT + REPLY_SLACK,
        )
        .await
    }

    /// Announces this node as a provider of `ids` (storage nodes do this by themselves
    /// for every shard they store).
    pub async fn provide(&self, ids: Vec<ShardId>) -> Result<(), MeshError> {
        self.tx
            .send(Command::Provide(ids))
            .await
            .map_err(|_| MeshError::NodeStopped)
    }

    /// Every peer the node has met.
    pub async fn peers(&self) -> Result<Vec<PeerView>, MeshError> {
        self.ask(Command::Peers).await
    }

    /// Storage peers that are connected or were seen recently.
    pub async fn storage_peers(&self) -> Result<Vec<PeerId>, MeshError> {
        self.ask(Command::StoragePeers).await
    }

    /// The Kademlia routing table, bucket by bucket.
    pub async fn routing_table(&self) -> Result<Vec<BucketView>, MeshError> {
        self.ask(Command::Routing).await
    }

    /// This node's id, addresses, connection count and traffic.
    pub async fn info(&self) -> Result<NodeInfo, MeshError> {
        self.ask(Command::Info).await
    }

    /// Waits until at least `n` storage peers are known, or `timeout` passes; returns
    /// how many are known then.
    pub async fn wait_for_storage_peers(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, MeshError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let known = self.storage_peers().await?.len();
            if known >= n || tokio::time::Instant::now() >= deadline {
                return Ok(known);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the node (its connections close; other handles get `NodeStopped`).
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}
