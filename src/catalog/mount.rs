//! What the FUSE mount's adapter needs beyond the CLI's operations.
//!
//! # Durability knob
//!
//! A catalog opens with `synchronous=FULL`: every write transaction fsyncs the WAL before
//! it returns. The mount does thousands of small metadata transactions (an untar creates,
//! writes and stamps every file) and promises durability only at `fsync`, `fsyncdir`,
//! `syncfs` and commit ([`docs/SEMANTICS.md`]). Its own connection therefore runs with
//! [`Durability::Deferred`] (`synchronous=NORMAL`): a transaction is in the WAL (it
//! survives a crash of the process, since the OS holds the written pages) but reaches the
//! disk only at the next [`Catalog::make_durable`], which fsyncs the WAL. Under WAL with
//! `synchronous=NORMAL` SQLite itself syncs the WAL before each checkpoint and the database
//! after it, so frames a checkpoint moved out of the WAL are already durable; one fsync
//! of the WAL file makes every transaction committed before the call durable, whichever
//! connection of whichever process wrote it.
//!
//! # Commits that keep the node's times
//!
//! A commit through the mount turns a staged copy into the file's new version; the
//! file's mtime and ctime belong to the namespace (the kernel and `utimens` set them), so
//! [`Catalog::commit_content`] and [`Catalog::commit_inline`] leave both as they are and
//! stamp the version with the node's mtime. Doing this inside the commit's transaction
//! means a `utimens` racing the commit (rsync, `cp -p` and tar set times right after
//! close) is never undone.
//!
//! # Batched small files
//!
//! [`Catalog::commit_inline`] commits many small files in one transaction: each carries
//! its one sealed inline chunk, inserted if new, referenced by the new version in the same
//! transaction (so no upload token or pin is needed: the chunk is never unreferenced
//! outside it). Each file runs in its own savepoint, so one failing file (deleted
//! meanwhile, say) leaves the others committed.
//!
//! # Liveness decided inside the transaction
//!
//! [`Catalog::unlink_live`] asks the mount whether the node losing its last link is still
//! open in the same transaction that removes the link, so an open racing the unlink
//! cannot be lost between the question and the change.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::params;

use super::content::{
    ChunkData, ChunkRecord, ChunkRef, VersionInfo, check_chunks_exist, check_record, check_refs,
    drop_versions, insert_version, version_info,
};
use super::names::{check_name, lossy};
use super::namespace::{
    LastLink, NodeKind, Removed, drop_dir, drop_link, find_entry, has_entries, no_entry, require,
    require_dir, require_file, touch,
};
use super::sql::{clamp, get_u64, now_ns};
use super::uploads::{self, UploadToken};
use super::{Catalog, CatalogError, Ino, Result, gc};

/// How durable a write transaction of one connection is when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On disk (`synchronous=FULL`, the default).
    Full,
    /// In the WAL, on disk at the next [`Catalog::make_durable`] or checkpoint
    /// (`synchronous=NORMAL`).
    Deferred,
}

/// A small file to commit with [`Catalog::commit_inline`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineCommit {
    /// The file.
    pub ino: Ino,
    /// Its whole content as one inline chunk (`None`: the file becomes empty).
    pub chunk: Option<ChunkRecord>,
}

/// What a last-link-aware unlink removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlinked {
    /// The entry's node, and whether that was its last link.
    pub removed: Removed,
    /// Links the node has left.
    pub nlink: u32,
}

/// Namespace totals for `statfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nodes (files, directories, symlinks, orphans).
    pub nodes: u64,
    /// Bytes of the current versions of all files.
    pub logical_bytes: u64,
}

/// Set once the WAL's directory entry has been made durable by this process.
static WAL_DIR_SYNCED: AtomicBool = AtomicBool::new(false);

impl Catalog {
    /// Sets how durable this connection's write transactions are (see the module docs).
    pub fn set_durability(&self, durability: Durability) -> Result<()> {
        let value = match durability {
            Durability::Full => "FULL",
            Durability::Deferred => "NORMAL",
        };
        self.lock()
            .pragma_update(None, "synchronous", value)
            .map_err(|e| CatalogError::from(e).in_op("setting the catalog's durability"))
    }

    /// Makes every transaction committed so far (by any connection) durable: fsyncs the
    /// WAL. Needs no lock, so other operations go on meanwhile.
    pub fn make_durable(&self) -> Result<()> {
        let mut wal = self.path().as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let io = |source: std::io::Error| CatalogError::Io {
            path: wal.display().to_string(),
            source,
        };
        let file = match std::fs::File::open(&wal) {
            Ok(f) => f,
            // No WAL: nothing was written since the last checkpoint removed it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        file.sync_data().map_err(io)?;
        if !WAL_DIR_SYNCED.load(Ordering::Relaxed)
            && let Some(dir) = self.path().parent()
        {
            // A WAL created under synchronous=NORMAL may not have its name on disk yet.
            let dir = if dir.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                dir
            };
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            WAL_DIR_SYNCED.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Commits `chunks` (pinned by `token`, if given, which ends here) as the new
    /// current version of file `ino`, leaving the node's mtime and ctime as they are;
    /// with `replace` the previous current version is dropped in the same transaction.
    pub fn commit_content(
        &self,
        ino: Ino,
        size: u64,
        chunks: &[ChunkRef],
        token: Option<&UploadToken>,
        replace: bool,
    ) -> Result<VersionInfo> {
        check_refs(ino, size, chunks)?;
        self.write("committing a version", |db| {
            let now = now_ns();
            require_file(db, ino)?;
            if let Some(token) = token {
                uploads::require_token(db, token, now)?;
            }
            check_chunks_exist(db, ino, chunks)?;
            let seq = keep_times_insert(db, ino, size, chunks, now, replace)?;
            if let Some(token) = token {
                uploads::finish(db, token, now)?;
            }
            gc::sweep(db)?;
            version_info(db, ino, seq)
        })
    }

    /// Commits each small file's inline chunk as its new current version, keeping the
    /// node's times, all in one transaction; one result per file, in order. Fails as a
    /// whole only if the transaction itself cannot be run.
    pub fn commit_inline(
        &self,
        files: &[InlineCommit],
        replace: bool,
    ) -> Result<Vec<Result<VersionInfo>>> {
        for f in files {
            if let Some(record) = &f.chunk {
                check_record(record)?;
            }
        }
        self.write("committing small files", |db| {
            let now = now_ns();
            let mut out = Vec::with_capacity(files.len());
            for f in files {
                db.execute_batch("SAVEPOINT inline_file")?;
                let r = commit_one_inline(db, f, now, replace);
                if r.is_err() {
                    db.execute_batch("ROLLBACK TO inline_file")?;
                }
                db.execute_batch("RELEASE inline_file")?;
                out.push(r);
            }
            gc::sweep(db)?;
            Ok(out)
        })
    }

    /// Removes the entry `name` (not a directory) from `parent` like
    /// [`Catalog::unlink`], keeping the node as an orphan of this process if it loses
    /// its last link while `is_open(ino)` says it is open. `is_open` is asked only for a
    /// node losing its last link, inside the transaction.
    pub fn unlink_live(
        &self,
        parent: Ino,
        name: &[u8],
        is_open: &dyn Fn(Ino) -> bool,
    ) -> Result<Unlinked> {
        check_name(name)?;
        self.write("unlink", |db| {
            let now = now_ns();
            require_dir(db, parent)?;
            let (entry, child) = find_entry(db, parent, name)?.ok_or_else(|| no_entry(name))?;
            let attr = require(db, child)?;
            if attr.kind == NodeKind::Dir {
                return Err(CatalogError::IsDir { name: lossy(name) });
            }
            let last = if attr.nlink <= 1 && is_open(child) {
                LastLink::Orphan
            } else {
                LastLink::Free
            };
            let removed = drop_link(db, entry, &attr, now, last, self)?;
            touch(db, parent, now, 0)?;
            Ok(Unlinked {
                removed,
                nlink: attr.nlink.saturating_sub(1),
            })
        })
    }

    /// [`Catalog::rmdir`], returning the removed directory's inode.
    pub fn rmdir_ino(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        check_name(name)?;
        self.write("rmdir", |db| {
            let now = now_ns();
            require_dir(db, parent)?;
            let (entry, child) = find_entry(db, parent, name)?.ok_or_else(|| no_entry(name))?;
            let attr = require(db, child)?;
            if attr.kind != NodeKind::Dir {
                return Err(CatalogError::NotDir { name: lossy(name) });
            }
            if has_entries(db, child)? {
                return Err(CatalogError::NotEmpty { name: lossy(name) });
            }
            drop_dir(db, entry, child, parent, now)?;
            Ok(child)
        })
    }

    /// Number of nodes and logical bytes of the current versions.
    pub fn usage(&self) -> Result<Usage> {
        self.read("measuring usage", |db| {
            Ok(db.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM nodes",
                [],
                |r| {
                    Ok(Usage {
                        nodes: get_u64(r, 0)?,
                        logical_bytes: get_u64(r, 1)?,
                    })
                },
            )?)
        })
    }
}

/// Inserts a new current version of `ino` stamped with the node's own mtime and puts
/// the node's ctime back; drops the previous current version with `replace`.
fn keep_times_insert(
    db: &rusqlite::Connection,
    ino: Ino,
    size: u64,
    chunks: &[ChunkRef],
    now: i64,
    replace: bool,
) -> Result<u64> {
    let attr = require_file(db, ino)?;
    let seq = insert_version(db, ino, size, attr.mtime, chunks, now)?;
    db.prepare_cached("UPDATE nodes SET ctime = ?2 WHERE ino = ?1")?
        .execute(params![ino, attr.ctime])?;
    if replace && let Some(old) = attr.version {
        drop_versions(db, ino, Some(&[old]))?;
    }
    Ok(seq)
}

fn commit_one_inline(
    db: &rusqlite::Connection,
    f: &InlineCommit,
    now: i64,
    replace: bool,
) -> Result<VersionInfo> {
    require_file(db, f.ino)?;
    let refs = match &f.chunk {
        None => Vec::new(),
        Some(record) => {
            let ChunkData::Inline(bytes) = &record.data else {
                return Err(CatalogError::InvalidChunk {
                    chunk: record.id.short(),
                    reason: "a batched small-file commit takes inline chunks only".to_owned(),
                });
            };
            db.prepare_cached(
                "INSERT OR IGNORE INTO chunks
                    (id, plain_len, sealed_len, codec, k, m, refcount, inline, created)
                 VALUES (?1, ?2, ?3, ?4, 0, 0, 0, ?5, ?6)",
            )?
            .execute(params![
                record.id,
                clamp(record.plain_len),
                clamp(record.sealed_len),
                record.codec,
                bytes,
                now
            ])?;
            if record.plain_len == 0 {
                Vec::new()
            } else {
                vec![ChunkRef {
                    offset: 0,
                    len: record.plain_len,
                    chunk: record.id,
                }]
            }
        }
    };
    let size = f.chunk.as_ref().map_or(0, |c| c.plain_len);
    check_chunks_exist(db, f.ino, &refs)?;
    let seq = keep_times_insert(db, f.ino, size, &refs, now, replace)?;
    version_info(db, f.ino, seq)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_consistent, fresh};
    use super::*;
    use crate::catalog::SetAttr;
    use crate::ids::ChunkId;

    fn inline_chunk(n: u8, len: u64) -> ChunkRecord {
        ChunkRecord {
            id: ChunkId([n; 32]),
            plain_len: len,
            sealed_len: len + 18,
            codec: 1,
            data: ChunkData::Inline(vec![n; usize::try_from(len + 18).unwrap()]),
        }
    }

    #[test]
    fn durability_knob_sets_the_pragma_and_make_durable_works_with_or_without_a_wal() {
        let (_d, cat) = fresh();
        cat.make_durable().unwrap();
        cat.set_durability(Durability::Deferred).unwrap();
        let sync: i64 = cat
            .lock()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        let f = cat.create_file(Ino::ROOT, b"f", 0o644, 0, 0).unwrap();
        cat.make_durable().unwrap();
        let path = cat.path().to_owned();
        drop(cat);
        let again = Catalog::open(&path).unwrap();
        assert_eq!(again.lookup(Ino::ROOT, b"f").unwrap().ino, f.ino);
        cat_full(&again);
    }

    fn cat_full(cat: &Catalog) {
        cat.set_durability(Durability::Full).unwrap();
        let sync: i64 = cat
            .lock()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2);
    }

    #[test]
    fn commits_keep_mtime_and_ctime_and_replace_drops_the_old_version() {
        let (_d, cat) = fresh();
        let f = cat.create_file(Ino::ROOT, b"f", 0o644, 0, 0).unwrap();
        let stamped = cat
            .setattr(
                f.ino,
                &SetAttr {
                    mtime: Some(1_000),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        let r = cat
            .commit_inline(
                &[
                    InlineCommit {
                        ino: f.ino,
                        chunk: Some(inline_chunk(1, 10)),
                    },
                    InlineCommit {
                        ino: Ino(9_999),
                        chunk: Some(inline_chunk(2, 5)),
                    },
                ],
                true,
            )
            .unwrap();
        let v1 = r[0].as_ref().unwrap();
        assert!(matches!(r[1], Err(CatalogError::NoNode(_))));
        assert_eq!((v1.size, v1.mtime), (10, 1_000));
        let after = cat.getattr(f.ino).unwrap();
        assert_eq!((after.mtime, after.ctime), (1_000, stamped.ctime));
        assert_eq!(after.size, 10);
        // The failed file's chunk was rolled back with its savepoint.
        assert!(cat.chunk(&ChunkId([2; 32])).unwrap().is_none());
        let v2 = cat
            .commit_content(
                f.ino,
                4,
                &[ChunkRef {
                    offset: 0,
                    len: 4,
                    chunk: ChunkId([1; 32]),
                }],
                None,
                true,
            )
            .unwrap();
        assert_eq!(v2.seq, v1.seq + 1);
        assert_eq!(cat.versions(f.ino).unwrap().len(), 1, "replace dropped v1");
        let kept = cat
            .commit_inline(
                &[InlineCommit {
                    ino: f.ino,
                    chunk: None,
                }],
                false,
            )
            .unwrap();
        assert_eq!(kept[0].as_ref().unwrap().size, 0);
        assert_eq!(
            cat.versions(f.ino).unwrap().len(),
            2,
            "without replace v2 stays"
        );
        assert_eq!(cat.getattr(f.ino).unwrap().ctime, stamped.ctime);
        assert_consistent(&cat);
    }

    #[test]
    fn unlink_live_asks_only_for_last_links_and_orphans_open_files() {
        let (_d, cat) = fresh();
        let f = cat.create_file(Ino::ROOT, b"f", 0o644, 0, 0).unwrap();
        cat.link(f.ino, Ino::ROOT, b"g").unwrap();
        let asked = std::sync::Mutex::new(Vec::new());
        let open = |ino: Ino| {
            asked.lock().unwrap().push(ino);
            true
        };
        let u = cat.unlink_live(Ino::ROOT, b"f", &open).unwrap();
        assert_eq!((u.nlink, u.removed.unreachable), (1, false));
        assert!(
            asked.lock().unwrap().is_empty(),
            "not the last link: not asked"
        );
        let u = cat.unlink_live(Ino::ROOT, b"g", &open).unwrap();
        assert_eq!((u.nlink, u.removed.unreachable), (0, true));
        assert_eq!(*asked.lock().unwrap(), vec![f.ino]);
        assert_eq!(cat.orphans().unwrap(), vec![f.ino]);
        assert!(cat.free_orphan(f.ino).unwrap());
        let h = cat.create_file(Ino::ROOT, b"h", 0o644, 0, 0).unwrap();
        cat.unlink_live(Ino::ROOT, b"h", &|_| false).unwrap();
        assert!(cat.getattr(h.ino).is_err(), "closed: freed at once");
        let d = cat.mkdir(Ino::ROOT, b"d", 0o755, 0, 0).unwrap();
        assert_eq!(cat.rmdir_ino(Ino::ROOT, b"d").unwrap(), d.ino);
        let usage = cat.usage().unwrap();
        assert_eq!(usage.nodes, 1, "only the root is left");
        assert_consistent(&cat);
    }
}
