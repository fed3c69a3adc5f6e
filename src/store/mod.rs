//! Shard stores: where the bytes of erasure-coded shards rest.
//!
//! The engine sees only the [`ShardStore`] trait. Implementations:
//!
//! * [`local::LocalStore`]: a directory on this machine (the embedded default).
//! * [`memory::MemoryStore`]: a map in memory, for tests and simulations.
//! * [`faulty::FaultyStore`]: a decorator that injects failures, corruption and latency
//!   into any other store, for tests.
//! * the mesh client (`crate::mesh`), which places shards on peers.
//! * [`routed::RoutedStore`]: a joined repository's store, putting to the mesh and
//!   reading each shard from where the catalog says it rests (local or a peer).
//!
//! # Model
//!
//! A store keeps opaque byte strings under their [`ShardId`]. It does not interpret or
//! verify them: the reader verifies every shard against its id (the id is the BLAKE3
//! hash of the bytes), so a store that returns wrong bytes is caught there, not trusted
//! here. A store may hold shards on several *holders* (peers); a [`Holder`] names one,
//! and the catalog records which holder took which shard so that reads go straight to
//! it. A single-holder store always answers [`Holder::local`].
//!
//! # Invariants
//!
//! * `put_shards` returns only when every shard is durable at its holder (fsync'd to
//!   disk, or acknowledged as such by a peer). A catalog commit that follows it may
//!   therefore point at the shards.
//! * The shards of one call go to pairwise distinct holders whenever the store has at
//!   least as many usable holders as shards; otherwise they are spread as evenly as
//!   possible and the caller learns that from the returned holders.
//! * Storing bytes under an id that already holds them is a no-op (content addressing).
//! * Errors never leave a partially written shard visible under its id.

pub mod faulty;
pub mod local;
pub mod memory;
pub mod routed;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, ErrorKind};
use crate::ids::ShardId;

/// One shard to store: its id and its complete bytes.
#[derive(Clone, Debug)]
pub struct Shard {
    /// BLAKE3 of `bytes`.
    pub id: ShardId,
    /// The encoded shard, header included.
    pub bytes: Bytes,
}

impl Shard {
    /// A shard whose id is computed from its bytes.
    pub fn new(bytes: Bytes) -> Self {
        Shard {
            id: ShardId::of(&bytes),
            bytes,
        }
    }
}

/// The holder of a shard: `local` for this machine's store, a peer id in the mesh.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder(pub String);

impl Holder {
    /// The name the local store answers for every shard.
    pub const LOCAL: &'static str = "local";

    /// This machine's own store.
    pub fn local() -> Self {
        Holder(Self::LOCAL.to_owned())
    }

    /// The holder's name as recorded in the catalog.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Holder({})", self.0)
    }
}

/// Space and content figures of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Number of shards held.
    pub shards: u64,
    /// Bytes of shard data held.
    pub bytes: u64,
    /// Bytes that may still be stored (free disk, or remaining capacity limit).
    pub available: u64,
    /// Holders that answered (1 for a local store).
    pub holders: u64,
}

/// Errors of shard stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The holder does not have the shard.
    #[error("shard {0} is not in the store")]
    NotFound(ShardId),
    /// The disk or capacity limit is full.
    #[error(
        "no space left to store shards in {where_}: free some space (or raise the capacity limit) and run the command again; nothing already stored was lost"
    )]
    NoSpace {
        /// Where: a directory or a peer.
        where_: String,
    },
    /// An I/O failure on a local file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A holder could not be reached or did not answer in time.
    #[error("holder {holder} is unreachable: {reason}")]
    Unreachable {
        /// Which holder.
        holder: String,
        /// Why.
        reason: String,
    },
    /// A holder refused the request.
    #[error("holder {holder} refused: {reason}")]
    Rejected {
        /// Which holder.
        holder: String,
        /// Why.
        reason: String,
    },
    /// Not enough usable holders to place the shards.
    #[error("cannot place shards: {0}")]
    NoHolders(String),
    /// An injected fault (tests only).
    #[error("injected fault: {0}")]
    Injected(String),
}

impl StoreError {
    /// The crate error kind of this store error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::NoSpace { .. } => ErrorKind::NoSpace,
            StoreError::Io { source, .. } => ErrorKind::of_io(source),
            StoreError::Unreachable { .. } => ErrorKind::Network,
            StoreError::Rejected { .. } => ErrorKind::Network,
            StoreError::NoHolders(_) => ErrorKind::Unavailable,
            StoreError::Injected(_) => ErrorKind::Io,
        }
    }

    /// Builds an I/O error, recognising a full disk.
    pub fn io(op: &'static str, path: impl fmt::Display, source: std::io::Error) -> Self {
        if ErrorKind::of_io(&source) == ErrorKind::NoSpace {
            StoreError::NoSpace {
                where_: path.to_string(),
            }
        } else {
            StoreError::Io {
                op,
                path: path.to_string(),
                source,
            }
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

/// Where shards rest. See the module docs for the contract.
#[async_trait]
pub trait ShardStore: Send + Sync + 'static {
    /// Stores `shards` durably, each on a distinct holder where possible, avoiding the
    /// holders in `exclude` (e.g. those that already hold other shards of the same
    /// stripe, during repair). Returns the holder of each shard, in order.
    async fn put_shards(
        &self,
        shards: &[Shard],
        exclude: &[Holder],
    ) -> Result<Vec<Holder>, StoreError>;

    /// The bytes stored under `id` at `holder` (unverified: the caller checks them).
    /// A store that can search for shards (the mesh) falls back to a lookup when the
    /// holder no longer has it.
    async fn get(&self, id: &ShardId, holder: &Holder) -> Result<Bytes, StoreError>;

    /// Removes the shard from `holder`. Removing a missing shard is not an error.
    async fn delete(&self, id: &ShardId, holder: &Holder) -> Result<(), StoreError>;

    /// Whether `holder` has the shard.
    async fn has(&self, id: &ShardId, holder: &Holder) -> Result<bool, StoreError>;

    /// Space and content figures.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// How many distinct holders a stripe can be spread over right now. A local store
    /// answers 1; the engine uses this to tell the user the fault tolerance achieved.
    async fn distinct_holders(&self) -> usize {
        1
    }

    /// Whether every byte string `get` returns for `holder` has already been checked to
    /// hash to the requested id (the mesh store checks, to route around lying peers).
    /// The engine then skips its own check of the same bytes; a store that answers
    /// `true` must never return unchecked bytes for that holder.
    fn verifies_reads(&self, _holder: &Holder) -> bool {
        false
    }

    /// Whether this store spreads shards over machines (the mesh), so that the fault
    /// tolerance its placement achieves is worth reporting to the user.
    fn spreads(&self) -> bool {
        false
    }
}

/// A shared, type-erased store.
pub type DynStore = Arc<dyn ShardStore>;
