//! Command-line syntax of the mesh commands (clap derive). The lead's `Command` enum
//! flattens [`MeshCommand`] in with `#[command(flatten)] Mesh(MeshCommand)`; every
//! command also takes the global `--bootstrap MULTIADDR` (repeatable).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::ByteSize;

/// The mesh commands.
#[derive(Subcommand, Debug)]
pub enum MeshCommand {
    /// Run a bootstrap node: an entry point other nodes join (routes, stores nothing)
    Bootstrap(BootstrapArgs),
    /// Run a storage node: hold shards for the mesh until stopped (SIGINT/SIGTERM)
    Service(ServiceArgs),
    /// This repository's mesh identity: peer id and listen addresses
    Id(IdArgs),
    /// Peers of the mesh, with role, connection state and round-trip time
    Peers(PeersArgs),
    /// Reachable storage peers, their latency and space, and the availability of the
    /// catalog's chunks
    Health(HealthArgs),
    /// The routing table (and, with --depth, the neighbourhoods of the peers in it)
    Network(NetworkArgs),
    /// Walk the DHT to find every peer reachable from here
    Discover(DiscoverArgs),
    /// Measure throughput to storage peers with a real transfer
    Bandwidth(BandwidthArgs),
    /// Which peer holds which shard of each chunk of a file, and whether each chunk is
    /// at full strength
    Distribution(DistributionArgs),
}

/// How a listing is printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// Listen on this TCP and UDP (QUIC) port on all interfaces
    #[arg(long, value_name = "N", conflicts_with = "listen")]
    pub port: Option<u16>,
    /// Listen on this multiaddr (repeatable) [default: config mesh.listen]
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Stop after this many seconds [default: run until SIGINT/SIGTERM]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

#[derive(Args, Debug)]
pub struct ServiceArgs {
    /// Listen on this multiaddr (repeatable) [default: config mesh.listen]
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Stop after this many seconds [default: run until SIGINT/SIGTERM]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Hold at most this many bytes of shards, e.g. 10GB [default: config mesh.capacity]
    #[arg(long, value_name = "SIZE")]
    pub capacity: Option<ByteSize>,
    /// Directory for held shards [default: REPO/node-shards]
    #[arg(long, value_name = "DIR", hide = true)]
    pub shards_dir: Option<PathBuf>,
    /// TEST ONLY: return corrupted bytes for every shard read. Refused unless
    /// DATAMESH_TEST_FAULTS=1 is set; exists so tests can prove readers route around a
    /// lying peer.
    #[arg(long, hide = true)]
    pub corrupt_replies: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// Also ask each storage peer for its space figures and measure its latency
    #[arg(long)]
    pub detailed: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Check again every --interval seconds until interrupted
    #[arg(long)]
    pub continuous: bool,
    /// Seconds between checks with --continuous
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub interval: u64,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct NetworkArgs {
    /// 1: this node's routing table; 2 and more: also look up the neighbourhood of
    /// every peer found at the previous depth
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub depth: u32,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// Seconds to spend walking the DHT
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub timeout: u64,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BandwidthArgs {
    /// Peer id to test [default: every storage peer, one after the other]
    #[arg(long, value_name = "PEER_ID")]
    pub test_peer: Option<String>,
    /// Seconds of transfer per peer
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub duration: u64,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DistributionArgs {
    /// Name of the file in the repository (or #N, the key `info` shows)
    #[arg(long, value_name = "NAME")]
    pub file_key: std::ffi::OsString,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}
