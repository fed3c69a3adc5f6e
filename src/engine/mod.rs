//! The engine: the write and read paths over a catalog and a shard store.
//!
//! # Write path ([`writer`])
//!
//! bytes → content-defined chunks → `ChunkId` (keyed BLAKE3) → dedup check against the
//! catalog → AES-256-GCM seal → small sealed chunks inline in the catalog, others
//! Reed-Solomon `k+m` shards → shards durable in the store → chunk row committed (pinned
//! by the upload) → the file version and its chunk list committed in one transaction.
//!
//! # Read path ([`reader`])
//!
//! chunk cache hit → done. Miss: inline bytes from the catalog, or any `k` shards fetched
//! in parallel and verified ([`fetch`]) → decode → open (decrypt + check the ChunkId) →
//! a [`VerifiedChunk`], cached. Shards found bad are rebuilt and written back.
//!
//! # Threads
//!
//! Hashing, sealing, coding and every SQLite call run on tokio's blocking pool; the
//! reactor threads only move buffers between tasks. One put or get processes up to
//! `storage.parallel_chunks` chunks at once, so memory is bounded by a few times that
//! many maximum-size chunks whatever the file size.

pub mod cache;
pub mod fetch;
pub mod gc;
pub mod reader;
pub mod scrub;
pub mod writer;

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::chunker::ChunkSizes;
use crate::config::Config;
use crate::crypto::chunk::{ChunkKeys, VerifiedChunk};
use crate::error::{Error, ErrorKind, Result};
use crate::store::DynStore;
use crate::stripe::Layout;

pub use cache::{CacheStats, ChunkCache};
pub use fetch::FetchPolicy;

/// Settings the engine runs with, taken from the config.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Erasure layout for new chunks.
    pub layout: Layout,
    /// Chunk size bounds.
    pub chunk_sizes: ChunkSizes,
    /// Largest sealed chunk kept inline in the catalog.
    pub inline_max: usize,
    /// Chunks processed at once per put or get.
    pub parallel_chunks: usize,
    /// Shard request timing.
    pub fetch: FetchPolicy,
    /// Whether the store spreads shards over several holders (the mesh), so that the
    /// fault tolerance achieved by placement is worth reporting. `Engine::new` also
    /// sets it when the store says it spreads ([`crate::store::ShardStore::spreads`]).
    pub placement_matters: bool,
}

impl EngineSettings {
    /// Settings from a validated config.
    pub fn from_config(config: &Config) -> Result<Self> {
        Ok(EngineSettings {
            layout: config.layout()?,
            chunk_sizes: config.chunk_sizes()?,
            inline_max: usize::try_from(config.storage.inline_max.0).unwrap_or(usize::MAX),
            parallel_chunks: config.parallel_chunks(),
            fetch: FetchPolicy::default(),
            placement_matters: !config.mesh.bootstrap.is_empty(),
        })
    }
}

/// The engine. Cheap to clone; every clone shares the catalog, store and cache.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    keys: ChunkKeys,
    /// Seed of the chunker's gear table, derived from the owner's keys.
    chunk_seed: u64,
    catalog: Arc<Catalog>,
    store: DynStore,
    cache: ChunkCache,
    settings: EngineSettings,
}

impl Engine {
    /// An engine over `catalog` and `store` for the owner of `keys`.
    pub fn new(
        keys: ChunkKeys,
        chunk_seed: u64,
        catalog: Arc<Catalog>,
        store: DynStore,
        cache_bytes: u64,
        mut settings: EngineSettings,
    ) -> Self {
        settings.placement_matters |= store.spreads();
        Engine {
            inner: Arc::new(Inner {
                keys,
                chunk_seed,
                catalog,
                store,
                cache: ChunkCache::new(cache_bytes),
                settings,
            }),
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// The shard store.
    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Runs a catalog operation on the blocking pool.
    pub async fn with_catalog<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Catalog) -> Result<T> + Send + 'static,
    {
        let catalog = self.inner.catalog.clone();
        blocking(move || f(&catalog)).await
    }
}

/// Runs CPU or SQLite work on the blocking pool, turning a lost task into an error.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Error::new(
            ErrorKind::Internal,
            format!("worker task failed: {e}"),
        ))
    })
}

/// Keeps `VerifiedChunk` in the public vocabulary of the engine.
pub type Chunk = VerifiedChunk;
