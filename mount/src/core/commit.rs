//! The background committer: turns handed-over staged files into committed versions.
//!
//! Model: a deduplicating queue of inodes (a set in arrival order, so repeated closes of
//! one file coalesce into one commit). One worker task drains it: after the first entry it
//! waits `batch_delay` to gather more (not when an fsync or shutdown is waiting), then
//! commits small files (`<= small_file_bytes`) in batches of up to `batch_max_files` per
//! `ContentStore::commit` call and each large file alone. At most `commit_concurrency`
//! commit calls run at once; the worker waits for a slot (backpressure: the queue is a
//! set of inodes with staged files, bounded by the staging area).
//!
//! Per file: complete the staged copy (materialize the base), note the generation, commit.
//! On success the generation is committed; if nothing changed meanwhile and no handle is
//! open, the staged copy is retired and deleted. If it changed and was handed over again,
//! it is queued again. On failure the error is kept for fsync, the data stays staged, and a
//! retry is scheduled with exponential backoff. `NotFound` means the file was deleted:
//! the staged copy is dropped.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;

use tokio::sync::{Notify, Semaphore};

use super::Fs;
use crate::error::FsError;
use crate::ports::{
    CommitRequest, CommitSource, Committed, ContentStore, FsResult, Ino, Namespace,
};
use crate::stage::journal::Record;
use crate::stage::staged::Staged;

#[derive(Debug, Default)]
struct QueueState {
    order: VecDeque<Ino>,
    set: HashSet<Ino>,
    urgent: bool,
    stopped: bool,
}

/// The deduplicating commit queue.
#[derive(Debug, Default)]
pub(crate) struct CommitQueue {
    m: Mutex<QueueState>,
    wake: Notify,
    /// Signalled after every finished commit (for waiters on many files).
    pub(crate) progress: Notify,
}

impl CommitQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, ino: Ino, urgent: bool) {
        let mut q = self.lock();
        if q.set.insert(ino) {
            q.order.push_back(ino);
        }
        q.urgent |= urgent;
        drop(q);
        self.wake.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    fn take(&self, max: usize) -> (Vec<Ino>, bool) {
        let mut q = self.lock();
        let n = q.order.len().min(max);
        let items: Vec<Ino> = q.order.drain(..n).collect();
        for i in &items {
            q.set.remove(i);
        }
        let urgent = std::mem::take(&mut q.urgent);
        (items, urgent)
    }

    fn state(&self) -> (bool, bool, bool) {
        let q = self.lock();
        (q.order.is_empty(), q.urgent, q.stopped)
    }
}

/// The worker loop; runs until the queue is stopped.
pub(crate) async fn run<N: Namespace, C: ContentStore>(fs: Fs<N, C>) {
    let cfg = fs.inner.cfg.clone();
    let slots = Arc::new(Semaphore::new(cfg.commit_concurrency.max(1)));
    loop {
        let wake = fs.inner.queue.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let (empty, urgent, stopped) = fs.inner.queue.state();
        if stopped {
            return;
        }
        if empty {
            wake.await;
            continue;
        }
        if !urgent && !cfg.batch_delay.is_zero() {
            // Gather a batch; an fsync arriving meanwhile cuts the wait short.
            let _ = tokio::time::timeout(cfg.batch_delay, wake).await;
        }
        let (inos, _) = fs.inner.queue.take(usize::MAX);
        let mut small = Vec::new();
        for ino in inos {
            let Some(staged) = fs.inner.inodes.staged(ino) else {
                continue;
            };
            let claim = staged.track.with(|t| {
                if t.inflight || !t.wants_commit() {
                    return false;
                }
                t.inflight = true;
                true
            });
            if !claim || staged.is_retired() {
                staged.track.with(|t| t.inflight &= !claim);
                continue;
            }
            if staged.size() <= cfg.small_file_bytes {
                small.push(staged);
                if small.len() >= cfg.batch_max_files.max(1) {
                    spawn_batch(&fs, &slots, std::mem::take(&mut small)).await;
                }
            } else {
                spawn_batch(&fs, &slots, vec![staged]).await;
            }
        }
        if !small.is_empty() {
            spawn_batch(&fs, &slots, small).await;
        }
    }
}

async fn spawn_batch<N: Namespace, C: ContentStore>(
    fs: &Fs<N, C>,
    slots: &Arc<Semaphore>,
    batch: Vec<Arc<Staged<C::Chunk>>>,
) {
    let Ok(permit) = slots.clone().acquire_owned().await else {
        return;
    };
    let fs = fs.clone();
    tokio::spawn(async move {
        fs.commit_batch(batch).await;
        drop(permit);
    });
}

impl<N: Namespace, C: ContentStore> Fs<N, C> {
    /// Marks every change so far as handed over (journaled: recovery will commit it) and
    /// queues the commit. No-op when nothing new changed.
    pub(crate) async fn hand_over(&self, s: &Arc<Staged<C::Chunk>>, urgent: bool) -> FsResult<()> {
        let newly = s.track.with(|t| t.dirty_gen > t.handed_gen);
        if newly {
            // The record (an inline file's bytes) is taken after the generation is read,
            // so it holds at least what the generation says.
            let generation = s.track.with(|t| t.dirty_gen);
            let rec = s.handover_record().await;
            self.inner.area.append(rec)?;
            s.track
                .with(|t| t.handed_gen = t.handed_gen.max(generation));
        }
        if newly || urgent {
            self.inner.queue.push(s.ino, urgent);
        }
        Ok(())
    }

    /// Commits `batch` (already claimed: `inflight` set) and records the outcomes.
    async fn commit_batch(&self, batch: Vec<Arc<Staged<C::Chunk>>>) {
        let mut ready = Vec::with_capacity(batch.len());
        for s in batch {
            match s.complete(&self.inner.area, &*self.inner.content).await {
                Ok((generation, inline)) => ready.push((s, generation, inline)),
                Err(e) => self.finish(&s, 0, Err(e)).await,
            }
        }
        if ready.is_empty() {
            return;
        }
        let requests: Vec<CommitRequest> = ready
            .iter_mut()
            .map(|(s, _, inline)| CommitRequest {
                ino: s.ino,
                source: match inline.take() {
                    Some(b) => CommitSource::Bytes(b),
                    None => CommitSource::File(self.inner.area.data_path(s.id)),
                },
            })
            .collect();
        let mut results = self.inner.content.commit(&requests).await;
        if results.len() != requests.len() {
            let msg = format!(
                "commit returned {} results for {} files",
                results.len(),
                requests.len()
            );
            results = requests
                .iter()
                .map(|_| Err(FsError::backend(msg.clone())))
                .collect();
        }
        for ((s, generation, _), r) in ready.into_iter().zip(results) {
            self.finish(&s, generation, r).await;
        }
    }

    async fn finish(
        &self,
        s: &Arc<Staged<C::Chunk>>,
        generation: u64,
        result: FsResult<Committed>,
    ) {
        match result {
            Ok(c) => {
                let (clean, again) = s.track.with(|t| {
                    t.inflight = false;
                    t.committed_gen = t.committed_gen.max(generation);
                    t.backoff = std::time::Duration::ZERO;
                    (!t.is_dirty(), t.wants_commit())
                });
                self.inner.inodes.with(s.ino, |e| {
                    e.layout = None;
                    if e.kernel_version.is_some() {
                        e.kernel_version = Some(Some(c.version));
                    }
                });
                if clean {
                    self.retire_if_idle(s).await;
                    if !s.is_retired()
                        && let Err(e) = self.inner.area.append(Record::Clean(s.id))
                    {
                        tracing::warn!(error = %e, "cannot journal clean staged file");
                    }
                } else if again {
                    self.inner.queue.push(s.ino, false);
                }
            }
            Err(FsError::NotFound) => {
                // Deleted meanwhile: nothing to keep.
                s.track.with(|t| t.inflight = false);
                self.discard_staged(s.ino, s).await;
            }
            Err(e) => {
                tracing::warn!(ino = s.ino, error = %e, "commit failed; will retry");
                let delay = s.track.with(|t| {
                    t.inflight = false;
                    t.fail_seq += 1;
                    t.last_fail = Some((generation, e));
                    t.backoff = (t.backoff * 2)
                        .max(self.inner.cfg.retry_initial)
                        .min(self.inner.cfg.retry_max);
                    t.backoff
                });
                let fs = self.clone();
                let ino = s.ino;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    fs.inner.queue.push(ino, false);
                });
            }
        }
        s.track.notify.notify_waiters();
        self.inner.queue.progress.notify_waiters();
    }

    /// Retires `s` (deleting the staged file) if it is clean, not being committed, and no
    /// handle is open on its inode. Reads then go to the committed version.
    pub(crate) async fn retire_if_idle(&self, s: &Arc<Staged<C::Chunk>>) {
        let retired = s
            .retire_if(&self.inner.area, || {
                if s.track.with(|t| t.is_dirty() || t.inflight) {
                    return false;
                }
                let mut map = self.inner.inodes.lock();
                let Some(e) = map.get_mut(&s.ino) else {
                    return true;
                };
                let ours = e.staged.as_ref().is_some_and(|x| Arc::ptr_eq(x, s));
                if !ours || e.open > 0 {
                    return !ours;
                }
                e.staged = None;
                if e.lookups == 0 && e.open == 0 {
                    map.remove(&s.ino);
                }
                true
            })
            .await;
        if retired {
            self.inner.area.remove(s.id);
        }
    }

    /// Drops the staged copy of a deleted inode without committing it.
    pub(crate) async fn discard_staged(&self, ino: Ino, s: &Arc<Staged<C::Chunk>>) {
        let removed = s
            .retire_if(&self.inner.area, || {
                self.inner.inodes.with(ino, |e| {
                    if e.staged.as_ref().is_some_and(|x| Arc::ptr_eq(x, s)) {
                        e.staged = None;
                    }
                });
                true
            })
            .await;
        if removed {
            self.inner.area.remove(s.id);
        }
        s.track.notify.notify_waiters();
        self.inner.queue.progress.notify_waiters();
    }

    /// Waits until `s` has committed everything up to generation `target`. Fails with the
    /// commit's error if an attempt fails after this call started.
    pub(crate) async fn wait_generation(
        &self,
        s: &Arc<Staged<C::Chunk>>,
        target: u64,
        fail_seq_at_start: u64,
    ) -> FsResult<()> {
        loop {
            let notified = s.track.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = s.track.with(|t| {
                if t.committed_gen >= target {
                    return Some(Ok(()));
                }
                if t.fail_seq > fail_seq_at_start {
                    let e = t
                        .last_fail
                        .as_ref()
                        .map(|(_, e)| e.clone())
                        .unwrap_or_else(|| FsError::backend("commit failed"));
                    return Some(Err(e));
                }
                None
            });
            if let Some(r) = state {
                return r;
            }
            if s.is_retired() {
                // Deleted (nothing to make durable) or committed and retired.
                return Ok(());
            }
            notified.await;
        }
    }

    /// Waits until every file in `staged` has committed what was handed over when this
    /// call started.
    pub(crate) async fn wait_committed(&self, staged: &[Arc<Staged<C::Chunk>>]) -> FsResult<()> {
        for s in staged {
            let (target, seq) = s.track.with(|t| (t.handed_gen, t.fail_seq));
            self.wait_generation(s, target, seq).await?;
        }
        Ok(())
    }
}
