//! File content: versions, chunk references and chunk records.
//!
//! # Model
//!
//! A version of a file is its size and an ordered list of [`ChunkRef`]s. Reference `r`
//! says: bytes `[r.offset, r.offset + r.len)` of the file are the first `r.len` bytes
//! of chunk `r.chunk`. References are sorted, do not overlap and end within the size;
//! bytes no reference covers read as zeros (holes, e.g. after extending a file with
//! truncate). `r.len` is at most the chunk's plaintext length and is usually all of it;
//! it is less only where a truncate cut a chunk.
//!
//! Each commit creates version `seq` = 1, 2, 3, … of its file (never reused, even after
//! pruning) and makes it current. [`Catalog::replace_version`] does the same and drops
//! the previous current version in the same transaction (an editor saving a file again
//! need not leave one version per save). Old versions are kept until pruned.
//!
//! A chunk record ([`ChunkRecord`]) is the chunk's lengths, codec and either its sealed
//! bytes inline or its k + m shards with their holders. Its refcount counts version
//! references (one chunk used twice in a version counts twice). Refcounts change only in
//! the transactions that add or drop versions; a chunk left unreferenced and unpinned
//! moves to the GC queue in that same transaction (see [`uploads`](super::uploads)).
//!
//! # Committing
//!
//! A commit checks, in its transaction, that every referenced chunk exists. If some do
//! not (collected after an upload was abandoned, or never committed) it fails with
//! [`CatalogError::MissingChunks`] listing them and changes nothing; the engine uploads
//! those chunks again and retries.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::names::check_name;
use super::namespace::{self, Attr, NewNode, NodeKind, require, require_file};
use super::sql::{clamp, get_holder, get_u64, holder_sql, int, now_ns};
use super::uploads::{self, UploadToken};
use super::{Catalog, CatalogError, Ino, Result, gc};
use crate::ids::{ChunkId, ShardId};
use crate::store::Holder;

/// One reference of a version to a chunk (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    /// Where in the file the chunk's bytes start.
    pub offset: u64,
    /// How many of the chunk's bytes are used (its plaintext length, or less).
    pub len: u64,
    /// The chunk.
    pub chunk: ChunkId,
}

/// One shard of a chunk and where it rests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRecord {
    /// Position in the stripe, `0..k + m`.
    pub index: u8,
    /// The shard's id.
    pub id: ShardId,
    /// Who holds it.
    pub holder: Holder,
    /// Its length in bytes, header included.
    pub len: u64,
}

/// Where a chunk's sealed bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkData {
    /// Stored in the catalog (small chunks): the sealed bytes.
    Inline(Vec<u8>),
    /// Erasure-coded into `k + m` shards; any `k` rebuild it.
    Sharded {
        /// Data shards.
        k: u8,
        /// Parity shards.
        m: u8,
        /// The shards recorded, by index (at least `k`, at most `k + m`).
        shards: Vec<ShardRecord>,
    },
}

/// A chunk as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    /// The chunk's id.
    pub id: ChunkId,
    /// Plaintext length.
    pub plain_len: u64,
    /// Sealed (encrypted) length.
    pub sealed_len: u64,
    /// The stripe codec (see `crate::stripe`).
    pub codec: u8,
    /// Inline bytes or shards.
    pub data: ChunkData,
}

/// One version of a file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    /// The file.
    pub ino: Ino,
    /// Version number: 1, 2, 3, … per file.
    pub seq: u64,
    /// Size in bytes.
    pub size: u64,
    /// The file's mtime when this version was made, ns since the epoch.
    pub mtime: i64,
    /// When it was committed, ns since the epoch.
    pub committed: i64,
    /// Number of chunk references.
    pub chunks: u64,
    /// Whether it is the file's current version.
    pub current: bool,
}

/// A file's current content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// The file.
    pub ino: Ino,
    /// The current version's seq; `None` for an empty file.
    pub version: Option<u64>,
    /// The file's size.
    pub size: u64,
    /// The chunk references, in file order.
    pub chunks: Vec<ChunkRef>,
}

/// What a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Versions deleted.
    pub versions: u64,
    /// Chunks that lost their last reference (now gone; their shards queued for GC).
    pub chunks: u64,
    /// Shards queued for deletion.
    pub shards: u64,
}

impl Catalog {
    /// Commits a new version of file `ino` and makes it current (see the module docs).
    /// With `token`, the upload ends in the same transaction: its pins are released and
    /// any shards it intended but did not commit are queued for deletion.
    pub fn commit_version(
        &self,
        ino: Ino,
        size: u64,
        mtime: i64,
        chunks: &[ChunkRef],
        token: Option<&UploadToken>,
    ) -> Result<VersionInfo> {
        self.commit(ino, size, mtime, chunks, token, false)
    }

    /// Like [`Catalog::commit_version`], and drops the version that was current.
    pub fn replace_version(
        &self,
        ino: Ino,
        size: u64,
        mtime: i64,
        chunks: &[ChunkRef],
        token: Option<&UploadToken>,
    ) -> Result<VersionInfo> {
        self.commit(ino, size, mtime, chunks, token, true)
    }

    fn commit(
        &self,
        ino: Ino,
        size: u64,
        mtime: i64,
        chunks: &[ChunkRef],
        token: Option<&UploadToken>,
        replace: bool,
    ) -> Result<VersionInfo> {
        check_refs(ino, size, chunks)?;
        self.write("committing a version", |db| {
            let now = now_ns();
            let attr = require_file(db, ino)?;
            if let Some(token) = token {
                uploads::require_token(db, token, now)?;
            }
            check_chunks_exist(db, ino, chunks)?;
            let seq = insert_version(db, ino, size, mtime, chunks, now)?;
            if replace && let Some(old) = attr.version {
                drop_versions(db, ino, Some(&[old]))?;
            }
            if let Some(token) = token {
                uploads::finish(db, token, now)?;
            }
            gc::sweep(db)?;
            version_info(db, ino, seq)
        })
    }

    /// Makes old version `seq` of `ino` current again, as a new version with the same
    /// content (no data is copied).
    pub fn restore_version(&self, ino: Ino, seq: u64) -> Result<VersionInfo> {
        self.write("restoring a version", |db| {
            let now = now_ns();
            require_file(db, ino)?;
            let old = version_info(db, ino, seq)?;
            let refs = refs_of(db, ino, seq)?;
            let new = insert_version(db, ino, old.size, old.mtime, &refs, now)?;
            version_info(db, ino, new)
        })
    }

    /// The versions of `ino`, oldest first.
    pub fn versions(&self, ino: Ino) -> Result<Vec<VersionInfo>> {
        self.read("listing versions", |db| {
            require(db, ino)?;
            versions_of(db, ino)
        })
    }

    /// The chunk references of version `seq` of `ino`.
    pub fn version_content(&self, ino: Ino, seq: u64) -> Result<Vec<ChunkRef>> {
        self.read("reading a version", |db| {
            version_info(db, ino, seq)?;
            refs_of(db, ino, seq)
        })
    }

    /// The current content of file `ino`.
    pub fn current_content(&self, ino: Ino) -> Result<Content> {
        self.read("reading content", |db| {
            let attr = require_file(db, ino)?;
            let chunks = match attr.version {
                Some(seq) => refs_of(db, ino, seq)?,
                None => Vec::new(),
            };
            Ok(Content {
                ino,
                version: attr.version,
                size: attr.size,
                chunks,
            })
        })
    }

    /// Deletes all but the newest `keep_last` versions of `ino`; the current version is
    /// always kept.
    pub fn prune_versions(&self, ino: Ino, keep_last: u32) -> Result<PruneReport> {
        self.write("pruning versions", |db| {
            require(db, ino)?;
            prune(db, Some(ino), keep_last)
        })
    }

    /// [`Catalog::prune_versions`] for every file, in one transaction.
    pub fn prune_all(&self, keep_last: u32) -> Result<PruneReport> {
        self.write("pruning versions", |db| prune(db, None, keep_last))
    }

    /// Creates file `new_name` in `new_parent` with the current content of file `src`,
    /// sharing its chunks (no data is copied). Mode, owner and mtime are copied.
    pub fn duplicate(&self, src: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        check_name(new_name)?;
        self.write("duplicating a file", |db| {
            let now = now_ns();
            let from = require_file(db, src)?;
            let node = NewNode {
                kind: NodeKind::File,
                mode: from.mode,
                uid: from.uid,
                gid: from.gid,
                target: None,
            };
            let copy = namespace::insert_child(db, new_parent, new_name, &node, now)?;
            if let Some(seq) = from.version {
                let refs = refs_of(db, src, seq)?;
                insert_version(db, copy.ino, from.size, from.mtime, &refs, now)?;
            }
            require(db, copy.ino)
        })
    }

    /// The record of chunk `id`, if the catalog has it.
    pub fn chunk(&self, id: &ChunkId) -> Result<Option<ChunkRecord>> {
        self.read("reading a chunk record", |db| read_chunk(db, id))
    }

    /// The records of `ids` (in order; `None` where missing), from one snapshot.
    pub fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkRecord>>> {
        self.read("reading chunk records", |db| {
            ids.iter().map(|id| read_chunk(db, id)).collect()
        })
    }

    /// The chunk a shard belongs to, and the shard's record.
    pub fn shard(&self, id: &ShardId) -> Result<Option<(ChunkId, ShardRecord)>> {
        self.read("reading a shard record", |db| {
            Ok(db
                .prepare_cached("SELECT chunk, idx, id, holder, len FROM shards WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, shard_at(r, 1)?)))
                .optional()?)
        })
    }

    /// Records that `holder` now holds shard `id` (repair moved it).
    pub fn set_holder(&self, id: &ShardId, holder: &Holder) -> Result<()> {
        self.write("moving a shard", |db| {
            let changed = db
                .prepare_cached("UPDATE shards SET holder = ?2 WHERE id = ?1")?
                .execute(params![id, holder_sql(holder)])?;
            if changed == 0 {
                return Err(CatalogError::NoShard { shard: *id });
            }
            Ok(())
        })
    }
}

/// Checks the references of a new version of `ino` against its size (see the module docs).
pub(crate) fn check_refs(ino: Ino, size: u64, refs: &[ChunkRef]) -> Result<()> {
    let invalid = |reason: String| CatalogError::InvalidVersion { ino, reason };
    int(size, "file size")?;
    let mut end = 0u64;
    for (i, r) in refs.iter().enumerate() {
        if r.len == 0 {
            return Err(invalid(format!("chunk reference {i} has length 0")));
        }
        if r.offset < end {
            return Err(invalid(format!(
                "chunk reference {i} at offset {} overlaps or precedes the previous one (ending at {end})",
                r.offset
            )));
        }
        end = r
            .offset
            .checked_add(r.len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                invalid(format!(
                    "chunk reference {i} ({} bytes at {}) ends beyond the size {size}",
                    r.len, r.offset
                ))
            })?;
    }
    Ok(())
}

/// Fails with [`CatalogError::MissingChunks`] if any referenced chunk is not in the
/// catalog, or InvalidVersion if a reference is longer than its chunk.
pub(crate) fn check_chunks_exist(db: &Connection, ino: Ino, refs: &[ChunkRef]) -> Result<()> {
    let mut stmt = db.prepare_cached("SELECT plain_len FROM chunks WHERE id = ?1")?;
    let mut seen: HashMap<ChunkId, Option<u64>> = HashMap::new();
    let mut missing = Vec::new();
    for r in refs {
        let plain = match seen.get(&r.chunk) {
            Some(known) => *known,
            None => {
                let plain = stmt
                    .query_row([r.chunk], |row| get_u64(row, 0))
                    .optional()?;
                seen.insert(r.chunk, plain);
                if plain.is_none() {
                    missing.push(r.chunk);
                }
                plain
            }
        };
        if let Some(plain) = plain
            && r.len > plain
        {
            return Err(CatalogError::InvalidVersion {
                ino,
                reason: format!(
                    "a reference uses {} bytes of chunk {}, which has only {plain}",
                    r.len,
                    r.chunk.short()
                ),
            });
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CatalogError::MissingChunks(missing))
    }
}

/// Inserts version `next_seq` of `ino`, counts its references and makes it current.
/// The chunks must exist (checked by the caller or referenced already).
pub(crate) fn insert_version(
    db: &Connection,
    ino: Ino,
    size: u64,
    mtime: i64,
    refs: &[ChunkRef],
    now: i64,
) -> Result<u64> {
    let seq: i64 = db
        .prepare_cached("SELECT next_seq FROM nodes WHERE ino = ?1")?
        .query_row([ino], |r| r.get(0))?;
    let size = int(size, "file size")?;
    db.prepare_cached(
        "INSERT INTO versions (ino, seq, size, mtime, committed) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![ino, seq, size, mtime, now])?;
    let mut insert = db.prepare_cached(
        "INSERT INTO version_chunks (ino, seq, pos, file_offset, length, chunk)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut count = db.prepare_cached("UPDATE chunks SET refcount = refcount + 1 WHERE id = ?1")?;
    for (pos, r) in refs.iter().enumerate() {
        let pos = i64::try_from(pos).unwrap_or(i64::MAX);
        insert.execute(params![
            ino,
            seq,
            pos,
            int(r.offset, "chunk offset")?,
            int(r.len, "chunk length")?,
            r.chunk
        ])?;
        count.execute([r.chunk])?;
    }
    db.prepare_cached(
        "UPDATE nodes SET version = ?2, next_seq = ?2 + 1, size = ?3, mtime = ?4, ctime = ?5,
            change = change + 1
         WHERE ino = ?1",
    )?
    .execute(params![ino, seq, size, mtime, now])?;
    u64::try_from(seq).map_err(|_| CatalogError::Corrupt(format!("inode {ino} has next_seq {seq}")))
}

/// Drops versions `seqs` of `ino` (all of them with `None`): their references are
/// uncounted and chunks left dead go to the GC queue in this transaction.
pub(crate) fn drop_versions(
    db: &Connection,
    ino: Ino,
    seqs: Option<&[u64]>,
) -> Result<PruneReport> {
    let mut dropped = 0;
    match seqs {
        None => {
            db.prepare_cached(
                "UPDATE chunks SET refcount = refcount - c.n
                 FROM (SELECT chunk, count(*) AS n FROM version_chunks WHERE ino = ?1 GROUP BY chunk) AS c
                 WHERE chunks.id = c.chunk",
            )?
            .execute([ino])?;
            db.prepare_cached("DELETE FROM version_chunks WHERE ino = ?1")?
                .execute([ino])?;
            dropped += db
                .prepare_cached("DELETE FROM versions WHERE ino = ?1")?
                .execute([ino])?;
        }
        Some(seqs) => {
            let mut uncount = db.prepare_cached(
                "UPDATE chunks SET refcount = refcount - c.n
                 FROM (SELECT chunk, count(*) AS n FROM version_chunks
                       WHERE ino = ?1 AND seq = ?2 GROUP BY chunk) AS c
                 WHERE chunks.id = c.chunk",
            )?;
            let mut refs =
                db.prepare_cached("DELETE FROM version_chunks WHERE ino = ?1 AND seq = ?2")?;
            let mut version =
                db.prepare_cached("DELETE FROM versions WHERE ino = ?1 AND seq = ?2")?;
            for &seq in seqs {
                let seq = clamp(seq);
                uncount.execute(params![ino, seq])?;
                refs.execute(params![ino, seq])?;
                dropped += version.execute(params![ino, seq])?;
            }
        }
    }
    // A dropped current version leaves the file without content (setattr's truncate to
    // 0 has the same effect); callers drop the current one only when replacing it.
    db.prepare_cached(
        "UPDATE nodes SET version = NULL, size = 0 WHERE ino = ?1
            AND version IS NOT NULL AND version NOT IN (SELECT seq FROM versions WHERE ino = ?1)",
    )?
    .execute([ino])?;
    let swept = gc::sweep(db)?;
    Ok(PruneReport {
        versions: u64::try_from(dropped).unwrap_or(u64::MAX),
        chunks: swept.chunks,
        shards: swept.shards,
    })
}

/// Truncates or extends file `ino` to `size` (see [`Catalog::setattr`]).
pub(crate) fn truncate(db: &Connection, ino: Ino, size: u64, mtime: i64, now: i64) -> Result<()> {
    if size == 0 {
        db.prepare_cached(
            "UPDATE nodes SET version = NULL, size = 0, mtime = ?2, ctime = ?3, change = change + 1
             WHERE ino = ?1",
        )?
        .execute(params![ino, mtime, now])?;
        return Ok(());
    }
    let attr = require_file(db, ino)?;
    let mut refs = match attr.version {
        Some(seq) => refs_of(db, ino, seq)?,
        None => Vec::new(),
    };
    refs.retain(|r| r.offset < size);
    if let Some(last) = refs.last_mut() {
        last.len = last.len.min(size - last.offset);
    }
    insert_version(db, ino, size, mtime, &refs, now)?;
    Ok(())
}

/// Prunes one file or all (see [`Catalog::prune_versions`]).
fn prune(db: &Connection, ino: Option<Ino>, keep_last: u32) -> Result<PruneReport> {
    let doomed: Vec<(Ino, u64)> = {
        let mut stmt = db.prepare_cached(
            "SELECT v.ino, v.seq FROM
                (SELECT ino, seq, row_number() OVER (PARTITION BY ino ORDER BY seq DESC) AS rank
                 FROM versions WHERE ?1 IS NULL OR ino = ?1) AS v
             JOIN nodes n ON n.ino = v.ino
             WHERE v.rank > ?2 AND v.seq IS NOT n.version",
        )?;
        let rows = stmt.query_map(params![ino, keep_last], |r| Ok((r.get(0)?, get_u64(r, 1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut report = PruneReport::default();
    let mut by_file: HashMap<Ino, Vec<u64>> = HashMap::new();
    for (ino, seq) in doomed {
        by_file.entry(ino).or_default().push(seq);
    }
    for (ino, seqs) in by_file {
        let dropped = drop_versions(db, ino, Some(&seqs))?;
        report.versions += dropped.versions;
        report.chunks += dropped.chunks;
        report.shards += dropped.shards;
    }
    Ok(report)
}

/// The references of version `seq` of `ino`, in file order.
pub(crate) fn refs_of(db: &Connection, ino: Ino, seq: u64) -> Result<Vec<ChunkRef>> {
    let mut stmt = db.prepare_cached(
        "SELECT file_offset, length, chunk FROM version_chunks WHERE ino = ?1 AND seq = ?2 ORDER BY pos",
    )?;
    let rows = stmt.query_map(params![ino, clamp(seq)], |r| {
        Ok(ChunkRef {
            offset: get_u64(r, 0)?,
            len: get_u64(r, 1)?,
            chunk: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

const VERSION_COLS: &str = "v.ino, v.seq, v.size, v.mtime, v.committed,
    (SELECT count(*) FROM version_chunks c WHERE c.ino = v.ino AND c.seq = v.seq),
    v.seq IS n.version";

fn version_at(row: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        ino: row.get(0)?,
        seq: get_u64(row, 1)?,
        size: get_u64(row, 2)?,
        mtime: row.get(3)?,
        committed: row.get(4)?,
        chunks: get_u64(row, 5)?,
        current: row.get(6)?,
    })
}

/// Version `seq` of `ino`, which must exist.
pub(crate) fn version_info(db: &Connection, ino: Ino, seq: u64) -> Result<VersionInfo> {
    db.prepare_cached(&format!(
        "SELECT {VERSION_COLS} FROM versions v JOIN nodes n ON n.ino = v.ino
         WHERE v.ino = ?1 AND v.seq = ?2"
    ))?
    .query_row(params![ino, clamp(seq)], version_at)
    .optional()?
    .ok_or(CatalogError::NoVersion { ino, seq })
}

/// All versions of `ino`, oldest first.
pub(crate) fn versions_of(db: &Connection, ino: Ino) -> Result<Vec<VersionInfo>> {
    let mut stmt = db.prepare_cached(&format!(
        "SELECT {VERSION_COLS} FROM versions v JOIN nodes n ON n.ino = v.ino
         WHERE v.ino = ?1 ORDER BY v.seq"
    ))?;
    let rows = stmt.query_map([ino], version_at)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Reads a shard record from columns idx, id, holder, len starting at `base`.
pub(crate) fn shard_at(row: &Row<'_>, base: usize) -> rusqlite::Result<ShardRecord> {
    Ok(ShardRecord {
        index: row.get(base)?,
        id: row.get(base + 1)?,
        holder: get_holder(row, base + 2)?,
        len: get_u64(row, base + 3)?,
    })
}

/// The record of chunk `id`.
pub(crate) fn read_chunk(db: &Connection, id: &ChunkId) -> Result<Option<ChunkRecord>> {
    let head = db
        .prepare_cached(
            "SELECT plain_len, sealed_len, codec, k, m, inline FROM chunks WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                get_u64(r, 0)?,
                get_u64(r, 1)?,
                r.get::<_, u8>(2)?,
                r.get::<_, u8>(3)?,
                r.get::<_, u8>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
            ))
        })
        .optional()?;
    let Some((plain_len, sealed_len, codec, k, m, inline)) = head else {
        return Ok(None);
    };
    let data = match inline {
        Some(bytes) => ChunkData::Inline(bytes),
        None => ChunkData::Sharded {
            k,
            m,
            shards: shards_of(db, id)?,
        },
    };
    Ok(Some(ChunkRecord {
        id: *id,
        plain_len,
        sealed_len,
        codec,
        data,
    }))
}

/// The live shards of chunk `id`, by index.
pub(crate) fn shards_of(db: &Connection, id: &ChunkId) -> Result<Vec<ShardRecord>> {
    let mut stmt =
        db.prepare_cached("SELECT idx, id, holder, len FROM shards WHERE chunk = ?1 ORDER BY idx")?;
    let rows = stmt.query_map([id], |r| shard_at(r, 0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Checks a chunk record from the engine before it is stored.
pub(crate) fn check_record(record: &ChunkRecord) -> Result<()> {
    let invalid = |reason: String| CatalogError::InvalidChunk {
        chunk: record.id.short(),
        reason,
    };
    int(record.plain_len, "chunk length")?;
    int(record.sealed_len, "sealed chunk length")?;
    match &record.data {
        ChunkData::Inline(bytes) => {
            if u64::try_from(bytes.len()).ok() != Some(record.sealed_len) {
                return Err(invalid(format!(
                    "{} inline bytes but a sealed length of {}",
                    bytes.len(),
                    record.sealed_len
                )));
            }
        }
        ChunkData::Sharded { k, m, shards } => {
            let total = u16::from(*k) + u16::from(*m);
            if *k == 0 || total > 255 {
                return Err(invalid(format!("impossible stripe layout {k}+{m}")));
            }
            if shards.len() < usize::from(*k) || shards.len() > usize::from(total) {
                return Err(invalid(format!(
                    "{} shards recorded; a {k}+{m} stripe needs {k} to {total}",
                    shards.len()
                )));
            }
            let mut indices = BTreeSet::new();
            let mut ids = BTreeSet::new();
            for s in shards {
                if u16::from(s.index) >= total || !indices.insert(s.index) {
                    return Err(invalid(format!(
                        "shard index {} is out of range or repeated",
                        s.index
                    )));
                }
                if !ids.insert(s.id) {
                    return Err(invalid(format!("shard {} is listed twice", s.id.short())));
                }
                int(s.len, "shard length")?;
            }
        }
    }
    Ok(())
}
