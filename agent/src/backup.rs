//! Backing up a local directory tree into a repository path.
//!
//! # Model
//!
//! [`backup_tree`] walks the source ([`crate::tree::walk`]), creates every directory at
//! the destination, then stores the regular files whose size or mtime differ from what
//! the repository holds at the same path (each becomes a new version; identical content
//! costs no new chunks thanks to the repository's dedup). Up to
//! [`BackupOptions::parallel_files`] units are stored at once.
//!
//! # Small files in batches
//!
//! Trees of many small files are dominated by per-file costs (a durable catalog
//! transaction or several per file), not bandwidth. Directories are therefore created in
//! one [`Repository::make_dirs`] call, and files of at most [`Repository::batch_limit`]
//! bytes are grouped, in walk order, into batches of at most
//! [`BackupOptions::batch_files`] files and [`BackupOptions::batch_bytes`] bytes: one
//! [`Repository::stat_many`] and one [`Repository::store_batch`] each. The batch bounds
//! memory (a repository may hold a batch's content while storing it); larger files are
//! stored one by one as before. A batch is a unit of work like a large file: up to
//! `parallel_files` units run at once.
//!
//! # Failure policy
//!
//! A file that cannot be read or stored is recorded in [`BackupReport::failed`] and the
//! backup goes on; a *fatal* repository error (disk full, repository unusable) stops it.
//! Nothing already stored is touched by a failure: rerunning the backup completes it.

use std::path::Path;

use futures::StreamExt;

use crate::port::{FileMeta, LocalFile, RemoteFile, Repository, RepositoryError};
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
    /// Most small files in one batch.
    pub batch_files: usize,
    /// Most bytes of small files in one batch.
    pub batch_bytes: u64,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            tags: Vec::new(),
            parallel_files: 4,
            force: false,
            batch_files: 512,
            batch_bytes: 4 << 20,
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
    let mut dirs = Vec::new();
    if !dest.is_empty() {
        dirs.push(dest.to_vec());
    }
    let mut files = Vec::new();
    for entry in entries {
        match entry {
            Entry::Dir { rel } => {
                dirs.push(dest_path(dest, &rel));
                report.dirs += 1;
            }
            Entry::File { rel, path, meta } => files.push(LocalFile {
                path: rel,
                source: path,
                meta,
            }),
            Entry::Skipped { rel, what } => report.skipped.push((lossy(&rel), what.to_owned())),
            Entry::Unreadable { rel, reason } => report.failed.push((lossy(&rel), reason)),
        }
    }
    repo.make_dirs(&dirs).await?;
    drop(dirs);
    let units = units(files, repo.batch_limit(), options);
    let results: Vec<Vec<Outcome>> = futures::stream::iter(units)
        .map(|unit| async move {
            match unit {
                Unit::One(f) => vec![store_one(repo, dest, f, options, on_file).await],
                Unit::Batch(fs) => store_many(repo, dest, fs, options, on_file).await,
            }
        })
        .buffer_unordered(options.parallel_files.max(1))
        .collect()
        .await;
    let results = results.into_iter().flatten();
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

/// A file's relative path, size and what storing it did (`None`: unchanged).
type Outcome = (Vec<u8>, u64, Result<Option<u64>, RepositoryError>);

/// Work stored as one piece.
enum Unit {
    One(LocalFile),
    Batch(Vec<LocalFile>),
}

/// Groups small files into batches (walk order kept inside each), others alone.
fn units(files: Vec<LocalFile>, limit: u64, options: &BackupOptions) -> Vec<Unit> {
    let mut out = Vec::new();
    let mut batch: Vec<LocalFile> = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if limit == 0 || f.meta.size > limit {
            out.push(Unit::One(f));
            continue;
        }
        if !batch.is_empty()
            && (batch.len() >= options.batch_files.max(1)
                || bytes + f.meta.size > options.batch_bytes)
        {
            out.push(Unit::Batch(std::mem::take(&mut batch)));
            bytes = 0;
        }
        bytes += f.meta.size;
        batch.push(f);
    }
    if !batch.is_empty() {
        out.push(Unit::Batch(batch));
    }
    out
}

fn unchanged(remote: &RemoteFile, meta: &FileMeta) -> bool {
    matches!(remote, RemoteFile::File { size, mtime_ns } if *size == meta.size && *mtime_ns == meta.mtime_ns)
}

async fn store_one<R: Repository + ?Sized>(
    repo: &R,
    dest: &[u8],
    f: LocalFile,
    options: &BackupOptions,
    on_file: &(dyn Fn(u64) + Send + Sync),
) -> Outcome {
    let target = dest_path(dest, &f.path);
    let outcome = async {
        if !options.force && unchanged(&repo.stat(&target).await?, &f.meta) {
            return Ok(None);
        }
        repo.store_file(&target, &f.source, &f.meta, &options.tags)
            .await
            .map(Some)
    }
    .await;
    on_file(f.meta.size);
    (f.path, f.meta.size, outcome)
}

async fn store_many<R: Repository + ?Sized>(
    repo: &R,
    dest: &[u8],
    files: Vec<LocalFile>,
    options: &BackupOptions,
    on_file: &(dyn Fn(u64) + Send + Sync),
) -> Vec<Outcome> {
    let targets: Vec<Vec<u8>> = files.iter().map(|f| dest_path(dest, &f.path)).collect();
    let remote = if options.force {
        Vec::new()
    } else {
        repo.stat_many(&targets).await
    };
    let mut outcomes: Vec<Option<Result<Option<u64>, RepositoryError>>> = Vec::new();
    let mut to_store = Vec::new();
    let mut at = Vec::new();
    for (i, (f, target)) in files.iter().zip(targets).enumerate() {
        match remote.get(i) {
            Some(Err(e)) => {
                outcomes.push(Some(Err(RepositoryError {
                    message: e.message.clone(),
                    fatal: e.fatal,
                })));
                continue;
            }
            Some(Ok(r)) if unchanged(r, &f.meta) => {
                outcomes.push(Some(Ok(None)));
                continue;
            }
            _ => {}
        }
        outcomes.push(None);
        at.push(i);
        to_store.push(LocalFile {
            path: target,
            source: f.source.clone(),
            meta: f.meta.clone(),
        });
    }
    if !to_store.is_empty() {
        let mut stored = repo.store_batch(&to_store, &options.tags).await.into_iter();
        for i in at {
            outcomes[i] = Some(match stored.next() {
                Some(r) => r.map(Some),
                None => Err(RepositoryError {
                    message: "the repository returned too few results for a batch".into(),
                    fatal: true,
                }),
            });
        }
    }
    files
        .into_iter()
        .zip(outcomes)
        .map(|(f, o)| {
            on_file(f.meta.size);
            let o = o.unwrap_or_else(|| {
                Err(RepositoryError {
                    message: "no result".into(),
                    fatal: true,
                })
            });
            (f.path, f.meta.size, o)
        })
        .collect()
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
        /// Files up to this size go through `store_batch` (0: none).
        limit: u64,
        /// Sizes of the batches stored, in files.
        batches: Mutex<Vec<usize>>,
        /// `make_dirs` calls.
        dir_calls: Mutex<u64>,
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
        fn batch_limit(&self) -> u64 {
            self.limit
        }
        async fn make_dirs(&self, paths: &[Vec<u8>]) -> Result<(), RepositoryError> {
            *self.dir_calls.lock().unwrap() += 1;
            for p in paths {
                self.make_dir(p).await?;
            }
            Ok(())
        }
        async fn store_batch(
            &self,
            files: &[LocalFile],
            tags: &[String],
        ) -> Vec<Result<u64, RepositoryError>> {
            assert!(files.iter().all(|f| f.meta.size <= self.limit));
            self.batches.lock().unwrap().push(files.len());
            let mut out = Vec::new();
            for f in files {
                out.push(self.store_file(&f.path, &f.source, &f.meta, tags).await);
            }
            out
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

    #[tokio::test]
    async fn small_files_go_in_bounded_batches_and_large_ones_alone() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..25u8 {
            let sub = dir.path().join(format!("d{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i:02}")), vec![i; 10]).unwrap();
        }
        std::fs::write(dir.path().join("big"), vec![7u8; 100]).unwrap();
        let repo = Fake {
            limit: 50,
            fail_on: Some(b"t/d1/f04".to_vec()),
            ..Default::default()
        };
        let options = BackupOptions {
            batch_files: 8,
            batch_bytes: 60,
            ..Default::default()
        };
        let r = backup_tree(&repo, dir.path(), b"t", &options, &|_| {})
            .await
            .unwrap();
        assert_eq!(
            (r.files_stored, r.dirs, r.bytes_stored),
            (25, 3, 24 * 10 + 100)
        );
        assert_eq!(r.failed, vec![("d1/f04".to_owned(), "injected".to_owned())]);
        let batches = repo.batches.lock().unwrap().clone();
        assert_eq!(
            batches.iter().sum::<usize>(),
            25,
            "every small file batched"
        );
        assert!(
            batches.iter().all(|&n| n <= 6),
            "60 bytes of 10-byte files: {batches:?}"
        );
        assert_eq!(
            *repo.dir_calls.lock().unwrap(),
            1,
            "directories in one call"
        );
        assert_eq!(
            repo.files.lock().unwrap().get(&b"t/big"[..]).unwrap().2,
            vec![7u8; 100]
        );
        assert_eq!(
            repo.files.lock().unwrap().get(&b"t/d2/f05"[..]).unwrap().2,
            vec![5u8; 10]
        );

        // A rerun stores only what failed (and what changed), in batches again.
        repo.batches.lock().unwrap().clear();
        let again = Fake {
            fail_on: None,
            limit: 50,
            files: Mutex::new(repo.files.lock().unwrap().clone()),
            ..Default::default()
        };
        std::fs::write(dir.path().join("d0/f00"), b"changed, 19 bytes").unwrap();
        let r = backup_tree(&again, dir.path(), b"t", &options, &|_| {})
            .await
            .unwrap();
        assert_eq!((r.files_stored, r.files_unchanged), (2, 24));
        assert_eq!(*again.batches.lock().unwrap(), vec![1, 1]);
        assert!(r.failed.is_empty());
    }
}
