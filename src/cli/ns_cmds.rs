//! Namespace commands that move no content: `rm`, `rename`, `duplicate`, `prune`, `tag`.
//!
//! None of them needs the passphrase. The ones that may free chunks (`rm`, `prune`,
//! `rename --force`) collect garbage before returning, so freed shards are gone from the
//! store when the command ends.

use std::sync::Arc;

use super::CliContext;
use super::args::{DuplicateArgs, PruneArgs, RenameArgs, RmArgs, TagArgs};
use super::context::Change;
use super::names::{name_bytes, resolve_key, split_last};
use crate::catalog::{Catalog, Ino, LastLink, NodeKind, RenameMode};
use crate::config::human_bytes;
use crate::engine::{blocking, gc};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repository;

fn owner() -> (u32, u32) {
    // SAFETY: geteuid and getegid take no arguments, cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Runs garbage collection over the repository's store and reports failures as notes.
async fn collect(ctx: &CliContext, repo: &Repository) -> anyhow::Result<()> {
    if repo.keys().is_none() && ctx.joins_mesh(repo) {
        // Peers honour deletes only from the owner's client identity, which is in the
        // keystore; this command did not ask for the passphrase. The shards stay queued.
        ctx.note(
            "note: freed shards on mesh peers are deleted by the next command that unlocks the repository (put, get, check --read-data, mount)",
        );
        return Ok(());
    }
    let store = ctx.store(repo).await?;
    let report = gc::collect(repo.catalog(), &store).await?;
    if report.shards_failed > 0 {
        ctx.note(format!(
            "note: {} freed shards could not be deleted yet; the next command will retry",
            report.shards_failed
        ));
    }
    Ok(())
}

async fn with<T: Send + 'static>(
    repo: &Repository,
    f: impl FnOnce(&Catalog) -> Result<T> + Send + 'static,
) -> Result<T> {
    let c: Arc<Catalog> = repo.catalog().clone();
    blocking(move || f(&c)).await
}

/// Removes `dir`'s whole subtree (children first), then `dir` itself.
fn remove_tree(c: &Catalog, parent: Ino, name: &[u8], dir: Ino) -> Result<u64> {
    let mut removed = 0u64;
    loop {
        let entries = c.readdir(dir, 0, 256)?;
        if entries.is_empty() {
            break;
        }
        for e in entries {
            if e.attr.kind == NodeKind::Dir {
                removed += remove_tree(c, dir, &e.name, e.attr.ino)?;
            } else {
                c.unlink(dir, &e.name, LastLink::Free)?;
                removed += 1;
            }
        }
    }
    c.rmdir(parent, name)?;
    Ok(removed + 1)
}

pub async fn rm(ctx: &CliContext, args: RmArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let mut first_error = None;
    for name in &args.names {
        let path = name_bytes(name);
        let recursive = args.recursive;
        let shown = name.to_string_lossy().into_owned();
        let result = with(&repo, move |c| {
            let (parent_path, last) = split_last(&path)?;
            let parent = c.resolve(&parent_path)?;
            let attr = c.lookup(parent.ino, &last)?;
            if attr.kind == NodeKind::Dir {
                if !recursive {
                    let empty = c.readdir(attr.ino, 0, 1)?.is_empty();
                    if !empty {
                        return Err(Error::new(
                            ErrorKind::NotPermitted,
                            format!(
                                "{} is a directory that is not empty: pass -r to remove it and everything under it",
                                String::from_utf8_lossy(&path)
                            ),
                        ));
                    }
                    c.rmdir(parent.ino, &last)?;
                    return Ok(1);
                }
                return remove_tree(c, parent.ino, &last, attr.ino);
            }
            c.unlink(parent.ino, &last, LastLink::Free)?;
            Ok(1)
        })
        .await;
        match result {
            Ok(n) => {
                ctx.changed(&[Change::Path(name_bytes(name))]);
                if n > 1 {
                    ctx.note(format!("removed {shown} ({n} entries)"));
                } else {
                    ctx.note(format!("removed {shown}"));
                }
            }
            Err(e) => {
                ctx.error(e.to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    collect(ctx, &repo).await?;
    match first_error {
        // Already printed; exit with its code without printing it again.
        Some(e) => Err(super::Reported(e).into()),
        None => Ok(()),
    }
}

pub async fn rename(ctx: &CliContext, args: RenameArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let (old, new, force) = (name_bytes(&args.old), name_bytes(&args.new), args.force);
    with(&repo, move |c| {
        let (op, on) = split_last(&old)?;
        let (np, nn) = split_last(&new)?;
        let from = c.resolve(&op)?;
        c.lookup(from.ino, &on)?;
        let (uid, gid) = owner();
        let to = c.mkdir_p(&np, 0o755, uid, gid)?;
        let mode = if force {
            RenameMode::Replace
        } else {
            RenameMode::NoReplace
        };
        c.rename(from.ino, &on, to.ino, &nn, mode, LastLink::Free)
            .map_err(|e| {
                let e = Error::from(e);
                if e.kind() == ErrorKind::AlreadyExists {
                    Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} already exists: pass --force to replace it",
                            String::from_utf8_lossy(&new)
                        ),
                    )
                } else {
                    e
                }
            })?;
        Ok(())
    })
    .await?;
    collect(ctx, &repo).await?;
    ctx.note(format!(
        "renamed {} to {}",
        args.old.to_string_lossy(),
        args.new.to_string_lossy()
    ));
    Ok(())
}

pub async fn duplicate(ctx: &CliContext, args: DuplicateArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let (src, dst) = (args.src.clone(), name_bytes(&args.dst));
    let size = with(&repo, move |c| {
        let from = resolve_key(c, &src)?;
        let (dp, dn) = split_last(&dst)?;
        let (uid, gid) = owner();
        let parent = c.mkdir_p(&dp, 0o755, uid, gid)?;
        let attr = c.duplicate(from.ino, parent.ino, &dn)?;
        Ok(attr.size)
    })
    .await?;
    ctx.changed(&[Change::Path(name_bytes(&args.dst))]);
    ctx.note(format!(
        "duplicated {} to {} ({} shared, nothing copied)",
        args.src.to_string_lossy(),
        args.dst.to_string_lossy(),
        human_bytes(size)
    ));
    Ok(())
}

pub async fn prune(ctx: &CliContext, args: PruneArgs) -> anyhow::Result<()> {
    if args.keep_last == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "--keep-last must be at least 1 (use `datamesh rm` to remove a file)",
        )
        .into());
    }
    let keep = u32::try_from(args.keep_last).unwrap_or(u32::MAX);
    let repo = ctx.open_metadata().await?;
    let name = args.name.clone();
    let report = with(&repo, move |c| match &name {
        Some(n) => {
            let attr = resolve_key(c, n)?;
            Ok(c.prune_versions(attr.ino, keep)?)
        }
        None => Ok(c.prune_all(keep)?),
    })
    .await?;
    collect(ctx, &repo).await?;
    crate::outln!(
        ctx,
        "pruned {} versions; {} chunks and {} shards freed",
        report.versions,
        report.chunks,
        report.shards
    );
    Ok(())
}

pub async fn tag(ctx: &CliContext, args: TagArgs) -> anyhow::Result<()> {
    if args.add.is_empty() && args.remove.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "nothing to do: pass --add a,b and/or --remove c",
        )
        .into());
    }
    let repo = ctx.open_metadata().await?;
    let (name, add, remove) = (args.name.clone(), args.add.clone(), args.remove.clone());
    let tags = with(&repo, move |c| {
        let attr = resolve_key(c, &name)?;
        if !add.is_empty() {
            c.add_tags(attr.ino, &add)?;
        }
        if !remove.is_empty() {
            c.remove_tags(attr.ino, &remove)?;
        }
        Ok(c.tags(attr.ino)?)
    })
    .await?;
    crate::outln!(ctx, "{}: {}", args.name.to_string_lossy(), tags.join(","));
    Ok(())
}
