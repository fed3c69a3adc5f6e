//! Read-only queries for the CLI: listings, search, recent changes, node info, repository
//! figures and health.
//!
//! Every result is a plain struct deriving `serde::Serialize` (the CLI prints them as
//! JSON with `--json`). Paths in results are relative to the root, `/`-separated and shown
//! lossily (invalid UTF-8 replaced): they are for people and scripts that print, not for
//! naming nodes again — use the `ino` for that. Each query runs in one read transaction,
//! so its figures are from one consistent snapshot.
//!
//! Listings walk the tree with one recursive query and sort by path bytes; they hold the
//! whole result in memory, which is fine for the CLI (a million entries is ~100 MB) and is
//! what a caller wanting sorted output pays anyway.

use rusqlite::{Connection, params};

use super::content::{self, VersionInfo};
use super::meta::tags_of;
use super::names::{lossy, split_path};
use super::namespace::{ATTR_COLS, Attr, NodeKind, attr_at, find_entry, require};
use super::paths::{MAX_DEPTH, path_of};
use super::sql::{clamp, get_u64};
use super::{Catalog, CatalogError, Ino, Result};
use crate::ids::{ChunkId, ShardId};
use crate::store::Holder;

/// What [`Catalog::list`] lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only paths starting with these bytes, like an S3 prefix: `docs/` is everything in
    /// `docs`, `docs/rep` also matches `docs/report.pdf`. A leading `/` is ignored.
    /// Empty: everything.
    pub prefix: Vec<u8>,
    /// Only nodes carrying every one of these tags.
    pub tags: Vec<String>,
}

/// What [`Catalog::search`] looks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// A substring of the path, or a regular expression if `regex`. Empty matches all.
    pub pattern: String,
    /// Whether `pattern` is a regular expression (Rust `regex` syntax).
    pub regex: bool,
    /// Match letters regardless of case.
    pub ignore_case: bool,
    /// Only nodes of this kind.
    pub kind: Option<NodeKind>,
    /// Only names ending in `.` and this extension (compared regardless of case).
    pub extension: Option<String>,
    /// At most this many results (the first ones in path order).
    pub limit: Option<usize>,
}

/// One node in a listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListEntry {
    /// Path from the root (lossy).
    pub path: String,
    /// Inode number.
    pub ino: Ino,
    /// Kind.
    pub kind: NodeKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Number of versions kept.
    pub versions: u64,
}

/// A recently committed version.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecentEntry {
    /// Path of the file (lossy); `None` for an orphan.
    pub path: Option<String>,
    /// The version.
    pub version: VersionInfo,
}

/// Chunk figures of one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChunkSummary {
    /// Chunk references.
    pub refs: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Of which inline.
    pub inline: u64,
    /// Plaintext bytes of the distinct chunks.
    pub plain_bytes: u64,
    /// Bytes stored for them (shards and inline bytes).
    pub stored_bytes: u64,
    /// Distinct chunks with fewer than k + m shards recorded.
    pub degraded: u64,
}

/// Everything about one node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// Attributes.
    pub attr: Attr,
    /// Every path naming it (one per hard link; none for an orphan).
    pub paths: Vec<String>,
    /// Symlink target (lossy).
    pub target: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Extended attribute names (lossy).
    pub xattrs: Vec<String>,
    /// Versions, oldest first.
    pub versions: Vec<VersionInfo>,
    /// Chunk figures of the current version.
    pub current: Option<ChunkSummary>,
}

/// Repository-wide figures. The dedup ratio is `referenced_bytes / chunk_bytes`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Regular files (orphans included).
    pub files: u64,
    /// Directories (root included).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Files kept only because a process has them open.
    pub orphans: u64,
    /// Sum of the current sizes of files.
    pub logical_bytes: u64,
    /// Versions kept.
    pub versions: u64,
    /// Sum of the sizes of all versions.
    pub version_bytes: u64,
    /// Bytes covered by chunk references across all versions (before dedup).
    pub referenced_bytes: u64,
    /// Distinct chunks.
    pub chunks: u64,
    /// Of which inline.
    pub inline_chunks: u64,
    /// Plaintext bytes of the distinct chunks (after dedup).
    pub chunk_bytes: u64,
    /// Sealed bytes of the distinct chunks.
    pub sealed_bytes: u64,
    /// Bytes stored: all live shards plus inline bytes.
    pub stored_bytes: u64,
    /// Live shards.
    pub shards: u64,
    /// Dead shards waiting for deletion.
    pub gc_pending: u64,
    /// Uploads in flight.
    pub uploads: u64,
    /// `referenced_bytes / chunk_bytes` (1 when there are no chunks).
    pub dedup_ratio: f64,
}

/// A chunk with fewer shards recorded than its stripe has.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DegradedChunk {
    /// The chunk, in hex.
    pub chunk: String,
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
    /// Shards recorded.
    pub shards: u64,
    /// Stripe indices with no shard.
    pub missing: Vec<u8>,
    /// Version references.
    pub refcount: u64,
}

/// Shards and bytes on one holder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HolderUsage {
    /// The holder.
    pub holder: String,
    /// Live shards on it.
    pub shards: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One node found by a tree walk: path bytes, attributes and version count.
type Found = (Vec<u8>, Attr, u64);

impl Catalog {
    /// Nodes matching `filter`, sorted by path (see [`ListFilter`]).
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<ListEntry>> {
        for tag in &filter.tags {
            super::names::check_tag(tag)?;
        }
        let raw = filter.prefix.strip_prefix(b"/").unwrap_or(&filter.prefix);
        let (dir_part, rest) = match raw.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&raw[..slash], &raw[slash + 1..]),
            None => (&raw[..0], raw),
        };
        let dir_names = split_path(dir_part)?;
        let mut base = dir_names.join(&b'/');
        if !base.is_empty() {
            base.push(b'/');
        }
        let mut wanted = base.clone();
        wanted.extend_from_slice(rest);
        self.read("listing", |db| {
            let Some(start) = find_dir(db, &dir_names)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for (path, attr, versions) in subtree(db, start, &base)? {
                if !path.starts_with(&wanted) {
                    continue;
                }
                let tags = tags_of(db, attr.ino)?;
                if filter.tags.iter().all(|t| tags.contains(t)) {
                    out.push(entry(path, attr, versions, tags));
                }
            }
            Ok(out)
        })
    }

    /// Nodes whose path matches `query`, sorted by path (see [`SearchQuery`]).
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<ListEntry>> {
        let matcher = if query.regex || query.ignore_case {
            let pattern = if query.regex {
                query.pattern.clone()
            } else {
                regex::escape(&query.pattern)
            };
            Some(
                regex::RegexBuilder::new(&pattern)
                    .case_insensitive(query.ignore_case)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| CatalogError::Pattern(e.to_string()))?,
            )
        } else {
            None
        };
        let extension = query.extension.as_ref().map(|e| {
            let e = e.strip_prefix('.').unwrap_or(e);
            format!(".{}", e.to_lowercase())
        });
        let limit = query.limit.unwrap_or(usize::MAX);
        self.read("searching", |db| {
            let mut out = Vec::new();
            for (path, attr, versions) in subtree(db, Ino::ROOT, b"")? {
                if out.len() >= limit {
                    break;
                }
                let shown = lossy(&path);
                let hit = match &matcher {
                    Some(re) => re.is_match(&shown),
                    None => shown.contains(&query.pattern),
                };
                let kind_ok = query.kind.is_none_or(|k| k == attr.kind);
                let ext_ok = extension
                    .as_ref()
                    .is_none_or(|e| shown.to_lowercase().ends_with(e.as_str()));
                if hit && kind_ok && ext_ok {
                    let tags = tags_of(db, attr.ino)?;
                    out.push(entry(path, attr, versions, tags));
                }
            }
            Ok(out)
        })
    }

    /// The `limit` most recently committed versions, newest first, optionally only
    /// those committed at or after `since` (ns since the epoch).
    pub fn recent(&self, limit: usize, since: Option<i64>) -> Result<Vec<RecentEntry>> {
        self.read("listing recent versions", |db| {
            let keys: Vec<(Ino, u64)> = {
                let mut stmt = db.prepare_cached(
                    "SELECT ino, seq FROM versions WHERE committed >= ?1
                     ORDER BY committed DESC, ino, seq DESC LIMIT ?2",
                )?;
                let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
                let rows = stmt.query_map(params![since.unwrap_or(i64::MIN), limit], |r| {
                    Ok((r.get(0)?, get_u64(r, 1)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            keys.into_iter()
                .map(|(ino, seq)| {
                    Ok(RecentEntry {
                        path: path_of(db, ino)?.map(|p| lossy(&p)),
                        version: content::version_info(db, ino, seq)?,
                    })
                })
                .collect()
        })
    }

    /// Everything about `ino`.
    pub fn info(&self, ino: Ino) -> Result<NodeInfo> {
        self.read("reading node info", |db| {
            let attr = require(db, ino)?;
            let links: Vec<(Ino, Vec<u8>)> = {
                let mut stmt = db.prepare_cached(
                    "SELECT parent, name FROM entries WHERE child = ?1 ORDER BY id",
                )?;
                let rows = stmt.query_map([ino], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut paths = Vec::new();
            for (parent, name) in links {
                if let Some(mut path) = path_of(db, parent)? {
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(&name);
                    paths.push(lossy(&path));
                }
            }
            let target: Option<Vec<u8>> =
                db.query_row("SELECT target FROM nodes WHERE ino = ?1", [ino], |r| {
                    r.get(0)
                })?;
            let xattrs: Vec<Vec<u8>> = {
                let mut stmt =
                    db.prepare_cached("SELECT name FROM xattrs WHERE ino = ?1 ORDER BY name")?;
                let rows = stmt.query_map([ino], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let current = match attr.version {
                Some(seq) => Some(summarise(db, ino, seq)?),
                None => None,
            };
            Ok(NodeInfo {
                paths,
                target: target.map(|t| lossy(&t)),
                tags: tags_of(db, ino)?,
                xattrs: xattrs.iter().map(|x| lossy(x)).collect(),
                versions: content::versions_of(db, ino)?,
                current,
                attr,
            })
        })
    }

    /// Repository-wide figures.
    pub fn stats(&self) -> Result<Stats> {
        self.read("computing statistics", |db| {
            let mut s = db.query_row(
                "SELECT
                    (SELECT count(*) FROM nodes WHERE kind = 1),
                    (SELECT count(*) FROM nodes WHERE kind = 2),
                    (SELECT count(*) FROM nodes WHERE kind = 3),
                    (SELECT count(*) FROM orphans),
                    (SELECT coalesce(sum(size), 0) FROM nodes WHERE kind = 1),
                    (SELECT count(*) FROM versions),
                    (SELECT coalesce(sum(size), 0) FROM versions),
                    (SELECT coalesce(sum(length), 0) FROM version_chunks),
                    (SELECT count(*) FROM chunks),
                    (SELECT count(*) FROM chunks WHERE inline IS NOT NULL),
                    (SELECT coalesce(sum(plain_len), 0) FROM chunks),
                    (SELECT coalesce(sum(sealed_len), 0) FROM chunks),
                    (SELECT coalesce(sum(len), 0) FROM shards)
                        + (SELECT coalesce(sum(length(inline)), 0) FROM chunks),
                    (SELECT count(*) FROM shards),
                    (SELECT count(*) FROM gc_queue),
                    (SELECT count(*) FROM uploads)",
                [],
                |r| {
                    Ok(Stats {
                        files: get_u64(r, 0)?,
                        dirs: get_u64(r, 1)?,
                        symlinks: get_u64(r, 2)?,
                        orphans: get_u64(r, 3)?,
                        logical_bytes: get_u64(r, 4)?,
                        versions: get_u64(r, 5)?,
                        version_bytes: get_u64(r, 6)?,
                        referenced_bytes: get_u64(r, 7)?,
                        chunks: get_u64(r, 8)?,
                        inline_chunks: get_u64(r, 9)?,
                        chunk_bytes: get_u64(r, 10)?,
                        sealed_bytes: get_u64(r, 11)?,
                        stored_bytes: get_u64(r, 12)?,
                        shards: get_u64(r, 13)?,
                        gc_pending: get_u64(r, 14)?,
                        uploads: get_u64(r, 15)?,
                        dedup_ratio: 1.0,
                    })
                },
            )?;
            if s.chunk_bytes > 0 {
                // Precision loss is irrelevant for a ratio shown to two decimals.
                s.dedup_ratio = s.referenced_bytes as f64 / s.chunk_bytes as f64;
            }
            Ok(s)
        })
    }

    /// Up to `limit` chunks with fewer shards recorded than their stripe has (the health
    /// check; repair rebuilds them).
    pub fn degraded(&self, limit: usize) -> Result<Vec<DegradedChunk>> {
        self.read("checking chunk health", |db| {
            let rows: Vec<(ChunkId, u8, u8, u64, u64)> = {
                let mut stmt = db.prepare_cached(
                    "SELECT c.id, c.k, c.m, c.refcount, count(s.id) AS n
                     FROM chunks c LEFT JOIN shards s ON s.chunk = c.id
                     WHERE c.inline IS NULL GROUP BY c.id HAVING n < c.k + c.m
                     ORDER BY n, c.id LIMIT ?1",
                )?;
                let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
                let rows = stmt.query_map([limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        get_u64(r, 3)?,
                        get_u64(r, 4)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            rows.into_iter()
                .map(|(id, k, m, refcount, shards)| {
                    let present: Vec<u8> = content::shards_of(db, &id)?
                        .iter()
                        .map(|s| s.index)
                        .collect();
                    let total = u8::try_from(u16::from(k) + u16::from(m)).unwrap_or(u8::MAX);
                    Ok(DegradedChunk {
                        chunk: id.to_hex(),
                        k,
                        m,
                        shards,
                        missing: (0..total).filter(|i| !present.contains(i)).collect(),
                        refcount,
                    })
                })
                .collect()
        })
    }

    /// Live shards and bytes per holder, sorted by holder.
    pub fn holders(&self) -> Result<Vec<HolderUsage>> {
        self.read("summarising holders", |db| {
            let mut stmt = db.prepare_cached(
                "SELECT holder, count(*), coalesce(sum(len), 0) FROM shards GROUP BY holder ORDER BY holder",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(HolderUsage {
                    holder: r.get(0)?,
                    shards: get_u64(r, 1)?,
                    bytes: get_u64(r, 2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Up to `limit` live shards on `holder` with ids after `after` (a cursor, for
    /// paging), with their chunks: what to rebuild when a holder is lost.
    pub fn shards_on(
        &self,
        holder: &Holder,
        after: Option<&ShardId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, content::ShardRecord)>> {
        self.read("listing shards of a holder", |db| {
            let mut stmt = db.prepare_cached(
                "SELECT chunk, idx, id, holder, len FROM shards
                 WHERE holder = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let after = after.map_or(Vec::new(), |a| a.0.to_vec());
            let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
            let rows = stmt.query_map(params![holder.as_str(), after, limit], |r| {
                Ok((r.get(0)?, content::shard_at(r, 1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

fn entry(path: Vec<u8>, attr: Attr, versions: u64, tags: Vec<String>) -> ListEntry {
    ListEntry {
        path: lossy(&path),
        ino: attr.ino,
        kind: attr.kind,
        size: attr.size,
        mtime: attr.mtime,
        mode: attr.mode,
        tags,
        versions,
    }
}

/// The directory named by `names` from the root, if it exists and is a directory.
fn find_dir(db: &Connection, names: &[&[u8]]) -> Result<Option<Ino>> {
    let mut dir = Ino::ROOT;
    for name in names {
        let Some((_, child)) = find_entry(db, dir, name)? else {
            return Ok(None);
        };
        if require(db, child)?.kind != NodeKind::Dir {
            return Ok(None);
        }
        dir = child;
    }
    Ok(Some(dir))
}

/// Every node below directory `start`, whose own path is `base` (with a trailing `/`
/// unless it is the root), sorted by path.
fn subtree(db: &Connection, start: Ino, base: &[u8]) -> Result<Vec<Found>> {
    // `||` works on the bytes of blobs as text; NUL cannot occur in names, so nothing is
    // cut, and the result is cast back to a blob. Depth is bounded so that a damaged tree
    // with a loop cannot make the query run forever.
    let mut stmt = db.prepare_cached(&format!(
        "WITH RECURSIVE tree (ino, path, depth) AS (
            SELECT child, CAST(?2 || name AS BLOB), 1 FROM entries WHERE parent = ?1
            UNION ALL
            SELECT e.child, CAST(t.path || X'2F' || e.name AS BLOB), t.depth + 1
            FROM tree t JOIN entries e ON e.parent = t.ino WHERE t.depth < ?3
        )
        SELECT t.path, {ATTR_COLS}, (SELECT count(*) FROM versions v WHERE v.ino = n.ino)
        FROM tree t JOIN nodes n ON n.ino = t.ino ORDER BY t.path"
    ))?;
    let depth = i64::try_from(MAX_DEPTH).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![start, base, depth], |r| {
        Ok((r.get(0)?, attr_at(r, 1)?, get_u64(r, 13)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Chunk figures of version `seq` of `ino`.
fn summarise(db: &Connection, ino: Ino, seq: u64) -> Result<ChunkSummary> {
    let refs = content::refs_of(db, ino, seq)?;
    let mut ids: Vec<ChunkId> = refs.iter().map(|r| r.chunk).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut summary = ChunkSummary {
        refs: u64::try_from(refs.len()).unwrap_or(u64::MAX),
        chunks: u64::try_from(ids.len()).unwrap_or(u64::MAX),
        ..ChunkSummary::default()
    };
    for id in &ids {
        let Some(record) = content::read_chunk(db, id)? else {
            continue;
        };
        summary.plain_bytes += record.plain_len;
        match record.data {
            content::ChunkData::Inline(bytes) => {
                summary.inline += 1;
                summary.stored_bytes += u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            }
            content::ChunkData::Sharded { k, m, shards } => {
                summary.stored_bytes += shards.iter().map(|s| s.len).sum::<u64>();
                if shards.len() < usize::from(k) + usize::from(m) {
                    summary.degraded += 1;
                }
            }
        }
    }
    Ok(summary)
}
