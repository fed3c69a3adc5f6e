//! Checking a repository end to end: `datamesh check`.
//!
//! # Levels
//!
//! * **Catalog**: the catalog's own invariants ([`Catalog::verify`]): refcounts match
//!   version references, no dead chunk outside the GC queue, references intact.
//! * **Presence** (default): every shard the catalog records is asked for at its holder
//!   (`has`). Missing shards are counted per chunk, so the report says which chunks are
//!   degraded (still readable) and which are lost (fewer than `k` left).
//! * **Data** (`--read-data`, needs the keys): every sharded chunk is fetched with *all*
//!   its shards, each verified against its ShardId, decoded and opened (ChunkId check);
//!   bad shards are rebuilt and written back. This is a scrub: afterwards every chunk
//!   that could be rebuilt is at full strength again.
//!
//! Nothing here changes what the catalog says except the holders of repaired shards.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use super::{Engine, blocking};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::ids::ChunkId;
use crate::store::{DynStore, Holder};

/// Shards asked about at once.
const PARALLEL: usize = 32;
/// Shards listed per catalog round trip.
const PAGE: usize = 1024;

/// What a check found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Catalog invariant violations, one line each.
    pub catalog_problems: Vec<String>,
    /// Shards asked for.
    pub shards_checked: u64,
    /// Shards their holder does not have.
    pub shards_missing: u64,
    /// Chunks missing some shards but still readable.
    pub chunks_degraded: Vec<String>,
    /// Chunks with fewer than `k` shards left (or failing to decode with `--read-data`).
    pub chunks_lost: Vec<String>,
    /// Chunks read and verified (`--read-data`).
    pub chunks_read: u64,
    /// Shards rebuilt and written back (`--read-data`).
    pub shards_repaired: u64,
}

impl CheckReport {
    /// Whether everything is intact.
    pub fn is_ok(&self) -> bool {
        self.catalog_problems.is_empty()
            && self.shards_missing == 0
            && self.chunks_lost.is_empty()
            && self.chunks_degraded.is_empty()
    }
}

/// Per chunk: (k, shards present, shards recorded).
type Tally = BTreeMap<ChunkId, (u8, u64, u64)>;

/// Catalog and presence checks; needs no keys.
pub async fn check_presence(
    catalog: &Arc<Catalog>,
    store: &DynStore,
) -> Result<(CheckReport, Vec<ChunkId>)> {
    let c = catalog.clone();
    let integrity = blocking(move || Ok(c.verify(false)?)).await?;
    let mut report = CheckReport {
        catalog_problems: integrity.problems,
        ..Default::default()
    };
    let c = catalog.clone();
    let holders = blocking(move || Ok(c.holders()?)).await?;
    let mut tally: Tally = BTreeMap::new();
    for usage in holders {
        let holder = Holder(usage.holder);
        let mut after = None;
        loop {
            let (c, h) = (catalog.clone(), holder.clone());
            let page = blocking(move || Ok(c.shards_on(&h, after.as_ref(), PAGE)?)).await?;
            let Some((_, last)) = page.last() else { break };
            after = Some(last.id);
            let results: Vec<_> = futures::stream::iter(page)
                .map(|(chunk, shard)| {
                    let store = store.clone();
                    async move {
                        let has = store.has(&shard.id, &shard.holder).await.unwrap_or(false);
                        (chunk, has)
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
            for (chunk, has) in results {
                report.shards_checked += 1;
                let entry = tally.entry(chunk).or_insert((0, 0, 0));
                entry.2 += 1;
                if has {
                    entry.1 += 1;
                } else {
                    report.shards_missing += 1;
                }
            }
        }
    }
    // k of each chunk with missing shards, to tell degraded from lost.
    let suspects: Vec<ChunkId> = tally
        .iter()
        .filter(|(_, t)| t.1 < t.2)
        .map(|(id, _)| *id)
        .collect();
    let c = catalog.clone();
    let ids = suspects.clone();
    let records = blocking(move || Ok(c.chunks(&ids)?)).await?;
    for (id, record) in suspects.iter().zip(records) {
        let (_, present, recorded) = tally[id];
        let k = match record.map(|r| r.data) {
            Some(crate::catalog::ChunkData::Sharded { k, .. }) => k as u64,
            _ => 0,
        };
        let line = format!(
            "chunk {}: {present} of {recorded} shards present, {k} needed",
            id.short()
        );
        if present < k {
            report.chunks_lost.push(line);
        } else {
            report.chunks_degraded.push(line);
        }
    }
    Ok((report, tally.into_keys().collect()))
}

impl Engine {
    /// Full check: catalog, presence, and with `read_data` a scrub of every sharded
    /// chunk (see the module docs).
    pub async fn check(&self, read_data: bool) -> Result<CheckReport> {
        let (mut report, chunks) = check_presence(self.catalog(), self.store()).await?;
        if !read_data {
            return Ok(report);
        }
        report.chunks_degraded.clear();
        report.chunks_lost.clear();
        let results: Vec<_> = futures::stream::iter(chunks)
            .map(|id| async move { (id, self.scrub_chunk(id).await) })
            .buffer_unordered(self.settings().parallel_chunks.max(1))
            .collect()
            .await;
        for (id, r) in results {
            match r {
                Ok(repaired) => {
                    report.chunks_read += 1;
                    report.shards_repaired += repaired;
                }
                Err(e) => report
                    .chunks_lost
                    .push(format!("chunk {}: {e}", id.short())),
            }
        }
        // Presence once more: what is still missing after the repairs.
        let (after, _) = check_presence(self.catalog(), self.store()).await?;
        report.shards_missing = after.shards_missing;
        report.chunks_degraded = after.chunks_degraded;
        Ok(report)
    }
}
