//! `get -r`: a directory tree out of the repository, in batches.
//!
//! # Model
//!
//! The tree is listed first (directories, files, symlinks, parents before children) and
//! the directories and symlinks are created. Files are then retrieved in batches of at
//! most [`BATCH_FILES`] files and [`BATCH_BYTES`] bytes, [`PARALLEL_BATCHES`] at once:
//!
//! 1. one read transaction gives every file's current content, and one more the records
//!    of the inline chunks it uses;
//! 2. files made only of inline chunks are opened (decrypted and checked against their
//!    ChunkId: only verified bytes are written) and written on the blocking pool; files
//!    with sharded chunks stream through the engine's read path as a single `get` does
//!    (fetch, verify, repair), a few at once;
//! 3. each file goes to a temporary file beside its destination (mode and mtime set),
//!    and once the whole batch is written one `syncfs` makes it durable; only then are the
//!    files renamed to their names, and a final `syncfs` makes the renames durable before
//!    the command returns.
//!
//! So, as with a single `get`, a file appears under its name only complete and durable
//! (a crash or kill leaves at most `.datamesh-get-*` temporaries), and when `get -r`
//! succeeds everything it wrote is on disk; but a batch costs two filesystem syncs, not
//! one fsync per file.
//!
//! Memory is bounded by the batches in flight: at most `PARALLEL_BATCHES` times
//! [`BATCH_BYTES`] of small-file content, plus the engine's bounded streams.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tempfile::TempPath;

use super::CliContext;
use super::args::GetArgs;
use super::get_cmd::write_temp;
use crate::catalog::{Catalog, ChunkData, ChunkRecord, Content, Ino, NodeKind};
use crate::crypto::chunk::{ChunkKeys, open};
use crate::engine::{Engine, blocking};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::ids::ChunkId;

/// Most files in one batch.
const BATCH_FILES: usize = 512;
/// Most bytes of file content in one batch.
const BATCH_BYTES: u64 = 16 << 20;
/// Batches retrieved at once.
const PARALLEL_BATCHES: usize = 2;
/// Files with sharded chunks streamed at once inside a batch.
const PARALLEL_STREAMS: usize = 4;

/// One thing to recreate under the output directory.
enum Item {
    Dir(PathBuf, u32),
    File(File),
    Symlink(PathBuf, Vec<u8>),
}

/// A file to retrieve.
struct File {
    path: PathBuf,
    ino: Ino,
    mode: u32,
    mtime: i64,
    size: u64,
}

/// Every node under `dir`, parents first.
fn walk(c: &Catalog, dir: Ino, at: &Path, out: &mut Vec<Item>) -> Result<()> {
    let mut after = 0;
    loop {
        let entries = c.readdir(dir, after, 512)?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        after = last.cookie;
        for e in entries {
            let path = at.join(std::ffi::OsStr::from_bytes(&e.name));
            match e.attr.kind {
                NodeKind::Dir => {
                    out.push(Item::Dir(path.clone(), e.attr.mode));
                    walk(c, e.attr.ino, &path, out)?;
                }
                NodeKind::File => out.push(Item::File(File {
                    path,
                    ino: e.attr.ino,
                    mode: e.attr.mode,
                    mtime: e.attr.mtime,
                    size: e.attr.size,
                })),
                NodeKind::Symlink => out.push(Item::Symlink(path, c.readlink(e.attr.ino)?)),
            }
        }
    }
}

pub(super) async fn get_tree(
    ctx: &CliContext,
    engine: &Engine,
    keys: Option<ChunkKeys>,
    root: Ino,
    args: &GetArgs,
) -> anyhow::Result<()> {
    let dest = args.output.clone();
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists: give a new directory to retrieve the tree into",
                dest.display()
            ),
        )
        .into());
    }
    let at = dest.clone();
    let items = engine
        .with_catalog(move |c| {
            let mut items = Vec::new();
            walk(c, root, &at, &mut items)?;
            Ok(items)
        })
        .await?;
    let d = dest.clone();
    let files = blocking(move || make_dirs(&d, items)).await?;
    let count = files.len();
    let batches = batches(files);
    let keys = keys.as_ref();
    let results: Vec<Vec<Result<()>>> = futures::stream::iter(batches)
        .map(|batch| retrieve_batch(engine, keys, &dest, batch))
        .buffer_unordered(PARALLEL_BATCHES)
        .collect()
        .await;
    let d = dest.clone();
    blocking(move || sync_fs(&d)).await?;
    let mut failed = 0;
    for r in results.into_iter().flatten() {
        if let Err(e) = r {
            ctx.error(e.to_string());
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(super::Reported(Error::new(
            ErrorKind::Io,
            format!("{failed} of {count} files could not be retrieved"),
        ))
        .into());
    }
    ctx.note(format!("retrieved {count} files into {}", dest.display()));
    Ok(())
}

/// Creates the output directory, the directories and symlinks; returns the files.
fn make_dirs(dest: &Path, items: Vec<Item>) -> Result<Vec<File>> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut files = Vec::new();
    for item in items {
        match item {
            Item::Dir(p, mode) => {
                std::fs::create_dir(&p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
                std::fs::set_permissions(
                    &p,
                    std::fs::Permissions::from_mode((mode & 0o7777) | 0o700),
                )?;
            }
            Item::Symlink(p, target) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
            }
            Item::File(f) => files.push(f),
        }
    }
    Ok(files)
}

fn batches(files: Vec<File>) -> Vec<Vec<File>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if !batch.is_empty() && (batch.len() >= BATCH_FILES || bytes + f.size > BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += f.size;
        batch.push(f);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// Flushes the filesystem holding `path` (everything written so far becomes durable).
fn sync_fs(path: &Path) -> Result<()> {
    let dir =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: syncfs takes a file descriptor we own and touches no memory of ours.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    if rc != 0 {
        return Err(Error::from(std::io::Error::last_os_error())
            .context(format!("cannot flush {} to disk", path.display())));
    }
    Ok(())
}

/// Steps 1-3 of the module docs for one batch; one result per file, in order.
async fn retrieve_batch(
    engine: &Engine,
    keys: Option<&ChunkKeys>,
    dest: &Path,
    files: Vec<File>,
) -> Vec<Result<()>> {
    let n = files.len();
    let inos: Vec<Ino> = files.iter().map(|f| f.ino).collect();
    let lookup = engine
        .with_catalog(move |c| {
            let contents = c.current_contents(&inos)?;
            let mut ids: Vec<ChunkId> = contents
                .iter()
                .flatten()
                .flat_map(|c| c.chunks.iter().map(|r| r.chunk))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let records = c.chunks(&ids)?;
            let inline: HashMap<ChunkId, ChunkRecord> = ids
                .into_iter()
                .zip(records)
                .filter_map(|(id, r)| match r {
                    Some(
                        r @ ChunkRecord {
                            data: ChunkData::Inline(_),
                            ..
                        },
                    ) => Some((id, r)),
                    _ => None,
                })
                .collect();
            Ok((contents, inline))
        })
        .await;
    let (contents, inline) = match lookup {
        Ok(l) => l,
        Err(e) => {
            let shown = e.to_string();
            return (0..n)
                .map(|_| Err(Error::new(e.kind(), shown.clone())))
                .collect();
        }
    };
    // Files made only of inline chunks are written in one blocking job (given keys).
    let mut small = Vec::new();
    let mut streamed = Vec::new();
    let mut results: Vec<Option<Result<TempPath>>> = (0..n).map(|_| None).collect();
    for (i, (f, content)) in files.iter().zip(contents).enumerate() {
        match content {
            Err(e) => results[i] = Some(Err(Error::from(e).context(f.path.display()))),
            Ok(c) if keys.is_some() && c.chunks.iter().all(|r| inline.contains_key(&r.chunk)) => {
                small.push((i, f.path.clone(), f.mode, f.mtime, c));
            }
            Ok(c) => streamed.push((i, c)),
        }
    }
    if !small.is_empty()
        && let Some(keys) = keys
    {
        let keys = keys.clone();
        let written = blocking(move || {
            Ok(small
                .into_iter()
                .map(|(i, path, mode, mtime, c)| {
                    let r = write_inline(&keys, &inline, &path, mode, mtime, &c)
                        .map_err(|e| e.context(path.display()));
                    (i, r)
                })
                .collect::<Vec<_>>())
        })
        .await;
        match written {
            Ok(w) => w.into_iter().for_each(|(i, r)| results[i] = Some(r)),
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Err(Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
    let files = &files;
    let streamed: Vec<(usize, Result<TempPath>)> = futures::stream::iter(streamed)
        .map(|(i, c)| async move {
            let f = &files[i];
            let r = write_temp(
                engine, c.chunks, c.size, &f.path, f.mode, f.mtime, None, false,
            )
            .await
            .map_err(|e| e.context(f.path.display()));
            (i, r)
        })
        .buffer_unordered(PARALLEL_STREAMS)
        .collect()
        .await;
    for (i, r) in streamed {
        results[i] = Some(r);
    }
    // Durable first, then under their names.
    let d = dest.to_owned();
    let targets: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let renamed = blocking(move || {
        sync_fs(&d)?;
        Ok(results
            .into_iter()
            .zip(targets)
            .map(|(r, target)| {
                let tmp = r.unwrap_or_else(|| {
                    Err(Error::new(ErrorKind::Internal, "a file got no result"))
                })?;
                tmp.persist(&target).map_err(|e| {
                    Error::from(e.error).context(format!("cannot write {}", target.display()))
                })
            })
            .collect::<Vec<_>>())
    })
    .await;
    match renamed {
        Ok(r) => r,
        Err(e) => (0..n)
            .map(|_| Err(Error::new(e.kind(), e.to_string())))
            .collect(),
    }
}

/// Writes a file made of inline chunks to a temporary file beside `dest`, every chunk
/// opened and verified first.
fn write_inline(
    keys: &ChunkKeys,
    inline: &HashMap<ChunkId, ChunkRecord>,
    dest: &Path,
    mode: u32,
    mtime: i64,
    content: &Content,
) -> Result<TempPath> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".datamesh-get-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let f = tmp.as_file_mut();
    let mut pos = 0u64;
    for r in &content.chunks {
        let sealed = match inline.get(&r.chunk).map(|c| &c.data) {
            Some(ChunkData::Inline(bytes)) => bytes,
            _ => return Err(Error::new(ErrorKind::Internal, "inline chunk vanished")),
        };
        let chunk = open(keys, &r.chunk, sealed)
            .map_err(|e| Error::from(e).context(format!("chunk {}", r.chunk.short())))?;
        let data = chunk.data();
        let len = usize::try_from(r.len).unwrap_or(usize::MAX);
        if data.len() < len {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("chunk {} is shorter than the file uses", r.chunk.short()),
            ));
        }
        if r.offset != pos {
            std::io::Seek::seek(f, std::io::SeekFrom::Start(r.offset))?;
        }
        f.write_all(&data[..len])?;
        pos = r.offset + r.len;
    }
    f.set_len(content.size)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(mtime.max(0) as u64);
    f.set_modified(t)?;
    Ok(tmp.into_temp_path())
}
