//! A shard store in a local directory: the embedded default, and what a mesh storage
//! node keeps its shards in.
//!
//! # Layout
//!
//! ```text
//! DIR/ab/abcdef…(64 hex digits)   one file per shard, fanned out by the first byte
//! DIR/tmp/<pid>-<n>               shards being written
//! ```
//!
//! 256 fan-out directories keep directory sizes reasonable up to tens of millions of
//! shards; they are created on first use.
//!
//! # Durability
//!
//! A shard is written to `tmp/`, fsync'd, renamed to its final name and the fan-out
//! directory is fsync'd, so after `put_shards` returns the shard survives a power cut,
//! and a crash at any point leaves either no file or the complete file under the id.
//! Temporary files older than an hour are removed when the store is opened (younger ones
//! may belong to another process writing right now).
//!
//! All file I/O runs on tokio's blocking pool, never on reactor threads.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind as IoKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Holder, Shard, ShardStore, StoreError, StoreStats};
use crate::ids::ShardId;

/// Temporary files younger than this may belong to a live writer.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A directory of shard files. Cheap to clone.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    tmp_seq: AtomicU64,
    /// Optional limit on the bytes this store may hold (storage nodes).
    capacity: Option<u64>,
    /// Bytes held, tracked only when there is a capacity limit: counted once at open,
    /// then kept up to date by this process's puts and deletes (a storage node is the
    /// only writer of its directory).
    used: AtomicU64,
}

impl LocalStore {
    /// Opens (creating if needed) a store in `dir`, with no capacity limit beyond the
    /// disk itself.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with_capacity(dir, None)
    }

    /// Opens a store that refuses new shards once it holds `capacity` bytes.
    pub fn open_with_capacity(
        dir: impl Into<PathBuf>,
        capacity: Option<u64>,
    ) -> Result<Self, StoreError> {
        let dir = dir.into();
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io("create", tmp.display(), e))?;
        remove_stale_tmp(&tmp);
        let inner = Inner {
            dir,
            tmp_seq: AtomicU64::new(0),
            capacity,
            used: AtomicU64::new(0),
        };
        if capacity.is_some() {
            let used = inner.walk()?.iter().map(|(_, len)| *len).sum();
            inner.used.store(used, Ordering::Relaxed);
        }
        Ok(LocalStore {
            inner: Arc::new(inner),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The path a shard rests at.
    pub fn shard_path(&self, id: &ShardId) -> PathBuf {
        self.inner.shard_path(id)
    }

    /// Every shard id present (for orphan sweeps and storage-node listings).
    pub async fn list(&self) -> Result<Vec<ShardId>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            inner
                .walk()
                .map(|v| v.into_iter().map(|(id, _)| id).collect())
        })
        .await
    }

    /// Stores one shard (storage-node path: one shard per request).
    pub async fn put_one(&self, shard: Shard) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        blocking(move || inner.put_all(std::slice::from_ref(&shard))).await
    }
}

impl Inner {
    fn shard_path(&self, id: &ShardId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    fn put_all(&self, shards: &[Shard]) -> Result<(), StoreError> {
        if let Some(cap) = self.capacity {
            let incoming: u64 = shards.iter().map(|s| s.bytes.len() as u64).sum();
            let used = self.used.load(Ordering::Relaxed);
            if used + incoming > cap {
                return Err(StoreError::NoSpace {
                    where_: format!("{} (capacity limit {cap} bytes)", self.dir.display()),
                });
            }
        }
        let mut dirs = BTreeSet::new();
        let mut written = Vec::new();
        let result = (|| {
            for shard in shards {
                let path = self.shard_path(&shard.id);
                // Already here (content addressed)? Only identical bytes count: a file
                // of the right length may be a damaged copy that repair is replacing.
                if let Ok(meta) = fs::metadata(&path)
                    && meta.len() == shard.bytes.len() as u64
                    && fs::read(&path).is_ok_and(|b| b == shard.bytes)
                {
                    continue;
                }
                let parent = path
                    .parent()
                    .expect("shard path has a parent")
                    .to_path_buf();
                if !parent.exists() {
                    fs::create_dir_all(&parent)
                        .map_err(|e| StoreError::io("create", parent.display(), e))?;
                    dirs.insert(self.dir.clone());
                }
                let tmp = self.tmp_path();
                written.push(tmp.clone());
                write_synced(&tmp, &shard.bytes)?;
                fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", path.display(), e))?;
                written.pop();
                self.used
                    .fetch_add(shard.bytes.len() as u64, Ordering::Relaxed);
                dirs.insert(parent);
            }
            for dir in &dirs {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        for tmp in written {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()))
    }

    fn walk(&self) -> Result<Vec<(ShardId, u64)>, StoreError> {
        let mut out = Vec::new();
        let top =
            fs::read_dir(&self.dir).map_err(|e| StoreError::io("list", self.dir.display(), e))?;
        for fan in top.flatten() {
            let name = fan.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !fan.path().is_dir() {
                continue;
            }
            let entries = match fs::read_dir(fan.path()) {
                Ok(entries) => entries,
                Err(e) => return Err(StoreError::io("list", fan.path().display(), e)),
            };
            for entry in entries.flatten() {
                if let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<ShardId>().ok())
                {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((id, len));
                }
            }
        }
        Ok(out)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = File::create(path).map_err(|e| StoreError::io("create", path.display(), e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", path.display(), e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path.display(), e))
}

/// fsync a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync", dir.display(), e))
}

fn remove_stale_tmp(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP)
            .unwrap_or(false);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(IoKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` is a plain C struct that
    // statvfs fills in completely on success.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Injected(format!("store task failed: {e}"))))
}

#[async_trait]
impl ShardStore for LocalStore {
    async fn put_shards(
        &self,
        shards: &[Shard],
        _exclude: &[Holder],
    ) -> Result<Vec<Holder>, StoreError> {
        let inner = self.inner.clone();
        let owned = shards.to_vec();
        blocking(move || inner.put_all(&owned)).await?;
        Ok(vec![Holder::local(); shards.len()])
    }

    async fn get(&self, id: &ShardId, _holder: &Holder) -> Result<Bytes, StoreError> {
        let path = self.shard_path(id);
        let id = *id;
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == IoKind::NotFound => Err(StoreError::NotFound(id)),
            Err(e) => Err(StoreError::io("read", path.display(), e)),
        })
        .await
    }

    async fn delete(&self, id: &ShardId, _holder: &Holder) -> Result<(), StoreError> {
        let path = self.shard_path(id);
        let inner = self.inner.clone();
        blocking(move || {
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    let _ = inner
                        .used
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                            Some(u.saturating_sub(len))
                        });
                    Ok(())
                }
                Err(e) if e.kind() == IoKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::io("remove", path.display(), e)),
            }
        })
        .await
    }

    async fn has(&self, id: &ShardId, _holder: &Holder) -> Result<bool, StoreError> {
        let path = self.shard_path(id);
        blocking(move || Ok(path.exists())).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let all = inner.walk()?;
            let bytes: u64 = all.iter().map(|(_, len)| *len).sum();
            let free = free_space(&inner.dir)
                .map_err(|e| StoreError::io("statfs", inner.dir.display(), e))?;
            let available = match inner.capacity {
                Some(cap) => cap.saturating_sub(bytes).min(free),
                None => free,
            };
            Ok(StoreStats {
                shards: all.len() as u64,
                bytes,
                available,
                holders: 1,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(data: &[u8]) -> Shard {
        Shard::new(Bytes::copy_from_slice(data))
    }

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("shards")).unwrap();
        let a = shard(b"alpha");
        let b = shard(b"beta");
        let holders = store
            .put_shards(&[a.clone(), b.clone()], &[])
            .await
            .unwrap();
        assert_eq!(holders, vec![Holder::local(), Holder::local()]);
        let local = Holder::local();
        assert_eq!(store.get(&a.id, &local).await.unwrap(), a.bytes);
        assert!(store.has(&b.id, &local).await.unwrap());
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.shards, stats.bytes), (2, 9));
        store.delete(&a.id, &local).await.unwrap();
        store.delete(&a.id, &local).await.unwrap(); // idempotent
        assert!(matches!(
            store.get(&a.id, &local).await,
            Err(StoreError::NotFound(_))
        ));
        let mut listed = store.list().await.unwrap();
        listed.sort();
        assert_eq!(listed, vec![b.id]);
        // Nothing left behind in tmp/.
        assert_eq!(
            fs::read_dir(dir.path().join("shards/tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn capacity_limit_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open_with_capacity(dir.path(), Some(10)).unwrap();
        store.put_shards(&[shard(b"12345")], &[]).await.unwrap();
        let err = store
            .put_shards(&[shard(b"1234567")], &[])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSpace { .. }), "{err}");
    }

    #[tokio::test]
    async fn rewrites_a_damaged_shard_of_the_same_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let a = shard(b"some shard bytes");
        store
            .put_shards(std::slice::from_ref(&a), &[])
            .await
            .unwrap();
        fs::write(store.shard_path(&a.id), b"SOME shard bytes").unwrap();
        store
            .put_shards(std::slice::from_ref(&a), &[])
            .await
            .unwrap();
        assert_eq!(store.get(&a.id, &Holder::local()).await.unwrap(), a.bytes);
    }

    #[tokio::test]
    async fn rewrites_a_truncated_shard() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let a = shard(b"some shard bytes");
        store
            .put_shards(std::slice::from_ref(&a), &[])
            .await
            .unwrap();
        fs::write(store.shard_path(&a.id), b"some").unwrap();
        store
            .put_shards(std::slice::from_ref(&a), &[])
            .await
            .unwrap();
        assert_eq!(store.get(&a.id, &Holder::local()).await.unwrap(), a.bytes);
    }
}
