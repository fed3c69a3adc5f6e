//! [`Namespace`] for [`MemoryBackend`]: each call waits the injected latency, then runs
//! the state's rule under the lock and persists if the backend is persistent.

use async_trait::async_trait;

use super::MemoryBackend;
use crate::error::FsError;
use crate::ports::{
    AttrChange, DirEntry, FsResult, FsStats, Ino, Liveness, Namespace, NewNode, NodeAttr, NodeKind,
    RenameMode, Renamed, Unlinked, XattrMode,
};

/// Capacity the memory backend reports: 1 TiB, minus what its chunks hold.
const CAPACITY: u64 = 1 << 40;

impl MemoryBackend {
    /// Runs a mutating rule under the lock and persists the result before returning.
    async fn mutate<T>(&self, f: impl FnOnce(&mut super::State) -> FsResult<T>) -> FsResult<T> {
        self.meta_delay().await;
        let mut st = self.lock();
        let out = f(&mut st)?;
        self.persist(&st)?;
        Ok(out)
    }

    async fn read<T>(&self, f: impl FnOnce(&super::State) -> FsResult<T>) -> FsResult<T> {
        self.meta_delay().await;
        let st = self.lock();
        f(&st)
    }
}

#[async_trait]
impl Namespace for MemoryBackend {
    async fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<NodeAttr> {
        self.read(|s| s.lookup(parent, name)).await
    }

    async fn getattr(&self, ino: Ino) -> FsResult<NodeAttr> {
        self.read(|s| Ok(s.node(ino)?.attr.clone())).await
    }

    async fn setattr(&self, ino: Ino, change: &AttrChange) -> FsResult<NodeAttr> {
        self.mutate(|s| s.setattr(ino, change)).await
    }

    async fn readdir(&self, dir: Ino, after: u64, limit: usize) -> FsResult<Vec<DirEntry>> {
        self.read(|s| s.readdir(dir, after, limit)).await
    }

    async fn create(&self, parent: Ino, name: &[u8], node: &NewNode) -> FsResult<NodeAttr> {
        self.mutate(|s| s.create(parent, name, node)).await
    }

    async fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> FsResult<NodeAttr> {
        self.mutate(|s| s.link(ino, new_parent, new_name)).await
    }

    async fn unlink(&self, parent: Ino, name: &[u8], live: &dyn Liveness) -> FsResult<Unlinked> {
        self.mutate(|s| s.unlink(parent, name, live)).await
    }

    async fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<Unlinked> {
        self.mutate(|s| s.rmdir(parent, name)).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
        live: &dyn Liveness,
    ) -> FsResult<Renamed> {
        self.mutate(|s| s.rename(parent, name, new_parent, new_name, mode, live))
            .await
    }

    async fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.read(|s| s.readlink(ino)).await
    }

    async fn reclaim(&self, ino: Ino) -> FsResult<()> {
        self.mutate(|s| {
            s.reclaim(ino);
            Ok(())
        })
        .await
    }

    async fn reclaim_all_orphans(&self) -> FsResult<()> {
        self.mutate(|s| {
            s.reclaim_all();
            Ok(())
        })
        .await
    }

    async fn get_xattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        self.read(|s| {
            s.node(ino)?
                .xattrs
                .get(name)
                .cloned()
                .ok_or(FsError::NoAttribute)
        })
        .await
    }

    async fn set_xattr(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> FsResult<()> {
        self.mutate(|s| s.set_xattr(ino, name, value, mode)).await
    }

    async fn list_xattr(&self, ino: Ino) -> FsResult<Vec<Vec<u8>>> {
        self.read(|s| Ok(s.node(ino)?.xattrs.keys().cloned().collect()))
            .await
    }

    async fn remove_xattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.mutate(|s| s.remove_xattr(ino, name)).await
    }

    async fn statfs(&self) -> FsResult<FsStats> {
        self.read(|s| {
            let used: u64 = s.chunks.values().map(|(b, _)| b.len() as u64).sum();
            let free = CAPACITY.saturating_sub(used);
            let files = s
                .nodes
                .values()
                .filter(|n| n.attr.kind != NodeKind::Directory)
                .count() as u64;
            Ok(FsStats {
                total_bytes: CAPACITY,
                free_bytes: free,
                avail_bytes: free,
                total_inodes: 1 << 32,
                free_inodes: (1u64 << 32).saturating_sub(files),
            })
        })
        .await
    }

    async fn sync(&self) -> FsResult<()> {
        // Every call is durable on return already (persisted under the lock).
        Ok(())
    }
}
