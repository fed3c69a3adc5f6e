//! The verified-chunk cache: a byte-bounded LRU in memory.
//!
//! # Model
//!
//! Keys are [`ChunkId`]s, values are [`VerifiedChunk`]s: only plaintext that passed
//! verification can enter, because only verification builds that type. Because a
//! ChunkId names immutable content, entries never go stale and need no invalidation:
//! a file that changes gets new chunks, not changed ones.
//!
//! # Invariants and defaults
//!
//! * The sum of the plaintext lengths held never exceeds the budget (config
//!   `cache.memory`, default 256 MiB). A chunk larger than the whole budget is not cached.
//! * Eviction is least-recently-used; a `get` counts as a use.
//! * A budget of 0 disables the cache.
//! * The lock is held only for map operations (no I/O, no hashing), so the cache is
//!   safe to use from reactor threads.

use std::sync::Mutex;

use lru::LruCache;

use crate::crypto::chunk::VerifiedChunk;
use crate::ids::ChunkId;

/// Hit and miss counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups that found the chunk.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Chunks held.
    pub chunks: u64,
}

/// A byte-bounded LRU of verified chunks.
pub struct ChunkCache {
    budget: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    lru: LruCache<ChunkId, VerifiedChunk>,
    bytes: u64,
    hits: u64,
    misses: u64,
}

impl ChunkCache {
    /// A cache holding at most `budget` bytes of plaintext.
    pub fn new(budget: u64) -> Self {
        ChunkCache {
            budget,
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is consistent after every operation; a panic elsewhere cannot leave it
        // half-updated, so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk, if cached.
    pub fn get(&self, id: &ChunkId) -> Option<VerifiedChunk> {
        let mut inner = self.lock();
        match inner.lru.get(id).cloned() {
            Some(c) => {
                inner.hits += 1;
                Some(c)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Caches a chunk, evicting the least recently used ones to stay within budget.
    pub fn insert(&self, chunk: VerifiedChunk) {
        let len = chunk.data().len() as u64;
        if len > self.budget {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.lru.put(*chunk.id(), chunk) {
            inner.bytes -= old.data().len() as u64;
        }
        inner.bytes += len;
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.data().len() as u64,
                None => break,
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            bytes: inner.bytes,
            chunks: inner.lru.len() as u64,
        }
    }
}
