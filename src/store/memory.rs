//! An in-memory shard store, for tests and simulations.
//!
//! It can model several holders: with `holders = n` it spreads the shards of each
//! `put_shards` call over `n` named holders (`mem-0` … `mem-{n-1}`) in turn, so tests of
//! placement-aware code (distribution, repair with `exclude`) run without a network.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Holder, Shard, ShardStore, StoreError, StoreStats};
use crate::ids::ShardId;

/// Shards in a map, keyed by holder and id.
pub struct MemoryStore {
    holders: Vec<Holder>,
    capacity: Option<u64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    shards: HashMap<(Holder, ShardId), Bytes>,
    bytes: u64,
    next: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// One holder, no capacity limit.
    pub fn new() -> Self {
        Self::with_holders(1, None)
    }

    /// `holders` named holders and an optional total byte limit.
    pub fn with_holders(holders: usize, capacity: Option<u64>) -> Self {
        let holders = if holders <= 1 {
            vec![Holder::local()]
        } else {
            (0..holders).map(|i| Holder(format!("mem-{i}"))).collect()
        };
        MemoryStore {
            holders,
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    /// Number of shards held.
    pub fn len(&self) -> usize {
        self.lock().shards.len()
    }

    /// Whether no shard is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Overwrites a held shard's bytes (to simulate bit rot in tests).
    pub fn corrupt(&self, id: &ShardId, bytes: Bytes) {
        let mut st = self.lock();
        for ((_, sid), v) in st.shards.iter_mut() {
            if sid == id {
                *v = bytes.clone();
            }
        }
    }

    /// Every held shard id.
    pub fn ids(&self) -> Vec<ShardId> {
        self.lock().shards.keys().map(|(_, id)| *id).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a bug in a test; the map
        // itself is always consistent, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ShardStore for MemoryStore {
    async fn put_shards(
        &self,
        shards: &[Shard],
        exclude: &[Holder],
    ) -> Result<Vec<Holder>, StoreError> {
        let mut st = self.lock();
        let incoming: u64 = shards.iter().map(|s| s.bytes.len() as u64).sum();
        if let Some(cap) = self.capacity
            && st.bytes + incoming > cap
        {
            return Err(StoreError::NoSpace {
                where_: "memory store".into(),
            });
        }
        let usable: Vec<&Holder> = self
            .holders
            .iter()
            .filter(|h| !exclude.contains(h))
            .collect();
        let usable = if usable.is_empty() {
            self.holders.iter().collect()
        } else {
            usable
        };
        let mut out = Vec::with_capacity(shards.len());
        for shard in shards {
            let holder = usable[st.next % usable.len()].clone();
            st.next += 1;
            if st
                .shards
                .insert((holder.clone(), shard.id), shard.bytes.clone())
                .is_none()
            {
                st.bytes += shard.bytes.len() as u64;
            }
            out.push(holder);
        }
        Ok(out)
    }

    async fn get(&self, id: &ShardId, holder: &Holder) -> Result<Bytes, StoreError> {
        let st = self.lock();
        if let Some(b) = st.shards.get(&(holder.clone(), *id)) {
            return Ok(b.clone());
        }
        // Like the mesh's DHT fallback: find it at any holder.
        st.shards
            .iter()
            .find(|((_, sid), _)| sid == id)
            .map(|(_, b)| b.clone())
            .ok_or(StoreError::NotFound(*id))
    }

    async fn delete(&self, id: &ShardId, holder: &Holder) -> Result<(), StoreError> {
        let mut st = self.lock();
        if let Some(b) = st.shards.remove(&(holder.clone(), *id)) {
            st.bytes -= b.len() as u64;
        }
        Ok(())
    }

    async fn has(&self, id: &ShardId, holder: &Holder) -> Result<bool, StoreError> {
        Ok(self.lock().shards.contains_key(&(holder.clone(), *id)))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let st = self.lock();
        Ok(StoreStats {
            shards: st.shards.len() as u64,
            bytes: st.bytes,
            available: self
                .capacity
                .map(|c| c.saturating_sub(st.bytes))
                .unwrap_or(u64::MAX),
            holders: self.holders.len() as u64,
        })
    }

    async fn distinct_holders(&self) -> usize {
        self.holders.len()
    }
}
