//! Backing up a local directory tree into a repository path.
//!
//! # Model
//!
//! [`backup_tree`] walks the source ([`crate::tree::walk`]), creates every directory at
//! the destination, then stores the regular files whose size or mtime differ from what
//! the repository holds at the same path (each becomes a new version; identical content
//! costs no new chunks thanks to the repository's dedup). Up to
//! [`BackupOptions::parallel_files`] files are stored at once, which matters for trees of
//! many small files where per-file latency, not bandwidth, dominates.
//!
//! # Failure policy
//!
//! A file that cannot be read or stored is recorded in [`BackupReport::failed`] and the
//! backup goes on; a *fatal* repository error (disk full, repository unusable) stops it.
//! Nothing already stored is touched by a failure: rerunning the backup completes it.

use std::path::Path;

use futures::StreamExt;

use crate::port::{RemoteFile, Repository, RepositoryError};
use crate::tree::{self, Entry};

/// How to back up.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Tags set on every stored file.
    pub tags: Vec<String>,
    /// Files stored at once.
    pub parallel_files: usize,
    /// Store files even when size and mtime match.
    pub force: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            tags: Vec::new(),
            parallel_files: 4,
            force: false,
        }
    }
}

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Directories created or already present.
    pub dirs: u64,
    /// Files stored (new versions).
    pub files_stored: u64,
    /// Files skipped because size and mtime matched.
    pub files_unchanged: u64,
    /// Bytes of the stored files.
    pub bytes_stored: u64,
    /// Of those, bytes that were new to the repository.
    pub bytes_new: u64,
    /// Entries not stored by design (symlinks, special files), with what they are.
    pub skipped: Vec<(String, String)>,
    /// Entries that failed, with why.
    pub failed: Vec<(String, String)>,
}

fn dest_path(dest: &[u8], rel: &[u8]) -> Vec<u8> {
    if dest.is_empty() {
        return rel.to_vec();
    }
    let mut v = dest.to_vec();
    v.push(b'/');
    v.extend_from_slice(rel);
    v
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Backs up the directory `source` to the repository path `dest` (empty = the root).
/// `on_file` is called with the bytes of each file as it is done (for progress).
pub async fn backup_tree<R: Repository + ?Sized>(
    repo: &R,
    source: &Path,
    dest: &[u8],
    options: &BackupOptions,
    on_file: &(dyn Fn(u64) + Send + Sync),
) -> Result<BackupReport, RepositoryError> {
    let src = source.to_owned();
    let entries = tokio::task::spawn_blocking(move || tree::walk(&src))
        .await
        .map_err(|e| RepositoryError {
            message: format!("walk task failed: {e}"),
            fatal: true,
        })?
        .map_err(|e| RepositoryError {
            message: format!("cannot read {}: {e}", source.display()),
            fatal: true,
        })?;
    let mut report = BackupReport::default();
    if !dest.is_empty() {
        repo.make_dir(dest).await?;
    }
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Entry::Dir { rel } => {
                repo.make_dir(&dest_path(dest, &rel)).await?;
                report.dirs += 1;
            }
            Entry::File { rel, path, meta } => files.push((rel, path, meta)),
            Entry::Skipped { rel, what } => report.skipped.push((lossy(&rel), what.to_owned())),
            Entry::Unreadable { rel, reason } => report.failed.push((lossy(&rel), reason)),
        }
    }
    let results: Vec<_> = futures::stream::iter(files)
        .map(|(rel, path, meta)| async move {
            let target = dest_path(dest, &rel);
            let outcome = async {
                if !options.force
                    && let RemoteFile::File { size, mtime_ns } = repo.stat(&target).await?
                    && size == meta.size
                    && mtime_ns == meta.mtime_ns
                {
                    return Ok(None);
                }
                repo.store_file(&target, &path, &meta, &options.tags)
                    .await
                    .map(Some)
            }
            .await;
            on_file(meta.size);
            (rel, meta.size, outcome)
        })
        .buffer_unordered(options.parallel_files.max(1))
        .collect()
        .await;
    for (rel, size, outcome) in results {
        match outcome {
            Ok(None) => report.files_unchanged += 1,
            Ok(Some(new)) => {
                report.files_stored += 1;
                report.bytes_stored += size;
                report.bytes_new += new;
            }
            Err(e) if e.fatal => return Err(e),
            Err(e) => report.failed.push((lossy(&rel), e.message)),
        }
    }
    report.failed.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::FileMeta;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// size, mtime, content.
    type Stored = (u64, i64, Vec<u8>);

    /// A repository in memory: path → stored file, or directory.
    #[derive(Default)]
    struct Fake {
        files: Mutex<BTreeMap<Vec<u8>, Stored>>,
        dirs: Mutex<Vec<Vec<u8>>>,
        stores: Mutex<u64>,
        fail_on: Option<Vec<u8>>,
    }

    #[async_trait]
    impl Repository for Fake {
        async fn stat(&self, path: &[u8]) -> Result<RemoteFile, RepositoryError> {
            Ok(match self.files.lock().unwrap().get(path) {
                Some((size, mtime, _)) => RemoteFile::File {
                    size: *size,
                    mtime_ns: *mtime,
                },
                None if self.dirs.lock().unwrap().iter().any(|d| d == path) => {
                    RemoteFile::Directory
                }
                None => RemoteFile::Missing,
            })
        }
        async fn make_dir(&self, path: &[u8]) -> Result<(), RepositoryError> {
            self.dirs.lock().unwrap().push(path.to_vec());
            Ok(())
        }
        async fn store_file(
            &self,
            path: &[u8],
            source: &Path,
            meta: &FileMeta,
            _tags: &[String],
        ) -> Result<u64, RepositoryError> {
            if self.fail_on.as_deref() == Some(path) {
                return Err(RepositoryError {
                    message: "injected".into(),
                    fatal: false,
                });
            }
            let data = std::fs::read(source).map_err(|e| RepositoryError {
                message: e.to_string(),
                fatal: false,
            })?;
            *self.stores.lock().unwrap() += 1;
            self.files
                .lock()
                .unwrap()
                .insert(path.to_vec(), (meta.size, meta.mtime_ns, data));
            Ok(meta.size)
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/sub")).unwrap();
        std::fs::write(dir.path().join("src/a.rs"), b"fn main() {}").unwrap();
        std::fs::write(dir.path().join("src/sub/b.rs"), b"mod b;").unwrap();
        std::fs::write(dir.path().join("README"), b"hello").unwrap();
        dir
    }

    #[tokio::test]
    async fn stores_every_file_then_skips_unchanged_ones() {
        let dir = tree();
        let repo = Fake::default();
        let r = backup_tree(
            &repo,
            dir.path(),
            b"backup",
            &BackupOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
        assert_eq!((r.files_stored, r.dirs, r.bytes_stored), (3, 2, 12 + 6 + 5));
        assert_eq!(
            repo.files
                .lock()
                .unwrap()
                .get(&b"backup/src/sub/b.rs"[..])
                .unwrap()
                .2,
            b"mod b;"
        );
        let again = backup_tree(
            &repo,
            dir.path(),
            b"backup",
            &BackupOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
        assert_eq!((again.files_stored, again.files_unchanged), (0, 3));
        std::fs::write(dir.path().join("README"), b"hello, changed").unwrap();
        let third = backup_tree(
            &repo,
            dir.path(),
            b"backup",
            &BackupOptions::default(),
            &|_| {},
        )
        .await
        .unwrap();
        assert_eq!((third.files_stored, third.files_unchanged), (1, 2));
        assert_eq!(*repo.stores.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn a_failing_file_is_reported_and_the_rest_stored() {
        let dir = tree();
        let repo = Fake {
            fail_on: Some(b"src/a.rs".to_vec()),
            ..Default::default()
        };
        let r = backup_tree(&repo, dir.path(), b"", &BackupOptions::default(), &|_| {})
            .await
            .unwrap();
        assert_eq!(r.files_stored, 2);
        assert_eq!(
            r.failed,
            vec![("src/a.rs".to_owned(), "injected".to_owned())]
        );
    }
}
