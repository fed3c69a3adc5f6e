//! `get`: a file (or with `-r` a directory tree) out of the repository, verified.
//!
//! Output goes to a temporary file beside the destination, renamed into place when
//! complete, so a failed or interrupted get never leaves a partial file under the
//! requested name. Holes and all-zero chunks become holes in the output; mode and mtime
//! are restored.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use super::CliContext;
use super::args::GetArgs;
use super::data_cmds::progress_bar;
use super::names::resolve_key;
use crate::catalog::{Catalog, ChunkRef, Ino, NodeKind};
use crate::engine::reader::CacheUse;
use crate::engine::{Engine, blocking};
use crate::error::{Error, ErrorKind, Result, ResultExt};

pub async fn get(ctx: &CliContext, args: GetArgs) -> anyhow::Result<()> {
    let (repo, engine) = ctx.open_engine().await?;
    let key = args.name.clone();
    let attr = engine.with_catalog(move |c| resolve_key(c, &key)).await?;
    let shown = args.name.to_string_lossy().into_owned();
    let to_stdout = args.output.as_os_str() == "-";
    match attr.kind {
        NodeKind::File => {}
        NodeKind::Dir if args.recursive && !to_stdout => {
            let keys = repo.keys().map(crate::crypto::chunk::ChunkKeys::new);
            return super::get_tree::get_tree(ctx, &engine, keys, attr.ino, &args).await;
        }
        NodeKind::Dir => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{shown} is a directory: pass -r and a new directory as OUTPUT to retrieve everything under it"),
            )
            .into());
        }
        NodeKind::Symlink => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{shown} is a symlink, not a file"),
            )
            .into());
        }
    }
    let version = args.version;
    let (size, mtime, refs) = engine
        .with_catalog(move |c| content_of(c, attr.ino, attr.mtime, version))
        .await
        .map_err(|e| e.context(&shown))?;
    let bar = if to_stdout {
        None
    } else {
        progress_bar(ctx, size, &shown)
    };
    let result = if to_stdout {
        write_stdout(ctx, &engine, refs, size).await
    } else {
        write_file(
            &engine,
            refs,
            size,
            &args.output,
            args.force,
            attr.mode,
            mtime,
            bar.as_ref(),
        )
        .await
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result.with_context(|| format!("cannot read {shown}"))?;
    Ok(())
}

/// Size, mtime and chunk list of version `version` (default: current) of file `ino`.
fn content_of(
    c: &Catalog,
    ino: Ino,
    mtime: i64,
    version: Option<u64>,
) -> Result<(u64, i64, Vec<ChunkRef>)> {
    match version {
        Some(seq) => {
            let info = c
                .versions(ino)?
                .into_iter()
                .find(|v| v.seq == seq)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("no version {seq}: see `datamesh versions`"),
                    )
                })?;
            Ok((info.size, info.mtime, c.version_content(ino, seq)?))
        }
        None => {
            let cur = c.current_content(ino)?;
            Ok((cur.size, mtime, cur.chunks))
        }
    }
}

/// Streams the content to the command's stdout, holes as zeros.
async fn write_stdout(
    ctx: &CliContext,
    engine: &Engine,
    refs: Vec<crate::catalog::ChunkRef>,
    size: u64,
) -> crate::Result<()> {
    let out = ctx.out();
    let mut pos = 0u64;
    let mut stream = engine.read_extents(refs, CacheUse::Bypass);
    // One blocking write per chunk; a gap before it (a hole) is written as zeros.
    let write = |gap: u64, data: Option<bytes::Bytes>| {
        let mut out = out.clone();
        blocking(move || {
            let zeros = [0u8; 1 << 16];
            let mut n = gap;
            while n > 0 {
                let take = n.min(zeros.len() as u64) as usize;
                out.write_all(&zeros[..take])?;
                n -= take as u64;
            }
            if let Some(d) = data {
                out.write_all(&d)?;
            }
            Ok(())
        })
    };
    while let Some(item) = stream.next().await {
        let (r, chunk) = item?;
        let data = chunk.into_data().slice(..r.len as usize);
        write(r.offset.saturating_sub(pos), Some(data)).await?;
        pos = r.offset + r.len;
    }
    write(size.saturating_sub(pos), None).await?;
    let mut out = ctx.out();
    blocking(move || Ok(out.flush()?)).await
}

/// Writes the content to a temporary file beside `dest` and renames it into place, so a
/// failed get never leaves a partial file under the requested name. Holes and all-zero
/// chunks become holes in the output.
#[allow(clippy::too_many_arguments)]
async fn write_file(
    engine: &Engine,
    refs: Vec<crate::catalog::ChunkRef>,
    size: u64,
    dest: &Path,
    force: bool,
    mode: u32,
    mtime: i64,
    bar: Option<&indicatif::ProgressBar>,
) -> crate::Result<()> {
    if !force && std::fs::symlink_metadata(dest).is_ok() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists: pass --force to replace it", dest.display()),
        ));
    }
    let tmp_path = write_temp(engine, refs, size, dest, mode, mtime, bar, true).await?;
    let dest = dest.to_owned();
    blocking(move || {
        tmp_path.persist(&dest).map_err(|e| {
            Error::from(e.error).context(format!("cannot write {}", dest.display()))
        })?;
        Ok(())
    })
    .await
}

/// Writes the content to a temporary file beside `dest` (mode and mtime set, fsync'd
/// with `sync`) and returns it, to be renamed into place by the caller. Holes and
/// all-zero chunks become holes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_temp(
    engine: &Engine,
    refs: Vec<crate::catalog::ChunkRef>,
    size: u64,
    dest: &Path,
    mode: u32,
    mtime: i64,
    bar: Option<&indicatif::ProgressBar>,
    sync: bool,
) -> crate::Result<tempfile::TempPath> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".datamesh-get-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut file = Some(file);
    let mut stream = engine.read_extents(refs, CacheUse::Bypass);
    // Whether the last chunk seen was all zeros: a sparse file repeats one zero chunk
    // thousands of times, and scanning each copy would dominate.
    let mut last_zero: Option<(crate::ids::ChunkId, bool)> = None;
    while let Some(item) = stream.next().await {
        let (r, chunk) = item?;
        let data = chunk.into_data().slice(..r.len as usize);
        let known = last_zero.filter(|(id, _)| *id == r.chunk).map(|(_, z)| z);
        let zero = match known {
            Some(z) => z,
            None => {
                let d = data.clone();
                let z = blocking(move || Ok(d.iter().all(|&b| b == 0))).await?;
                last_zero = Some((r.chunk, z));
                z
            }
        };
        let mut f = file.take().expect("file is returned by every write");
        f = blocking(move || {
            if zero {
                return Ok(f); // a hole: set_len below covers it
            }
            f.seek(SeekFrom::Start(r.offset))?;
            f.write_all(&data)?;
            Ok(f)
        })
        .await?;
        file = Some(f);
        if let Some(b) = bar {
            b.set_position(r.offset + r.len);
        }
    }
    let f = file.take().expect("file");
    blocking(move || {
        f.set_len(size)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        let t = std::time::UNIX_EPOCH + Duration::from_nanos(mtime.max(0) as u64);
        f.set_modified(t)?;
        if sync {
            f.sync_all()?;
        }
        Ok(tmp_path)
    })
    .await
}
