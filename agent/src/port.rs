//! The port the agent needs from a repository.

use std::path::Path;

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
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RepositoryError {
    /// What happened, for people.
    pub message: String,
    /// Whether the whole backup should stop (disk full, repository gone) rather than
    /// skip this one file.
    pub fatal: bool,
}

/// A namespace of `/`-separated byte paths the agent stores into.
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
}
