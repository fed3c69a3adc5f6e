//! The mesh: libp2p nodes that hold each other's shards.

pub mod config;
