//! The inode table: what the mount remembers per inode while the kernel or an open handle
//! refers to it.
//!
//! * `lookups`: the kernel's reference count (entries replied minus `forget`s).
//! * `open`: open file handles. A node whose last name goes away while `open > 0` is kept
//!   by the namespace as an orphan ([`Liveness`]) and reclaimed at the last release.
//! * `staged`: the inode's staged copy, shared by all handles. The entry stays while it
//!   exists (uncommitted data must stay reachable).
//! * `layout`: the current version's layout, cached while handles are open and dropped
//!   when a commit makes a new version.
//! * `kernel_version`: which committed version the kernel's page cache holds for this
//!   inode (`None`: unknown, nothing cached). Opens keep the page cache
//!   (`FOPEN_KEEP_CACHE`) only when it matches the current version; our own commits move
//!   it forward because the kernel saw every byte of them (they were written through it).
//!
//! An entry is dropped when `lookups == 0`, `open == 0` and there is no staged copy.
//! The table's mutex is never held across an await or a port call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ports::{Ino, Layout, Liveness, VersionId};
use crate::stage::staged::Staged;

/// Per-inode state.
#[derive(Debug)]
pub(crate) struct InodeEntry<K> {
    pub(crate) lookups: u64,
    pub(crate) open: u32,
    pub(crate) orphan: bool,
    pub(crate) staged: Option<Arc<Staged<K>>>,
    pub(crate) layout: Option<Arc<Layout<K>>>,
    pub(crate) kernel_version: Option<Option<VersionId>>,
}

impl<K> Default for InodeEntry<K> {
    fn default() -> Self {
        InodeEntry {
            lookups: 0,
            open: 0,
            orphan: false,
            staged: None,
            layout: None,
            kernel_version: None,
        }
    }
}

impl<K> InodeEntry<K> {
    fn idle(&self) -> bool {
        self.lookups == 0 && self.open == 0 && self.staged.is_none()
    }
}

/// The table.
#[derive(Debug)]
pub(crate) struct Inodes<K> {
    map: Mutex<HashMap<Ino, InodeEntry<K>>>,
}

impl<K> Default for Inodes<K> {
    fn default() -> Self {
        Inodes {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K> Inodes<K> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Ino, InodeEntry<K>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the entry of `ino`, creating it if needed, then drops it if idle.
    pub(crate) fn with<T>(&self, ino: Ino, f: impl FnOnce(&mut InodeEntry<K>) -> T) -> T {
        let mut map = self.lock();
        let e = map.entry(ino).or_default();
        let out = f(e);
        if e.idle() {
            map.remove(&ino);
        }
        out
    }

    /// Runs `f` on the entry of `ino` if there is one.
    pub(crate) fn peek<T>(&self, ino: Ino, f: impl FnOnce(&InodeEntry<K>) -> T) -> Option<T> {
        self.lock().get(&ino).map(f)
    }

    /// The kernel got one more reference (an entry reply).
    pub(crate) fn remember(&self, ino: Ino) {
        self.with(ino, |e| e.lookups += 1);
    }

    /// The kernel dropped `n` references.
    pub(crate) fn forget(&self, ino: Ino, n: u64) {
        let mut map = self.lock();
        if let Some(e) = map.get_mut(&ino) {
            e.lookups = e.lookups.saturating_sub(n);
            if e.lookups == 0 {
                // The kernel's inode (and its page cache) is gone.
                e.kernel_version = None;
            }
            if e.idle() {
                map.remove(&ino);
            }
        }
    }

    /// The staged copy of `ino`, if any.
    pub(crate) fn staged(&self, ino: Ino) -> Option<Arc<Staged<K>>> {
        self.lock().get(&ino).and_then(|e| e.staged.clone())
    }

    /// Every staged copy.
    pub(crate) fn all_staged(&self) -> Vec<Arc<Staged<K>>> {
        self.lock()
            .values()
            .filter_map(|e| e.staged.clone())
            .collect()
    }

    /// Number of entries (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl<K: Send + Sync> Liveness for Inodes<K> {
    /// Called by the namespace when `ino` loses its last name. If it is open it becomes an
    /// orphan, and noting that here (under the table's lock) means the last release, which
    /// cannot run concurrently with this check, will reclaim it.
    fn is_open(&self, ino: Ino) -> bool {
        let mut map = self.lock();
        match map.get_mut(&ino) {
            Some(e) if e.open > 0 => {
                e.orphan = true;
                true
            }
            _ => false,
        }
    }
}
