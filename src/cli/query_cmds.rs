//! Read-only commands: `list`, `info`, `stats`, `search`, `recent`, `versions`. None
//! needs the passphrase; every one takes `--json`.

use std::io::Write as _;

use serde::Serialize;

use super::CliContext;
use super::args::{CheckArgs, InfoArgs, JsonArg, ListArgs, RecentArgs, SearchArgs, VersionsArgs};
use super::names::{name_bytes, resolve_key};
use super::output::{self, mode, parse_since, time};
use crate::catalog::{ListEntry, ListFilter, NodeKind, SearchQuery};
use crate::config::human_bytes;
use crate::engine::blocking;
use crate::error::{Error, ErrorKind};
use crate::store::StoreStats;

fn kind_letter(k: NodeKind) -> char {
    match k {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::File => '-',
    }
}

fn print_entries(ctx: &CliContext, entries: &[ListEntry], long: bool) -> anyhow::Result<()> {
    if !long {
        let mut out = String::new();
        for e in entries {
            out.push_str(&e.path);
            if e.kind == NodeKind::Dir {
                out.push('/');
            }
            out.push('\n');
        }
        write!(ctx.out(), "{out}")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                mode(kind_letter(e.kind), e.mode),
                e.size.to_string(),
                time(e.mtime),
                e.versions.to_string(),
                format!("#{}", e.ino),
                e.tags.join(","),
                e.path.clone(),
            ]
        })
        .collect();
    output::table(
        ctx,
        &[
            "MODE", "SIZE", "MODIFIED", "VERSIONS", "KEY", "TAGS", "PATH",
        ],
        &rows,
    )
}

pub async fn list(ctx: &CliContext, args: ListArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let filter = ListFilter {
        prefix: args.prefix.as_deref().map(name_bytes).unwrap_or_default(),
        tags: args.tags.clone(),
    };
    let c = repo.catalog().clone();
    let entries = blocking(move || Ok(c.list(&filter)?)).await?;
    if args.json {
        output::json(ctx, &entries)
    } else {
        print_entries(ctx, &entries, args.long)
    }
}

pub async fn search(ctx: &CliContext, args: SearchArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let (kind, extension) = match args.file_type.as_deref().map(str::to_ascii_lowercase) {
        None => (None, None),
        Some(t) => match t.as_str() {
            "file" | "f" => (Some(NodeKind::File), None),
            "dir" | "directory" | "d" => (Some(NodeKind::Dir), None),
            "symlink" | "link" | "l" => (Some(NodeKind::Symlink), None),
            ext => (None, Some(ext.trim_start_matches('.').to_owned())),
        },
    };
    let query = SearchQuery {
        pattern: args.query.clone(),
        regex: args.regex,
        ignore_case: !args.regex,
        kind,
        extension,
        limit: None,
    };
    let c = repo.catalog().clone();
    let entries = blocking(move || Ok(c.search(&query)?)).await?;
    if args.json {
        output::json(ctx, &entries)
    } else {
        print_entries(ctx, &entries, true)
    }
}

pub async fn recent(ctx: &CliContext, args: RecentArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let repo = ctx.open_metadata().await?;
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let c = repo.catalog().clone();
    let entries = blocking(move || Ok(c.recent(limit, since)?)).await?;
    if args.json {
        return output::json(ctx, &entries);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                time(e.version.committed),
                e.version.seq.to_string(),
                e.version.size.to_string(),
                e.path
                    .clone()
                    .unwrap_or_else(|| format!("(deleted, #{})", e.version.ino)),
            ]
        })
        .collect();
    output::table(ctx, &["STORED", "VERSION", "SIZE", "PATH"], &rows)
}

pub async fn versions(ctx: &CliContext, args: VersionsArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let name = args.name.clone();
    let c = repo.catalog().clone();
    let versions = blocking(move || {
        let attr = resolve_key(&c, &name)?;
        if attr.kind != NodeKind::File {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} is not a file; only files have versions",
                    name.to_string_lossy()
                ),
            ));
        }
        Ok(c.versions(attr.ino)?)
    })
    .await?;
    if args.json {
        return output::json(ctx, &versions);
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                format!("{}{}", v.seq, if v.current { " (current)" } else { "" }),
                v.size.to_string(),
                time(v.mtime),
                time(v.committed),
                v.chunks.to_string(),
            ]
        })
        .collect();
    output::table(
        ctx,
        &["VERSION", "SIZE", "MODIFIED", "STORED", "CHUNKS"],
        &rows,
    )
}

pub async fn info(ctx: &CliContext, args: InfoArgs) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let name = args.name.clone();
    let c = repo.catalog().clone();
    let info = blocking(move || {
        let attr = resolve_key(&c, &name)?;
        Ok(c.info(attr.ino)?)
    })
    .await?;
    if args.json {
        return output::json(ctx, &info);
    }
    let a = &info.attr;
    crate::outln!(ctx, "key:       #{}", a.ino);
    for p in &info.paths {
        crate::outln!(ctx, "path:      {p}");
    }
    crate::outln!(ctx, "kind:      {}", mode(kind_letter(a.kind), a.mode));
    crate::outln!(ctx, "size:      {} ({})", a.size, human_bytes(a.size));
    crate::outln!(ctx, "owner:     {}:{}", a.uid, a.gid);
    crate::outln!(ctx, "modified:  {}", time(a.mtime));
    crate::outln!(ctx, "changed:   {}", time(a.ctime));
    if let Some(t) = &info.target {
        crate::outln!(ctx, "target:    {t}");
    }
    if a.kind != NodeKind::Dir {
        crate::outln!(ctx, "links:     {}", a.nlink);
    }
    if !info.tags.is_empty() {
        crate::outln!(ctx, "tags:      {}", info.tags.join(","));
    }
    if !info.xattrs.is_empty() {
        crate::outln!(ctx, "xattrs:    {}", info.xattrs.join(", "));
    }
    if let Some(s) = &info.current {
        crate::outln!(
            ctx,
            "content:   {} chunks ({} distinct, {} inline), {} stored{}",
            s.refs,
            s.chunks,
            s.inline,
            human_bytes(s.stored_bytes),
            if s.degraded > 0 {
                format!(", {} chunks DEGRADED", s.degraded)
            } else {
                String::new()
            }
        );
    }
    if !info.versions.is_empty() {
        crate::outln!(ctx, "versions:");
        for v in &info.versions {
            crate::outln!(
                ctx,
                "  {:>4}{} {:>12}  stored {}",
                v.seq,
                if v.current { "*" } else { " " },
                v.size,
                time(v.committed)
            );
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct StatsOut {
    #[serde(flatten)]
    catalog: crate::catalog::Stats,
    store: StoreStats,
    degraded_chunks: u64,
    health: &'static str,
}

pub async fn stats(ctx: &CliContext, args: JsonArg) -> anyhow::Result<()> {
    let repo = ctx.open_metadata().await?;
    let c = repo.catalog().clone();
    let (stats, degraded) =
        blocking(move || Ok((c.stats()?, c.degraded(usize::MAX)?.len() as u64))).await?;
    let store = ctx.store(&repo).await?;
    let store_stats = store.stats().await?;
    let health = if degraded == 0 { "ok" } else { "degraded" };
    let out = StatsOut {
        catalog: stats,
        store: store_stats,
        degraded_chunks: degraded,
        health,
    };
    if args.json {
        return output::json(ctx, &out);
    }
    let s = &out.catalog;
    let rows = vec![
        vec!["files".into(), s.files.to_string()],
        vec!["directories".into(), s.dirs.to_string()],
        vec!["symlinks".into(), s.symlinks.to_string()],
        vec!["versions".into(), s.versions.to_string()],
        vec![
            "logical bytes (current versions)".into(),
            format!("{} ({})", s.logical_bytes, human_bytes(s.logical_bytes)),
        ],
        vec![
            "bytes across all versions".into(),
            format!("{} ({})", s.version_bytes, human_bytes(s.version_bytes)),
        ],
        vec![
            "unique chunk bytes".into(),
            format!("{} ({})", s.chunk_bytes, human_bytes(s.chunk_bytes)),
        ],
        vec![
            "stored bytes (shards + inline)".into(),
            format!("{} ({})", s.stored_bytes, human_bytes(s.stored_bytes)),
        ],
        vec!["dedup ratio".into(), format!("{:.2}", s.dedup_ratio)],
        vec![
            "chunks".into(),
            format!("{} ({} inline)", s.chunks, s.inline_chunks),
        ],
        vec!["shards".into(), s.shards.to_string()],
        vec!["shards awaiting deletion".into(), s.gc_pending.to_string()],
        vec!["uploads in flight".into(), s.uploads.to_string()],
        vec!["store: shards held".into(), out.store.shards.to_string()],
        vec!["store: bytes held".into(), human_bytes(out.store.bytes)],
        vec![
            "store: space available".into(),
            human_bytes(out.store.available),
        ],
        vec![
            "health".into(),
            format!("{health} ({degraded} degraded chunks)"),
        ],
    ];
    output::table(ctx, &["", ""], &rows)
}

pub async fn check(ctx: &CliContext, args: CheckArgs) -> anyhow::Result<()> {
    let report = if args.read_data {
        let (_repo, engine) = ctx.open_engine().await?;
        engine.check(true).await?
    } else {
        let repo = ctx.open_metadata().await?;
        let store = ctx.store(&repo).await?;
        crate::engine::scrub::check_presence(repo.catalog(), &store)
            .await?
            .0
    };
    if args.json {
        output::json(ctx, &report)?;
    } else {
        for p in &report.catalog_problems {
            crate::outln!(ctx, "catalog: {p}");
        }
        for c in &report.chunks_lost {
            crate::outln!(ctx, "LOST {c}");
        }
        for c in &report.chunks_degraded {
            crate::outln!(ctx, "degraded {c}");
        }
        crate::outln!(
            ctx,
            "checked {} shards: {} missing{}",
            report.shards_checked,
            report.shards_missing,
            if args.read_data {
                format!(
                    "; read {} chunks, repaired {} shards",
                    report.chunks_read, report.shards_repaired
                )
            } else {
                String::new()
            }
        );
    }
    if !report.is_ok() {
        let hint = if args.read_data {
            ""
        } else {
            "; run `datamesh check --read-data` to repair what can be rebuilt"
        };
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the repository has problems: {} catalog, {} chunks lost, {} degraded{hint}",
                report.catalog_problems.len(),
                report.chunks_lost.len(),
                report.chunks_degraded.len()
            ),
        )
        .into());
    }
    Ok(())
}
