//! The memory backend's state and the POSIX rules of every namespace operation, as plain
//! synchronous functions (the async port methods lock and call these).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::FsError;
use crate::ports::{
    AttrChange, DirEntry, FsResult, Ino, Layout, Liveness, Nanos, NewNode, NewNodeKind, NodeAttr,
    NodeKind, ROOT_INO, RenameMode, Renamed, Unlinked, XattrMode,
};

/// The memory backend's chunk reference: an index into its chunk table.
pub type MemChunk = u64;

const NAME_MAX: usize = 255;
const LINK_MAX: u32 = 65_000;

#[derive(Debug, Clone, Default)]
pub(super) struct Dir {
    pub(super) by_name: HashMap<Vec<u8>, (u64, Ino)>,
    pub(super) by_cookie: BTreeMap<u64, Vec<u8>>,
    pub(super) next_cookie: u64,
}

impl Dir {
    fn insert(&mut self, name: Vec<u8>, ino: Ino) {
        self.next_cookie += 1;
        let cookie = self.next_cookie;
        self.by_cookie.insert(cookie, name.clone());
        self.by_name.insert(name, (cookie, ino));
    }
    fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (cookie, ino) = self.by_name.remove(name)?;
        self.by_cookie.remove(&cookie);
        Some(ino)
    }
    fn get(&self, name: &[u8]) -> Option<Ino> {
        self.by_name.get(name).map(|&(_, ino)| ino)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) attr: NodeAttr,
    /// Parent directory (directories only; for the subtree check of rename).
    pub(super) parent: Ino,
    pub(super) target: Vec<u8>,
    pub(super) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(super) dir: Option<Dir>,
    pub(super) layout: Arc<Layout<MemChunk>>,
}

#[derive(Debug, Clone)]
pub(super) struct State {
    pub(super) nodes: HashMap<Ino, Node>,
    pub(super) next_ino: Ino,
    pub(super) chunks: HashMap<MemChunk, (Bytes, usize)>,
    pub(super) next_chunk: MemChunk,
    pub(super) next_version: u64,
}

pub(super) fn now() -> Nanos {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn empty_layout() -> Arc<Layout<MemChunk>> {
    Arc::new(Layout {
        version: None,
        size: 0,
        extents: Vec::new(),
    })
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

impl State {
    pub(super) fn new() -> Self {
        let t = now();
        let (uid, gid) = unsafe_free_ids();
        let root = Node {
            attr: NodeAttr {
                ino: ROOT_INO,
                kind: NodeKind::Directory,
                perm: 0o755,
                uid,
                gid,
                size: 0,
                nlink: 2,
                atime: t,
                mtime: t,
                ctime: t,
            },
            parent: ROOT_INO,
            target: Vec::new(),
            xattrs: BTreeMap::new(),
            dir: Some(Dir::default()),
            layout: empty_layout(),
        };
        State {
            nodes: HashMap::from([(ROOT_INO, root)]),
            next_ino: ROOT_INO + 1,
            chunks: HashMap::new(),
            next_chunk: 1,
            next_version: 1,
        }
    }

    pub(super) fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    fn dir(&self, ino: Ino) -> FsResult<&Dir> {
        self.node(ino)?.dir.as_ref().ok_or(FsError::NotADirectory)
    }

    fn dir_mut(&mut self, ino: Ino) -> FsResult<&mut Dir> {
        self.node_mut(ino)?
            .dir
            .as_mut()
            .ok_or(FsError::NotADirectory)
    }

    fn touch_dir(&mut self, ino: Ino, t: Nanos) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.mtime = t;
            n.attr.ctime = t;
        }
    }

    pub(super) fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<NodeAttr> {
        let ino = self.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        Ok(self.node(ino)?.attr.clone())
    }

    pub(super) fn setattr(&mut self, ino: Ino, c: &AttrChange) -> FsResult<NodeAttr> {
        let t = now();
        let n = self.node_mut(ino)?;
        let a = &mut n.attr;
        if let Some(p) = c.perm {
            a.perm = p & 0o7777;
        }
        if let Some(u) = c.uid {
            a.uid = u;
        }
        if let Some(g) = c.gid {
            a.gid = g;
        }
        if let Some(x) = c.atime {
            a.atime = x;
        }
        if let Some(x) = c.mtime {
            a.mtime = x;
        }
        match c.ctime {
            Some(x) => a.ctime = x,
            None if !c.is_empty() => a.ctime = t,
            None => {}
        }
        Ok(a.clone())
    }

    pub(super) fn readdir(&self, dir: Ino, after: u64, limit: usize) -> FsResult<Vec<DirEntry>> {
        let d = self.dir(dir)?;
        let mut out = Vec::new();
        for (&cookie, name) in d.by_cookie.range(after.saturating_add(1)..) {
            if out.len() >= limit {
                break;
            }
            let Some(ino) = d.get(name) else { continue };
            out.push(DirEntry {
                name: name.clone(),
                cookie,
                attr: self.node(ino)?.attr.clone(),
            });
        }
        Ok(out)
    }

    pub(super) fn create(&mut self, parent: Ino, name: &[u8], new: &NewNode) -> FsResult<NodeAttr> {
        check_name(name)?;
        if self.dir(parent)?.get(name).is_some() {
            return Err(FsError::AlreadyExists);
        }
        let t = now();
        let ino = self.next_ino;
        self.next_ino += 1;
        let (kind, nlink, size, target, dir) = match &new.kind {
            NewNodeKind::File => (NodeKind::File, 1, 0, Vec::new(), None),
            NewNodeKind::Directory => (NodeKind::Directory, 2, 0, Vec::new(), Some(Dir::default())),
            NewNodeKind::Symlink(target) => (
                NodeKind::Symlink,
                1,
                target.len() as u64,
                target.clone(),
                None,
            ),
        };
        let attr = NodeAttr {
            ino,
            kind,
            perm: new.perm & 0o7777,
            uid: new.uid,
            gid: new.gid,
            size,
            nlink,
            atime: t,
            mtime: t,
            ctime: t,
        };
        let node = Node {
            attr: attr.clone(),
            parent,
            target,
            xattrs: BTreeMap::new(),
            dir,
            layout: empty_layout(),
        };
        self.nodes.insert(ino, node);
        self.dir_mut(parent)?.insert(name.to_vec(), ino);
        self.touch_dir(parent, t);
        if kind == NodeKind::Directory {
            self.node_mut(parent)?.attr.nlink += 1;
        }
        Ok(attr)
    }

    pub(super) fn link(&mut self, ino: Ino, new_parent: Ino, name: &[u8]) -> FsResult<NodeAttr> {
        check_name(name)?;
        let n = self.node(ino)?;
        if n.attr.kind == NodeKind::Directory {
            return Err(FsError::NotPermitted);
        }
        if n.attr.nlink == 0 {
            return Err(FsError::NotFound);
        }
        if n.attr.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        if self.dir(new_parent)?.get(name).is_some() {
            return Err(FsError::AlreadyExists);
        }
        let t = now();
        self.dir_mut(new_parent)?.insert(name.to_vec(), ino);
        self.touch_dir(new_parent, t);
        let n = self.node_mut(ino)?;
        n.attr.nlink += 1;
        n.attr.ctime = t;
        Ok(n.attr.clone())
    }

    /// Drops one link of non-directory `ino`; deletes it at zero unless it is open.
    fn drop_link(&mut self, ino: Ino, t: Nanos, live: &dyn Liveness) -> FsResult<Unlinked> {
        let n = self.node_mut(ino)?;
        n.attr.nlink = n.attr.nlink.saturating_sub(1);
        n.attr.ctime = t;
        let nlink = n.attr.nlink;
        if nlink == 0 && !live.is_open(ino) {
            self.delete(ino);
        }
        Ok(Unlinked { ino, nlink })
    }

    pub(super) fn delete(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.remove(&ino) {
            self.release_layout(&node.layout);
        }
    }

    pub(super) fn release_layout(&mut self, layout: &Layout<MemChunk>) {
        for e in &layout.extents {
            if let Some(entry) = self.chunks.get_mut(&e.chunk) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    self.chunks.remove(&e.chunk);
                }
            }
        }
    }

    pub(super) fn unlink(
        &mut self,
        parent: Ino,
        name: &[u8],
        live: &dyn Liveness,
    ) -> FsResult<Unlinked> {
        let ino = self.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        if self.node(ino)?.attr.kind == NodeKind::Directory {
            return Err(FsError::IsADirectory);
        }
        let t = now();
        self.dir_mut(parent)?.remove(name);
        self.touch_dir(parent, t);
        self.drop_link(ino, t, live)
    }

    pub(super) fn rmdir(&mut self, parent: Ino, name: &[u8]) -> FsResult<Unlinked> {
        let ino = self.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        if ino == ROOT_INO {
            return Err(FsError::Busy);
        }
        if !self.dir(ino)?.by_name.is_empty() {
            return Err(FsError::NotEmpty);
        }
        let t = now();
        self.dir_mut(parent)?.remove(name);
        self.touch_dir(parent, t);
        let p = self.node_mut(parent)?;
        p.attr.nlink = p.attr.nlink.saturating_sub(1);
        self.delete(ino);
        Ok(Unlinked { ino, nlink: 0 })
    }

    /// True if `dir` is `ancestor` or lies below it.
    fn is_within(&self, mut dir: Ino, ancestor: Ino) -> bool {
        // Bounded walk: a cycle can only come from a bug, never loop forever on one.
        for _ in 0..=self.nodes.len() {
            if dir == ancestor {
                return true;
            }
            if dir == ROOT_INO {
                return false;
            }
            match self.nodes.get(&dir) {
                Some(n) => dir = n.parent,
                None => return false,
            }
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
        live: &dyn Liveness,
    ) -> FsResult<Renamed> {
        check_name(new_name)?;
        let src = self.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        let dst = self.dir(new_parent)?.get(new_name);
        let src_kind = self.node(src)?.attr.kind;
        let t = now();
        match mode {
            RenameMode::NoReplace if dst.is_some() => return Err(FsError::AlreadyExists),
            RenameMode::Exchange => {
                let dst = dst.ok_or(FsError::NotFound)?;
                if src == dst {
                    return Ok(Renamed {
                        moved: src,
                        replaced: None,
                        exchanged: Some(dst),
                    });
                }
                let dst_kind = self.node(dst)?.attr.kind;
                if (src_kind == NodeKind::Directory && self.is_within(new_parent, src))
                    || (dst_kind == NodeKind::Directory && self.is_within(parent, dst))
                {
                    return Err(FsError::InvalidArgument("rename into own subtree"));
                }
                self.dir_mut(parent)?.remove(name);
                self.dir_mut(new_parent)?.remove(new_name);
                self.dir_mut(new_parent)?.insert(new_name.to_vec(), src);
                self.dir_mut(parent)?.insert(name.to_vec(), dst);
                if parent != new_parent {
                    self.reparent(src, src_kind, parent, new_parent)?;
                    self.reparent(dst, dst_kind, new_parent, parent)?;
                }
                self.node_mut(src)?.attr.ctime = t;
                self.node_mut(dst)?.attr.ctime = t;
                self.touch_dir(parent, t);
                self.touch_dir(new_parent, t);
                return Ok(Renamed {
                    moved: src,
                    replaced: None,
                    exchanged: Some(dst),
                });
            }
            _ => {}
        }
        if dst == Some(src) {
            return Ok(Renamed {
                moved: src,
                replaced: None,
                exchanged: None,
            });
        }
        if src_kind == NodeKind::Directory && self.is_within(new_parent, src) {
            return Err(FsError::InvalidArgument("rename into own subtree"));
        }
        if let Some(dst) = dst {
            let dst_node = self.node(dst)?;
            match (
                src_kind == NodeKind::Directory,
                dst_node.attr.kind == NodeKind::Directory,
            ) {
                (true, false) => return Err(FsError::NotADirectory),
                (false, true) => return Err(FsError::IsADirectory),
                (true, true) if !self.dir(dst)?.by_name.is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                _ => {}
            }
        }
        self.dir_mut(parent)?.remove(name);
        let replaced = match dst {
            None => None,
            Some(dst) => {
                self.dir_mut(new_parent)?.remove(new_name);
                if self.node(dst)?.attr.kind == NodeKind::Directory {
                    let p = self.node_mut(new_parent)?;
                    p.attr.nlink = p.attr.nlink.saturating_sub(1);
                    self.delete(dst);
                    Some(Unlinked { ino: dst, nlink: 0 })
                } else {
                    Some(self.drop_link(dst, t, live)?)
                }
            }
        };
        self.dir_mut(new_parent)?.insert(new_name.to_vec(), src);
        if parent != new_parent {
            self.reparent(src, src_kind, parent, new_parent)?;
        }
        self.node_mut(src)?.attr.ctime = t;
        self.touch_dir(parent, t);
        self.touch_dir(new_parent, t);
        Ok(Renamed {
            moved: src,
            replaced,
            exchanged: None,
        })
    }

    fn reparent(&mut self, ino: Ino, kind: NodeKind, from: Ino, to: Ino) -> FsResult<()> {
        if kind != NodeKind::Directory {
            return Ok(());
        }
        self.node_mut(ino)?.parent = to;
        let f = self.node_mut(from)?;
        f.attr.nlink = f.attr.nlink.saturating_sub(1);
        self.node_mut(to)?.attr.nlink += 1;
        Ok(())
    }

    pub(super) fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let n = self.node(ino)?;
        if n.attr.kind != NodeKind::Symlink {
            return Err(FsError::InvalidArgument("not a symlink"));
        }
        Ok(n.target.clone())
    }

    pub(super) fn reclaim(&mut self, ino: Ino) {
        if self.nodes.get(&ino).is_some_and(|n| n.attr.nlink == 0) {
            self.delete(ino);
        }
    }

    pub(super) fn reclaim_all(&mut self) {
        let orphans: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.attr.nlink == 0)
            .map(|(&i, _)| i)
            .collect();
        for ino in orphans {
            self.delete(ino);
        }
    }

    pub(super) fn set_xattr(
        &mut self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> FsResult<()> {
        let t = now();
        let n = self.node_mut(ino)?;
        let exists = n.xattrs.contains_key(name);
        match mode {
            XattrMode::Create if exists => return Err(FsError::AlreadyExists),
            XattrMode::Replace if !exists => return Err(FsError::NoAttribute),
            _ => {}
        }
        n.xattrs.insert(name.to_vec(), value.to_vec());
        n.attr.ctime = t;
        Ok(())
    }

    pub(super) fn remove_xattr(&mut self, ino: Ino, name: &[u8]) -> FsResult<()> {
        let t = now();
        let n = self.node_mut(ino)?;
        n.xattrs.remove(name).ok_or(FsError::NoAttribute)?;
        n.attr.ctime = t;
        Ok(())
    }
}

/// The current process's uid and gid (the root's owner).
fn unsafe_free_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}
