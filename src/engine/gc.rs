//! Garbage collection: deleting the shards of chunks nothing references any more.
//!
//! The catalog decides what is garbage, in the same transaction that drops the last
//! reference (see docs/design/catalog.md); this module only carries out the deletions:
//! take a batch of dead shards from the catalog's queue, delete them from the store, and
//! tell the catalog they are gone. Deleting is idempotent, so a crash between the two
//! steps repeats a delete, nothing worse. Because every upload writes shards under its
//! own salt, a dead shard id is never referenced by anything else: deleting it cannot
//! hurt a concurrent upload of the same content.

use std::sync::Arc;

use futures::StreamExt;

use super::{Engine, blocking};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::store::DynStore;

/// Dead shards deleted per catalog round trip.
const BATCH: usize = 512;
/// Deletions in flight at once.
const PARALLEL: usize = 16;

/// What a collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Shards deleted from the store.
    pub shards_deleted: u64,
    /// Shards whose deletion failed (left queued for the next run).
    pub shards_failed: u64,
}

/// Deletes every queued dead shard. Failures stay queued for the next run. Needs no
/// keys: `rm` collects without the passphrase.
pub async fn collect(catalog: &Arc<Catalog>, store: &DynStore) -> Result<GcReport> {
    let mut report = GcReport::default();
    loop {
        let c = catalog.clone();
        let batch = blocking(move || Ok(c.gc_batch(BATCH)?)).await?;
        if batch.is_empty() {
            return Ok(report);
        }
        let results: Vec<_> = futures::stream::iter(batch)
            .map(|dead| {
                let store = store.clone();
                async move {
                    let r = store.delete(&dead.shard, &dead.holder).await;
                    (dead, r)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut done = Vec::new();
        let mut failed = 0u64;
        for (dead, r) in results {
            match r {
                Ok(()) => done.push(dead.shard),
                Err(e) => {
                    tracing::warn!(shard = %dead.shard.short(), "could not delete a dead shard: {e}");
                    failed += 1;
                }
            }
        }
        report.shards_deleted += done.len() as u64;
        report.shards_failed += failed;
        let c = catalog.clone();
        blocking(move || Ok(c.gc_done(&done)?)).await?;
        if failed > 0 {
            // The failures are still queued and would come back first: leave them for
            // the next run instead of spinning on a holder that is down.
            return Ok(report);
        }
    }
}

/// Reaps uploads of processes that died (their orphans go to the GC queue), then
/// collects garbage. Run when a repository is opened for writing.
pub async fn recover(catalog: &Arc<Catalog>, store: &DynStore) -> Result<GcReport> {
    let c = catalog.clone();
    blocking(move || Ok(c.reap_stale_uploads(&crate::catalog::uploads::ReapPolicy::default())?))
        .await?;
    collect(catalog, store).await
}

impl Engine {
    /// [`collect`] over this engine's catalog and store.
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        collect(self.catalog(), self.store()).await
    }

    /// [`recover`] over this engine's catalog and store.
    pub async fn recover(&self) -> Result<GcReport> {
        recover(self.catalog(), self.store()).await
    }
}
