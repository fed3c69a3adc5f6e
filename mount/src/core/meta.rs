//! Metadata operations: lookup, getattr/setattr, directory listing and changes, links,
//! symlinks, xattrs, statfs, access.
//!
//! These mostly pass through to the [`Namespace`] (which enforces the POSIX rules) and
//! keep the inode table right: every attribute the kernel receives as an *entry* (lookup,
//! create, mkdir, symlink, link, readdirplus) counts one kernel reference; nodes that
//! lose their last name are orphaned or their staged copy dropped. Attributes are always
//! overlaid with the staged size and pending mtime.
//!
//! Directory offsets: 1 and 2 are `.` and `..`; an entry with namespace cookie `c` has
//! offset `c + 2` (the offset the kernel passes back to resume after it).

use std::sync::Arc;

use super::{Caller, Fs, now_nanos};
use crate::error::FsError;
use crate::ports::{
    AttrChange, ContentStore, FsResult, FsStats, Ino, Layout, Namespace, NewNode, NewNodeKind,
    NodeAttr, NodeKind, RenameMode, XattrMode,
};

/// A time in a setattr request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// The current time.
    Now,
    /// This time (ns since the epoch).
    At(i64),
}

/// A setattr request (`None`: unchanged).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (type bits are ignored).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<SetTime>,
    /// Modification time.
    pub mtime: Option<SetTime>,
    /// Status-change time (the kernel's writeback cache sends it).
    pub ctime: Option<i64>,
}

/// One directory listing item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirItem {
    /// Offset to resume after this item.
    pub offset: u64,
    /// Name.
    pub name: Vec<u8>,
    /// Inode number (for `.` and `..`: the directory's own).
    pub ino: Ino,
    /// Kind.
    pub kind: NodeKind,
    /// Attributes of a real entry; `None` for `.` and `..`.
    pub attr: Option<NodeAttr>,
}

/// Longest name a directory entry may have.
const NAME_MAX: usize = 255;
/// Longest xattr name (Linux XATTR_NAME_MAX).
const XATTR_NAME_MAX: usize = 255;

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(FsError::InvalidArgument("bad name"));
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

fn check_xattr_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() {
        return Err(FsError::InvalidArgument("empty xattr name"));
    }
    if name.len() > XATTR_NAME_MAX {
        return Err(FsError::Range);
    }
    Ok(())
}

/// `system.*` attributes (POSIX ACLs and the like) are not stored: the kernel enforces
/// permissions from the mode bits alone.
fn is_system_xattr(name: &[u8]) -> bool {
    name.starts_with(b"system.")
}

fn resolve(t: SetTime) -> i64 {
    match t {
        SetTime::Now => now_nanos(),
        SetTime::At(v) => v,
    }
}

impl<N: Namespace, C: ContentStore> Fs<N, C> {
    /// Counts one kernel reference to `ino` (the adapter calls this for each readdirplus
    /// entry it actually sent).
    pub fn note_lookup(&self, ino: Ino) {
        self.inner.inodes.remember(ino);
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.inner.inodes.forget(ino, n);
    }

    fn entry(&self, attr: NodeAttr) -> NodeAttr {
        self.inner.inodes.remember(attr.ino);
        self.overlay(attr)
    }

    /// Looks `name` up in `parent` (counts a kernel reference on success).
    pub async fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<NodeAttr> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let attr = self.inner.ns.lookup(parent, name).await?;
        Ok(self.entry(attr))
    }

    /// Attributes of `ino`.
    pub async fn getattr(&self, ino: Ino) -> FsResult<NodeAttr> {
        let attr = self.inner.ns.getattr(ino).await?;
        Ok(self.overlay(attr))
    }

    /// chmod, chown, truncate, utimens.
    pub async fn setattr(&self, ino: Ino, req: SetAttr) -> FsResult<NodeAttr> {
        self.check_writable()?;
        if let Some(size) = req.size {
            self.truncate(ino, size).await?;
        }
        let change = AttrChange {
            perm: req.mode.map(|m| m & 0o7777),
            uid: req.uid,
            gid: req.gid,
            atime: req.atime.map(resolve),
            mtime: req.mtime.map(resolve),
            ctime: req.ctime,
        };
        if change.mtime.is_some()
            && let Some(s) = self.inner.inodes.staged(ino)
        {
            // An explicit mtime (utimens, or the kernel's own) supersedes the pending one.
            s.set_pending_mtime(None);
        }
        let attr = if change.is_empty() {
            self.inner.ns.getattr(ino).await?
        } else {
            self.inner.ns.setattr(ino, &change).await?
        };
        Ok(self.overlay(attr))
    }

    async fn make(&self, parent: Ino, name: &[u8], node: NewNode) -> FsResult<NodeAttr> {
        self.check_writable()?;
        check_name(name)?;
        self.inner.ns.create(parent, name, &node).await
    }

    /// mkdir.
    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> FsResult<NodeAttr> {
        let node = NewNode {
            kind: NewNodeKind::Directory,
            perm: mode & !umask & 0o7777,
            uid: caller.uid,
            gid: caller.gid,
        };
        let attr = self.make(parent, name, node).await?;
        Ok(self.entry(attr))
    }

    /// Creates an empty regular file (create and mknod of S_IFREG). Other node types are
    /// not supported.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> FsResult<NodeAttr> {
        let kind = mode & libc::S_IFMT;
        if kind != 0 && kind != libc::S_IFREG {
            return Err(FsError::Unsupported(
                "only regular files, directories and symlinks",
            ));
        }
        let node = NewNode {
            kind: NewNodeKind::File,
            perm: mode & !umask & 0o7777,
            uid: caller.uid,
            gid: caller.gid,
        };
        let attr = self.make(parent, name, node).await?;
        // A new file has no content: its first write needs no copy-on-write.
        self.inner.inodes.with(attr.ino, |e| {
            e.kernel_version = Some(None);
        });
        Ok(self.entry(attr))
    }

    /// create(2): a new file, opened.
    pub async fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(NodeAttr, super::Opened)> {
        let attr = self
            .mknod(parent, name, mode & 0o7777, umask, caller)
            .await?;
        let empty = Arc::new(Layout {
            version: None,
            size: 0,
            extents: Vec::new(),
        });
        self.inner.inodes.with(attr.ino, |e| {
            if e.open == 0 {
                e.layout = Some(empty);
            }
        });
        let opened = self.open(attr.ino, flags & !libc::O_TRUNC).await?;
        Ok((attr, opened))
    }

    /// symlink.
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<NodeAttr> {
        if target.is_empty() || target.len() > 4095 {
            return Err(FsError::InvalidArgument("symlink target length"));
        }
        let node = NewNode {
            kind: NewNodeKind::Symlink(target.to_vec()),
            perm: 0o777,
            uid: caller.uid,
            gid: caller.gid,
        };
        let attr = self.make(parent, name, node).await?;
        Ok(self.entry(attr))
    }

    /// readlink.
    pub async fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.inner.ns.readlink(ino).await
    }

    /// link: a new name for `ino`.
    pub async fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> FsResult<NodeAttr> {
        self.check_writable()?;
        check_name(new_name)?;
        let attr = self.inner.ns.link(ino, new_parent, new_name).await?;
        Ok(self.entry(attr))
    }

    /// unlink.
    pub async fn unlink(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.check_writable()?;
        let u = self
            .inner
            .ns
            .unlink(parent, name, &self.inner.inodes)
            .await?;
        if u.nlink == 0 {
            self.node_deleted(u.ino).await;
        }
        Ok(())
    }

    /// rmdir.
    pub async fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<()> {
        self.check_writable()?;
        if name == b"." {
            return Err(FsError::InvalidArgument("rmdir ."));
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        self.inner.ns.rmdir(parent, name).await.map(|_| ())
    }

    /// rename / renameat2 with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    pub async fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        check_name(new_name)?;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 {
            return Err(FsError::Unsupported("rename flag"));
        }
        let mode = match (noreplace, exchange) {
            (true, true) => return Err(FsError::InvalidArgument("NOREPLACE with EXCHANGE")),
            (true, false) => RenameMode::NoReplace,
            (false, true) => RenameMode::Exchange,
            (false, false) => RenameMode::Replace,
        };
        let r = self
            .inner
            .ns
            .rename(parent, name, new_parent, new_name, mode, &self.inner.inodes)
            .await?;
        if let Some(u) = r.replaced
            && u.nlink == 0
        {
            self.node_deleted(u.ino).await;
        }
        Ok(())
    }

    /// Lists directory `ino` from `offset`: at most `max` items.
    pub async fn readdir(&self, ino: Ino, offset: u64, max: usize) -> FsResult<Vec<DirItem>> {
        let mut out = Vec::new();
        let dot = |offset: u64, name: &[u8]| DirItem {
            offset,
            name: name.to_vec(),
            ino,
            kind: NodeKind::Directory,
            attr: None,
        };
        if offset == 0 {
            out.push(dot(1, b"."));
        }
        if offset <= 1 {
            out.push(dot(2, b".."));
        }
        let after = offset.saturating_sub(2);
        let want = max
            .saturating_sub(out.len())
            .min(self.inner.cfg.readdir_page.max(1));
        let entries = self.inner.ns.readdir(ino, after, want.max(1)).await?;
        for e in entries {
            if out.len() >= max {
                break;
            }
            let attr = self.overlay(e.attr);
            out.push(DirItem {
                offset: e.cookie.saturating_add(2),
                name: e.name,
                ino: attr.ino,
                kind: attr.kind,
                attr: Some(attr),
            });
        }
        Ok(out)
    }

    /// fsyncdir, syncfs: every metadata change so far made durable.
    pub async fn fsyncdir(&self) -> FsResult<()> {
        self.inner.ns.sync().await
    }

    /// statfs.
    pub async fn statfs(&self) -> FsResult<FsStats> {
        self.inner.ns.statfs().await
    }

    /// getxattr.
    pub async fn get_xattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        check_xattr_name(name)?;
        if is_system_xattr(name) {
            return Err(FsError::NoAttribute);
        }
        self.inner.ns.get_xattr(ino, name).await
    }

    /// setxattr with `XATTR_CREATE` / `XATTR_REPLACE` in `flags`.
    pub async fn set_xattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        self.check_writable()?;
        check_xattr_name(name)?;
        if is_system_xattr(name) {
            return Err(FsError::Unsupported("system.* xattrs"));
        }
        let mode = match (
            flags & libc::XATTR_CREATE != 0,
            flags & libc::XATTR_REPLACE != 0,
        ) {
            (true, true) => return Err(FsError::InvalidArgument("CREATE with REPLACE")),
            (true, false) => XattrMode::Create,
            (false, true) => XattrMode::Replace,
            (false, false) => XattrMode::Upsert,
        };
        self.inner.ns.set_xattr(ino, name, value, mode).await
    }

    /// listxattr: the names, each followed by a NUL.
    pub async fn list_xattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let names = self.inner.ns.list_xattr(ino).await?;
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    /// removexattr.
    pub async fn remove_xattr(&self, ino: Ino, name: &[u8]) -> FsResult<()> {
        self.check_writable()?;
        check_xattr_name(name)?;
        if is_system_xattr(name) {
            return Err(FsError::NoAttribute);
        }
        self.inner.ns.remove_xattr(ino, name).await
    }

    /// access(2) by mode bits (used only without `default_permissions`).
    pub async fn access(&self, ino: Ino, mask: i32, caller: Caller) -> FsResult<()> {
        let attr = self.getattr(ino).await?;
        if mask & libc::W_OK != 0 && self.inner.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if mask == libc::F_OK {
            return Ok(());
        }
        let perm = attr.perm;
        let bits = if caller.uid == 0 {
            // root: everything except exec without any x bit on a non-directory.
            let needs_x = mask & libc::X_OK != 0;
            if needs_x && attr.kind != NodeKind::Directory && perm & 0o111 == 0 {
                return Err(FsError::PermissionDenied);
            }
            return Ok(());
        } else if caller.uid == attr.uid {
            (perm >> 6) & 7
        } else if caller.gid == attr.gid {
            (perm >> 3) & 7
        } else {
            perm & 7
        };
        let want = (mask & 7) as u32;
        if bits & want == want {
            Ok(())
        } else {
            Err(FsError::PermissionDenied)
        }
    }
}
