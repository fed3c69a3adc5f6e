//! The libp2p behaviour of a datamesh node: what protocols it speaks and with which
//! limits.
//!
//! | protocol                 | purpose                                               |
//! |--------------------------|-------------------------------------------------------|
//! | `/datamesh/kad/1.0.0`    | Kademlia: routing, closest peers, provider records    |
//! | `/datamesh/id/1.0.0`     | identify: listen addresses, role (agent), protocols   |
//! | `/ipfs/ping/1.0.0`       | ping: liveness and round-trip time                     |
//! | `/datamesh/shard/1.0.0`  | shard requests (put, get, has, delete, stat, probe)   |
//!
//! A storage node answers shard requests (`ProtocolSupport::Full`); bootstrap and client
//! nodes only send them, so identify tells everyone which peers store shards. Bootstrap
//! and storage nodes run Kademlia in server mode; clients (a `put` from a laptop) in
//! client mode, so that short-lived processes never enter other nodes' routing tables.
//!
//! # Limits (defaults)
//!
//! * connections: `mesh.max_connections` in total (256), 4 per peer, 64 incoming
//!   handshakes at once;
//! * shard requests: one timeout (`mesh.request_timeout_secs`, 30 s) covering the whole
//!   exchange, 128 concurrent streams per connection, 8 MiB per message;
//! * Kademlia: 16 KiB per message (no value records are used), 10 s per query;
//!   1 Mi provider keys held in memory;
//! * idle connections close after 60 s.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, connection_limits, identify, kad, ping};

use super::codec::{SHARD_PROTOCOL, ShardCodec};

/// The Kademlia protocol name: a datamesh-only DHT, never mixed with IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/kad/1.0.0");
/// The identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/datamesh/id/1.0.0";

/// Connections allowed per peer (one each way, plus a spare for a simultaneous dial).
const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Incoming connections still handshaking, at once.
const MAX_PENDING_INCOMING: u32 = 64;
/// Provider keys (own and others') held in memory.
const MAX_PROVIDER_KEYS: usize = 1 << 20;
/// Kademlia message size limit.
const KAD_MAX_PACKET: usize = 16 * 1024;
/// Kademlia query timeout.
pub const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent shard streams per connection.
const MAX_STREAMS: usize = 128;

/// What a node does in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A well-known entry point: routing only, no shards.
    Bootstrap,
    /// Holds other peers' shards.
    Storage,
    /// A short-lived process placing and reading shards (`put`, `get`, `mount`).
    Client,
}

impl Role {
    /// The word in the identify agent string.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bootstrap => "bootstrap",
            Role::Storage => "storage",
            Role::Client => "client",
        }
    }

    /// Parses the role word of a peer's agent string (`datamesh/0.1.0 storage`).
    pub fn from_agent(agent: &str) -> Option<Role> {
        let mut words = agent.split_whitespace();
        if !words.next()?.starts_with("datamesh/") {
            return None;
        }
        match words.next()? {
            "bootstrap" => Some(Role::Bootstrap),
            "storage" => Some(Role::Storage),
            "client" => Some(Role::Client),
            _ => None,
        }
    }
}

/// Limits a node is built with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most established connections.
    pub max_connections: u32,
    /// Shard request timeout (whole exchange).
    pub request_timeout: Duration,
    /// Largest shard message.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            request_timeout: Duration::from_secs(30),
            max_message: super::wire::MAX_MESSAGE,
        }
    }
}

/// The composed behaviour.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection limits (first, so that denied connections reach no other behaviour).
    pub limits: connection_limits::Behaviour,
    /// Kademlia.
    pub kad: kad::Behaviour<MemoryStore>,
    /// identify.
    pub identify: identify::Behaviour,
    /// ping.
    pub ping: ping::Behaviour,
    /// The shard protocol.
    pub shard: request_response::Behaviour<ShardCodec>,
}

impl Behaviour {
    /// The behaviour of a node with `role`.
    pub fn new(keypair: &Keypair, role: Role, limits: &Limits) -> Self {
        let peer_id = keypair.public().to_peer_id();

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_query_timeout(KAD_QUERY_TIMEOUT)
            .set_max_packet_size(KAD_MAX_PACKET)
            .set_record_ttl(None)
            .set_publication_interval(None)
            .set_replication_interval(None)
            // Provider records are published in sweeps (mesh::announce), which also
            // republish them; Kademlia's per-key republishing would walk once per shard.
            .set_provider_publication_interval(None)
            .set_provider_record_ttl(Some(super::announce::PROVIDER_TTL));
        let store = MemoryStore::with_config(
            peer_id,
            MemoryStoreConfig {
                // No value records are used: any put of one is refused.
                max_records: 0,
                max_value_bytes: 0,
                max_provided_keys: MAX_PROVIDER_KEYS,
                max_providers_per_key: kad::K_VALUE.get(),
            },
        );
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        kad.set_mode(Some(match role {
            Role::Client => kad::Mode::Client,
            Role::Bootstrap | Role::Storage => kad::Mode::Server,
        }));

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
                .with_agent_version(format!(
                    "datamesh/{} {}",
                    env!("CARGO_PKG_VERSION"),
                    role.as_str()
                ))
                .with_push_listen_addr_updates(true)
                .with_cache_size(256),
        );

        let support = match role {
            Role::Storage => ProtocolSupport::Full,
            Role::Bootstrap | Role::Client => ProtocolSupport::Outbound,
        };
        let shard = request_response::Behaviour::with_codec(
            ShardCodec::with_limit(limits.max_message),
            [(SHARD_PROTOCOL, support)],
            request_response::Config::default()
                .with_request_timeout(limits.request_timeout)
                .with_max_concurrent_streams(MAX_STREAMS),
        );

        let conn_limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_connections))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING));

        Behaviour {
            limits: connection_limits::Behaviour::new(conn_limits),
            kad,
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            shard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_the_agent_string() {
        for role in [Role::Bootstrap, Role::Storage, Role::Client] {
            let agent = format!("datamesh/9.9.9 {}", role.as_str());
            assert_eq!(Role::from_agent(&agent), Some(role));
        }
        assert_eq!(Role::from_agent("go-ipfs/0.1 storage"), None);
        assert_eq!(Role::from_agent("datamesh/0.1.0"), None);
        assert_eq!(Role::from_agent(""), None);
    }
}
