//! [`Namespace`] over the catalog: one catalog operation per port call (two where the
//! port asks for something the catalog's answer lacks, noted at each method).
//!
//! Reads go to the reader connection, changes to the writer (see the module docs of
//! `adapters::mount`). Times: the catalog stamps its own "now" as ctime on every change;
//! an explicit ctime in [`AttrChange`] (the kernel's, sent with the writeback cache) is
//! therefore replaced by the catalog's clock at the moment of the change, never earlier
//! than the mtime that came with it.

use async_trait::async_trait;
use datamesh_mount::ports::{
    AttrChange, DirEntry, FsResult, FsStats, Ino, Liveness, Namespace, NewNode, NewNodeKind,
    NodeAttr, NodeKind, RenameMode, Renamed, Unlinked, XattrMode,
};

use super::{MountBackend, cat, fs_error};
use crate::catalog::{self, Attr, LastLink, SetAttr};

/// A catalog node as the mount sees it.
pub(super) fn node_attr(a: &Attr) -> NodeAttr {
    NodeAttr {
        ino: a.ino.0,
        kind: match a.kind {
            catalog::NodeKind::File => NodeKind::File,
            catalog::NodeKind::Dir => NodeKind::Directory,
            catalog::NodeKind::Symlink => NodeKind::Symlink,
        },
        perm: a.mode & 0o7777,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        nlink: a.nlink,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
    }
}

fn ino(i: Ino) -> catalog::Ino {
    catalog::Ino(i)
}

#[async_trait]
impl Namespace for MountBackend {
    async fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<NodeAttr> {
        cat(|| self.reader.lookup(ino(parent), name)).map(|a| node_attr(&a))
    }

    async fn getattr(&self, i: Ino) -> FsResult<NodeAttr> {
        cat(|| self.reader.getattr(ino(i))).map(|a| node_attr(&a))
    }

    async fn setattr(&self, i: Ino, change: &AttrChange) -> FsResult<NodeAttr> {
        let set = SetAttr {
            mode: change.perm,
            uid: change.uid,
            gid: change.gid,
            size: None,
            atime: change.atime,
            mtime: change.mtime,
        };
        cat(|| self.writer.setattr(ino(i), &set)).map(|a| node_attr(&a))
    }

    async fn readdir(&self, dir: Ino, after: u64, limit: usize) -> FsResult<Vec<DirEntry>> {
        let entries = cat(|| self.reader.readdir(ino(dir), after, limit))?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                cookie: e.cookie,
                attr: node_attr(&e.attr),
            })
            .collect())
    }

    async fn create(&self, parent: Ino, name: &[u8], node: &NewNode) -> FsResult<NodeAttr> {
        let p = ino(parent);
        let w = &self.writer;
        let attr = cat(|| match &node.kind {
            NewNodeKind::File => w.create_file(p, name, node.perm, node.uid, node.gid),
            NewNodeKind::Directory => w.mkdir(p, name, node.perm, node.uid, node.gid),
            NewNodeKind::Symlink(target) => w.symlink(p, name, target, node.uid, node.gid),
        })?;
        Ok(node_attr(&attr))
    }

    async fn link(&self, i: Ino, new_parent: Ino, new_name: &[u8]) -> FsResult<NodeAttr> {
        cat(|| self.writer.link(ino(i), ino(new_parent), new_name)).map(|a| node_attr(&a))
    }

    async fn unlink(&self, parent: Ino, name: &[u8], live: &dyn Liveness) -> FsResult<Unlinked> {
        let is_open = |i: catalog::Ino| live.is_open(i.0);
        let u = cat(|| self.writer.unlink_live(ino(parent), name, &is_open))?;
        Ok(Unlinked {
            ino: u.removed.ino.0,
            nlink: u.nlink,
        })
    }

    async fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<Unlinked> {
        let dir = cat(|| self.writer.rmdir_ino(ino(parent), name))?;
        Ok(Unlinked {
            ino: dir.0,
            nlink: 0,
        })
    }

    /// The catalog's rename reports only the replaced node, so the moved (and, for an
    /// exchange, the other) node is looked up first; the kernel holds both directories
    /// locked for the rename, so the answer cannot change in between. A replaced file
    /// losing its last link is kept as an orphan by the rename itself and freed right
    /// after unless the mount has it open (asked once the link is gone).
    async fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
        live: &dyn Liveness,
    ) -> FsResult<Renamed> {
        let (p, np) = (ino(parent), ino(new_parent));
        let moved = cat(|| self.reader.lookup(p, name))?.ino.0;
        let exchanged = match mode {
            RenameMode::Exchange => Some(cat(|| self.reader.lookup(np, new_name))?.ino.0),
            _ => None,
        };
        let mode = match mode {
            RenameMode::Replace => catalog::RenameMode::Replace,
            RenameMode::NoReplace => catalog::RenameMode::NoReplace,
            RenameMode::Exchange => catalog::RenameMode::Exchange,
        };
        let r = cat(|| {
            self.writer
                .rename(p, name, np, new_name, mode, LastLink::Orphan)
        })?;
        let replaced = match r.replaced {
            None => None,
            Some(rm) if rm.unreachable => {
                if rm.kind != catalog::NodeKind::Dir && !live.is_open(rm.ino.0) {
                    cat(|| self.writer.free_orphan(rm.ino))?;
                }
                Some(Unlinked {
                    ino: rm.ino.0,
                    nlink: 0,
                })
            }
            Some(rm) => {
                let nlink = cat(|| self.reader.getattr(rm.ino)).map_or(0, |a| a.nlink);
                Some(Unlinked {
                    ino: rm.ino.0,
                    nlink,
                })
            }
        };
        Ok(Renamed {
            moved,
            replaced,
            exchanged,
        })
    }

    async fn readlink(&self, i: Ino) -> FsResult<Vec<u8>> {
        cat(|| self.reader.readlink(ino(i)))
    }

    async fn reclaim(&self, i: Ino) -> FsResult<()> {
        cat(|| self.writer.free_orphan(ino(i))).map(|_| ())
    }

    /// Every orphan, whoever recorded it: the mount owns the repository exclusively
    /// while it runs (its lock file), so no other process holds one open.
    async fn reclaim_all_orphans(&self) -> FsResult<()> {
        let orphans = cat(|| self.writer.orphans())?;
        for o in orphans {
            cat(|| self.writer.free_orphan(o))?;
        }
        Ok(())
    }

    async fn get_xattr(&self, i: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        cat(|| self.reader.getxattr(ino(i), name))
    }

    async fn set_xattr(&self, i: Ino, name: &[u8], value: &[u8], mode: XattrMode) -> FsResult<()> {
        let mode = match mode {
            XattrMode::Upsert => catalog::XattrMode::Set,
            XattrMode::Create => catalog::XattrMode::Create,
            XattrMode::Replace => catalog::XattrMode::Replace,
        };
        cat(|| self.writer.setxattr(ino(i), name, value, mode))
    }

    async fn list_xattr(&self, i: Ino) -> FsResult<Vec<Vec<u8>>> {
        cat(|| self.reader.listxattr(ino(i)))
    }

    async fn remove_xattr(&self, i: Ino, name: &[u8]) -> FsResult<()> {
        cat(|| self.writer.removexattr(ino(i), name))
    }

    async fn statfs(&self) -> FsResult<FsStats> {
        self.statfs_cached().await
    }

    async fn sync(&self) -> FsResult<()> {
        self.make_durable().map_err(|e| fs_error(&e))
    }
}
