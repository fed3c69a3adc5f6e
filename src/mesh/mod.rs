//! The mesh: libp2p nodes that hold each other's shards.
//!
//! # Model
//!
//! A mesh is a set of libp2p nodes in one Kademlia DHT (`/datamesh/kad/1.0.0`). Each
//! node has a [`Role`]:
//!
//! * **bootstrap** (`datamesh bootstrap`): a well-known entry point that routes and
//!   stores nothing;
//! * **storage** (`datamesh service`): holds other peers' shards in a persistent
//!   [`LocalStore`](crate::store::local::LocalStore) under `REPO/node-shards/`, within a
//!   capacity limit, and announces each one in the DHT as a provider record;
//! * **client** (any command that reads or writes content with a bootstrap peer
//!   configured): places and fetches shards through [`MeshStore`], the engine's
//!   [`ShardStore`](crate::store::ShardStore) over the network.
//!
//! One task owns each node's `Swarm` ([`node`]); the program holds a cloneable
//! [`MeshClient`] that talks to it over a bounded channel. Shards move over the
//! request-response protocol `/datamesh/shard/1.0.0` ([`wire`], [`codec`]), at most
//! 8 MiB per message, with a length-prefixed binary framing checked before allocation.
//!
//! # Invariants
//!
//! * Nothing a peer sends can panic a node or make it allocate beyond the message
//!   limit; malformed input closes the stream, refused requests get an error status.
//! * A storage node stores only bytes that hash to their ShardId, acknowledges a put
//!   only after fsync, and deletes a shard only for the peer that stored it.
//! * [`MeshStore`] puts the shards of one call on pairwise distinct peers whenever
//!   enough are usable, and returns only when all are acknowledged.
//! * [`MeshStore`] never returns bytes that do not hash to the requested id (with the
//!   default `verify_reads`), and every call is bounded in time.
//!
//! # Defaults
//!
//! Listen on TCP and QUIC on all interfaces, ephemeral ports; 256 connections, 4 per
//! peer; 30 s per shard request; 500 shard requests per second per peer; 10 s per DHT
//! lookup; circuit breaker backoff 1 s doubling to 60 s. See `docs/design/mesh.md`.

pub mod announce;
pub mod availability;
pub mod behaviour;
pub mod client;
pub mod codec;
pub mod config;
pub mod diag;
pub mod error;
mod events;
pub mod health;
pub mod node;
pub mod peers;
pub mod placement;
pub mod ratelimit;
pub mod server;
pub mod store;
pub mod transport;
pub mod wire;

pub use behaviour::{Limits, Role};
pub use client::MeshClient;
pub use config::{BootstrapEntry, MeshConfig};
pub use error::MeshError;
pub use node::{NodeConfig, NodeInfo, start};
pub use server::ShardServer;
pub use store::{MeshStore, MeshStoreOptions};
pub use transport::{Traffic, TransportKind};
