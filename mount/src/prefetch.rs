//! The per-handle prefetcher: detects sequential reading and fetches whole chunks ahead of
//! the reader, within a global memory budget.
//!
//! Model (after mountpoint-s3's prefetcher):
//! * Each open file handle has one [`Prefetcher`]. A read of `[off, end)` asks it for the
//!   extents under the range; each extent is a shared future of a spawned fetch task, so a
//!   slow chunk only delays the reads that need that chunk, and nothing is fetched twice
//!   by the same handle.
//! * Sequential detection: a read is sequential if it starts within [`SLACK`] of the
//!   furthest byte read so far (the *cursor*). The slack tolerates the kernel's readahead,
//!   which issues several reads at once that may arrive out of order. The first read is
//!   sequential if it starts at 0.
//! * Window: on sequential reads, extents starting before `cursor + window` are fetched
//!   ahead. The window starts at [`PrefetchConfig::initial_window`] and doubles (up to
//!   `max_window`) each time the reader consumes an extent the prefetcher fetched ahead,
//!   i.e. each time the reader catches up with it. A non-sequential read resets the
//!   window and drops (aborts) everything fetched ahead.
//! * Memory: each prefetched extent holds permits of a global semaphore sized by the
//!   budget (1 permit per KiB) until the reader has moved past it or the handle closes.
//!   When the budget is exhausted, prefetching stops (it never waits); demand reads are
//!   not charged, they are bounded by the kernel's own concurrency.
//! * Retention: extents wholly behind `cursor - 1 MiB` are dropped.
//!
//! Defaults: initial window 512 KiB, max window 64 MiB, budget 256 MiB (mount option).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::error::FsError;
use crate::layout::{copy_overlap, extent_range, fetch_extent};
use crate::ports::{ContentStore, FsResult, Layout, VersionId};

/// Reordering tolerance of sequential detection, in bytes.
pub(crate) const SLACK: u64 = 2 << 20;

/// Extents ending this far behind the cursor are dropped.
const RETAIN: u64 = 1 << 20;

/// At most this many extents are held per handle, whatever their size.
const MAX_SLOTS: usize = 512;

/// Prefetch tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefetchConfig {
    /// Window after the first sequential reads.
    pub initial_window: u64,
    /// Largest window.
    pub max_window: u64,
    /// Global budget of prefetched bytes held, across all handles.
    pub budget_bytes: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            initial_window: 512 << 10,
            max_window: 64 << 20,
            budget_bytes: 256 << 20,
        }
    }
}

/// The global byte budget (1 permit = 1 KiB).
#[derive(Clone, Debug)]
pub(crate) struct Budget(Arc<Semaphore>);

impl Budget {
    pub(crate) fn new(bytes: u64) -> Self {
        let permits = usize::try_from(bytes / 1024)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Budget(Arc::new(Semaphore::new(permits)))
    }

    fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).ok()?;
        self.0.clone().try_acquire_many_owned(kib).ok()
    }

    /// Bytes currently available.
    pub(crate) fn available(&self) -> u64 {
        self.0.available_permits() as u64 * 1024
    }
}

type ChunkFuture = Shared<BoxFuture<'static, FsResult<Bytes>>>;

#[derive(Debug)]
struct Slot {
    fut: ChunkFuture,
    abort: AbortHandle,
    _permit: Option<OwnedSemaphorePermit>,
    /// Fetched ahead (not on demand) and not consumed yet.
    ahead: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The prefetch state of one handle.
#[derive(Debug)]
pub(crate) struct Prefetcher {
    cfg: PrefetchConfig,
    /// Version the slots belong to (a new version resets everything).
    version: Option<Option<VersionId>>,
    cursor: u64,
    window: u64,
    slots: BTreeMap<usize, Slot>,
}

impl Prefetcher {
    pub(crate) fn new(cfg: PrefetchConfig) -> Self {
        Prefetcher {
            cfg,
            version: None,
            cursor: 0,
            window: cfg.initial_window,
            slots: BTreeMap::new(),
        }
    }

    /// Current window (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn window(&self) -> u64 {
        self.window
    }

    /// Number of extents held that are charged to the budget.
    #[cfg(test)]
    pub(crate) fn charged(&self) -> usize {
        self.slots.values().filter(|s| s._permit.is_some()).count()
    }

    /// Decides what a read of `[off, end)` needs and starts prefetches. Returns the futures
    /// of the needed extents, by index. Never awaits (called under the handle's lock).
    fn plan<C: ContentStore>(
        &mut self,
        content: &Arc<C>,
        layout: &Arc<Layout<C::Chunk>>,
        budget: &Budget,
        off: u64,
        end: u64,
    ) -> Vec<(usize, ChunkFuture)> {
        if self.version != Some(layout.version) {
            self.slots.clear();
            self.version = Some(layout.version);
            self.cursor = 0;
            self.window = self.cfg.initial_window;
        }
        let sequential = if self.cursor == 0 && self.slots.is_empty() {
            off == 0
        } else {
            off.saturating_add(SLACK) >= self.cursor && off <= self.cursor.saturating_add(SLACK)
        };
        let needed = extent_range(layout, off, end);
        if sequential {
            self.cursor = self.cursor.max(end);
        } else {
            self.cursor = end;
            self.window = self.cfg.initial_window;
            self.slots.retain(|i, _| needed.contains(i));
        }
        let mut out = Vec::with_capacity(needed.len());
        for i in needed.clone() {
            let slot = self
                .slots
                .entry(i)
                .or_insert_with(|| spawn_fetch(content, layout, i, None, false));
            if slot.ahead {
                slot.ahead = false;
                self.window = (self.window.saturating_mul(2)).min(self.cfg.max_window);
            }
            out.push((i, slot.fut.clone()));
        }
        // Drop what the reader has moved past.
        let behind = self.cursor.saturating_sub(RETAIN);
        self.slots.retain(|&i, _| {
            let e = &layout.extents[i];
            e.offset + e.len > behind || needed.contains(&i)
        });
        if sequential {
            let horizon = self.cursor.saturating_add(self.window);
            let first = extent_range(layout, self.cursor, u64::MAX).start;
            for i in first..layout.extents.len() {
                let e = &layout.extents[i];
                if e.offset >= horizon || self.slots.len() >= MAX_SLOTS {
                    break;
                }
                if self.slots.contains_key(&i) {
                    continue;
                }
                let Some(permit) = budget.try_take(e.len) else {
                    break;
                };
                self.slots
                    .insert(i, spawn_fetch(content, layout, i, Some(permit), true));
            }
        }
        out
    }
}

fn spawn_fetch<C: ContentStore>(
    content: &Arc<C>,
    layout: &Arc<Layout<C::Chunk>>,
    i: usize,
    permit: Option<OwnedSemaphorePermit>,
    ahead: bool,
) -> Slot {
    let content = content.clone();
    let extent = layout.extents[i].clone();
    let task = tokio::spawn(async move { fetch_extent(&*content, &extent).await });
    let abort = task.abort_handle();
    let fut = async move {
        match task.await {
            Ok(r) => r,
            Err(e) => Err(FsError::backend(format!("fetch task: {e}"))),
        }
    }
    .boxed()
    .shared();
    Slot {
        fut,
        abort,
        _permit: permit,
        ahead,
    }
}

/// Reads `[off, off+len)` of `layout` (clipped to its size) through `prefetcher`.
/// Holes read as zeros. A failed or aborted prefetch is retried once on demand.
pub(crate) async fn read<C: ContentStore>(
    prefetcher: &std::sync::Mutex<Prefetcher>,
    content: &Arc<C>,
    layout: &Arc<Layout<C::Chunk>>,
    budget: &Budget,
    off: u64,
    len: u32,
) -> FsResult<Vec<u8>> {
    if off >= layout.size {
        return Ok(Vec::new());
    }
    let end = layout.size.min(off.saturating_add(u64::from(len)));
    let plan = {
        let mut p = prefetcher.lock().unwrap_or_else(|e| e.into_inner());
        p.plan(content, layout, budget, off, end)
    };
    let mut buf = vec![0u8; (end - off) as usize];
    for (i, fut) in plan {
        let e = &layout.extents[i];
        let bytes = match fut.await {
            Ok(b) => b,
            Err(_) => fetch_extent(&**content, e).await?,
        };
        copy_overlap(&mut buf, off, e, &bytes);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
