//! Batched operations for tree puts and gets (`put -r`, `get -r`): many files in a few
//! transactions instead of several per file.
//!
//! # Why
//!
//! Every write transaction fsyncs the WAL (`synchronous=FULL`). Storing a small file the
//! one-at-a-time way takes about six of them (register an upload, pin, commit the chunk,
//! create the entry, commit the version, …); an 8,000-file source tree then spends most of
//! its time waiting for the disk. The calls here do the same work for a whole batch of
//! files in one transaction each, so a batch costs three or four fsyncs whatever its size.
//!
//! # The protocol is the upload protocol
//!
//! Nothing here weakens [`uploads`](super::uploads): a batch is one upload token.
//! [`Catalog::begin_upload_pinning`] registers it and pins the chunks that already exist;
//! sharded chunks are announced ([`Catalog::intend_shards`]), written durably, then
//! committed pinned by the token ([`Catalog::commit_chunks`]); [`Catalog::commit_files`]
//! inserts the new inline chunks, commits every file's version and ends the token, all in
//! one transaction. A kill -9 anywhere leaves a token that the reaper abandons (intents
//! queued for deletion, pins kept for the resume window so that a rerun reuses the
//! chunks), exactly as for a single upload.
//!
//! # Per-file failure
//!
//! Each file of [`Catalog::commit_files`] and each directory of [`Catalog::mkdir_p_many`]
//! runs in its own savepoint: a file that cannot be committed (a directory is in the way,
//! a bad name) is rolled back alone and reported in its slot; the others commit. A chunk
//! nothing ends up referencing is released with the token's pins and collected in the
//! same transaction ([`gc`](super::gc)).

use rusqlite::{Connection, params};

use super::content::{
    ChunkData, ChunkRecord, ChunkRef, Content, VersionInfo, check_chunks_exist, check_record,
    check_refs, insert_version, refs_of, version_info,
};
use super::names::split_path;
use super::namespace::{Attr, NewNode, NodeKind, require_file};
use super::paths::{ensure_file_in, make_dirs, walk};
use super::sql::{clamp, now_ns};
use super::uploads::{self, ChunkCommit, UploadToken, chunk_exists, commit_chunk_in, pin};
use super::{Catalog, CatalogError, Ino, Result, gc};
use crate::ids::ChunkId;

/// One file for [`Catalog::commit_files`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCommit {
    /// Its path (created with missing parents if needed).
    pub path: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// The version's mtime (ns).
    pub mtime: i64,
    /// The content's size.
    pub size: u64,
    /// The content's chunks (each inline in this batch, committed under the token, or
    /// pinned by it).
    pub chunks: Vec<ChunkRef>,
}

/// Owner and modes of nodes a batch creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewNodes {
    /// Mode of missing parent directories.
    pub dir_mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Catalog {
    /// The node at each path, in one read transaction; a missing one is `None`.
    pub fn resolve_many(&self, paths: &[Vec<u8>]) -> Result<Vec<Result<Option<Attr>>>> {
        self.read("resolving paths", |db| {
            Ok(paths
                .iter()
                .map(|p| {
                    let names = split_path(p)?;
                    match walk(db, &names) {
                        Ok((attr, _)) => Ok(Some(attr)),
                        Err(CatalogError::NoEntry { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .collect())
        })
    }

    /// `mkdir -p` of every path, in one transaction; one result per path (each runs in
    /// its own savepoint).
    pub fn mkdir_p_many(
        &self,
        paths: &[Vec<u8>],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<Result<Attr>>> {
        let dir = NewNode {
            kind: NodeKind::Dir,
            mode,
            uid,
            gid,
            target: None,
        };
        self.write("mkdir -p", |db| {
            let now = now_ns();
            let mut out = Vec::with_capacity(paths.len());
            for p in paths {
                out.push(savepoint(db, |db| {
                    make_dirs(db, &split_path(p)?, &dir, now)
                })?);
            }
            Ok(out)
        })
    }

    /// Registers a new upload owned by this process and pins those of `chunks` that
    /// exist, in one transaction; says which exist.
    pub fn begin_upload_pinning(&self, chunks: &[ChunkId]) -> Result<(UploadToken, Vec<bool>)> {
        let token = UploadToken(rand::random());
        let me = self.me;
        self.write("registering an upload", |db| {
            let now = now_ns();
            db.prepare_cached(
                "INSERT INTO uploads (token, pid, proc_start, started, touched)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![&token.0[..], me.pid, me.start.map(clamp), now])?;
            let mut found = Vec::with_capacity(chunks.len());
            for id in chunks {
                let exists = chunk_exists(db, id)?;
                if exists {
                    pin(db, &token, id)?;
                }
                found.push(exists);
            }
            Ok((token, found))
        })
    }

    /// [`Catalog::commit_chunk`] of every record, in one transaction (all or nothing).
    pub fn commit_chunks(
        &self,
        token: &UploadToken,
        records: &[ChunkRecord],
    ) -> Result<Vec<ChunkCommit>> {
        for r in records {
            check_record(r)?;
        }
        self.write("committing chunks", |db| {
            let now = now_ns();
            uploads::require_token(db, token, now)?;
            records
                .iter()
                .map(|r| commit_chunk_in(db, token, r, now))
                .collect()
        })
    }

    /// Commits a batch of files and ends the upload `token`, in one transaction (see the
    /// module docs): inserts the new `inline` chunks (pinned by the token), then for each
    /// file creates it and missing parents if needed, sets its mode, adds `tags` and
    /// commits its content as a new current version (older versions are kept); then ends
    /// the token and collects what nothing references. One result per file, in order;
    /// fails as a whole only if the transaction cannot run or the token is gone.
    pub fn commit_files(
        &self,
        token: &UploadToken,
        inline: &[ChunkRecord],
        files: &[FileCommit],
        tags: &[String],
        new: NewNodes,
    ) -> Result<Vec<Result<VersionInfo>>> {
        for r in inline {
            check_record(r)?;
            if !matches!(r.data, ChunkData::Inline(_)) {
                return Err(CatalogError::InvalidChunk {
                    chunk: r.id.short(),
                    reason: "commit_files takes inline chunks only".to_owned(),
                });
            }
        }
        for t in tags {
            super::names::check_tag(t)?;
        }
        self.write("committing files", |db| {
            let now = now_ns();
            uploads::require_token(db, token, now)?;
            for r in inline {
                commit_chunk_in(db, token, r, now)?;
            }
            let mut out = Vec::with_capacity(files.len());
            for f in files {
                out.push(savepoint(db, |db| commit_file(db, f, tags, new, now))?);
            }
            uploads::finish(db, token, now)?;
            gc::sweep(db)?;
            Ok(out)
        })
    }

    /// The current content of each file, in one read transaction.
    pub fn current_contents(&self, inos: &[Ino]) -> Result<Vec<Result<Content>>> {
        self.read("reading content", |db| {
            Ok(inos
                .iter()
                .map(|&ino| {
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
                .collect())
        })
    }
}

/// Runs `f` in a savepoint: rolled back alone if it fails. The outer error is a failure
/// of the savepoint statements themselves.
fn savepoint<T>(db: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<Result<T>> {
    db.execute_batch("SAVEPOINT batch_item")?;
    let r = f(db);
    if r.is_err() {
        db.execute_batch("ROLLBACK TO batch_item")?;
    }
    db.execute_batch("RELEASE batch_item")?;
    Ok(r)
}

fn commit_file(
    db: &Connection,
    f: &FileCommit,
    tags: &[String],
    new: NewNodes,
    now: i64,
) -> Result<VersionInfo> {
    let names = split_path(&f.path)?;
    let mode = f.mode & 0o7777;
    let attr = ensure_file_in(
        db,
        &f.path,
        &names,
        mode,
        new.dir_mode,
        new.uid,
        new.gid,
        now,
    )?;
    check_refs(attr.ino, f.size, &f.chunks)?;
    if attr.mode & 0o7777 != mode {
        db.prepare_cached(
            "UPDATE nodes SET mode = ?2, ctime = ?3, change = change + 1 WHERE ino = ?1",
        )?
        .execute(params![attr.ino, mode, now])?;
    }
    let mut insert = db.prepare_cached("INSERT OR IGNORE INTO tags (ino, tag) VALUES (?1, ?2)")?;
    for tag in tags {
        insert.execute(params![attr.ino, tag])?;
    }
    check_chunks_exist(db, attr.ino, &f.chunks)?;
    let seq = insert_version(db, attr.ino, f.size, f.mtime, &f.chunks, now)?;
    version_info(db, attr.ino, seq)
}

#[cfg(test)]
mod tests;
