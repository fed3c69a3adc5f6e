//! The filesystem core: every FUSE operation as an async method over the ports, tested
//! without a kernel.
//!
//! [`Fs`] holds the semantics the kernel relies on: the inode table (lookup counts, open
//! counts, orphans, the page-cache version key), file handles with their prefetchers, the
//! staging area and its background committer. It knows nothing of FUSE's wire format: the
//! adapter in `fuse/` decodes requests, calls these methods and encodes replies.
//!
//! Consistency model: this process is the only writer of the namespace, so no cache here
//! ever needs revalidation against the store; the kernel's entry and attribute caches are
//! coherent because every change goes through the kernel (see docs/SEMANTICS.md). The
//! only state that differs from the store is the staged content: getattr, lookup and
//! readdir overlay the staged size (and pending mtime) on what the namespace returns.
//!
//! Lifecycle: [`Fs::start`] recovers the staging area (committing what the last run handed
//! over), reclaims orphans and starts the committer on the caller's runtime;
//! [`Fs::shutdown`] commits everything and stops it.

mod commit;
mod file;
mod inodes;
mod meta;
mod recover;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use file::Opened;
pub use meta::{DirItem, SetAttr, SetTime};
pub use recover::RecoveryReport;

use crate::error::FsError;
use crate::ports::{ContentStore, FsResult, Ino, Namespace, NodeAttr};
use crate::prefetch::{Budget, PrefetchConfig};
use crate::stage::StagingArea;
use commit::CommitQueue;
use file::FileHandle;
use inodes::Inodes;

/// Tuning of the core. `Default` is what `datamesh mount` uses.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Prefetch window and global budget.
    pub prefetch: PrefetchConfig,
    /// Commits (batches) running at once.
    pub commit_concurrency: usize,
    /// Files up to this size are committed in batches.
    pub small_file_bytes: u64,
    /// Most files in one batch.
    pub batch_max_files: usize,
    /// How long the committer waits to gather a batch after the first close (fsync and
    /// shutdown do not wait).
    pub batch_delay: Duration,
    /// First retry delay after a failed commit (doubles up to `retry_max`).
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Entries asked of the namespace per readdir call.
    pub readdir_page: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            read_only: false,
            prefetch: PrefetchConfig::default(),
            commit_concurrency: 4,
            small_file_bytes: 1 << 20,
            batch_max_files: 256,
            batch_delay: Duration::from_millis(20),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            readdir_page: 256,
        }
    }
}

/// Who asks (from the FUSE request header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Caller {
    /// The root user.
    pub const ROOT: Caller = Caller { uid: 0, gid: 0 };
}

/// The filesystem core. Cheap to clone (shared state).
pub struct Fs<N, C: ContentStore> {
    inner: Arc<Inner<N, C>>,
}

impl<N, C: ContentStore> Clone for Fs<N, C> {
    fn clone(&self) -> Self {
        Fs {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<N, C: ContentStore> {
    ns: Arc<N>,
    content: Arc<C>,
    cfg: FsConfig,
    inodes: Inodes<C::Chunk>,
    handles: Mutex<HashMap<u64, Arc<FileHandle>>>,
    next_fh: AtomicU64,
    area: StagingArea,
    queue: CommitQueue,
    budget: Budget,
    stopped: AtomicBool,
}

impl<N: Namespace, C: ContentStore> Fs<N, C> {
    /// Opens the filesystem over `ns` and `content`, staging writes in `stage_dir`
    /// (created if missing; must be on a local disk and owned by this process alone).
    /// Recovers what the previous run left there: staged files it had handed over become
    /// pending commits again (readable at once, committed in the background); the rest is
    /// discarded. Then reclaims the namespace's orphans and starts the committer on the
    /// current tokio runtime.
    pub async fn start(
        ns: Arc<N>,
        content: Arc<C>,
        stage_dir: &Path,
        cfg: FsConfig,
    ) -> FsResult<(Self, RecoveryReport)> {
        std::fs::create_dir_all(stage_dir).map_err(|e| FsError::io("create staging dir", e))?;
        let found = recover::scan(stage_dir)?;
        let area = StagingArea::open(stage_dir, found.keep.clone(), found.next_id)?;
        let budget = Budget::new(cfg.prefetch.budget_bytes);
        let fs = Fs {
            inner: Arc::new(Inner {
                ns,
                content,
                cfg,
                inodes: Inodes::default(),
                handles: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                area,
                queue: CommitQueue::default(),
                budget,
                stopped: AtomicBool::new(false),
            }),
        };
        let report = fs.adopt_recovered(found).await?;
        fs.inner.ns.reclaim_all_orphans().await?;
        tokio::spawn(commit::run(fs.clone()));
        Ok((fs, report))
    }

    /// Hands over every change made so far and waits until all of it is committed
    /// (durable). Errors if a commit fails meanwhile (the data stays staged and is retried).
    pub async fn flush_all(&self) -> FsResult<()> {
        let staged = self.inner.inodes.all_staged();
        let mut first_err = None;
        for s in &staged {
            if let Err(e) = self.push_times(s).await {
                first_err.get_or_insert(e);
            }
            if let Err(e) = self.hand_over(s, true).await {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        self.wait_committed(&staged).await
    }

    /// Commits everything, then stops the committer. Later calls fail with EROFS-like
    /// errors; the mount is expected to be gone by then.
    pub async fn shutdown(&self) -> FsResult<()> {
        let r = self.flush_all().await;
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.queue.stop();
        r
    }

    /// The kernel should forget its cached pages of `ino` on the next open (the content
    /// changed outside the mount).
    pub fn invalidate_content(&self, ino: Ino) {
        self.inner.inodes.with(ino, |e| {
            e.kernel_version = None;
            e.layout = None;
        });
    }

    /// Inodes the mount currently remembers (kernel references, handles, staged files).
    pub fn remembered_inodes(&self) -> usize {
        self.inner.inodes.len()
    }

    /// Staged files not committed yet.
    pub fn pending_commits(&self) -> usize {
        self.inner
            .inodes
            .all_staged()
            .iter()
            .filter(|s| s.track.with(|t| t.is_dirty()))
            .count()
    }

    /// Bytes of prefetch budget currently free.
    pub fn prefetch_budget_available(&self) -> u64 {
        self.inner.budget.available()
    }

    /// True for a read-only mount.
    pub fn read_only(&self) -> bool {
        self.inner.cfg.read_only
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.inner.cfg.read_only || self.inner.stopped.load(Ordering::SeqCst) {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// `attr` with the mount's pending state laid over it (staged size, unsent mtime).
    fn overlay(&self, mut attr: NodeAttr) -> NodeAttr {
        if let Some(s) = self.inner.inodes.staged(attr.ino) {
            attr.size = s.size();
            if let Some(t) = s.pending_mtime() {
                attr.mtime = t;
                attr.ctime = attr.ctime.max(t);
            }
        }
        attr
    }
}

/// Nanoseconds since the epoch, now.
pub(crate) fn now_nanos() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
