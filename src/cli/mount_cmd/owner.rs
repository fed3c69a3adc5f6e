//! The mount as the repository's owner on the control socket: commands sent by other
//! `datamesh` processes run inside the mount, which settles on request and drops what
//! the kernel cached about whatever those commands changed.
//!
//! Invalidation: a changed inode loses its cached attributes and pages
//! (`MountHandle::invalidate_inode`, which also drops the mount's cached layout); a
//! changed entry loses its cached lookup, positive or negative
//! (`MountHandle::invalidate_entry`), and its directory its attributes. A changed *path*
//! is resolved component by component through the catalog: every entry on the way is
//! invalidated (a `put` may have created the directories), until a component no longer
//! exists (an `rm` removed it). Invalidation talks to the kernel synchronously, so it
//! runs on the blocking pool; errors (the kernel never saw that inode) are ignored.

use std::sync::{Arc, Mutex};

use datamesh_mount::MountHandle;

use crate::adapters::mount::MountBackend;
use crate::catalog::{Catalog, Ino};
use crate::cli::context::{Change, Owner};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::store::DynStore;

/// The running mount's handle, shared with the control server until unmount takes it.
pub type SharedHandle = Arc<Mutex<Option<MountHandle<MountBackend, MountBackend>>>>;

/// What the control server is given.
pub struct MountOwner {
    /// The mount (taken out at unmount).
    pub handle: SharedHandle,
    /// The filesystem core, for settling.
    pub fs: datamesh_mount::Fs<MountBackend, MountBackend>,
    /// The mount's backend (its durability point).
    pub backend: Arc<MountBackend>,
    /// The engine commands use (the repository's own catalog connection, synchronous).
    pub engine: Engine,
    /// The store.
    pub store: DynStore,
}

/// Kernel invalidations for `changes`, resolved against `catalog`.
fn targets(catalog: &Catalog, changes: &[Change]) -> (Vec<u64>, Vec<(u64, Vec<u8>)>) {
    let mut inodes = Vec::new();
    let mut entries = Vec::new();
    for c in changes {
        match c {
            Change::Inode(i) => inodes.push(*i),
            Change::Entry(parent, name) => {
                inodes.push(*parent);
                entries.push((*parent, name.clone()));
            }
            Change::Path(path) => {
                let mut dir = Ino::ROOT;
                for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
                    inodes.push(dir.0);
                    entries.push((dir.0, comp.to_vec()));
                    match catalog.lookup(dir, comp) {
                        Ok(a) => {
                            inodes.push(a.ino.0);
                            dir = a.ino;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
    (inodes, entries)
}

#[async_trait::async_trait]
impl Owner for MountOwner {
    async fn settle(&self) -> Result<()> {
        self.fs
            .flush_all()
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("committing staged files: {e}")))?;
        self.backend.make_durable()
    }

    fn store(&self) -> DynStore {
        self.store.clone()
    }

    fn engine(&self) -> Engine {
        self.engine.clone()
    }

    fn changed(&self, changes: &[Change]) {
        let (handle, reader, changes) = (
            self.handle.clone(),
            self.backend.reader().clone(),
            changes.to_vec(),
        );
        // Called from a command's task; the kernel round trips must not hold a worker.
        tokio::task::spawn_blocking(move || {
            let (inodes, entries) = targets(&reader, &changes);
            let guard = handle.lock().unwrap_or_else(|p| p.into_inner());
            let Some(h) = guard.as_ref() else { return };
            for (parent, name) in entries {
                let _ = h.invalidate_entry(parent, &name);
            }
            for ino in inodes {
                let _ = h.invalidate_inode(ino);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_every_entry_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::create(dir.path().join("c.db")).unwrap();
        let a = cat.mkdir(Ino::ROOT, b"a", 0o755, 0, 0).unwrap();
        let f = cat.create_file(a.ino, b"f", 0o644, 0, 0).unwrap();
        let (inodes, entries) = targets(&cat, &[Change::Path(b"a/f".to_vec())]);
        assert_eq!(entries, vec![(1, b"a".to_vec()), (a.ino.0, b"f".to_vec())]);
        assert!(inodes.contains(&f.ino.0) && inodes.contains(&a.ino.0) && inodes.contains(&1));
        // A removed name: the entry is still invalidated, nothing beyond it.
        let (_, entries) = targets(&cat, &[Change::Path(b"a/gone/x".to_vec())]);
        assert_eq!(
            entries,
            vec![(1, b"a".to_vec()), (a.ino.0, b"gone".to_vec())]
        );
        let (inodes, entries) = targets(&cat, &[Change::Entry(5, b"n".to_vec()), Change::Inode(9)]);
        assert_eq!(entries, vec![(5, b"n".to_vec())]);
        assert_eq!(inodes, vec![5, 9]);
    }
}
