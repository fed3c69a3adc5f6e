//! An in-memory implementation of both ports, for tests (the core's, the reference model's,
//! the kernel-mount tests' and the root crate's).
//!
//! Model: one mutex-guarded [`State`] holding nodes, directory entries, xattrs, layouts and
//! chunks. Every port call is atomic under that mutex, like one catalog transaction.
//! Commits read the staged file in fixed-size chunks (default 256 KiB); all-zero chunks
//! and `SEEK_HOLE` regions become holes, so huge sparse files stay cheap.
//!
//! Injectable behaviour ([`Faults`]): latency on metadata calls, fetches and commits;
//! failing the next N commits or all of them; failing fetches. Counters record what was
//! called, so tests can assert on prefetching and batching.
//!
//! Persistence (optional, [`MemoryBackend::open_persistent`]): after every mutating call
//! the whole state is written to a snapshot file (write, fsync, rename) before the call
//! returns, so "durable on return" holds across kill -9 for the crash tests.

mod content;
mod namespace;
mod persist;
mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use state::MemChunk;
use state::State;

use crate::error::FsError;
use crate::ports::FsResult;

/// Default chunk size of commits.
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;

/// Fault and latency injection, changeable while the backend is in use.
#[derive(Debug, Default)]
pub struct Faults {
    meta_latency_us: AtomicU64,
    fetch_latency_us: AtomicU64,
    commit_latency_us: AtomicU64,
    fail_next_commits: AtomicU32,
    fail_all_commits: AtomicBool,
    fail_fetches: AtomicBool,
}

/// What was called, for assertions.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chunks fetched.
    pub fetches: AtomicU64,
    /// Commit requests (files) received.
    pub commit_requests: AtomicU64,
    /// Commit calls (batches) received.
    pub commit_batches: AtomicU64,
    /// Largest batch seen.
    pub max_batch: AtomicU64,
    /// Commit requests that failed by injection.
    pub injected_commit_failures: AtomicU64,
}

/// The in-memory backend. Cheap to clone (shared state).
#[derive(Clone, Debug)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    faults: Faults,
    counters: Counters,
    chunk_size: usize,
    snapshot: Option<PathBuf>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty filesystem (root directory only, mode 0755, owned by the current user).
    pub fn new() -> Self {
        Self::with_chunk_size(DEFAULT_CHUNK_SIZE)
    }

    /// Like [`new`](Self::new) with commits cut into `chunk_size`-byte chunks.
    pub fn with_chunk_size(chunk_size: usize) -> Self {
        Self::build(State::new(), chunk_size.max(1), None)
    }

    /// A backend whose state survives the process: loaded from `path` if it exists, and
    /// written back durably after every mutating call.
    pub fn open_persistent(path: impl Into<PathBuf>) -> FsResult<Self> {
        let path = path.into();
        let state = match std::fs::read(&path) {
            Ok(bytes) => persist::decode(&bytes)
                .ok_or_else(|| FsError::backend(format!("corrupt snapshot {}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::new(),
            Err(e) => return Err(FsError::io("read snapshot", e)),
        };
        Ok(Self::build(state, DEFAULT_CHUNK_SIZE, Some(path)))
    }

    fn build(state: State, chunk_size: usize, snapshot: Option<PathBuf>) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Faults::default(),
                counters: Counters::default(),
                chunk_size,
                snapshot,
            }),
        }
    }

    /// Latency added to every namespace call.
    pub fn set_meta_latency(&self, d: Duration) {
        store_duration(&self.inner.faults.meta_latency_us, d);
    }

    /// Latency added to every chunk fetch.
    pub fn set_fetch_latency(&self, d: Duration) {
        store_duration(&self.inner.faults.fetch_latency_us, d);
    }

    /// Latency added to every commit call.
    pub fn set_commit_latency(&self, d: Duration) {
        store_duration(&self.inner.faults.commit_latency_us, d);
    }

    /// The next `n` commit requests fail with a backend error.
    pub fn fail_next_commits(&self, n: u32) {
        self.inner
            .faults
            .fail_next_commits
            .store(n, Ordering::SeqCst);
    }

    /// Every commit fails while `on`.
    pub fn fail_all_commits(&self, on: bool) {
        self.inner
            .faults
            .fail_all_commits
            .store(on, Ordering::SeqCst);
    }

    /// Every fetch fails while `on`.
    pub fn fail_fetches(&self, on: bool) {
        self.inner.faults.fail_fetches.store(on, Ordering::SeqCst);
    }

    /// Call counters.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Number of chunks held (after deduplication of nothing: every committed non-zero
    /// chunk counts until its last version is gone).
    pub fn chunk_count(&self) -> usize {
        self.lock().chunks.len()
    }

    /// Number of orphans (nodes with no name, kept for open handles).
    pub fn orphan_count(&self) -> usize {
        self.lock()
            .nodes
            .values()
            .filter(|n| n.attr.nlink == 0)
            .count()
    }

    /// Number of nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    /// The attributes of `ino` as stored, if it exists (tests).
    pub fn node_attr(&self, ino: crate::ports::Ino) -> Option<crate::ports::NodeAttr> {
        self.lock().nodes.get(&ino).map(|n| n.attr.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a bug in this test backend;
        // keep serving the state rather than poisoning every later call.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn meta_delay(&self) {
        delay(&self.inner.faults.meta_latency_us).await;
    }

    /// Writes the snapshot if this backend is persistent. Called with the state locked so
    /// snapshots are written in operation order.
    fn persist(&self, state: &State) -> FsResult<()> {
        let Some(path) = &self.inner.snapshot else {
            return Ok(());
        };
        persist::write_atomically(path, &persist::encode(state))
    }
}

fn store_duration(slot: &AtomicU64, d: Duration) {
    slot.store(
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        Ordering::SeqCst,
    );
}

async fn delay(slot: &AtomicU64) {
    let us = slot.load(Ordering::SeqCst);
    if us > 0 {
        tokio::time::sleep(Duration::from_micros(us)).await;
    }
}
