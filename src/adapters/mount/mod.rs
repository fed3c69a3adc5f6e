//! The FUSE mount's ports ([`datamesh_mount::Namespace`], [`datamesh_mount::ContentStore`])
//! over the catalog and the engine.
//!
//! # Model
//!
//! [`MountBackend`] is one value implementing both ports. It owns two catalog
//! connections of its own, beside the repository's (which the CLI's commands use when
//! they run inside the mount through the control socket):
//!
//! * the *writer*, with [`Durability::Deferred`]: every namespace change and every
//!   commit of the mount, and the engine the mount uploads and reads through. A
//!   change is in the WAL when it returns (it survives `kill -9` of the mount) and
//!   reaches the disk at the next durability point: [`ContentStore::commit`],
//!   [`Namespace::sync`] (`fsync`, `fsyncdir`, `syncfs`) and unmount each end with
//!   [`Catalog::make_durable`]. This is the contract of docs/SEMANTICS.md ("metadata:
//!   durable across a power cut after fsync/fsyncdir/syncfs of anything").
//! * the *reader*: lookups, getattr, readdir, readlink, xattr reads and layouts, so they
//!   never wait behind a write transaction (WAL readers do not block on writers and
//!   see every committed transaction).
//!
//! Catalog calls run on the calling thread inside `tokio::task::block_in_place`: the
//! mount serves metadata requests on its FUSE session threads, where this costs no
//! thread hop; on a runtime worker the worker hands its other tasks over first. A
//! multi-threaded runtime is required (as `datamesh_mount::mount` already says); on a
//! current-thread runtime the call simply blocks that thread.
//!
//! # Content
//!
//! A chunk reference is a [`MountChunk`]: the [`ChunkId`] and the number of its bytes
//! the extent uses (a truncate may cut the last chunk). `fetch` reads the chunk through
//! the engine's cache of verified chunks and slices it. Commits turn each staged file
//! into a new version without touching the node's mtime or ctime (the namespace owns
//! them): small files whose sealed chunk fits `storage.inline_max` are sealed here and
//! committed all together in one transaction ([`Catalog::commit_inline`]); every other
//! file is uploaded by the engine (chunked, sealed, erasure-coded, shards durable) and
//! committed with [`Catalog::commit_content`]. A failing file fails alone.
//!
//! # Versions
//!
//! A mount commit replaces the file's current version by default (an editor saving a
//! file ten times leaves one version, as on any filesystem); `[mount] keep_versions =
//! true` keeps each commit as a version instead (prune with `datamesh prune`). Versions
//! made by `datamesh put` are kept either way.
//!
//! # Errors
//!
//! Every catalog and engine error becomes an [`FsError`] in one function,
//! [`fs_error`], by the catalog error's variant where there is one and by the crate
//! error's kind otherwise.

mod content;
mod namespace;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datamesh_mount::FsError;
use datamesh_mount::ports::{FsResult, FsStats};

use crate::catalog::{Catalog, CatalogError, Durability};
use crate::crypto::chunk::ChunkKeys;
use crate::engine::{Engine, EngineSettings};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repository;
use crate::store::DynStore;

pub use content::MountChunk;

/// Where `statfs` learns the free space of the store.
#[derive(Clone)]
pub enum Capacity {
    /// The local shard directory: `statvfs` of it (instant).
    LocalDir(PathBuf),
    /// Any store: its `stats()` (may walk a directory or ask peers; cached).
    Store(DynStore),
}

/// How the mount commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPolicy {
    /// Keep every commit as a version (`[mount] keep_versions`) instead of replacing
    /// the current one.
    pub keep_versions: bool,
}

/// How long `statfs` figures are reused.
const STATFS_CACHE: Duration = Duration::from_secs(2);

/// The mount's backend: both ports over the catalog and the engine. See the module docs.
pub struct MountBackend {
    writer: Arc<Catalog>,
    reader: Arc<Catalog>,
    engine: Engine,
    keys: ChunkKeys,
    policy: CommitPolicy,
    capacity: Capacity,
    statfs: Mutex<Option<(Instant, FsStats)>>,
    gc: Arc<GcState>,
}

/// Background garbage collection after commits: one run at a time, rerun if asked
/// meanwhile.
#[derive(Default)]
struct GcState {
    running: AtomicBool,
    again: AtomicBool,
}

impl MountBackend {
    /// Opens the mount's two catalog connections on the repository's catalog and an
    /// engine over the writer, the store and the repository's keys (which must be
    /// unlocked). `cache_bytes` is the budget of the verified-chunk cache.
    pub fn open(
        repo: &Repository,
        store: DynStore,
        capacity: Capacity,
        cache_bytes: u64,
        policy: CommitPolicy,
    ) -> Result<Self> {
        let keys = repo.keys().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "the keystore must be unlocked before mounting",
            )
        })?;
        let path = repo.paths().catalog();
        let writer = Arc::new(Catalog::open(&path)?);
        writer.set_durability(Durability::Deferred)?;
        let reader = Arc::new(Catalog::open(&path)?);
        let chunk_keys = ChunkKeys::new(keys);
        let engine = Engine::new(
            chunk_keys.clone(),
            chunk_keys.chunker_seed(),
            writer.clone(),
            store,
            cache_bytes,
            EngineSettings::from_config(repo.config())?,
        );
        Ok(MountBackend {
            writer,
            reader,
            engine,
            keys: chunk_keys,
            policy,
            capacity,
            statfs: Mutex::new(None),
            gc: Arc::default(),
        })
    }

    /// The engine the mount reads and writes through.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The read connection (for resolving paths after external changes).
    pub fn reader(&self) -> &Arc<Catalog> {
        &self.reader
    }

    /// Makes everything the mount's connection committed durable.
    pub fn make_durable(&self) -> Result<()> {
        Ok(blocking_now(|| self.writer.make_durable())?)
    }

    /// Collects garbage in the background; a request while one runs makes it run again.
    fn collect_garbage_soon(&self) {
        self.gc.again.store(true, Ordering::SeqCst);
        if self.gc.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let (gc, engine) = (self.gc.clone(), self.engine.clone());
        tokio::spawn(async move {
            loop {
                while gc.again.swap(false, Ordering::SeqCst) {
                    if let Err(e) = engine.collect_garbage().await {
                        tracing::warn!("garbage collection after a commit failed: {e}");
                    }
                }
                gc.running.store(false, Ordering::SeqCst);
                // A request between the last check and clearing `running` started no run.
                if !gc.again.load(Ordering::SeqCst) || gc.running.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        });
    }

    /// Real capacity: free space of the store after redundancy overhead, plus the
    /// logical bytes already stored; inode counts from the catalog.
    async fn compute_statfs(&self) -> Result<FsStats> {
        let layout = self.engine.settings().layout;
        let (k, n) = (
            u64::from(layout.k),
            u64::from(layout.k) + u64::from(layout.m),
        );
        let raw_free = match &self.capacity {
            Capacity::LocalDir(dir) => blocking_now(|| crate::store::local::free_space(dir))
                .map_err(|e| Error::from(e).context(format!("statfs {}", dir.display())))?,
            Capacity::Store(store) => store.stats().await?.available,
        };
        let free = u64::try_from(u128::from(raw_free) * u128::from(k) / u128::from(n.max(1)))
            .unwrap_or(u64::MAX);
        let usage = blocking_now(|| self.reader.usage())?;
        let total_inodes = u64::MAX / 2;
        Ok(FsStats {
            total_bytes: usage.logical_bytes.saturating_add(free),
            free_bytes: free,
            avail_bytes: free,
            total_inodes,
            free_inodes: total_inodes.saturating_sub(usage.nodes),
        })
    }

    async fn statfs_cached(&self) -> FsResult<FsStats> {
        let cached = *self.statfs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, stats)) = cached
            && at.elapsed() < STATFS_CACHE
        {
            return Ok(stats);
        }
        let stats = self.compute_statfs().await.map_err(|e| fs_error(&e))?;
        *self.statfs.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), stats));
        Ok(stats)
    }
}

/// Runs blocking work (SQLite, an fsync) on this thread without stalling the runtime:
/// `block_in_place` on a multi-threaded runtime (a no-op hand-off on the FUSE session
/// threads), a plain call elsewhere.
pub(crate) fn blocking_now<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A catalog call on this thread, its error mapped.
fn cat<T>(f: impl FnOnce() -> std::result::Result<T, CatalogError>) -> FsResult<T> {
    blocking_now(f).map_err(|e| fs_error(&Error::from(e)))
}

/// The one mapping from catalog and engine errors to the mount's [`FsError`]: by the
/// catalog error's variant when the error is one, else by the crate error's kind.
pub fn fs_error(err: &Error) -> FsError {
    use CatalogError as C;
    if let Some(c) = CatalogError::of(err) {
        return match c {
            C::NoEntry { .. } | C::NoNode(_) | C::NoVersion { .. } => FsError::NotFound,
            C::Exists { .. } | C::AttrExists { .. } => FsError::AlreadyExists,
            C::NotEmpty { .. } => FsError::NotEmpty,
            C::IsDir { .. } => FsError::IsADirectory,
            C::NotDir { .. } => FsError::NotADirectory,
            C::NotFile { .. } => FsError::InvalidArgument("not a regular file"),
            C::NotSymlink { .. } => FsError::InvalidArgument("not a symbolic link"),
            C::InvalidName { .. } => FsError::InvalidArgument("invalid name"),
            C::NameTooLong { .. } | C::PathTooLong { .. } => FsError::NameTooLong,
            C::IntoItself { .. } => FsError::InvalidArgument("directory into its own subtree"),
            C::Root { .. } => FsError::Busy,
            C::DirLink { .. } => FsError::NotPermitted,
            C::TooManyLinks { .. } => FsError::TooManyLinks,
            C::NoAttr { .. } => FsError::NoAttribute,
            // setxattr(2): "ERANGE: the size of name or value exceeds a limit".
            C::TooLarge { .. } => FsError::Range,
            C::InvalidTag { .. } | C::Pattern(_) => FsError::InvalidArgument("invalid input"),
            C::Io { source, .. } => match source.raw_os_error() {
                Some(code) => FsError::io("catalog", std::io::Error::from_raw_os_error(code)),
                None => FsError::backend(c.to_string()),
            },
            _ if c.kind() == ErrorKind::NoSpace => FsError::NoSpace,
            _ => FsError::backend(c.to_string()),
        };
    }
    if let Some(io) = err
        .inner()
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
    {
        return FsError::io("datamesh", std::io::Error::from_raw_os_error(io));
    }
    match err.kind() {
        ErrorKind::NoSpace => FsError::NoSpace,
        // A missing shard or chunk is an I/O error to a reader, never ENOENT: the file
        // itself exists.
        _ => FsError::backend(err.to_string()),
    }
}

#[cfg(test)]
mod tests;
