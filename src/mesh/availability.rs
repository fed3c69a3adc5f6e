//! Where a file's shards are and whether its chunks are at full strength
//! (`datamesh distribution`), and how much of the catalog is readable given which
//! holders answer (`datamesh health`).
//!
//! # Definitions
//!
//! * A shard is **present** when its recorded holder answers "has" with yes.
//! * A chunk is at **full strength** when all `k + m` shards are present on `k + m`
//!   distinct holders: any `m` holders may then vanish.
//! * A chunk is **readable** when at least `k` shards are present.
//!
//! Shards recorded at the holder `local` are asked of this repository's local store;
//! every other holder is a peer id asked over the mesh. Catalog reads run on the
//! blocking pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::catalog::{Catalog, ChunkData, Ino};
use crate::engine::blocking;
use crate::error::Result;
use crate::ids::ChunkId;
use crate::store::local::LocalStore;
use crate::store::{Holder, ShardStore};

use super::store::MeshStore;

/// Shards asked about at once.
const CONCURRENT_CHECKS: usize = 32;

/// One shard of a chunk.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardPlacement {
    /// Position in the stripe.
    pub index: u8,
    /// Shard id (hex).
    pub shard: String,
    /// Recorded holder.
    pub holder: String,
    /// Whether the holder has it (`None`: it could not be asked).
    pub present: Option<bool>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// One chunk of a file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChunkPlacement {
    /// Chunk id (hex).
    pub chunk: String,
    /// Offset in the file.
    pub offset: u64,
    /// Bytes of the file in it.
    pub len: u64,
    /// Kept inside the catalog (no shards).
    pub inline: bool,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Its shards.
    pub shards: Vec<ShardPlacement>,
    /// Distinct holders of present shards.
    pub distinct_holders: usize,
    /// Present shards.
    pub present: usize,
    /// All `k + m` present on distinct holders.
    pub full_strength: bool,
    /// At least `k` present.
    pub readable: bool,
}

/// Where to ask about shards.
pub struct Stores<'a> {
    /// This repository's local store, for holder `local`.
    pub local: Option<&'a LocalStore>,
    /// The mesh, for peer holders.
    pub mesh: Option<&'a MeshStore>,
}

impl Stores<'_> {
    async fn has(&self, shard: &crate::ids::ShardId, holder: &Holder) -> Result<bool> {
        let store: &dyn ShardStore = if holder.as_str() == Holder::LOCAL {
            match self.local {
                Some(l) => l,
                None => return Err(no_store("the local store")),
            }
        } else {
            match self.mesh {
                Some(m) => m,
                None => return Err(no_store("the mesh (pass --bootstrap)")),
            }
        };
        Ok(store.has(shard, holder).await?)
    }
}

fn no_store(what: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Unavailable,
        format!("{what} is not available to check this shard"),
    )
}

/// The placement of every chunk of the current version of file `ino`, with each
/// shard's presence checked at its holder.
pub async fn distribution(
    catalog: Arc<Catalog>,
    ino: Ino,
    stores: &Stores<'_>,
) -> Result<Vec<ChunkPlacement>> {
    let (refs, records) = blocking(move || {
        let content = catalog.current_content(ino)?;
        let ids: Vec<ChunkId> = content.chunks.iter().map(|c| c.chunk).collect();
        let records = catalog.chunks(&ids)?;
        Ok((content.chunks, records))
    })
    .await?;
    let mut out = Vec::with_capacity(refs.len());
    for (r, record) in refs.iter().zip(records) {
        let mut placement = ChunkPlacement {
            chunk: r.chunk.to_hex(),
            offset: r.offset,
            len: r.len,
            inline: false,
            k: 0,
            m: 0,
            shards: Vec::new(),
            distinct_holders: 0,
            present: 0,
            full_strength: false,
            readable: false,
        };
        match record.map(|c| c.data) {
            None => {}
            Some(ChunkData::Inline(_)) => {
                placement.inline = true;
                placement.full_strength = true;
                placement.readable = true;
            }
            Some(ChunkData::Sharded { k, m, shards }) => {
                placement.k = k;
                placement.m = m;
                let checks = futures::stream::iter(shards.into_iter().map(|s| async move {
                    let answer = stores.has(&s.id, &s.holder).await;
                    ShardPlacement {
                        index: s.index,
                        shard: s.id.to_hex(),
                        holder: s.holder.to_string(),
                        present: answer.as_ref().ok().copied(),
                        error: answer.err().map(|e| e.to_string()),
                    }
                }));
                use futures::StreamExt;
                let mut shards: Vec<ShardPlacement> =
                    checks.buffer_unordered(CONCURRENT_CHECKS).collect().await;
                shards.sort_by_key(|s| s.index);
                let present: Vec<&ShardPlacement> =
                    shards.iter().filter(|s| s.present == Some(true)).collect();
                let holders: HashSet<&str> = present.iter().map(|s| s.holder.as_str()).collect();
                placement.present = present.len();
                placement.distinct_holders = holders.len();
                let total = usize::from(k) + usize::from(m);
                placement.full_strength = present.len() == total && holders.len() == total;
                placement.readable = present.len() >= usize::from(k);
                placement.shards = shards;
            }
        }
        out.push(placement);
    }
    Ok(out)
}

/// How much of the catalog is readable given which holders answer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Availability {
    /// Holders recorded in the catalog.
    pub holders: usize,
    /// Of which answered.
    pub holders_reachable: usize,
    /// Sharded chunks with a shard on an unreachable holder.
    pub chunks_degraded: u64,
    /// Sharded chunks with fewer than `k` shards on reachable holders.
    pub chunks_unreadable: u64,
    /// Shards recorded on unreachable holders.
    pub shards_unreachable: u64,
}

/// Counts chunks hit by the unreachable holders (holders not in `reachable`; the
/// holder `local` always counts as reachable). Only shards on unreachable holders are
/// read from the catalog, page by page.
pub async fn availability(
    catalog: Arc<Catalog>,
    reachable: HashSet<String>,
) -> Result<Availability> {
    blocking(move || {
        let holders = catalog.holders()?;
        let mut report = Availability {
            holders: holders.len(),
            ..Availability::default()
        };
        let mut lost: HashMap<ChunkId, u64> = HashMap::new();
        for h in &holders {
            if h.holder == Holder::LOCAL || reachable.contains(&h.holder) {
                report.holders_reachable += 1;
                continue;
            }
            let holder = Holder(h.holder.clone());
            let mut after = None;
            loop {
                let page = catalog.shards_on(&holder, after.as_ref(), 1000)?;
                let Some(last) = page.last() else { break };
                after = Some(last.1.id);
                for (chunk, _) in &page {
                    *lost.entry(*chunk).or_default() += 1;
                    report.shards_unreachable += 1;
                }
            }
        }
        report.chunks_degraded = lost.len() as u64;
        for (chunk, n) in lost {
            if let Some(record) = catalog.chunk(&chunk)?
                && let ChunkData::Sharded { k, shards, .. } = record.data
                && (shards.len() as u64).saturating_sub(n) < u64::from(k)
            {
                report.chunks_unreadable += 1;
            }
        }
        Ok(report)
    })
    .await
}
