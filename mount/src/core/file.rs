//! File handles and content operations: open, read, write, truncate, flush, release,
//! fsync.
//!
//! * Every handle on an inode shares the inode's one staged copy (created by the first
//!   change), so handles see each other's writes at once, like a local filesystem.
//! * Reads go to the staged copy if there is one, else to the current version through the
//!   handle's prefetcher.
//! * `flush` (every close) and the last `release` hand the changes over to the committer
//!   and return at once; `fsync` hands over and waits until the commit is durable, failing
//!   with the commit's error (EIO) if it fails — the data stays staged and is retried.
//! * The last release of an orphan (unlinked while open) drops its staged copy and lets
//!   the namespace reclaim it.
//! * `FOPEN_KEEP_CACHE` is granted when the kernel's page cache holds the current version
//!   (see `inodes.rs`).

use std::sync::Arc;

use bytes::Bytes;

use super::{Fs, now_nanos};
use crate::error::FsError;
use crate::layout::validate;
use crate::ports::{AttrChange, ContentStore, FsResult, Ino, Layout, Namespace};
use crate::prefetch::{self, Prefetcher};
use crate::stage::staged::Staged;

/// Largest file offset the mount accepts (the kernel's own limit for a 64-bit `loff_t`).
pub(crate) const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// A staged-copy operation races with the copy's retirement at most this often in a row.
const STALE_RETRIES: usize = 8;

/// An open file.
#[derive(Debug)]
pub(crate) struct FileHandle {
    pub(crate) ino: Ino,
    prefetcher: std::sync::Mutex<Prefetcher>,
}

/// What `open` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The handle.
    pub fh: u64,
    /// The kernel may keep its page cache of this file (`FOPEN_KEEP_CACHE`).
    pub keep_cache: bool,
}

impl<N: Namespace, C: ContentStore> Fs<N, C> {
    /// Opens file `ino` with the `open(2)` flags `flags` (`O_TRUNC` is honoured here when
    /// the kernel passes it).
    pub async fn open(&self, ino: Ino, flags: i32) -> FsResult<Opened> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if writes {
            self.check_writable()?;
        }
        // Count the handle before anything can unlink the file, so the namespace keeps it.
        self.inner.inodes.with(ino, |e| e.open += 1);
        match self.open_counted(ino, flags).await {
            Ok(o) => Ok(o),
            Err(e) => {
                self.inner
                    .inodes
                    .with(ino, |e| e.open = e.open.saturating_sub(1));
                Err(e)
            }
        }
    }

    async fn open_counted(&self, ino: Ino, flags: i32) -> FsResult<Opened> {
        if flags & libc::O_TRUNC != 0 {
            self.truncate(ino, 0).await?;
        }
        let current = match self.live_staged(ino) {
            Some(_) => None,
            None => Some(self.current_layout(ino).await?.version),
        };
        let keep_cache = self.inner.inodes.with(ino, |e| match current {
            Some(v) => {
                let keep = e.kernel_version == Some(v);
                e.kernel_version = Some(v);
                keep
            }
            // The kernel wrote every staged byte itself: whatever it caches is current.
            None => {
                let keep = e.kernel_version.is_some();
                e.kernel_version.get_or_insert(None);
                keep
            }
        });
        let fh = self
            .inner
            .next_fh
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = Arc::new(FileHandle {
            ino,
            prefetcher: std::sync::Mutex::new(Prefetcher::new(self.inner.cfg.prefetch)),
        });
        self.handles().insert(fh, handle);
        Ok(Opened { fh, keep_cache })
    }

    fn handles(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<FileHandle>>> {
        self.inner.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, fh: u64) -> FsResult<Arc<FileHandle>> {
        self.handles().get(&fh).cloned().ok_or(FsError::BadHandle)
    }

    /// The staged copy of `ino` unless it is retired.
    pub(crate) fn live_staged(&self, ino: Ino) -> Option<Arc<Staged<C::Chunk>>> {
        self.inner.inodes.staged(ino).filter(|s| !s.is_retired())
    }

    /// The current version's layout (cached while the inode is open).
    pub(crate) async fn current_layout(&self, ino: Ino) -> FsResult<Arc<Layout<C::Chunk>>> {
        if let Some(Some(l)) = self.inner.inodes.peek(ino, |e| e.layout.clone()) {
            return Ok(l);
        }
        let layout = self.inner.content.layout(ino).await?;
        validate(&layout)?;
        let mut map = self.inner.inodes.lock();
        if let Some(e) = map.get_mut(&ino)
            && e.open > 0
        {
            e.layout = Some(layout.clone());
        }
        Ok(layout)
    }

    /// Reads up to `size` bytes at `offset` (short only at end of file).
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let h = self.handle(fh)?;
        if let Some(s) = self.live_staged(h.ino) {
            return s.read(&*self.inner.content, offset, size).await;
        }
        let layout = self.current_layout(h.ino).await?;
        prefetch::read(
            &h.prefetcher,
            &self.inner.content,
            &layout,
            &self.inner.budget,
            offset,
            size,
        )
        .await
    }

    /// Writes `data` at `offset`. `from_page_cache`: the kernel's writeback cache sent it
    /// (the kernel then keeps mtime itself and sends it with setattr).
    pub async fn write(
        &self,
        fh: u64,
        offset: u64,
        data: Bytes,
        from_page_cache: bool,
    ) -> FsResult<u32> {
        self.check_writable()?;
        let h = self.handle(fh)?;
        let len = u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument("write size"))?;
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > MAX_FILE_SIZE)
        {
            return Err(FsError::FileTooLarge);
        }
        for _ in 0..STALE_RETRIES {
            let s = self.staged_for_write(h.ino, false).await?;
            match s
                .write(&self.inner.area, &*self.inner.content, offset, data.clone())
                .await
            {
                Err(FsError::Stale) => continue,
                Err(e) => return Err(e),
                Ok(()) => {
                    if !from_page_cache {
                        s.set_pending_mtime(Some(now_nanos()));
                    }
                    return Ok(len);
                }
            }
        }
        Err(FsError::Stale)
    }

    /// Sets the size of file `ino`. Without open handles the change is handed over at
    /// once (nothing will close it).
    pub(crate) async fn truncate(&self, ino: Ino, size: u64) -> FsResult<Arc<Staged<C::Chunk>>> {
        self.check_writable()?;
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooLarge);
        }
        for _ in 0..STALE_RETRIES {
            let s = self.staged_for_write(ino, size == 0).await?;
            match s.truncate(&self.inner.area, size).await {
                Err(FsError::Stale) => continue,
                Err(e) => return Err(e),
                Ok(()) => {
                    s.set_pending_mtime(Some(now_nanos()));
                    let open = self.inner.inodes.peek(ino, |e| e.open).unwrap_or(0);
                    if open == 0 {
                        self.push_times(&s).await?;
                        self.hand_over(&s, false).await?;
                    }
                    return Ok(s);
                }
            }
        }
        Err(FsError::Stale)
    }

    /// The staged copy to change, created on first use: empty if `empty` (truncate to 0)
    /// or the current version is empty, else copy-on-write over the current version.
    async fn staged_for_write(&self, ino: Ino, empty: bool) -> FsResult<Arc<Staged<C::Chunk>>> {
        if let Some(s) = self.live_staged(ino) {
            return Ok(s);
        }
        let base = if empty {
            None
        } else {
            Some(self.current_layout(ino).await?)
        };
        let fresh = Arc::new(Staged::create(&self.inner.area, ino, base)?);
        let winner = self.inner.inodes.with(ino, |e| match &e.staged {
            Some(s) if !s.is_retired() => s.clone(),
            _ => {
                e.staged = Some(fresh.clone());
                fresh.clone()
            }
        });
        if !Arc::ptr_eq(&winner, &fresh) {
            self.inner.area.remove(fresh.id);
        }
        Ok(winner)
    }

    /// Tells the namespace the mtime of writes it has not heard of.
    pub(crate) async fn push_times(&self, s: &Arc<Staged<C::Chunk>>) -> FsResult<()> {
        if let Some(t) = s.take_pending_mtime() {
            let change = AttrChange {
                mtime: Some(t),
                ctime: Some(t),
                ..AttrChange::default()
            };
            if let Err(e) = self.inner.ns.setattr(s.ino, &change).await {
                s.set_pending_mtime(Some(t));
                return Err(e);
            }
        }
        Ok(())
    }

    /// `close(2)` of one descriptor: hand the changes over, return at once.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if let Some(s) = self.live_staged(h.ino) {
            self.push_times(&s).await?;
            self.hand_over(&s, false).await?;
        }
        Ok(())
    }

    /// The last reference to handle `fh` is gone.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.handles().remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        let ino = h.ino;
        drop(h);
        let (last, orphan) = self.inner.inodes.with(ino, |e| {
            e.open = e.open.saturating_sub(1);
            let last = e.open == 0;
            if last {
                e.layout = None;
            }
            (last, e.orphan)
        });
        if !last {
            return Ok(());
        }
        let staged = self.live_staged(ino);
        if orphan {
            if let Some(s) = &staged {
                self.discard_staged(ino, s).await;
            }
            self.inner.inodes.with(ino, |e| e.orphan = false);
            return self.inner.ns.reclaim(ino).await;
        }
        if let Some(s) = staged {
            let r = self.push_times(&s).await;
            self.hand_over(&s, false).await?;
            self.retire_if_idle(&s).await;
            r?;
        }
        Ok(())
    }

    /// `fsync(2)`: returns once every change to `ino` made before the call is durable.
    pub async fn fsync(&self, ino: Ino) -> FsResult<()> {
        let Some(s) = self.live_staged(ino) else {
            return self.inner.ns.sync().await;
        };
        self.push_times(&s).await?;
        let (target, seq) = s.track.with(|t| (t.dirty_gen, t.fail_seq));
        self.hand_over(&s, true).await?;
        self.wait_generation(&s, target, seq).await
    }

    /// fallocate: mode 0 extends the file (space is not reserved: the store is remote);
    /// other modes are not supported.
    pub async fn fallocate(&self, ino: Ino, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        if mode != 0 {
            return Err(FsError::Unsupported("fallocate mode"));
        }
        let end = offset.checked_add(len).ok_or(FsError::FileTooLarge)?;
        let size = match self.live_staged(ino) {
            Some(s) => s.size(),
            None => self.getattr(ino).await?.size,
        };
        if end > size {
            self.truncate(ino, end).await?;
        }
        Ok(())
    }

    /// Forgets the staged copy of a node the namespace deleted (not kept as an orphan).
    pub(crate) async fn node_deleted(&self, ino: Ino) {
        let open = self.inner.inodes.peek(ino, |e| e.open).unwrap_or(0);
        if open > 0 {
            return;
        }
        if let Some(s) = self.inner.inodes.staged(ino) {
            self.discard_staged(ino, &s).await;
        }
    }
}
