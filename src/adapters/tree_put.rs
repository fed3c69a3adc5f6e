//! The batched path of `put -r`: many small files stored in a few catalog transactions.
//!
//! # What a batch does
//!
//! A file no larger than the chunker's minimum chunk is exactly one chunk (FastCDC never
//! cuts before the minimum), so it needs no chunker: it is read whole, named (keyed
//! BLAKE3) and sealed here, on the blocking pool, with the same keys and format as the
//! engine's write path, so dedup with files stored either way is exact. Then:
//!
//! 1. one transaction registers an upload token and pins the chunks that exist
//!    ([`Catalog::begin_upload_pinning`]);
//! 2. new chunks whose sealed form exceeds `storage.inline_max` are coded into shards,
//!    announced in one transaction ([`Catalog::intend_shards`]), written durably by the
//!    store (one `put_shards` per chunk, several at once, so placement is per chunk as
//!    always), and committed pinned by the token in one transaction
//!    ([`Catalog::commit_chunks`]);
//! 3. one transaction inserts the new inline chunks and commits every file's version,
//!    each file in its own savepoint, and ends the token ([`Catalog::commit_files`]).
//!
//! Each step is a `synchronous=FULL` transaction, so when the batch returns everything in
//! it is durable. A kill -9 between steps leaves a token for the reaper (see
//! `catalog/uploads.rs`): the catalog never references a shard the store did not
//! acknowledge, and a rerun stores the files again, reusing the chunks step 2 committed.
//!
//! Memory is bounded by the batch the agent hands over (its byte cap) plus one file: a
//! file that grew past the limit since the walk is not read further and goes through the
//! ordinary streaming upload instead.
//!
//! # Threads
//!
//! Reading, hashing, sealing and coding run in `spawn_blocking` tasks, every catalog call
//! through [`Engine::with_catalog`]; the reactor only awaits.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use datamesh_agent::{LocalFile, RepositoryError};
use futures::StreamExt;
use rand::RngCore;

use super::agent::{DIR_MODE, EngineRepository, owner, port_error};
use crate::catalog::{
    ChunkCommit, ChunkData, ChunkRecord, ChunkRef, FileCommit, NewNodes, ShardRecord, UploadToken,
};
use crate::crypto::chunk::{ChunkKeys, PlainChunk, seal};
use crate::engine::{Engine, blocking};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::ChunkId;
use crate::store::{Holder, Shard};
use crate::stripe;

/// Chunks of one batch written to the store at once.
const PARALLEL_CHUNKS: usize = 8;

/// A file of the batch, read and named.
enum Read1 {
    /// Its content is chunk `id` (`None`: empty) of `len` bytes.
    Chunk { id: Option<ChunkId>, len: u64 },
    /// It grew past the limit: store it the streaming way.
    TooBig,
    /// It could not be read.
    Failed(String),
}

/// A new chunk, sealed: inline, or shards still to be written.
enum Sealed {
    Inline(ChunkRecord),
    Sharded(ChunkRecord, Vec<Shard>),
}

/// Stores `files` (each at most `limit` bytes when walked); one result per file: the new
/// plaintext bytes, or why it failed.
pub(super) async fn store_batch(
    repo: &EngineRepository,
    keys: &ChunkKeys,
    limit: u64,
    files: &[LocalFile],
    tags: &[String],
) -> Vec<Result<u64, RepositoryError>> {
    let engine = repo.engine();
    let sources: Vec<_> = files.iter().map(|f| f.source.clone()).collect();
    let k = keys.clone();
    let read = blocking(move || Ok(read_all(&k, &sources, limit))).await;
    let (reads, plains) = match read {
        Ok(r) => r,
        Err(e) => return vec![Err(port_error(e)); files.len()],
    };
    let mut out: Vec<Option<Result<u64, RepositoryError>>> = vec![None; files.len()];
    let mut fallback = Vec::new();
    for (i, r) in reads.iter().enumerate() {
        match r {
            Read1::TooBig => fallback.push(i),
            Read1::Failed(why) => {
                out[i] = Some(Err(RepositoryError {
                    message: why.clone(),
                    fatal: false,
                }));
            }
            Read1::Chunk { .. } => {}
        }
    }
    let todo: Vec<usize> = (0..files.len())
        .filter(|&i| matches!(reads[i], Read1::Chunk { .. }))
        .collect();
    if !todo.is_empty() {
        match commit(engine, keys, files, &reads, plains, &todo, tags).await {
            Ok(results) => {
                for (i, r) in todo.iter().zip(results) {
                    out[*i] = Some(r);
                }
            }
            Err(e) => {
                let err = port_error(e);
                for i in &todo {
                    out[*i] = Some(Err(err.clone()));
                }
            }
        }
    }
    for i in fallback {
        let f = &files[i];
        out[i] = Some(
            datamesh_agent::Repository::store_file(repo, &f.path, &f.source, &f.meta, tags).await,
        );
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(RepositoryError {
                    message: "a batched file got no result".into(),
                    fatal: true,
                })
            })
        })
        .collect()
}

/// Reads and names every file; the distinct chunks, in first-use order.
fn read_all(
    keys: &ChunkKeys,
    sources: &[std::path::PathBuf],
    limit: u64,
) -> (Vec<Read1>, Vec<PlainChunk>) {
    let mut plains: Vec<PlainChunk> = Vec::new();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let reads = sources
        .iter()
        .map(|p| {
            let mut data = Vec::new();
            let read = std::fs::File::open(p)
                .and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut data));
            if let Err(e) = read {
                return Read1::Failed(format!("cannot read {}: {e}", p.display()));
            }
            if data.len() as u64 > limit {
                return Read1::TooBig;
            }
            let len = data.len() as u64;
            if data.is_empty() {
                return Read1::Chunk { id: None, len };
            }
            let plain = PlainChunk::new(keys, data);
            let id = *plain.id();
            if seen.insert(id) {
                plains.push(plain);
            }
            Read1::Chunk { id: Some(id), len }
        })
        .collect();
    (reads, plains)
}

/// Steps 1-3 of the module docs for the readable files `todo`; fails as a whole only
/// when the batch's upload cannot go on (its token is ended then).
#[allow(clippy::too_many_arguments)]
async fn commit(
    engine: &Engine,
    keys: &ChunkKeys,
    files: &[LocalFile],
    reads: &[Read1],
    plains: Vec<PlainChunk>,
    todo: &[usize],
    tags: &[String],
) -> Result<Vec<Result<u64, RepositoryError>>> {
    let ids: Vec<ChunkId> = plains.iter().map(|p| *p.id()).collect();
    let (token, exists) = engine
        .with_catalog(move |c| Ok(c.begin_upload_pinning(&ids)?))
        .await?;
    let result = upload_and_commit(
        engine, keys, &token, files, reads, plains, exists, todo, tags,
    )
    .await;
    if result.is_err() {
        // Release the pins and queue the intents now rather than at the next reaping.
        let _ = engine
            .with_catalog(move |c| Ok(c.end_upload(&token)?))
            .await;
    }
    let _ = engine.collect_garbage().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn upload_and_commit(
    engine: &Engine,
    keys: &ChunkKeys,
    token: &UploadToken,
    files: &[LocalFile],
    reads: &[Read1],
    plains: Vec<PlainChunk>,
    exists: Vec<bool>,
    todo: &[usize],
    tags: &[String],
) -> Result<Vec<Result<u64, RepositoryError>>> {
    let fresh: Vec<PlainChunk> = plains
        .into_iter()
        .zip(exists)
        .filter(|(_, e)| !e)
        .map(|(p, _)| p)
        .collect();
    let (k, layout, inline_max) = (
        keys.clone(),
        engine.settings().layout,
        engine.settings().inline_max,
    );
    let sealed = blocking(move || {
        fresh
            .into_iter()
            .map(|p| seal_chunk(&k, p, layout, inline_max))
            .collect::<Result<Vec<_>>>()
    })
    .await?;
    let mut inline = Vec::new();
    let mut sharded = Vec::new();
    for s in sealed {
        match s {
            Sealed::Inline(r) => inline.push(r),
            Sealed::Sharded(r, shards) => sharded.push((r, shards)),
        }
    }
    // Chunks whose shards could not be stored, and why.
    let mut lost: HashMap<ChunkId, Error> = HashMap::new();
    let mut new_ids: HashSet<ChunkId> = inline.iter().map(|r| r.id).collect();
    if !sharded.is_empty() {
        let intents: Vec<_> = sharded
            .iter()
            .flat_map(|(_, shards)| shards.iter().map(|s| (s.id, Holder::local())))
            .collect();
        let t = *token;
        engine
            .with_catalog(move |c| Ok(c.intend_shards(&t, &intents)?))
            .await?;
        let placed: Vec<(ChunkRecord, Result<Vec<Holder>>)> = futures::stream::iter(sharded)
            .map(|(record, shards)| async move {
                let r = match engine.store().put_shards(&shards, &[]).await {
                    Ok(h) if h.len() == shards.len() => Ok(h),
                    Ok(_) => Err(Error::new(
                        ErrorKind::Internal,
                        "store returned the wrong number of holders",
                    )),
                    Err(e) => {
                        let ids: Vec<_> = shards.iter().map(|s| s.id).collect();
                        let t = *token;
                        let _ = engine
                            .with_catalog(move |c| Ok(c.abandon_shards(&t, &ids)?))
                            .await;
                        Err(Error::from(e).context(format!("storing chunk {}", record.id.short())))
                    }
                };
                (record, r)
            })
            .buffer_unordered(PARALLEL_CHUNKS)
            .collect()
            .await;
        let mut records = Vec::new();
        for (mut record, r) in placed {
            match r {
                Ok(holders) => {
                    if let ChunkData::Sharded { shards, .. } = &mut record.data {
                        for (s, h) in shards.iter_mut().zip(holders) {
                            s.holder = h;
                        }
                    }
                    records.push(record);
                }
                Err(e) => {
                    lost.insert(record.id, e);
                }
            }
        }
        let t = *token;
        let committed: Vec<ChunkId> = records.iter().map(|r| r.id).collect();
        let outcomes = engine
            .with_catalog(move |c| Ok(c.commit_chunks(&t, &records)?))
            .await?;
        new_ids.extend(
            committed
                .into_iter()
                .zip(outcomes)
                .filter(|(_, o)| *o == ChunkCommit::Stored)
                .map(|(id, _)| id),
        );
    }

    // Files whose chunk is lost fail here; the others are committed.
    let mut results: Vec<Option<Result<u64, RepositoryError>>> = vec![None; todo.len()];
    let mut commits = Vec::new();
    let mut committed_at = Vec::new();
    let mut counted: HashSet<ChunkId> = HashSet::new();
    let mut new_bytes = Vec::new();
    for (slot, &i) in todo.iter().enumerate() {
        let Read1::Chunk { id, len } = &reads[i] else {
            continue;
        };
        if let Some(e) = id.and_then(|id| lost.get(&id)) {
            results[slot] = Some(Err(port_error(Error::new(e.kind(), e.to_string()))));
            continue;
        }
        let f = &files[i];
        let chunks = id
            .map(|chunk| {
                vec![ChunkRef {
                    offset: 0,
                    len: *len,
                    chunk,
                }]
            })
            .unwrap_or_default();
        // New bytes are counted once, for the first file using a new chunk.
        let new = match id {
            Some(id) if new_ids.contains(id) && counted.insert(*id) => *len,
            _ => 0,
        };
        new_bytes.push(new);
        committed_at.push(slot);
        commits.push(FileCommit {
            path: f.path.clone(),
            mode: f.meta.mode,
            mtime: f.meta.mtime_ns,
            size: *len,
            chunks,
        });
    }
    let (t, tags) = (*token, tags.to_vec());
    let (uid, gid) = owner();
    let new = NewNodes {
        dir_mode: DIR_MODE,
        uid,
        gid,
    };
    let done = engine
        .with_catalog(move |c| Ok(c.commit_files(&t, &inline, &commits, &tags, new)?))
        .await?;
    for ((slot, r), n) in committed_at.into_iter().zip(done).zip(new_bytes) {
        results[slot] = Some(r.map(|_| n).map_err(|e| port_error(e.into())));
    }
    Ok(results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(RepositoryError {
                    message: "a batched file got no result".into(),
                    fatal: true,
                })
            })
        })
        .collect())
}

/// Seals one chunk (the engine's format: inline up to `inline_max` sealed bytes, else
/// Reed-Solomon shards under a random salt; holders filled in once placed).
fn seal_chunk(
    keys: &ChunkKeys,
    plain: PlainChunk,
    layout: stripe::Layout,
    inline_max: usize,
) -> Result<Sealed> {
    let id = *plain.id();
    let plain_len = plain.len() as u64;
    let sealed = seal(keys, plain)?;
    let sealed_len = sealed.len() as u64;
    if sealed.len() <= inline_max {
        return Ok(Sealed::Inline(ChunkRecord {
            id,
            plain_len,
            sealed_len,
            codec: stripe::CODEC_RS8,
            data: ChunkData::Inline(sealed),
        }));
    }
    let mut salt = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut salt);
    let shards = stripe::encode(&sealed, layout, salt)?;
    let records = shards
        .iter()
        .enumerate()
        .map(|(i, s)| ShardRecord {
            index: i as u8,
            id: s.id,
            holder: Holder::local(),
            len: s.bytes.len() as u64,
        })
        .collect();
    Ok(Sealed::Sharded(
        ChunkRecord {
            id,
            plain_len,
            sealed_len,
            codec: stripe::CODEC_RS8,
            data: ChunkData::Sharded {
                k: layout.k,
                m: layout.m,
                shards: records,
            },
        },
        shards,
    ))
}
