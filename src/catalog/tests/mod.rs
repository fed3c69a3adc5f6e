//! Tests of the catalog: unit tests per area, a proptest against an in-memory model, and
//! crash and concurrency tests with several connections and several processes.
//!
//! Every test ends by checking [`Catalog::verify`], so each one also exercises the
//! invariants of the module docs after its operations.

mod concurrency;
mod content;
mod model;
mod namespace;
mod open;
mod queries;
mod uploads;

use std::collections::BTreeSet;

use tempfile::TempDir;

use super::*;
use crate::ids::{ChunkId, ShardId};
use crate::store::Holder;

/// A new catalog in a temporary directory (kept alive by the returned guard).
pub(super) fn fresh() -> (TempDir, Catalog) {
    let dir = tempfile::tempdir().expect("a temporary directory for the test catalog");
    let cat = Catalog::create(dir.path().join("catalog.db")).expect("creating a catalog");
    (dir, cat)
}

/// Panics with the list of problems unless every invariant holds.
#[track_caller]
pub(super) fn assert_consistent(cat: &Catalog) {
    let report = cat.verify(true).expect("verify runs");
    assert!(
        report.is_ok(),
        "catalog invariants broken:\n{}",
        report.problems.join("\n")
    );
}

/// A deterministic chunk id for pool entry `n`.
pub(super) fn chunk_id(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

/// A fresh random shard id, as a salted upload would produce.
pub(super) fn shard_id() -> ShardId {
    ShardId(rand::random())
}

/// Plaintext length of pool chunk `n`.
pub(super) fn plain_len(n: u8) -> u64 {
    100 + u64::from(n)
}

/// Pool chunks with `n % 3 == 0` are inline, the others are 2+1 stripes.
pub(super) fn is_inline(n: u8) -> bool {
    n.is_multiple_of(3)
}

/// The record of pool chunk `n` with freshly made shards (none for inline chunks).
pub(super) fn record(n: u8) -> ChunkRecord {
    let data = if is_inline(n) {
        ChunkData::Inline(vec![n; 120])
    } else {
        ChunkData::Sharded {
            k: 2,
            m: 1,
            shards: (0..3)
                .map(|index| ShardRecord {
                    index,
                    id: shard_id(),
                    holder: Holder(format!("peer-{index}")),
                    len: 64,
                })
                .collect(),
        }
    };
    ChunkRecord {
        id: chunk_id(n),
        plain_len: plain_len(n),
        sealed_len: 120,
        codec: 1,
        data,
    }
}

/// The shard ids and holders of a record.
pub(super) fn shards(record: &ChunkRecord) -> Vec<(ShardId, Holder)> {
    match &record.data {
        ChunkData::Inline(_) => Vec::new(),
        ChunkData::Sharded { shards, .. } => {
            shards.iter().map(|s| (s.id, s.holder.clone())).collect()
        }
    }
}

/// References laying pool chunks `pool` end to end, and the resulting size.
pub(super) fn layout(pool: &[u8]) -> (Vec<ChunkRef>, u64) {
    let mut offset = 0;
    let refs = pool
        .iter()
        .map(|&n| {
            let r = ChunkRef {
                offset,
                len: plain_len(n),
                chunk: chunk_id(n),
            };
            offset += r.len;
            r
        })
        .collect();
    (refs, offset)
}

/// Shards a put wrote, for accounting in the tests.
#[derive(Default, Debug)]
pub(super) struct Written {
    /// Every shard announced (all of them end up live or queued).
    pub intended: BTreeSet<ShardId>,
}

/// The whole upload protocol for a new version of `ino` made of pool chunks `pool`:
/// begin, pin what exists, intend and commit the rest, commit the version.
pub(super) fn put(cat: &Catalog, ino: Ino, pool: &[u8], written: &mut Written) -> VersionInfo {
    let token = cat.begin_upload().expect("begin_upload");
    upload_chunks(cat, &token, pool, written);
    let (refs, size) = layout(pool);
    cat.commit_version(ino, size, 1_000, &refs, Some(&token))
        .expect("commit_version")
}

/// Steps 2 and 3 of the protocol for `pool` under `token`.
pub(super) fn upload_chunks(
    cat: &Catalog,
    token: &UploadToken,
    pool: &[u8],
    written: &mut Written,
) {
    let mut distinct: Vec<u8> = pool.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let ids: Vec<ChunkId> = distinct.iter().map(|&n| chunk_id(n)).collect();
    let exists = cat.pin_existing(token, &ids).expect("pin_existing");
    for (&n, exists) in distinct.iter().zip(exists) {
        if exists {
            continue;
        }
        let rec = record(n);
        let shards = shards(&rec);
        cat.intend_shards(token, &shards).expect("intend_shards");
        written.intended.extend(shards.iter().map(|(id, _)| *id));
        cat.commit_chunk(token, &rec).expect("commit_chunk");
    }
}

/// A process that has exited: its pid with our start time, so it cannot be alive.
pub(super) fn dead_process() -> ProcessId {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("the tests need `true` on PATH");
    let pid = child.id();
    child.wait().expect("waiting for `true`");
    ProcessId {
        pid,
        start: Some(ProcessId::current().start.unwrap_or(0).wrapping_add(1)),
    }
}

/// Raw figures straight from the tables, for accounting checks.
pub(super) fn live_shards(cat: &Catalog) -> BTreeSet<ShardId> {
    ids(cat, "SELECT id FROM shards")
}

pub(super) fn queued_shards(cat: &Catalog) -> BTreeSet<ShardId> {
    ids(cat, "SELECT shard FROM gc_queue")
}

pub(super) fn intended_shards(cat: &Catalog) -> BTreeSet<ShardId> {
    ids(cat, "SELECT shard FROM intents")
}

fn ids(cat: &Catalog, sql: &str) -> BTreeSet<ShardId> {
    let conn = cat.lock();
    let mut stmt = conn.prepare(sql).expect("test query");
    stmt.query_map([], |r| r.get(0))
        .expect("test query")
        .collect::<rusqlite::Result<_>>()
        .expect("test query rows")
}

/// The refcount of a chunk as stored, if the chunk exists.
pub(super) fn refcount(cat: &Catalog, id: &ChunkId) -> Option<u64> {
    use rusqlite::OptionalExtension;
    let conn = cat.lock();
    conn.query_row("SELECT refcount FROM chunks WHERE id = ?1", [id], |r| {
        sql::get_u64(r, 0)
    })
    .optional()
    .expect("test query")
}
