//! `put`: content into the repository (`get` is in get_cmd.rs).

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::CliContext;
use super::args::PutArgs;
use super::context::Change;
use super::names::name_bytes;
use super::output;
use crate::adapters::agent::EngineRepository;
use crate::config::human_bytes;
use crate::crypto::chunk::ChunkKeys;
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

pub(crate) fn progress_bar(
    ctx: &CliContext,
    total: u64,
    what: &str,
) -> Option<indicatif::ProgressBar> {
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
    let (repo, engine) = ctx.open_engine().await?;
    // With the owner's keys, small files of a tree put are stored in batches.
    let target = match repo.keys() {
        Some(keys) => EngineRepository::with_keys(engine.clone(), ChunkKeys::new(keys)),
        None => EngineRepository::new(engine.clone()),
    };

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
        // A tree put is a backup: files whose size and mtime match the stored current
        // version are skipped (a single-file put always makes a new version).
        force: false,
        ..BackupOptions::default()
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
            "stored {} ({} files, {} unchanged, {} directories, {}; {} new)",
            String::from_utf8_lossy(name),
            report.files_stored,
            report.files_unchanged,
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
