//! The read path: verified chunks, and whole files streamed in bounded memory.
//!
//! # Model
//!
//! [`Engine::read_chunk`] returns a [`VerifiedChunk`]: from the cache, or rebuilt from
//! the catalog's record (inline bytes, or any `k` shards via [`super::fetch`]), opened
//! (decrypted, keyed hash checked against the ChunkId) and cached. Shards found bad on
//! the way are rebuilt and written back, and the catalog learns their new holders
//! (repair on read). A chunk that cannot be rebuilt is an error of kind
//! [`ErrorKind::Unavailable`] (too few shards) or [`ErrorKind::Corrupt`] (the bytes
//! decoded but failed the ChunkId check): never wrong bytes.
//!
//! [`Engine::read_extents`] streams a file's chunks in order with up to
//! `parallel_chunks` fetched ahead, so a 10 GiB file needs a few chunks of memory.
//! Each chunk is fetched by its own spawned task: a future merely buffered in the
//! stream only makes progress while the consumer polls it, so fetches would stall while
//! the consumer writes the previous chunk out, and all of them would share one worker
//! thread. Spawned, they run on every worker and keep going in between polls. Dropping
//! the stream aborts the tasks still running, so nothing outlives a cancelled read.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::stream::BoxStream;
use lru::LruCache;
use tokio::sync::OnceCell;

use super::fetch::{self, FetchPolicy, StripeRef};
use super::{Engine, blocking};
use crate::catalog::{ChunkData, ChunkRef};
use crate::crypto::chunk::{self as sealing, VerifiedChunk};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::ChunkId;

/// Whether a read goes through the chunk cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    /// Look up and fill the cache (random access, the mount).
    Fill,
    /// Neither: a one-pass stream (`datamesh get`) would only evict useful entries.
    Bypass,
}

impl Engine {
    /// The verified plaintext of chunk `id`, through the cache. See the module docs.
    pub async fn read_chunk(&self, id: ChunkId) -> Result<VerifiedChunk> {
        self.read_chunk_with(id, CacheUse::Fill).await
    }

    /// The verified plaintext of chunk `id`.
    pub async fn read_chunk_with(&self, id: ChunkId, cache: CacheUse) -> Result<VerifiedChunk> {
        if cache == CacheUse::Fill
            && let Some(hit) = self.inner.cache.get(&id)
        {
            return Ok(hit);
        }
        let record = self
            .with_catalog(move |c| Ok(c.chunk(&id)?))
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "chunk {} is referenced but has no record in the catalog",
                        id.short()
                    ),
                )
            })?;
        let sealed = match record.data {
            ChunkData::Inline(bytes) => bytes,
            ChunkData::Sharded { k, m, shards } => {
                let stripe = StripeRef::from_record(k, m, record.sealed_len, &shards)
                    .map_err(|e| e.context(format!("chunk {}", id.short())))?;
                let fetched = fetch::fetch_stripe(self.store(), &stripe, self.settings().fetch)
                    .await
                    .map_err(|e| e.context(format!("chunk {}", id.short())))?;
                if !fetched.rebuilt.is_empty() {
                    self.repair(id, &stripe, fetched.rebuilt).await;
                }
                fetched.sealed
            }
        };
        let keys = self.inner.keys.clone();
        let chunk = blocking(move || Ok(sealing::open_vec(&keys, &id, sealed)?)).await?;
        if cache == CacheUse::Fill {
            self.inner.cache.insert(chunk.clone());
        }
        Ok(chunk)
    }

    /// Fetches chunk `id` with every shard verified, rebuilding and writing back the bad
    /// ones; returns how many were repaired. Inline chunks are opened and checked.
    pub async fn scrub_chunk(&self, id: ChunkId) -> Result<u64> {
        let record = self
            .with_catalog(move |c| Ok(c.chunk(&id)?))
            .await?
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("chunk {} is gone", id.short()))
            })?;
        let (sealed, repaired) = match record.data {
            ChunkData::Inline(bytes) => (bytes, 0),
            ChunkData::Sharded { k, m, shards } => {
                let stripe = StripeRef::from_record(k, m, record.sealed_len, &shards)?;
                let policy = FetchPolicy {
                    fetch_all: true,
                    ..self.settings().fetch
                };
                let fetched = fetch::fetch_stripe(self.store(), &stripe, policy).await?;
                let n = fetched.rebuilt.len() as u64;
                if n > 0 {
                    self.repair(id, &stripe, fetched.rebuilt).await;
                }
                (fetched.sealed, n)
            }
        };
        let keys = self.inner.keys.clone();
        blocking(move || Ok(sealing::open_vec(&keys, &id, sealed)?)).await?;
        Ok(repaired)
    }

    /// Writes rebuilt shards back and records their holders. Failures are logged, not
    /// returned: the read itself succeeded, and the next read will try again.
    async fn repair(
        &self,
        id: ChunkId,
        stripe: &StripeRef,
        rebuilt: Vec<(usize, crate::store::Shard)>,
    ) {
        match fetch::write_back(self.store(), stripe, &rebuilt).await {
            Ok(placed) => {
                let n = placed.len();
                let updates: Vec<_> = placed
                    .into_iter()
                    .filter_map(|(i, holder)| stripe.shards.get(i).map(|(sid, _)| (*sid, holder)))
                    .collect();
                match self
                    .with_catalog(move |c| {
                        for (sid, holder) in &updates {
                            c.set_holder(sid, holder)?;
                        }
                        Ok(())
                    })
                    .await
                {
                    Ok(()) => {
                        tracing::info!(chunk = %id.short(), shards = n, "repaired shards on read")
                    }
                    Err(e) => {
                        tracing::warn!(chunk = %id.short(), "repaired shards but could not record holders: {e}")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(chunk = %id.short(), "could not write repaired shards back: {e}")
            }
        }
    }

    /// The chunks of `extents`, in order, fetched up to `parallel_chunks` ahead.
    ///
    /// A chunk that recurs within a short distance (the zero chunks of a sparse file, a
    /// repeated block) is fetched once: the stream keeps the last `2 × parallel_chunks`
    /// chunks it fetched, whatever `cache` says, so memory stays bounded.
    pub fn read_extents(
        &self,
        extents: Vec<ChunkRef>,
        cache: CacheUse,
    ) -> BoxStream<'static, Result<(ChunkRef, VerifiedChunk)>> {
        let engine = self.clone();
        let par = self.settings().parallel_chunks.max(1);
        let recent: Arc<Mutex<LruCache<ChunkId, Arc<OnceCell<VerifiedChunk>>>>> =
            Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(2 * par).expect("2 * par >= 2"),
            )));
        futures::stream::iter(extents)
            .map(move |extent| {
                let engine = engine.clone();
                let recent = recent.clone();
                Task::spawn(async move {
                    let cell = recent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(extent.chunk, Default::default)
                        .clone();
                    let chunk = cell
                        .get_or_try_init(|| engine.read_chunk_with(extent.chunk, cache))
                        .await?
                        .clone();
                    if (chunk.len() as u64) < extent.len {
                        return Err(Error::new(
                            ErrorKind::Corrupt,
                            format!(
                                "chunk {} is {} bytes but the file expects {}",
                                extent.chunk.short(),
                                chunk.len(),
                                extent.len
                            ),
                        ));
                    }
                    Ok((extent, chunk))
                })
            })
            .buffered(par)
            .boxed()
    }
}

/// A spawned task that is aborted when dropped, and whose loss (a panic, an abort) is
/// reported as an error instead of propagating.
struct Task<T>(tokio::task::JoinHandle<Result<T>>);

impl<T: Send + 'static> Task<T> {
    fn spawn(fut: impl Future<Output = Result<T>> + Send + 'static) -> Self {
        Task(tokio::spawn(fut))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(Error::new(
                    ErrorKind::Internal,
                    format!("chunk fetch task failed: {e}"),
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn dropping_a_task_aborts_it() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let task = Task::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        drop(task);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert!(
            !finished.load(Ordering::SeqCst),
            "the task ran on after its drop"
        );
    }

    #[tokio::test]
    async fn a_panicking_task_is_an_internal_error() {
        let task: Task<()> = Task::spawn(async { panic!("boom") });
        let err = task.await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_task_returns_its_value() {
        assert_eq!(Task::spawn(async { Ok(7u32) }).await.unwrap(), 7);
    }
}
