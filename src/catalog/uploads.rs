//! Crash-safe uploads: tokens, shard intents and chunk pins.
//!
//! # The protocol
//!
//! Shards carry a random per-upload salt, so two uploads of one chunk write shards with
//! different ids: a shard id is only ever referenced by the upload that wrote it.
//!
//! 1. [`Catalog::begin_upload`] registers a token owned by this process (pid and process
//!    start time, see [`process`](super::process)).
//! 2. Before writing shards, [`Catalog::intend_shards`] records them under the token.
//! 3. Once they are durable, [`Catalog::commit_chunk`] inserts the chunk with refcount 0,
//!    *pinned* by the token, and turns the intents into live shards. If the chunk already
//!    exists (another upload won the race), the existing chunk is pinned instead and this
//!    upload's shards are queued for deletion ([`ChunkCommit::Redundant`]).
//!    [`Catalog::pin_existing`] pins chunks that already exist, so the uploader skips
//!    them — which is also how a rerun after `kill -9` reuses what was committed.
//! 4. [`Catalog::commit_version`] inserts the version, counts its references, and ends
//!    the token in one transaction: pins released, leftover intents queued for deletion.
//!    A referenced chunk that is missing fails the commit, changing nothing.
//! 5. A chunk with refcount 0 and no pin is deleted, and its shards queued, in the
//!    transaction that made it so ([`gc`](super::gc)).
//! 6. [`Catalog::reap_stale_uploads`] abandons the tokens of dead processes (or idle
//!    longer than [`ReapPolicy::max_idle`]): their intended shards are queued for
//!    deletion at once and the token becomes unusable. Its pins stay for
//!    [`ReapPolicy::resume_window`], so that a rerun of the interrupted upload finds the
//!    chunks committed before the crash with `pin_existing` and does not upload them
//!    again; when the window ends the pins are released and chunks nothing references
//!    are collected. With a window of zero this is exactly "intents queued, pins
//!    released" at once.
//!
//! Every call that takes a token checks, in its transaction, that the token is still
//! registered and not abandoned, and fails with [`CatalogError::UploadGone`] otherwise;
//! so an upload reaped while its process lived cannot commit anything that GC may be
//! deleting. Such an upload should hand the shards it wrote afterwards to
//! [`Catalog::discard_shards`].
//!
//! docs/design/catalog.md argues why this never leaves the catalog pointing at missing
//! data and never leaks a shard, under `kill -9` anywhere and with concurrent processes.

use std::fmt;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::content::{ChunkData, ChunkRecord, ShardRecord, check_record};
use super::process::ProcessId;
use super::sql::{clamp, get_opt_u64, get_u64, holder_sql, now_ns};
use super::{Catalog, CatalogError, Result, gc};
use crate::ids::{ChunkId, ShardId};
use crate::store::Holder;

/// When [`Catalog::reap_stale_uploads`] abandons an upload and releases its pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReapPolicy {
    /// An upload idle (no call with its token) for longer than this is stale even if its
    /// process still runs. Default: 24 hours.
    pub max_idle: Duration,
    /// How long the chunks a stale upload committed stay pinned for a rerun to reuse.
    /// Default: 24 hours. Zero releases them at once.
    pub resume_window: Duration,
}

impl Default for ReapPolicy {
    fn default() -> Self {
        ReapPolicy {
            max_idle: Duration::from_secs(24 * 3600),
            resume_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// An upload in flight (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadToken(pub [u8; 16]);

impl fmt::Display for UploadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for UploadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadToken({self})")
    }
}

/// How [`Catalog::commit_chunk`] recorded a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkCommit {
    /// The chunk is new; this upload's shards are now its shards.
    Stored,
    /// The chunk already existed and is now pinned; this upload's shards were redundant
    /// and are queued for deletion (GC deletes them; the caller need do nothing).
    Redundant,
}

/// What [`Catalog::reap_stale_uploads`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReapReport {
    /// Uploads found stale and abandoned.
    pub abandoned: u64,
    /// Abandoned uploads whose resume window ended: pins released, token deleted.
    pub released: u64,
    /// Shards queued for deletion (intended but never committed, or of chunks whose
    /// last pin went).
    pub shards: u64,
    /// Chunks deleted because nothing referenced them once the pins went.
    pub chunks: u64,
}

/// An upload in flight, for status displays.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UploadInfo {
    /// The token, in hex.
    pub token: String,
    /// The owning process.
    pub pid: u32,
    /// Whether that process still runs.
    pub alive: bool,
    /// Registered at, ns since the epoch.
    pub started: i64,
    /// Last activity, ns since the epoch.
    pub touched: i64,
    /// When it was found stale and abandoned (its pins wait for a rerun).
    pub abandoned: Option<i64>,
    /// Shards intended and not yet committed.
    pub intents: u64,
    /// Chunks pinned.
    pub pins: u64,
}

impl Catalog {
    /// Registers a new upload owned by this process.
    pub fn begin_upload(&self) -> Result<UploadToken> {
        self.begin_upload_as(self.me)
    }

    /// Registers an upload owned by `owner` (tests use it to stand in for dead
    /// processes).
    pub(crate) fn begin_upload_as(&self, owner: ProcessId) -> Result<UploadToken> {
        let token = UploadToken(rand::random());
        self.write("registering an upload", |db| {
            let now = now_ns();
            db.prepare_cached(
                "INSERT INTO uploads (token, pid, proc_start, started, touched)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![
                &token.0[..],
                owner.pid,
                owner.start.map(clamp),
                now
            ])?;
            Ok(token)
        })
    }

    /// Records that this upload is about to write `shards` (to the holders given, as far
    /// as they are known). Announcing a shard again under the same token updates its
    /// holder; a shard id the catalog knows otherwise is refused.
    pub fn intend_shards(&self, token: &UploadToken, shards: &[(ShardId, Holder)]) -> Result<()> {
        self.write("recording shards to upload", |db| {
            require_token(db, token, now_ns())?;
            let mut owner = db.prepare_cached("SELECT token FROM intents WHERE shard = ?1")?;
            let mut known = db.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM shards WHERE id = ?1)
                     OR EXISTS (SELECT 1 FROM gc_queue WHERE shard = ?1)",
            )?;
            let mut insert = db.prepare_cached(
                "INSERT OR REPLACE INTO intents (shard, token, holder) VALUES (?1, ?2, ?3)",
            )?;
            for (shard, holder) in shards {
                let intended_by: Option<Vec<u8>> =
                    owner.query_row([shard], |r| r.get(0)).optional()?;
                let elsewhere: bool = known.query_row([shard], |r| r.get(0))?;
                if elsewhere || intended_by.is_some_and(|t| t != token.0) {
                    return Err(CatalogError::ShardKnown { shard: *shard });
                }
                insert.execute(params![shard, &token.0[..], holder_sql(holder)])?;
            }
            Ok(())
        })
    }

    /// Commits a chunk whose shards (announced with [`Catalog::intend_shards`]) are
    /// durable, pinned by `token` until its version is committed (see the module docs).
    pub fn commit_chunk(&self, token: &UploadToken, record: &ChunkRecord) -> Result<ChunkCommit> {
        check_record(record)?;
        self.write("committing a chunk", |db| {
            let now = now_ns();
            require_token(db, token, now)?;
            commit_chunk_in(db, token, record, now)
        })
    }

    /// Pins those of `chunks` that exist, so they survive until this upload's version is
    /// committed; says which exist (those need no upload).
    pub fn pin_existing(&self, token: &UploadToken, chunks: &[ChunkId]) -> Result<Vec<bool>> {
        self.write("pinning existing chunks", |db| {
            require_token(db, token, now_ns())?;
            let mut found = Vec::with_capacity(chunks.len());
            for id in chunks {
                let exists = chunk_exists(db, id)?;
                if exists {
                    pin(db, token, id)?;
                }
                found.push(exists);
            }
            Ok(found)
        })
    }

    /// Gives up on intended shards of this upload (a write failed part-way): they are
    /// queued for deletion. Shards not intended by this token are left alone.
    pub fn abandon_shards(&self, token: &UploadToken, shards: &[ShardId]) -> Result<u64> {
        self.write("abandoning shards", |db| {
            require_token(db, token, now_ns())?;
            let mut lookup =
                db.prepare_cached("SELECT holder FROM intents WHERE shard = ?1 AND token = ?2")?;
            let mut doomed = Vec::new();
            for shard in shards {
                if let Some(holder) = lookup
                    .query_row(params![shard, &token.0[..]], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    doomed.push((*shard, Holder(holder)));
                }
            }
            let mut forget = db.prepare_cached("DELETE FROM intents WHERE shard = ?1")?;
            for (shard, _) in &doomed {
                forget.execute([shard])?;
            }
            gc::queue(db, &doomed)
        })
    }

    /// Queues for deletion shards the catalog knows nothing about: what an upload that
    /// got [`CatalogError::UploadGone`] wrote after being reaped. Shards the catalog does
    /// know (live or intended) are skipped. Returns how many were queued.
    pub fn discard_shards(&self, shards: &[(ShardId, Holder)]) -> Result<u64> {
        self.write("discarding shards", |db| {
            let mut known = db.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM shards WHERE id = ?1)
                     OR EXISTS (SELECT 1 FROM intents WHERE shard = ?1)",
            )?;
            let mut unknown = Vec::new();
            for (shard, holder) in shards {
                if !known.query_row([shard], |r| r.get::<_, bool>(0))? {
                    unknown.push((*shard, holder.clone()));
                }
            }
            gc::queue(db, &unknown)
        })
    }

    /// Records replacement shards for an existing chunk (repair rebuilt missing shards
    /// onto new holders). The shards must have been announced under `token`; a shard
    /// already recorded at the same index is replaced and queued for deletion. Returns
    /// the replaced shards. End the token with [`Catalog::end_upload`] afterwards.
    pub fn attach_shards(
        &self,
        token: &UploadToken,
        chunk: &ChunkId,
        shards: &[ShardRecord],
    ) -> Result<Vec<ShardId>> {
        self.write("recording repaired shards", |db| {
            require_token(db, token, now_ns())?;
            let layout: Option<(u8, u8, bool)> = db
                .prepare_cached("SELECT k, m, inline IS NOT NULL FROM chunks WHERE id = ?1")?
                .query_row([chunk], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let (k, m) = match layout {
                None => return Err(CatalogError::MissingChunks(vec![*chunk])),
                Some((_, _, true)) => {
                    return Err(CatalogError::InvalidChunk {
                        chunk: chunk.short(),
                        reason: "an inline chunk has no shards".to_owned(),
                    });
                }
                Some((k, m, false)) => (k, m),
            };
            let mut replaced = Vec::new();
            for s in shards {
                if u16::from(s.index) >= u16::from(k) + u16::from(m) {
                    return Err(CatalogError::InvalidChunk {
                        chunk: chunk.short(),
                        reason: format!("shard index {} is beyond the {k}+{m} stripe", s.index),
                    });
                }
                require_intent(db, token, &s.id)?;
                let old: Option<(ShardId, String)> = db
                    .prepare_cached("SELECT id, holder FROM shards WHERE chunk = ?1 AND idx = ?2")?
                    .query_row(params![chunk, s.index], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((old, holder)) = old {
                    db.prepare_cached("DELETE FROM shards WHERE id = ?1")?
                        .execute([old])?;
                    gc::queue(db, &[(old, Holder(holder))])?;
                    replaced.push(old);
                }
                db.prepare_cached("DELETE FROM intents WHERE shard = ?1")?
                    .execute([s.id])?;
                insert_shard(db, chunk, s)?;
            }
            Ok(replaced)
        })
    }

    /// Ends an upload without committing a version: pins are released (chunks nothing
    /// references are collected) and uncommitted intended shards queued for deletion.
    /// Ending an unknown token does nothing.
    pub fn end_upload(&self, token: &UploadToken) -> Result<()> {
        self.write("ending an upload", |db| {
            finish(db, token, now_ns())?;
            gc::sweep(db)?;
            Ok(())
        })
    }

    /// Abandons the uploads whose process is gone or that were idle too long, and
    /// releases the pins of those abandoned longer than the resume window (see the
    /// module docs and [`ReapPolicy`]). Call when opening a repository.
    pub fn reap_stale_uploads(&self, policy: &ReapPolicy) -> Result<ReapReport> {
        self.write("reaping stale uploads", |db| {
            let now = now_ns();
            let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            let (max_idle, window) = (nanos(policy.max_idle), nanos(policy.resume_window));
            type Row = (Vec<u8>, u32, Option<u64>, i64, Option<i64>);
            let uploads: Vec<Row> = {
                let mut stmt = db.prepare_cached(
                    "SELECT token, pid, proc_start, touched, abandoned FROM uploads",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        get_opt_u64(r, 2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut report = ReapReport::default();
            for (token, pid, start, touched, abandoned) in uploads {
                let Ok(bytes) = <[u8; 16]>::try_from(token.as_slice()) else {
                    return Err(CatalogError::Corrupt(format!(
                        "an upload token of {} bytes (expected 16)",
                        token.len()
                    )));
                };
                let token = UploadToken(bytes);
                let since = match abandoned {
                    Some(since) => since,
                    None => {
                        let idle = now.saturating_sub(touched);
                        if (ProcessId { pid, start }).is_alive() && idle <= max_idle {
                            continue;
                        }
                        report.shards += abandon(db, &token, now)?;
                        report.abandoned += 1;
                        now
                    }
                };
                if now.saturating_sub(since) >= window {
                    finish(db, &token, now)?;
                    report.released += 1;
                }
            }
            let swept = gc::sweep(db)?;
            report.shards += swept.shards;
            report.chunks = swept.chunks;
            Ok(report)
        })
    }

    /// The uploads in flight.
    pub fn uploads(&self) -> Result<Vec<UploadInfo>> {
        self.read("listing uploads", |db| {
            let mut stmt = db.prepare_cached(
                "SELECT u.token, u.pid, u.proc_start, u.started, u.touched, u.abandoned,
                    (SELECT count(*) FROM intents i WHERE i.token = u.token),
                    (SELECT count(*) FROM pins p WHERE p.token = u.token)
                 FROM uploads u ORDER BY u.started",
            )?;
            let rows = stmt.query_map([], |r| {
                let pid: u32 = r.get(1)?;
                Ok(UploadInfo {
                    token: hex::encode(r.get::<_, Vec<u8>>(0)?),
                    pid,
                    alive: ProcessId {
                        pid,
                        start: get_opt_u64(r, 2)?,
                    }
                    .is_alive(),
                    started: r.get(3)?,
                    touched: r.get(4)?,
                    abandoned: r.get(5)?,
                    intents: get_u64(r, 6)?,
                    pins: get_u64(r, 7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

/// Fails with UploadGone unless `token` is registered and not abandoned; records
/// activity at `now`.
pub(crate) fn require_token(db: &Connection, token: &UploadToken, now: i64) -> Result<()> {
    let touched = db
        .prepare_cached("UPDATE uploads SET touched = ?2 WHERE token = ?1 AND abandoned IS NULL")?
        .execute(params![&token.0[..], now])?;
    if touched == 0 {
        return Err(CatalogError::UploadGone {
            token: token.to_string(),
        });
    }
    Ok(())
}

/// Abandons `token`: its intents are queued for deletion and it can no longer be used;
/// its pins stay. Returns the shards queued.
fn abandon(db: &Connection, token: &UploadToken, now: i64) -> Result<u64> {
    let t = &token.0[..];
    let queued = db
        .prepare_cached(
            "INSERT OR IGNORE INTO gc_queue (shard, holder, queued)
             SELECT shard, holder, ?2 FROM intents WHERE token = ?1",
        )?
        .execute(params![t, now])?;
    db.prepare_cached("DELETE FROM intents WHERE token = ?1")?
        .execute([t])?;
    db.prepare_cached("UPDATE uploads SET abandoned = ?2 WHERE token = ?1")?
        .execute(params![t, now])?;
    Ok(u64::try_from(queued).unwrap_or(u64::MAX))
}

/// Ends `token`: intents queued for deletion, pins and the token deleted. The caller
/// sweeps afterwards. Returns the shards queued.
pub(crate) fn finish(db: &Connection, token: &UploadToken, now: i64) -> Result<u64> {
    let queued = abandon(db, token, now)?;
    let t = &token.0[..];
    db.prepare_cached("DELETE FROM pins WHERE token = ?1")?
        .execute([t])?;
    db.prepare_cached("DELETE FROM uploads WHERE token = ?1")?
        .execute([t])?;
    Ok(queued)
}

/// [`Catalog::commit_chunk`] inside the caller's transaction, the token already checked.
pub(crate) fn commit_chunk_in(
    db: &Connection,
    token: &UploadToken,
    record: &ChunkRecord,
    now: i64,
) -> Result<ChunkCommit> {
    let shards: &[ShardRecord] = match &record.data {
        ChunkData::Inline(_) => &[],
        ChunkData::Sharded { shards, .. } => shards,
    };
    for s in shards {
        require_intent(db, token, &s.id)?;
    }
    let mut forget = db.prepare_cached("DELETE FROM intents WHERE shard = ?1")?;
    for s in shards {
        forget.execute([s.id])?;
    }
    let outcome = if chunk_exists(db, &record.id)? {
        let redundant: Vec<(ShardId, Holder)> =
            shards.iter().map(|s| (s.id, s.holder.clone())).collect();
        gc::queue(db, &redundant)?;
        ChunkCommit::Redundant
    } else {
        insert_chunk(db, record, now)?;
        ChunkCommit::Stored
    };
    pin(db, token, &record.id)?;
    Ok(outcome)
}

fn require_intent(db: &Connection, token: &UploadToken, shard: &ShardId) -> Result<()> {
    let ours: bool = db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM intents WHERE shard = ?1 AND token = ?2)")?
        .query_row(params![shard, &token.0[..]], |r| r.get(0))?;
    if ours {
        Ok(())
    } else {
        Err(CatalogError::NotIntended { shard: *shard })
    }
}

pub(crate) fn chunk_exists(db: &Connection, id: &ChunkId) -> Result<bool> {
    Ok(db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM chunks WHERE id = ?1)")?
        .query_row([id], |r| r.get(0))?)
}

pub(crate) fn pin(db: &Connection, token: &UploadToken, id: &ChunkId) -> Result<()> {
    db.prepare_cached("INSERT OR IGNORE INTO pins (token, chunk) VALUES (?1, ?2)")?
        .execute(params![&token.0[..], id])?;
    Ok(())
}

fn insert_chunk(db: &Connection, record: &ChunkRecord, now: i64) -> Result<()> {
    let (k, m, inline, shards): (u8, u8, Option<&[u8]>, &[ShardRecord]) = match &record.data {
        ChunkData::Inline(bytes) => (0, 0, Some(bytes), &[]),
        ChunkData::Sharded { k, m, shards } => (*k, *m, None, shards),
    };
    db.prepare_cached(
        "INSERT INTO chunks (id, plain_len, sealed_len, codec, k, m, refcount, inline, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
    )?
    .execute(params![
        record.id,
        clamp(record.plain_len),
        clamp(record.sealed_len),
        record.codec,
        k,
        m,
        inline,
        now
    ])?;
    for s in shards {
        insert_shard(db, &record.id, s)?;
    }
    Ok(())
}

fn insert_shard(db: &Connection, chunk: &ChunkId, s: &ShardRecord) -> Result<()> {
    db.prepare_cached(
        "INSERT INTO shards (id, chunk, idx, holder, len) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        s.id,
        chunk,
        s.index,
        holder_sql(&s.holder),
        clamp(s.len)
    ])?;
    Ok(())
}
