//! [`RoutedStore`]: the store of a repository that has joined a mesh.
//!
//! # Model
//!
//! A repository starts on its embedded local store; its catalog records
//! [`Holder::local`] for those shards. Once it joins a mesh (a `--bootstrap` flag or
//! `mesh.bootstrap` in config.toml) new shards go to the mesh, but the shards already
//! on this machine stay where they are and must keep reading, repairing and being
//! collected. So this store routes by holder:
//!
//! * `put_shards` goes to the *remote* store (the mesh), always;
//! * `get`, `has` and `delete` of a shard recorded at [`Holder::local`] go to the local
//!   store; every other holder names a peer and goes to the remote store;
//! * `stats` adds both; `distinct_holders` is the remote's (where new shards go).
//!
//! A local shard whose read fails is repaired by the engine through `put_shards`, so
//! repair moves it into the mesh: the local store drains over time and is never
//! written while joined. Leaving the mesh again (no bootstrap) reads mesh shards no
//! longer; that is the documented cost of running unjoined (docs/design/mesh.md).

use async_trait::async_trait;
use bytes::Bytes;

use super::{DynStore, Holder, Shard, ShardStore, StoreError, StoreStats};
use crate::ids::ShardId;

/// Puts to `remote`; reads, checks and deletes by the recorded holder.
pub struct RoutedStore {
    local: DynStore,
    remote: DynStore,
}

impl RoutedStore {
    /// Routes between this machine's `local` store and the `remote` one.
    pub fn new(local: DynStore, remote: DynStore) -> Self {
        RoutedStore { local, remote }
    }

    fn route(&self, holder: &Holder) -> &DynStore {
        if holder.as_str() == Holder::LOCAL {
            &self.local
        } else {
            &self.remote
        }
    }
}

#[async_trait]
impl ShardStore for RoutedStore {
    async fn put_shards(
        &self,
        shards: &[Shard],
        exclude: &[Holder],
    ) -> Result<Vec<Holder>, StoreError> {
        self.remote.put_shards(shards, exclude).await
    }

    async fn get(&self, id: &ShardId, holder: &Holder) -> Result<Bytes, StoreError> {
        self.route(holder).get(id, holder).await
    }

    async fn delete(&self, id: &ShardId, holder: &Holder) -> Result<(), StoreError> {
        self.route(holder).delete(id, holder).await
    }

    async fn has(&self, id: &ShardId, holder: &Holder) -> Result<bool, StoreError> {
        self.route(holder).has(id, holder).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let remote = self.remote.stats().await?;
        // A local store that cannot be read must not hide the mesh's figures.
        let local = self.local.stats().await.unwrap_or_default();
        Ok(StoreStats {
            shards: remote.shards + local.shards,
            bytes: remote.bytes + local.bytes,
            // New shards go to the remote store only.
            available: remote.available,
            holders: remote.holders + u64::from(local.shards > 0),
        })
    }

    async fn distinct_holders(&self) -> usize {
        self.remote.distinct_holders().await
    }

    fn verifies_reads(&self, holder: &Holder) -> bool {
        self.route(holder).verifies_reads(holder)
    }

    fn spreads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn shard(b: &[u8]) -> Shard {
        Shard::new(Bytes::copy_from_slice(b))
    }

    #[tokio::test]
    async fn puts_go_remote_and_local_shards_still_read_and_delete() {
        let local: DynStore = Arc::new(MemoryStore::new());
        let remote: DynStore = Arc::new(MemoryStore::with_holders(3, None));
        let old = shard(b"stored before joining");
        let got = local.put_shards(std::slice::from_ref(&old), &[]).await;
        assert_eq!(got.unwrap(), vec![Holder::local()]);
        let routed = RoutedStore::new(local.clone(), remote.clone());
        assert!(routed.spreads());

        let new = [shard(b"a"), shard(b"b"), shard(b"c")];
        let holders = routed.put_shards(&new, &[]).await.unwrap();
        assert!(holders.iter().all(|h| h.as_str() != Holder::LOCAL));
        assert_eq!(local.stats().await.unwrap().shards, 1, "local not written");
        for (s, h) in new.iter().zip(&holders) {
            assert_eq!(routed.get(&s.id, h).await.unwrap(), s.bytes);
        }

        let l = Holder::local();
        assert_eq!(routed.get(&old.id, &l).await.unwrap(), old.bytes);
        assert!(routed.has(&old.id, &l).await.unwrap());
        let stats = routed.stats().await.unwrap();
        assert_eq!(stats.shards, 4);
        routed.delete(&old.id, &l).await.unwrap();
        assert!(!local.has(&old.id, &l).await.unwrap());
        assert_eq!(routed.distinct_holders().await, 3);
    }

    #[tokio::test]
    async fn a_peer_holder_is_never_asked_of_the_local_store() {
        let local: DynStore = Arc::new(MemoryStore::new());
        let remote: DynStore = Arc::new(MemoryStore::with_holders(2, None));
        let s = shard(b"x");
        // The same bytes exist locally, but the catalog says a peer holds them.
        local
            .put_shards(std::slice::from_ref(&s), &[])
            .await
            .unwrap();
        let routed = RoutedStore::new(local, remote);
        let peer = Holder("mem-1".into());
        assert!(matches!(
            routed.get(&s.id, &peer).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
