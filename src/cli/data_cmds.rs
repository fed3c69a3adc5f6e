//! `put` and `get`: content in and out.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use super::CliContext;
use super::args::{GetArgs, PutArgs};
use super::context::Change;
use super::names::{name_bytes, resolve_key};
use super::output;
use crate::adapters::agent::EngineRepository;
use crate::catalog::NodeKind;
use crate::config::human_bytes;
use crate::engine::reader::CacheUse;
use crate::engine::{Engine, blocking};
use crate::error::{Error, ErrorKind, ResultExt};

/// What `put` prints with `--json` (one per stored file).
#[derive(Serialize)]
struct PutResult {
    name: String,
    version: u64,
    size: u64,
    chunks: u64,
    new_chunks: u64,
    new_bytes: u64,
    dedup_bytes: u64,
    stored_bytes: u64,
}

fn progress_bar(ctx: &CliContext, total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !ctx.progress() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    Some(bar)
}

/// Mirrors a shared byte counter onto a progress bar until the bar is finished.
fn follow(bar: &indicatif::ProgressBar, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let bar = bar.clone();
    tokio::spawn(async move {
        while !bar.is_finished() {
            bar.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The default name of a stored path: its file name.
fn default_name(path: &Path) -> anyhow::Result<Vec<u8>> {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    match canonical.file_name() {
        Some(n) => Ok(n.as_bytes().to_vec()),
        None => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} has no file name to store it under: pass --name PATH",
                path.display()
            ),
        )
        .into()),
    }
}

pub async fn put(ctx: &CliContext, args: PutArgs) -> anyhow::Result<()> {
    let stdin = args.path.as_os_str() == "-";
    let meta = if stdin {
        None
    } else {
        Some(
            std::fs::metadata(&args.path)
                .with_context(|| format!("cannot read {}", args.path.display()))?,
        )
    };
    let name = match &args.name {
        Some(n) => name_bytes(n),
        None if stdin => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "reading from standard input needs --name PATH",
            )
            .into());
        }
        None => default_name(&args.path)?,
    };
    let (_repo, engine) = ctx.open_engine().await?;
    let target = EngineRepository::new(engine.clone());

    if let Some(m) = &meta
        && m.is_dir()
    {
        if !args.recursive {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is a directory: pass -r to store it and everything under it",
                    args.path.display()
                ),
            )
            .into());
        }
        return put_tree(ctx, &target, &args, &name).await;
    }

    let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(ctx, size, &String::from_utf8_lossy(&name));
    let counter = Arc::new(AtomicU64::new(0));
    let follower = bar.as_ref().map(|b| follow(b, counter.clone()));
    let result = if stdin {
        let m = crate::adapters::agent::meta_now();
        target
            .store_reader(&name, ctx.take_stdin()?, &m, &args.tags, Some(counter))
            .await
    } else {
        let file = File::open(&args.path)
            .and_then(crate::sparse::HoleReader::new)
            .with_context(|| format!("cannot open {}", args.path.display()))?;
        let m = crate::adapters::agent::meta_of(meta.as_ref().expect("not stdin"));
        target
            .store_reader(&name, file, &m, &args.tags, Some(counter))
            .await
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(f) = follower {
        let _ = f.await;
    }
    let (version, stats) = result.with_context(|| String::from_utf8_lossy(&name).into_owned())?;
    ctx.changed(&[Change::Path(name.clone()), Change::Inode(version.ino.0)]);
    warn_tolerance(ctx, &engine, stats.min_tolerance);
    let out = PutResult {
        name: String::from_utf8_lossy(&name).into_owned(),
        version: version.seq,
        size: version.size,
        chunks: stats.chunks,
        new_chunks: stats.new_chunks,
        new_bytes: stats.new_bytes,
        dedup_bytes: stats.dedup_bytes,
        stored_bytes: stats.stored_bytes,
    };
    if args.json {
        output::json(ctx, &out)?;
    } else {
        crate::outln!(
            ctx,
            "stored {} version {} ({}; {} chunks, {} new, {} deduplicated)",
            out.name,
            out.version,
            human_bytes(out.size),
            out.chunks,
            out.new_chunks,
            human_bytes(out.dedup_bytes)
        );
    }
    Ok(())
}

/// Tells the user when shards could not be spread widely enough for the configured
/// fault tolerance (a mesh with fewer than k+m usable peers).
fn warn_tolerance(ctx: &CliContext, engine: &Engine, achieved: Option<u64>) {
    let layout = engine.settings().layout;
    if let Some(t) = achieved
        && t < layout.m as u64
        && engine.settings().placement_matters
    {
        ctx.note(format!(
            "warning: too few storage peers to spread every chunk's {} shards over distinct peers: the data survives the loss of {t} peer(s), not {}",
            layout.total(),
            layout.m
        ));
    }
}

async fn put_tree(
    ctx: &CliContext,
    target: &EngineRepository,
    args: &PutArgs,
    name: &[u8],
) -> anyhow::Result<()> {
    use datamesh_agent::{BackupOptions, backup_tree};
    let total = {
        let root = args.path.clone();
        blocking(move || Ok(dir_bytes(&root))).await?
    };
    let bar = progress_bar(ctx, total, &String::from_utf8_lossy(name));
    let done = Arc::new(AtomicU64::new(0));
    let follower = bar.as_ref().map(|b| follow(b, done.clone()));
    let options = BackupOptions {
        tags: args.tags.clone(),
        parallel_files: 4,
        force: true,
    };
    let counter = done.clone();
    let on_file = move |n: u64| {
        counter.fetch_add(n, Ordering::Relaxed);
    };
    let report = backup_tree(target, &args.path, name, &options, &on_file).await;
    ctx.changed(&[Change::Path(name.to_vec())]);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(f) = follower {
        let _ = f.await;
    }
    let report = report.map_err(|e| Error::new(ErrorKind::Io, e.message))?;
    for (path, what) in &report.skipped {
        ctx.note(format!("skipped {path}: {what}"));
    }
    for (path, why) in &report.failed {
        ctx.error(format!("failed to store {path}: {why}"));
    }
    if args.json {
        #[derive(Serialize)]
        struct TreeResult<'a> {
            name: String,
            dirs: u64,
            files: u64,
            bytes: u64,
            new_bytes: u64,
            skipped: &'a [(String, String)],
            failed: &'a [(String, String)],
        }
        output::json(
            ctx,
            &TreeResult {
                name: String::from_utf8_lossy(name).into_owned(),
                dirs: report.dirs,
                files: report.files_stored,
                bytes: report.bytes_stored,
                new_bytes: report.bytes_new,
                skipped: &report.skipped,
                failed: &report.failed,
            },
        )?;
    } else {
        crate::outln!(
            ctx,
            "stored {} ({} files, {} directories, {}; {} new)",
            String::from_utf8_lossy(name),
            report.files_stored,
            report.dirs,
            human_bytes(report.bytes_stored),
            human_bytes(report.bytes_new)
        );
    }
    if !report.failed.is_empty() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("{} of the files could not be stored (listed above); run the command again once fixed", report.failed.len()),
        )
        .into());
    }
    Ok(())
}

fn dir_bytes(root: &Path) -> u64 {
    datamesh_agent::tree::walk(root)
        .map(|entries| {
            entries
                .iter()
                .map(|e| match e {
                    datamesh_agent::tree::Entry::File { meta, .. } => meta.size,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub async fn get(ctx: &CliContext, args: GetArgs) -> anyhow::Result<()> {
    let (_repo, engine) = ctx.open_engine().await?;
    let key = args.name.clone();
    let version = args.version;
    let (attr, path, content) = engine
        .with_catalog(move |c| {
            let attr = resolve_key(c, &key)?;
            let path = c
                .path_of(attr.ino)?
                .map(|p| String::from_utf8_lossy(&p).into_owned());
            if attr.kind != NodeKind::File {
                let what = if attr.kind == NodeKind::Dir {
                    "a directory"
                } else {
                    "a symlink"
                };
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is {what}, not a file", key.to_string_lossy()),
                ));
            }
            let content = match version {
                Some(seq) => {
                    let info = c
                        .versions(attr.ino)?
                        .into_iter()
                        .find(|v| v.seq == seq)
                        .ok_or_else(|| {
                            Error::new(
                                ErrorKind::NotFound,
                                format!(
                                    "{} has no version {seq}: see `datamesh versions {}`",
                                    key.to_string_lossy(),
                                    key.to_string_lossy()
                                ),
                            )
                        })?;
                    (info.size, info.mtime, c.version_content(attr.ino, seq)?)
                }
                None => {
                    let cur = c.current_content(attr.ino)?;
                    (cur.size, attr.mtime, cur.chunks)
                }
            };
            Ok((attr, path, content))
        })
        .await?;
    let shown = path.unwrap_or_else(|| args.name.to_string_lossy().into_owned());
    let (size, mtime, refs) = content;
    let to_stdout = args.output.as_os_str() == "-";
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
    let dest = dest.to_owned();
    blocking(move || {
        f.set_len(size)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        let t = std::time::UNIX_EPOCH + Duration::from_nanos(mtime.max(0) as u64);
        f.set_modified(t)?;
        f.sync_all()?;
        tmp_path.persist(&dest).map_err(|e| {
            Error::from(e.error).context(format!("cannot write {}", dest.display()))
        })?;
        Ok(())
    })
    .await
}
