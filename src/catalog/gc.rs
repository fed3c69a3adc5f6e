//! Garbage collection: dead chunks out of the catalog, dead shards off the holders.
//!
//! A chunk is *dead* when no version references it (refcount 0) and no upload in flight
//! pins it. Every transaction that can make a chunk dead — dropping versions, freeing a
//! node, ending or reaping an upload — ends with [`sweep`], which deletes dead chunks and
//! moves their shards to the GC queue. Inline chunks have no shards and simply vanish.
//! So outside a transaction no dead chunk exists, and a chunk the catalog lists is one
//! some version or upload needs.
//!
//! Deleting shards from holders is the engine's job, outside any transaction:
//! [`Catalog::gc_batch`] hands out queued shards, the engine deletes them from the store
//! and confirms with [`Catalog::gc_done`]. A shard id in the queue is referenced by
//! nothing and can never be referenced again (ids are per-upload), so deleting it is
//! always safe; deletion is idempotent, so a crash between delete and confirm only means
//! it is deleted again next time, and two processes collecting at once do no harm.

use rusqlite::{Connection, params};

use super::sql::{clamp, get_holder, get_u64, now_ns};
use super::{Catalog, Result};
use crate::ids::ShardId;
use crate::store::Holder;

/// A shard to delete from its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadShard {
    /// The shard.
    pub shard: ShardId,
    /// Where it was stored (or intended to be).
    pub holder: Holder,
}

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Dead chunks deleted.
    pub chunks: u64,
    /// Their shards, queued.
    pub shards: u64,
}

/// The condition of a dead chunk row `c`.
const DEAD: &str = "c.refcount = 0 AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.chunk = c.id)";

impl Catalog {
    /// Up to `limit` queued dead shards, oldest first. Delete each from its holder, then
    /// confirm with [`Catalog::gc_done`].
    pub fn gc_batch(&self, limit: usize) -> Result<Vec<DeadShard>> {
        self.read("listing dead shards", |db| {
            let mut stmt = db.prepare_cached(
                "SELECT shard, holder FROM gc_queue ORDER BY queued, shard LIMIT ?1",
            )?;
            let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
            let rows = stmt.query_map([limit], |r| {
                Ok(DeadShard {
                    shard: r.get(0)?,
                    holder: get_holder(r, 1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Confirms that `shards` were deleted from their holders; returns how many were
    /// still queued.
    pub fn gc_done(&self, shards: &[ShardId]) -> Result<u64> {
        self.write("confirming deleted shards", |db| {
            let mut stmt = db.prepare_cached("DELETE FROM gc_queue WHERE shard = ?1")?;
            let mut done = 0u64;
            for shard in shards {
                done += u64::try_from(stmt.execute([shard])?).unwrap_or(0);
            }
            Ok(done)
        })
    }

    /// How many dead shards wait for deletion.
    pub fn gc_pending(&self) -> Result<u64> {
        self.read("counting dead shards", |db| {
            Ok(db.query_row("SELECT count(*) FROM gc_queue", [], |r| get_u64(r, 0))?)
        })
    }
}

/// Deletes every dead chunk and queues its shards (see the module docs). Cheap: only
/// chunks with refcount 0 are looked at (a partial index), and outside transactions those
/// are only the ones pinned by uploads in flight.
pub(crate) fn sweep(db: &Connection) -> Result<Swept> {
    let shards = db
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO gc_queue (shard, holder, queued)
             SELECT s.id, s.holder, ?1 FROM chunks c JOIN shards s ON s.chunk = c.id WHERE {DEAD}"
        ))?
        .execute(params![now_ns()])?;
    db.prepare_cached(&format!(
        "DELETE FROM shards WHERE chunk IN (SELECT c.id FROM chunks c WHERE {DEAD})"
    ))?
    .execute([])?;
    let chunks = db
        .prepare_cached(&format!(
            "DELETE FROM chunks WHERE id IN (SELECT c.id FROM chunks c WHERE {DEAD})"
        ))?
        .execute([])?;
    Ok(Swept {
        chunks: u64::try_from(chunks).unwrap_or(u64::MAX),
        shards: u64::try_from(shards).unwrap_or(u64::MAX),
    })
}

/// Queues shards that no chunk references (intents of an ended upload, redundant shards
/// of a lost race) for deletion.
pub(crate) fn queue(db: &Connection, shards: &[(ShardId, Holder)]) -> Result<u64> {
    let mut stmt = db.prepare_cached(
        "INSERT OR IGNORE INTO gc_queue (shard, holder, queued) VALUES (?1, ?2, ?3)",
    )?;
    let now = now_ns();
    let mut queued = 0u64;
    for (shard, holder) in shards {
        queued += u64::try_from(stmt.execute(params![shard, holder.as_str(), now])?).unwrap_or(0);
    }
    Ok(queued)
}
