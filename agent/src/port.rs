//! The port the agent needs from a repository.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// Metadata of a local file the agent hands over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Permission bits.
    pub mode: u32,
}

/// What the repository holds at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteFile {
    /// Nothing.
    Missing,
    /// A directory.
    Directory,
    /// A file with this current size and mtime.
    File {
        /// Length.
        size: u64,
        /// Modification time, ns.
        mtime_ns: i64,
    },
    /// Something else (a symlink).
    Other,
}

/// A repository failure, as the agent reports it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct RepositoryError {
    /// What happened, for people.
    pub message: String,
    /// Whether the whole backup should stop (disk full, repository gone) rather than
    /// skip this one file.
    pub fatal: bool,
}

/// A local file to store with [`Repository::store_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    /// Where to store it.
    pub path: Vec<u8>,
    /// The local file.
    pub source: PathBuf,
    /// Its metadata when the tree was walked.
    pub meta: FileMeta,
}

/// A namespace of `/`-separated byte paths the agent stores into.
///
/// The batched methods let a repository amortise per-call costs (a durable transaction
/// each) over many files; their defaults call the one-at-a-time methods.
#[async_trait]
pub trait Repository: Send + Sync {
    /// What is at `path`.
    async fn stat(&self, path: &[u8]) -> Result<RemoteFile, RepositoryError>;
    /// Creates the directory `path` and its missing parents (existing ones are fine).
    async fn make_dir(&self, path: &[u8]) -> Result<(), RepositoryError>;
    /// Stores the local file `source` at `path` as a new version, with `meta` and `tags`;
    /// durable when it returns. Returns the plaintext bytes that were new (not deduplicated).
    async fn store_file(
        &self,
        path: &[u8],
        source: &Path,
        meta: &FileMeta,
        tags: &[String],
    ) -> Result<u64, RepositoryError>;

    /// Files of at most this many bytes may be stored with [`Repository::store_batch`]
    /// (0: the repository has no batched path; every file goes through `store_file`).
    fn batch_limit(&self) -> u64 {
        0
    }

    /// [`Repository::stat`] of each path; one result per path, in order.
    async fn stat_many(&self, paths: &[Vec<u8>]) -> Vec<Result<RemoteFile, RepositoryError>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.stat(p).await);
        }
        out
    }

    /// [`Repository::make_dir`] of each path, parents given before children.
    async fn make_dirs(&self, paths: &[Vec<u8>]) -> Result<(), RepositoryError> {
        for p in paths {
            self.make_dir(p).await?;
        }
        Ok(())
    }

    /// [`Repository::store_file`] of each file (each at most [`Repository::batch_limit`]
    /// bytes), durable when it returns; one result per file, in order.
    async fn store_batch(
        &self,
        files: &[LocalFile],
        tags: &[String],
    ) -> Vec<Result<u64, RepositoryError>> {
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            out.push(self.store_file(&f.path, &f.source, &f.meta, tags).await);
        }
        out
    }
}
