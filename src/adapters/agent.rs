//! The agent's [`Repository`] port over the engine: what `put -r` and backups store
//! through.
//!
//! Storing a file is: upload the content (chunks durable and pinned), then in the
//! catalog create the file entry and missing parents if needed, apply mode and tags, and
//! commit the content as a new version. A failure after the upload ends the upload, so
//! its chunks are released to garbage collection and nothing is left pinned.
//!
//! With the owner's chunk keys ([`EngineRepository::with_keys`]) the port also offers the
//! batched path for small files (`tree_put.rs`): a tree of thousands of them is stored in
//! a few catalog transactions per batch instead of several per file.

use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use datamesh_agent::{LocalFile, RemoteFile, Repository, RepositoryError};

pub use datamesh_agent::FileMeta;

use crate::catalog::{Attr, NodeKind, SetAttr, VersionInfo};
use crate::crypto::chunk::ChunkKeys;
use crate::engine::Engine;
use crate::engine::writer::{Progress, UploadStats};
use crate::error::{Error, ErrorKind, Result};

/// Mode of directories created on the way to a stored file.
pub(super) const DIR_MODE: u32 = 0o755;

/// The metadata the agent records for a local file.
pub fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    use std::os::unix::fs::MetadataExt;
    FileMeta {
        size: m.len(),
        mtime_ns: m
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.mtime_nsec()),
        mode: m.mode() & 0o7777,
    }
}

/// Metadata for content that has no file (standard input): now, mode 0644.
pub fn meta_now() -> FileMeta {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    FileMeta {
        size: 0,
        mtime_ns: now,
        mode: 0o644,
    }
}

pub(super) fn owner() -> (u32, u32) {
    // SAFETY: geteuid and getegid take no arguments, cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The engine as the agent's repository.
#[derive(Clone)]
pub struct EngineRepository {
    engine: Engine,
    /// The owner's chunk keys: with them small files take the batched path.
    keys: Option<ChunkKeys>,
}

impl EngineRepository {
    /// Wraps an engine; every file is stored through the engine's streaming upload.
    pub fn new(engine: Engine) -> Self {
        EngineRepository { engine, keys: None }
    }

    /// Wraps an engine, storing files no larger than the minimum chunk in batches
    /// sealed with `keys` (which must be the engine's owner's).
    pub fn with_keys(engine: Engine, keys: ChunkKeys) -> Self {
        EngineRepository {
            engine,
            keys: Some(keys),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stores everything `reader` yields at `path` as a new version.
    pub async fn store_reader<R: Read + Send + 'static>(
        &self,
        path: &[u8],
        reader: R,
        meta: &FileMeta,
        tags: &[String],
        progress: Option<Progress>,
    ) -> Result<(VersionInfo, UploadStats)> {
        let upload = self.engine.upload(reader, progress).await?;
        let stats = upload.stats.clone();
        let token = upload.token;
        let (p, mode, tags) = (path.to_vec(), meta.mode, tags.to_vec());
        let attr = self
            .engine
            .with_catalog(move |c| {
                let (uid, gid) = owner();
                let prepared = (|| {
                    let attr = c.ensure_file(&p, mode, DIR_MODE, uid, gid)?;
                    if attr.mode & 0o7777 != mode {
                        c.setattr(
                            attr.ino,
                            &SetAttr {
                                mode: Some(mode),
                                ..Default::default()
                            },
                        )?;
                    }
                    if !tags.is_empty() {
                        c.add_tags(attr.ino, &tags)?;
                    }
                    Ok::<_, crate::catalog::CatalogError>(attr)
                })();
                if prepared.is_err() {
                    let _ = c.end_upload(&token);
                }
                Ok(prepared?)
            })
            .await?;
        let version = self
            .engine
            .commit(upload, attr.ino, meta.mtime_ns, false)
            .await?;
        Ok((version, stats))
    }
}

pub(super) fn port_error(err: Error) -> RepositoryError {
    let fatal = matches!(
        err.kind(),
        ErrorKind::NoSpace | ErrorKind::Unsupported | ErrorKind::Internal | ErrorKind::Corrupt
    );
    RepositoryError {
        message: err.to_string(),
        fatal,
    }
}

fn remote(found: Option<Attr>) -> RemoteFile {
    match found {
        None => RemoteFile::Missing,
        Some(a) if a.kind == NodeKind::Dir => RemoteFile::Directory,
        Some(a) if a.kind == NodeKind::File => RemoteFile::File {
            size: a.size,
            mtime_ns: a.mtime,
        },
        Some(_) => RemoteFile::Other,
    }
}

#[async_trait]
impl Repository for EngineRepository {
    async fn stat(&self, path: &[u8]) -> Result<RemoteFile, RepositoryError> {
        let p = path.to_vec();
        let found = self
            .engine
            .with_catalog(move |c| match c.resolve(&p) {
                Ok(attr) => Ok(Some(attr)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            })
            .await
            .map_err(port_error)?;
        Ok(remote(found))
    }

    fn batch_limit(&self) -> u64 {
        match self.keys {
            Some(_) => u64::from(self.engine.settings().chunk_sizes.min),
            None => 0,
        }
    }

    async fn stat_many(&self, paths: &[Vec<u8>]) -> Vec<Result<RemoteFile, RepositoryError>> {
        let p = paths.to_vec();
        match self
            .engine
            .with_catalog(move |c| Ok(c.resolve_many(&p)?))
            .await
        {
            Ok(found) => found
                .into_iter()
                .map(|r| r.map(remote).map_err(|e| port_error(e.into())))
                .collect(),
            Err(e) => vec![Err(port_error(e)); paths.len()],
        }
    }

    async fn make_dirs(&self, paths: &[Vec<u8>]) -> Result<(), RepositoryError> {
        let p = paths.to_vec();
        let made = self
            .engine
            .with_catalog(move |c| {
                let (uid, gid) = owner();
                Ok(c.mkdir_p_many(&p, DIR_MODE, uid, gid)?)
            })
            .await
            .map_err(port_error)?;
        match made.into_iter().find_map(|r| r.err()) {
            Some(e) => Err(port_error(e.into())),
            None => Ok(()),
        }
    }

    async fn store_batch(
        &self,
        files: &[LocalFile],
        tags: &[String],
    ) -> Vec<Result<u64, RepositoryError>> {
        match &self.keys {
            Some(keys) => {
                super::tree_put::store_batch(self, keys, self.batch_limit(), files, tags).await
            }
            None => {
                let mut out = Vec::with_capacity(files.len());
                for f in files {
                    out.push(self.store_file(&f.path, &f.source, &f.meta, tags).await);
                }
                out
            }
        }
    }

    async fn make_dir(&self, path: &[u8]) -> Result<(), RepositoryError> {
        let p = path.to_vec();
        self.engine
            .with_catalog(move |c| {
                let (uid, gid) = owner();
                c.mkdir_p(&p, DIR_MODE, uid, gid)?;
                Ok(())
            })
            .await
            .map_err(port_error)
    }

    async fn store_file(
        &self,
        path: &[u8],
        source: &Path,
        meta: &FileMeta,
        tags: &[String],
    ) -> Result<u64, RepositoryError> {
        let file = std::fs::File::open(source).map_err(|e| RepositoryError {
            message: format!("cannot open {}: {e}", source.display()),
            fatal: false,
        })?;
        let (_, stats) = self
            .store_reader(path, file, meta, tags, None)
            .await
            .map_err(port_error)?;
        Ok(stats.new_bytes)
    }
}
