//! [`ContentStore`] over the engine: layouts from the catalog, chunks through the
//! engine's verified cache, commits of staged files (see the module docs of
//! `adapters::mount` for the two commit paths).
//!
//! Invariants:
//! * `commit` returns one result per request, in order; a failure of one file (its
//!   upload, its transaction savepoint) leaves the others committed.
//! * Every result is `Ok` only once it is durable: the call ends with one fsync of the
//!   catalog's WAL, which also makes every namespace change before it durable. If that
//!   fsync fails, every result of the batch is that error (the mount keeps the files
//!   staged and retries).
//! * Staged files are read once, front to back, with holes skipped
//!   ([`crate::sparse::HoleReader`]); the committed size is what was read.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datamesh_mount::FsError;
use datamesh_mount::ports::{
    CommitRequest, CommitSource, Committed, ContentStore, Extent, FsResult, Ino, Layout, VersionId,
};
use futures::StreamExt;

use super::{MountBackend, blocking_now, cat, fs_error};
use crate::catalog::{self, ChunkData, ChunkRecord, InlineCommit, VersionInfo};
use crate::crypto::chunk::{PlainChunk, seal, sealed_len};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::ChunkId;

/// Large (engine-uploaded) files of one batch committed at once.
const PARALLEL_UPLOADS: usize = 4;

/// One chunk as an extent uses it: the chunk and how many of its bytes the extent
/// covers (all of them, unless a truncate cut it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountChunk {
    /// The chunk.
    pub id: ChunkId,
    /// Bytes of it the extent uses, from its start.
    pub len: u64,
}

fn committed(v: &VersionInfo) -> Committed {
    Committed {
        version: VersionId(v.seq),
        size: v.size,
    }
}

impl MountBackend {
    fn replace(&self) -> bool {
        !self.policy.keep_versions
    }

    /// Seals small files and commits them in one transaction.
    async fn commit_inline_batch(&self, files: Vec<(Ino, Bytes)>) -> Vec<FsResult<Committed>> {
        let n = files.len();
        let keys = self.keys.clone();
        let writer = self.writer.clone();
        let replace = self.replace();
        let job = tokio::task::spawn_blocking(move || -> Result<Vec<FsResult<Committed>>> {
            let mut failed: Vec<Option<FsError>> = Vec::with_capacity(files.len());
            let mut commits = Vec::with_capacity(files.len());
            for (ino, bytes) in &files {
                let chunk = if bytes.is_empty() {
                    Ok(None)
                } else {
                    let plain = PlainChunk::from_slice(&keys, bytes);
                    let id = *plain.id();
                    seal(&keys, plain).map(|s| {
                        Some(ChunkRecord {
                            id,
                            plain_len: bytes.len() as u64,
                            sealed_len: s.len() as u64,
                            codec: crate::stripe::CODEC_RS8,
                            data: ChunkData::Inline(s),
                        })
                    })
                };
                match chunk {
                    Ok(chunk) => {
                        failed.push(None);
                        commits.push(InlineCommit {
                            ino: catalog::Ino(*ino),
                            chunk,
                        });
                    }
                    Err(e) => failed.push(Some(fs_error(&Error::from(e)))),
                }
            }
            let mut done = writer.commit_inline(&commits, replace)?.into_iter();
            Ok(failed
                .into_iter()
                .map(|f| match f {
                    Some(err) => Err(err),
                    None => match done.next() {
                        Some(r) => r
                            .map(|v| committed(&v))
                            .map_err(|e| fs_error(&Error::from(e))),
                        None => Err(FsError::backend("small-file commit lost a result")),
                    },
                })
                .collect())
        });
        match job.await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => vec![Err(fs_error(&e)); n],
            Err(e) => vec![Err(FsError::backend(format!("commit task failed: {e}"))); n],
        }
    }

    /// Uploads one file through the engine and commits it, keeping the node's times.
    async fn commit_uploaded(&self, req: &CommitRequest) -> FsResult<Committed> {
        let reader: Box<dyn Read + Send> = match &req.source {
            CommitSource::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
            CommitSource::File(path) => {
                let file = blocking_now(|| {
                    std::fs::File::open(path).and_then(crate::sparse::HoleReader::new)
                })
                .map_err(|e| FsError::io("opening a staged file", e))?;
                Box::new(file)
            }
        };
        let upload = self
            .engine
            .upload(reader, None)
            .await
            .map_err(|e| fs_error(&e))?;
        let (ino, replace, writer) = (catalog::Ino(req.ino), self.replace(), self.writer.clone());
        let token = upload.token;
        let result = blocking_now(move || {
            let r = writer.commit_content(ino, upload.size, &upload.extents, Some(&token), replace);
            if r.is_err() {
                // Leave nothing pinned by a commit that did not happen.
                let _ = writer.end_upload(&token);
            }
            r
        });
        result
            .map(|v| committed(&v))
            .map_err(|e| fs_error(&Error::from(e)))
    }
}

#[async_trait]
impl ContentStore for MountBackend {
    type Chunk = MountChunk;

    async fn layout(&self, ino: Ino) -> FsResult<Arc<Layout<MountChunk>>> {
        let content = cat(|| self.reader.current_content(catalog::Ino(ino)))?;
        Ok(Arc::new(Layout {
            version: content.version.map(VersionId),
            size: content.size,
            extents: content
                .chunks
                .iter()
                .map(|r| Extent {
                    offset: r.offset,
                    len: r.len,
                    chunk: MountChunk {
                        id: r.chunk,
                        len: r.len,
                    },
                })
                .collect(),
        }))
    }

    async fn fetch(&self, chunk: &MountChunk) -> FsResult<Bytes> {
        let verified = self
            .engine
            .read_chunk(chunk.id)
            .await
            .map_err(|e| fs_error(&e))?;
        let data = verified.into_data();
        let len = usize::try_from(chunk.len).unwrap_or(usize::MAX);
        if data.len() < len {
            return Err(fs_error(&Error::new(
                ErrorKind::Corrupt,
                format!(
                    "chunk {} has {} bytes but the file uses {len}",
                    chunk.id.short(),
                    data.len()
                ),
            )));
        }
        Ok(data.slice(..len))
    }

    async fn commit(&self, batch: &[CommitRequest]) -> Vec<FsResult<Committed>> {
        let inline_max = self.engine.settings().inline_max;
        let mut results: Vec<Option<FsResult<Committed>>> = vec![None; batch.len()];
        let mut small = Vec::new();
        let mut small_at = Vec::new();
        let mut large = Vec::new();
        for (i, req) in batch.iter().enumerate() {
            match &req.source {
                CommitSource::Bytes(b) if sealed_len(b.len()) <= inline_max => {
                    small.push((req.ino, b.clone()));
                    small_at.push(i);
                }
                _ => large.push(i),
            }
        }
        let uploads = futures::stream::iter(large)
            .map(|i| async move { (i, self.commit_uploaded(&batch[i]).await) })
            .buffer_unordered(PARALLEL_UPLOADS)
            .collect::<Vec<_>>();
        let inline = async {
            if small.is_empty() {
                Vec::new()
            } else {
                self.commit_inline_batch(small).await
            }
        };
        let (uploaded, inlined) = futures::join!(uploads, inline);
        for (i, r) in uploaded {
            results[i] = Some(r);
        }
        for (i, r) in small_at.into_iter().zip(inlined) {
            results[i] = Some(r);
        }
        let durable = self.make_durable().map_err(|e| fs_error(&e));
        if results.iter().flatten().any(|r| r.is_ok()) {
            self.collect_garbage_soon();
        }
        results
            .into_iter()
            .map(|r| {
                let r = r.unwrap_or_else(|| Err(FsError::backend("commit produced no result")));
                match (&durable, r) {
                    (Err(e), Ok(_)) => Err(e.clone()),
                    (_, r) => r,
                }
            })
            .collect()
    }
}
