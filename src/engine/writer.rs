//! The write path: a byte stream in, chunks durable in the store and pinned in the
//! catalog out; then a version committed to a file.
//!
//! # Model
//!
//! [`Engine::upload`] turns a reader into an [`Upload`]: the ordered chunk extents of the
//! content, every chunk durable (inline in the catalog, or its shards acknowledged by the
//! store) and *pinned* by the upload's token so garbage collection leaves it alone until
//! the content is committed. [`Engine::commit`] then makes the upload a file's new
//! version in one catalog transaction and releases the pins. Splitting the two lets the
//! CLI create the file entry at commit time and the FUSE mount commit staged files to
//! inodes.
//!
//! # Crash safety (see docs/design/catalog.md for the argument)
//!
//! Shards are recorded as *intended* by the token before they are written, and the
//! chunk row that references them is committed only after the store acknowledged them.
//! A kill -9 at any point leaves either intended shards (reaped as orphans once the
//! process is gone) or pinned chunks (reused by a rerun through dedup, released when the
//! token is reaped). The catalog never points at shards that were not acknowledged.
//!
//! # Concurrency and memory
//!
//! The chunker runs on the blocking pool and hands chunks over a channel of
//! `parallel_chunks` slots; up to `parallel_chunks` chunks are hashed, sealed, coded and
//! stored at once (order kept by `buffered`). Identical chunks inside one upload are
//! processed once: later copies wait for the first.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use rand::RngCore;
use tokio::sync::{OnceCell, mpsc};

use super::{Engine, blocking};
use crate::catalog::{
    ChunkCommit, ChunkData, ChunkRecord, ChunkRef, Ino, ShardRecord, UploadToken, VersionInfo,
};
use crate::chunker::{Chunker, RawChunk};
use crate::crypto::chunk::{self as sealing, PlainChunk};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::ChunkId;
use crate::store::Holder;
use crate::stripe;

/// Content uploaded and pinned, not yet committed to a file.
pub struct Upload {
    /// The upload's token (pins its chunks).
    pub token: UploadToken,
    /// The content's chunks, in order.
    pub extents: Vec<ChunkRef>,
    /// Total length.
    pub size: u64,
    /// What the upload did.
    pub stats: UploadStats,
}

/// Counters of one upload.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UploadStats {
    /// Chunks in the content.
    pub chunks: u64,
    /// Chunks that were new (sealed and stored).
    pub new_chunks: u64,
    /// Plaintext bytes of new chunks.
    pub new_bytes: u64,
    /// Plaintext bytes that were already stored (deduplicated).
    pub dedup_bytes: u64,
    /// Bytes written to the store (shards, headers included) or inline.
    pub stored_bytes: u64,
    /// Fault tolerance achieved by the worst-placed new chunk: how many of its holders
    /// may be lost (the fullest first) with the chunk still readable. `None` when no
    /// chunk was sharded.
    pub min_tolerance: Option<u64>,
}

/// A shared counter a caller can poll to draw progress.
pub type Progress = Arc<AtomicU64>;

/// One chunk's outcome inside an upload.
#[derive(Clone, Copy)]
struct Stored {
    new: bool,
    stored_bytes: u64,
    tolerance: Option<u64>,
}

impl Engine {
    /// Chunks, seals, codes and stores everything `source` yields, pinning each chunk
    /// under a new upload token. `progress`, if given, counts plaintext bytes done.
    pub async fn upload<R>(&self, source: R, progress: Option<Progress>) -> Result<Upload>
    where
        R: Read + Send + 'static,
    {
        let token = self.with_catalog(|c| Ok(c.begin_upload()?)).await?;
        match self.upload_with(token, source, progress).await {
            Ok(upload) => Ok(upload),
            Err(err) => {
                // Release what we pinned and queue what we wrote; a failure here is left
                // to the stale-upload reaper.
                let _ = self.with_catalog(move |c| Ok(c.end_upload(&token)?)).await;
                let _ = self.collect_garbage().await;
                Err(err)
            }
        }
    }

    async fn upload_with<R>(
        &self,
        token: UploadToken,
        source: R,
        progress: Option<Progress>,
    ) -> Result<Upload>
    where
        R: Read + Send + 'static,
    {
        let par = self.settings().parallel_chunks.max(1);
        let (tx, mut rx) = mpsc::channel::<RawChunk>(par);
        let sizes = self.settings().chunk_sizes;
        let seed = self.inner.chunk_seed;
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            for chunk in Chunker::new(source, sizes, seed) {
                let chunk = chunk.map_err(|e| Error::from(e).context("reading the input"))?;
                if tx.blocking_send(chunk).is_err() {
                    break; // the consumer failed and stopped listening
                }
            }
            Ok(())
        });

        let inflight: Arc<Mutex<HashMap<ChunkId, Arc<OnceCell<Stored>>>>> = Default::default();
        let chunks = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut results = chunks
            .map(|raw| {
                let inflight = inflight.clone();
                let progress = progress.clone();
                async move {
                    let len = raw.data.len() as u64;
                    let offset = raw.offset;
                    let (id, stored) = self.store_chunk(&token, raw, &inflight).await?;
                    if let Some(p) = &progress {
                        p.fetch_add(len, Ordering::Relaxed);
                    }
                    Ok::<_, Error>((
                        ChunkRef {
                            offset,
                            len,
                            chunk: id,
                        },
                        stored,
                    ))
                }
            })
            .buffered(par);

        let mut extents = Vec::new();
        let mut stats = UploadStats::default();
        let mut size = 0u64;
        while let Some(result) = results.next().await {
            let (extent, stored) = result?;
            stats.chunks += 1;
            if stored.new {
                stats.new_chunks += 1;
                stats.new_bytes += extent.len;
                stats.stored_bytes += stored.stored_bytes;
            } else {
                stats.dedup_bytes += extent.len;
            }
            if let Some(t) = stored.tolerance {
                stats.min_tolerance = Some(stats.min_tolerance.map_or(t, |m| m.min(t)));
            }
            size += extent.len;
            extents.push(extent);
        }
        drop(results);
        reader
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("chunker task failed: {e}")))??;
        Ok(Upload {
            token,
            extents,
            size,
            stats,
        })
    }

    /// Commits `upload` as the new current version of file `ino` with `mtime`, ending
    /// the upload. With `replace`, the previous current version is dropped in the same
    /// transaction (the mount's saves); otherwise it is kept (`put`'s versions).
    pub async fn commit(
        &self,
        upload: Upload,
        ino: Ino,
        mtime: i64,
        replace: bool,
    ) -> Result<VersionInfo> {
        let Upload {
            token,
            extents,
            size,
            ..
        } = upload;
        let result = self
            .with_catalog(move |c| {
                let r = if replace {
                    c.replace_version(ino, size, mtime, &extents, Some(&token))
                } else {
                    c.commit_version(ino, size, mtime, &extents, Some(&token))
                };
                if r.is_err() {
                    // Leave nothing pinned by a commit that will not happen.
                    let _ = c.end_upload(&token);
                }
                Ok(r?)
            })
            .await;
        let _ = self.collect_garbage().await;
        result
    }

    /// Stores one chunk unless it is already stored; returns its id.
    async fn store_chunk(
        &self,
        token: &UploadToken,
        raw: RawChunk,
        inflight: &Mutex<HashMap<ChunkId, Arc<OnceCell<Stored>>>>,
    ) -> Result<(ChunkId, Stored)> {
        let keys = self.inner.keys.clone();
        let plain = blocking(move || Ok(PlainChunk::new(&keys, raw.data))).await?;
        let id = *plain.id();
        let cell = {
            let mut map = inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id).or_default().clone()
        };
        let mut first = false;
        let stored = cell
            .get_or_try_init(|| {
                first = true;
                self.store_new_chunk(token, plain)
            })
            .await?;
        // A repeat of a chunk processed earlier in this upload stores nothing new.
        let stored = if first {
            *stored
        } else {
            Stored {
                new: false,
                stored_bytes: 0,
                tolerance: stored.tolerance,
            }
        };
        Ok((id, stored))
    }

    async fn store_new_chunk(&self, token: &UploadToken, plain: PlainChunk) -> Result<Stored> {
        let id = *plain.id();
        let t = *token;
        let exists = self
            .with_catalog(move |c| Ok(c.pin_existing(&t, &[id])?))
            .await?;
        if exists.first().copied().unwrap_or(false) {
            return Ok(Stored {
                new: false,
                stored_bytes: 0,
                tolerance: None,
            });
        }
        let plain_len = plain.len() as u64;
        let keys = self.inner.keys.clone();
        let layout = self.settings().layout;
        let inline_max = self.settings().inline_max;
        let (sealed_len, coded) = blocking(move || {
            let sealed = sealing::seal(&keys, plain)?;
            let sealed_len = sealed.len();
            if sealed_len <= inline_max {
                return Ok((sealed_len, Coded::Inline(sealed)));
            }
            let mut salt = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut salt);
            Ok((
                sealed_len,
                Coded::Shards(stripe::encode(&sealed, layout, salt)?),
            ))
        })
        .await?;

        let (data, stored_bytes, tolerance) = match coded {
            Coded::Inline(sealed) => {
                let n = sealed.len() as u64;
                (ChunkData::Inline(sealed), n, None)
            }
            Coded::Shards(shards) => {
                // Holders are unknown until the store has placed the shards; a local
                // store has one. The intent only needs the ids: a crash before the
                // chunk commit leaves them to be deleted wherever they landed.
                let intended: Vec<_> = shards.iter().map(|s| (s.id, Holder::local())).collect();
                let t = *token;
                self.with_catalog(move |c| Ok(c.intend_shards(&t, &intended)?))
                    .await?;
                let placed = match self.store().put_shards(&shards, &[]).await {
                    Ok(placed) if placed.len() == shards.len() => placed,
                    Ok(_) => {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            "store returned the wrong number of holders",
                        ));
                    }
                    Err(e) => {
                        let ids: Vec<_> = shards.iter().map(|s| s.id).collect();
                        let t = *token;
                        let _ = self
                            .with_catalog(move |c| Ok(c.abandon_shards(&t, &ids)?))
                            .await;
                        return Err(Error::from(e).context(format!("storing chunk {}", id.short())));
                    }
                };
                let tolerance = tolerance(&placed, layout.k as usize);
                let bytes: u64 = shards.iter().map(|s| s.bytes.len() as u64).sum();
                let records = shards
                    .iter()
                    .zip(placed)
                    .enumerate()
                    .map(|(i, (s, holder))| ShardRecord {
                        index: i as u8,
                        id: s.id,
                        holder,
                        len: s.bytes.len() as u64,
                    })
                    .collect();
                (
                    ChunkData::Sharded {
                        k: layout.k,
                        m: layout.m,
                        shards: records,
                    },
                    bytes,
                    Some(tolerance),
                )
            }
        };
        let record = ChunkRecord {
            id,
            plain_len,
            sealed_len: sealed_len as u64,
            codec: stripe::CODEC_RS8,
            data,
        };
        let t = *token;
        let outcome = self
            .with_catalog(move |c| Ok(c.commit_chunk(&t, &record)?))
            .await?;
        if outcome == ChunkCommit::Redundant {
            // Another process stored the same chunk first; the catalog queued ours for
            // deletion.
            return Ok(Stored {
                new: false,
                stored_bytes: 0,
                tolerance,
            });
        }
        Ok(Stored {
            new: true,
            stored_bytes,
            tolerance,
        })
    }
}

/// How many holders of a stripe may be lost, the fullest first, with at least `k` shards
/// left. A single holder (the embedded store) tolerates no holder loss.
pub fn tolerance(placed: &[Holder], k: usize) -> u64 {
    let mut counts: HashMap<&Holder, usize> = HashMap::new();
    for h in placed {
        *counts.entry(h).or_default() += 1;
    }
    let mut sizes: Vec<usize> = counts.into_values().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut left = placed.len();
    let mut lost = 0u64;
    for n in sizes {
        if left - n < k {
            break;
        }
        left -= n;
        lost += 1;
    }
    lost
}

enum Coded {
    Inline(Vec<u8>),
    Shards(Vec<crate::store::Shard>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holders(names: &[&str]) -> Vec<Holder> {
        names.iter().map(|n| Holder((*n).to_owned())).collect()
    }

    #[test]
    fn tolerance_counts_losable_holders() {
        assert_eq!(tolerance(&holders(&["a", "b", "c", "d", "e", "f"]), 4), 2);
        assert_eq!(tolerance(&holders(&["a"; 6]), 4), 0);
        // 3 peers, 2 shards each: losing one leaves 4.
        assert_eq!(tolerance(&holders(&["a", "a", "b", "b", "c", "c"]), 4), 1);
        // uneven: a holds 3; losing a leaves 3 < 4, so nothing may be lost.
        assert_eq!(tolerance(&holders(&["a", "a", "a", "b", "c", "d"]), 4), 0);
    }
}
