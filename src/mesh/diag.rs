//! Diagnostics behind `datamesh peers`, `health`, `network`, `discover` and
//! `bandwidth`: each one a bounded sequence of real requests through a
//! [`MeshClient`], returning plain data for the CLI to print.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;

use super::client::MeshClient;
use super::error::MeshError;
use super::wire::{NodeStats, Request, Response};

/// Size of one bandwidth probe message.
pub const PROBE_BYTES: usize = 1 << 20;
/// Probe messages in flight at once (enough to fill a long, fat pipe's window).
const PROBES_IN_FLIGHT: usize = 4;
/// Lookups one `neighbourhoods` call makes at most.
const MAX_LOOKUPS: usize = 64;

/// One storage peer's answer to a stat request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerStatus {
    /// The peer.
    pub peer_id: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Round trip of the stat request, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Its figures.
    pub stats: Option<NodeStats>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// Asks every known storage peer for its figures, all at once, each bounded by
/// `timeout`. Sorted by peer id.
pub async fn storage_status(
    client: &MeshClient,
    timeout: Duration,
) -> Result<Vec<PeerStatus>, MeshError> {
    let peers = client.storage_peers().await?;
    let asks = peers.into_iter().map(|p| async move {
        let started = Instant::now();
        let answer = client.request(p, Request::Stat, timeout).await;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(Response::Stats(s)) => PeerStatus {
                peer_id: p.to_string(),
                reachable: true,
                latency_ms: Some(latency),
                stats: Some(s),
                error: None,
            },
            Ok(other) => PeerStatus {
                peer_id: p.to_string(),
                reachable: true,
                latency_ms: Some(latency),
                stats: None,
                error: Some(format!("unexpected answer: {other:?}")),
            },
            Err(e) => PeerStatus {
                peer_id: p.to_string(),
                reachable: false,
                latency_ms: None,
                stats: None,
                error: Some(e.to_string()),
            },
        }
    });
    let mut out = futures::future::join_all(asks).await;
    out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    Ok(out)
}

/// A measured transfer to one peer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Bandwidth {
    /// The peer.
    pub peer_id: String,
    /// Payload bytes the peer confirmed receiving.
    pub bytes: u64,
    /// Wall time of the transfer, in seconds.
    pub seconds: f64,
    /// Payload throughput, MiB/s.
    pub mib_per_sec: f64,
    /// Bytes this node wrote to its connections meanwhile (all peers; framing, Noise
    /// and Yamux included).
    pub wire_bytes_sent: u64,
    /// Median round trip of a small request before the transfer, in milliseconds.
    pub latency_ms: f64,
}

/// Sends 1 MiB probe messages to `peer` for `duration` (four in flight) and reports
/// what the peer confirmed receiving. Fails if the peer confirms nothing.
pub async fn measure_bandwidth(
    client: &MeshClient,
    peer: PeerId,
    duration: Duration,
    timeout: Duration,
) -> Result<Bandwidth, MeshError> {
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        client
            .request(peer, Request::Probe(Bytes::from_static(b"rtt")), timeout)
            .await?;
        rtts.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    rtts.sort_by(f64::total_cmp);
    let payload = Bytes::from(vec![0xA5u8; PROBE_BYTES]);
    let sent_before = client.traffic().sent();
    let started = Instant::now();
    let deadline = started + duration;
    let mut confirmed = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let send = |p: Bytes| client.request(peer, Request::Probe(p), timeout);
    for _ in 0..PROBES_IN_FLIGHT {
        in_flight.push(send(payload.clone()));
    }
    let mut last_error = None;
    while let Some(answer) = in_flight.next().await {
        match answer {
            Ok(Response::ProbeReceived(n)) => confirmed += n.min(PROBE_BYTES as u64),
            Ok(other) => last_error = Some(format!("unexpected answer: {other:?}")),
            Err(e) => last_error = Some(e.to_string()),
        }
        if Instant::now() < deadline && last_error.is_none() {
            in_flight.push(send(payload.clone()));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if confirmed == 0 {
        return Err(MeshError::Unreachable {
            peer,
            reason: last_error.unwrap_or_else(|| "no probe was confirmed".into()),
        });
    }
    Ok(Bandwidth {
        peer_id: peer.to_string(),
        bytes: confirmed,
        seconds,
        mib_per_sec: confirmed as f64 / (1 << 20) as f64 / seconds,
        wire_bytes_sent: client.traffic().sent() - sent_before,
        latency_ms: rtts[rtts.len() / 2],
    })
}

/// Random DHT lookups for `duration`, so the node meets as much of the mesh as it can;
/// returns how many lookups ran.
pub async fn walk(client: &MeshClient, duration: Duration) -> usize {
    let deadline = Instant::now() + duration;
    let mut lookups = 0;
    while Instant::now() < deadline {
        let key: [u8; 32] = rand::random();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(remaining, client.closest_peers(key.to_vec(), false)).await;
        lookups += 1;
    }
    lookups
}

/// The peers closest to each peer found so far, breadth first: depth 1 is this node's
/// routing table, depth `d` looks up the neighbourhood of every peer first seen at
/// depth `d - 1` (at most 64 lookups in all). Maps each looked-up peer to its
/// neighbours.
pub async fn neighbourhoods(
    client: &MeshClient,
    depth: u32,
) -> Result<BTreeMap<String, Vec<String>>, MeshError> {
    let mut out = BTreeMap::new();
    let mut seen: HashSet<PeerId> = HashSet::new();
    let mut frontier: Vec<PeerId> = Vec::new();
    for bucket in client.routing_table().await? {
        for (p, _) in bucket.peers {
            if let Ok(p) = p.parse::<PeerId>()
                && seen.insert(p)
            {
                frontier.push(p);
            }
        }
    }
    let mut lookups = 0;
    for _ in 1..depth {
        let mut next = Vec::new();
        for p in frontier {
            if lookups >= MAX_LOOKUPS {
                break;
            }
            lookups += 1;
            let found = client
                .closest_peers(p.to_bytes(), false)
                .await
                .unwrap_or_default();
            for q in &found {
                if seen.insert(*q) {
                    next.push(*q);
                }
            }
            out.insert(
                p.to_string(),
                found
                    .iter()
                    .filter(|q| **q != p)
                    .map(|q| q.to_string())
                    .collect(),
            );
        }
        frontier = next;
    }
    Ok(out)
}
