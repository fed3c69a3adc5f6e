//! The namespace: nodes, directory entries and the POSIX operations on them.
//!
//! # Model
//!
//! A node ([`Attr`]) is a file, directory or symlink. A directory entry maps
//! (parent, name) to a child node. Directories are named by exactly one entry (the root by
//! none) and have `nlink = 2 + subdirectories`; files and symlinks have `nlink` = the
//! number of entries naming them (hard links). `.` and `..` are never stored: the mount
//! answers them ([`Catalog::parent`] gives `..`).
//!
//! Each operation is one transaction, so a concurrent reader sees it entirely or not at
//! all. Times are nanoseconds since the Unix epoch; an operation stamps the nodes it
//! changes with one "now": ctime of the node whose links or attributes change, mtime and
//! ctime of the directories whose entries change. `change` counts modifications of a
//! node (attributes, links, content), for cache validation.
//!
//! # Removing the last link
//!
//! When an unlink (or a replacing rename) takes a file's last link, the caller says what
//! happens ([`LastLink`]): free the node now, or — when the mount still has it open —
//! keep it as an *orphan* owned by this process, readable and writable by inode, until
//! [`Catalog::free_orphan`] or, once this process is gone, [`Catalog::reap_orphans`]
//! frees it. Freeing drops all its versions; chunks left unreferenced go to the GC queue
//! in the same transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::names::{check_name, check_symlink_target, lossy, path_too_long};
use super::sql::{clamp, get_opt_u64, get_u64, now_ns};
use super::{Catalog, CatalogError, Ino, Result, content, paths};

/// Most links a file may have (ext4's limit).
pub const LINK_MAX: u32 = 65000;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

impl NodeKind {
    /// The stored code.
    pub(crate) fn code(self) -> i64 {
        match self {
            NodeKind::File => 1,
            NodeKind::Dir => 2,
            NodeKind::Symlink => 3,
        }
    }

    fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(NodeKind::File),
            2 => Some(NodeKind::Dir),
            3 => Some(NodeKind::Symlink),
            _ => None,
        }
    }
}

/// A node's attributes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Permission bits (07777), without the file-type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes: the current version's size for files, the target's length for symlinks,
    /// 0 for directories.
    pub size: u64,
    /// Last access, ns since the epoch.
    pub atime: i64,
    /// Last content modification, ns since the epoch.
    pub mtime: i64,
    /// Last attribute change, ns since the epoch.
    pub ctime: i64,
    /// Number of links (see the module docs).
    pub nlink: u32,
    /// The current version's seq (files with content).
    pub version: Option<u64>,
    /// Change counter: grows with every modification of the node.
    pub change: u64,
}

/// Columns [`attr_at`] reads, for `SELECT` lists over `nodes n`.
pub(crate) const ATTR_COLS: &str = "n.ino, n.kind, n.mode, n.uid, n.gid, n.size, n.atime, n.mtime, n.ctime, n.nlink, n.version, n.change";

/// Reads an [`Attr`] from the [`ATTR_COLS`] starting at column `base`.
pub(crate) fn attr_at(row: &Row<'_>, base: usize) -> rusqlite::Result<Attr> {
    let code: i64 = row.get(base + 1)?;
    let kind = NodeKind::from_code(code)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(base + 1, code))?;
    Ok(Attr {
        ino: row.get(base)?,
        kind,
        mode: row.get(base + 2)?,
        uid: row.get(base + 3)?,
        gid: row.get(base + 4)?,
        size: get_u64(row, base + 5)?,
        atime: row.get(base + 6)?,
        mtime: row.get(base + 7)?,
        ctime: row.get(base + 8)?,
        nlink: row.get(base + 9)?,
        version: get_opt_u64(row, base + 10)?,
        change: get_u64(row, base + 11)?,
    })
}

/// A directory entry with its node's attributes (for readdirplus).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DirEntry {
    /// Cursor to pass to [`Catalog::readdir`] to continue after this entry.
    pub cookie: u64,
    /// The entry's name (arbitrary bytes).
    pub name: Vec<u8>,
    /// The child's attributes.
    pub attr: Attr,
}

/// What to do with a file when its last link is removed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastLink {
    /// Free the node and its versions now.
    Free,
    /// Keep it as an orphan owned by this process (it is still open).
    Orphan,
}

/// What an unlink (or a replacing rename) removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// The node that lost a link.
    pub ino: Ino,
    /// Its kind.
    pub kind: NodeKind,
    /// Whether that was its last link: it is now freed or orphaned, per [`LastLink`].
    pub unreachable: bool,
}

/// Attribute changes for [`Catalog::setattr`]; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (file-type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// Truncate or extend to this size (files only; see [`Catalog::setattr`]).
    pub size: Option<u64>,
    /// New access time, ns since the epoch.
    pub atime: Option<i64>,
    /// New modification time, ns since the epoch.
    pub mtime: Option<i64>,
}

/// A node to create.
pub(crate) struct NewNode<'a> {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub target: Option<&'a [u8]>,
}

impl Catalog {
    /// The attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.read("getattr", |db| require(db, ino))
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        check_name(name)?;
        self.read("lookup", |db| {
            require_dir(db, parent)?;
            let (_, child) = find_entry(db, parent, name)?.ok_or_else(|| no_entry(name))?;
            require(db, child)
        })
    }

    /// Up to `limit` entries of directory `dir` after the cursor `after` (0 = from the
    /// start), in a stable order, with their attributes. Entries added or removed while
    /// listing may or may not appear (as POSIX allows); none is listed twice unless it is
    /// renamed meanwhile.
    pub fn readdir(&self, dir: Ino, after: u64, limit: usize) -> Result<Vec<DirEntry>> {
        self.read("readdir", |db| {
            require_dir(db, dir)?;
            let mut stmt = db.prepare_cached(&format!(
                "SELECT e.id, e.name, {ATTR_COLS} FROM entries e JOIN nodes n ON n.ino = e.child
                 WHERE e.parent = ?1 AND e.id > ?2 ORDER BY e.id LIMIT ?3"
            ))?;
            let limit = clamp(u64::try_from(limit).unwrap_or(u64::MAX));
            let rows = stmt.query_map(params![dir, clamp(after), limit], |row| {
                Ok(DirEntry {
                    cookie: get_u64(row, 0)?,
                    name: row.get(1)?,
                    attr: attr_at(row, 2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// The directory containing `ino` (the root is its own parent; for a file with
    /// several links, the oldest one). `None` for an orphan.
    pub fn parent(&self, ino: Ino) -> Result<Option<Ino>> {
        self.read("parent", |db| {
            require(db, ino)?;
            parent_of(db, ino)
        })
    }

    /// Creates directory `name` in `parent`.
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, uid: u32, gid: u32) -> Result<Attr> {
        let node = NewNode {
            kind: NodeKind::Dir,
            mode,
            uid,
            gid,
            target: None,
        };
        check_name(name)?;
        self.write("mkdir", |db| {
            insert_child(db, parent, name, &node, now_ns())
        })
    }

    /// Creates an empty regular file `name` in `parent` (EEXIST if the name is taken).
    pub fn create_file(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        let node = NewNode {
            kind: NodeKind::File,
            mode,
            uid,
            gid,
            target: None,
        };
        check_name(name)?;
        self.write("create", |db| {
            insert_child(db, parent, name, &node, now_ns())
        })
    }

    /// Creates symbolic link `name` in `parent` pointing at `target`.
    pub fn symlink(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        check_name(name)?;
        check_symlink_target(target)?;
        let node = NewNode {
            kind: NodeKind::Symlink,
            mode: 0o777,
            uid,
            gid,
            target: Some(target),
        };
        self.write("symlink", |db| {
            insert_child(db, parent, name, &node, now_ns())
        })
    }

    /// The target of symbolic link `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.read("readlink", |db| {
            let attr = require(db, ino)?;
            if attr.kind != NodeKind::Symlink {
                return Err(CatalogError::NotSymlink {
                    name: describe(db, ino),
                });
            }
            let target: Option<Vec<u8>> =
                db.query_row("SELECT target FROM nodes WHERE ino = ?1", [ino], |r| {
                    r.get(0)
                })?;
            target.ok_or_else(|| CatalogError::Corrupt(format!("symlink {ino} has no target")))
        })
    }

    /// Adds hard link `new_name` in `new_parent` to file or symlink `ino`.
    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr> {
        check_name(new_name)?;
        self.write("link", |db| {
            let now = now_ns();
            let attr = require(db, ino)?;
            if attr.kind == NodeKind::Dir {
                return Err(CatalogError::DirLink {
                    name: describe(db, ino),
                });
            }
            if attr.nlink == 0 {
                // An orphan cannot get a name back (there is no linkat(AT_EMPTY_PATH)).
                return Err(CatalogError::NoNode(ino));
            }
            if attr.nlink >= LINK_MAX {
                return Err(CatalogError::TooManyLinks {
                    name: describe(db, ino),
                });
            }
            require_dir(db, new_parent)?;
            if find_entry(db, new_parent, new_name)?.is_some() {
                return Err(exists(new_name));
            }
            check_new_path(db, new_parent, new_name)?;
            insert_entry(db, new_parent, new_name, ino)?;
            touch(db, ino, now, 1)?;
            touch(db, new_parent, now, 0)?;
            require(db, ino)
        })
    }

    /// Removes the entry `name` (not a directory) from `parent`. See the module docs for
    /// `last`.
    pub fn unlink(&self, parent: Ino, name: &[u8], last: LastLink) -> Result<Removed> {
        check_name(name)?;
        self.write("unlink", |db| {
            let now = now_ns();
            require_dir(db, parent)?;
            let (entry, child) = find_entry(db, parent, name)?.ok_or_else(|| no_entry(name))?;
            let attr = require(db, child)?;
            if attr.kind == NodeKind::Dir {
                return Err(CatalogError::IsDir { name: lossy(name) });
            }
            let removed = drop_link(db, entry, &attr, now, last, self)?;
            touch(db, parent, now, 0)?;
            Ok(removed)
        })
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        check_name(name)?;
        self.write("rmdir", |db| {
            let now = now_ns();
            require_dir(db, parent)?;
            let (entry, child) = find_entry(db, parent, name)?.ok_or_else(|| no_entry(name))?;
            let attr = require(db, child)?;
            if attr.kind != NodeKind::Dir {
                return Err(CatalogError::NotDir { name: lossy(name) });
            }
            if has_entries(db, child)? {
                return Err(CatalogError::NotEmpty { name: lossy(name) });
            }
            drop_dir(db, entry, child, parent, now)
        })
    }

    /// Changes attributes. A size change of a file is content: a size of 0 clears the
    /// current content (old versions stay until pruned); any other new size commits a
    /// new version made of the current one's chunk references cut at (or, growing, a
    /// hole up to) that size — no new chunks. mtime becomes now on a size change unless
    /// given; ctime always becomes now.
    pub fn setattr(&self, ino: Ino, changes: &SetAttr) -> Result<Attr> {
        self.write("setattr", |db| {
            let now = now_ns();
            let attr = require(db, ino)?;
            let mut mtime = changes.mtime;
            if let Some(size) = changes.size {
                match attr.kind {
                    NodeKind::Dir => {
                        return Err(CatalogError::IsDir {
                            name: describe(db, ino),
                        });
                    }
                    NodeKind::Symlink => {
                        return Err(CatalogError::NotFile {
                            name: describe(db, ino),
                        });
                    }
                    NodeKind::File => {}
                }
                if size != attr.size {
                    let stamp = *mtime.get_or_insert(now);
                    content::truncate(db, ino, size, stamp, now)?;
                }
            }
            db.execute(
                "UPDATE nodes SET mode = coalesce(?2, mode), uid = coalesce(?3, uid),
                    gid = coalesce(?4, gid), atime = coalesce(?5, atime),
                    mtime = coalesce(?6, mtime), ctime = ?7, change = change + 1
                 WHERE ino = ?1",
                params![
                    ino,
                    changes.mode.map(|m| m & 0o7777),
                    changes.uid,
                    changes.gid,
                    changes.atime,
                    mtime,
                    now
                ],
            )?;
            require(db, ino)
        })
    }
}

/// The attributes of `ino`, if it exists.
pub(crate) fn get_attr(db: &Connection, ino: Ino) -> Result<Option<Attr>> {
    let mut stmt =
        db.prepare_cached(&format!("SELECT {ATTR_COLS} FROM nodes n WHERE n.ino = ?1"))?;
    Ok(stmt.query_row([ino], |row| attr_at(row, 0)).optional()?)
}

/// The attributes of `ino`, which must exist.
pub(crate) fn require(db: &Connection, ino: Ino) -> Result<Attr> {
    get_attr(db, ino)?.ok_or(CatalogError::NoNode(ino))
}

/// The attributes of `ino`, which must be a directory.
pub(crate) fn require_dir(db: &Connection, ino: Ino) -> Result<Attr> {
    let attr = require(db, ino)?;
    if attr.kind != NodeKind::Dir {
        return Err(CatalogError::NotDir {
            name: describe(db, ino),
        });
    }
    Ok(attr)
}

/// The attributes of `ino`, which must be a regular file.
pub(crate) fn require_file(db: &Connection, ino: Ino) -> Result<Attr> {
    let attr = require(db, ino)?;
    match attr.kind {
        NodeKind::File => Ok(attr),
        NodeKind::Dir => Err(CatalogError::IsDir {
            name: describe(db, ino),
        }),
        NodeKind::Symlink => Err(CatalogError::NotFile {
            name: describe(db, ino),
        }),
    }
}

/// A node for messages: its path, or "inode N" for an orphan (or a damaged tree).
pub(crate) fn describe(db: &Connection, ino: Ino) -> String {
    match paths::path_of(db, ino) {
        Ok(Some(path)) if path.is_empty() => "/".to_owned(),
        Ok(Some(path)) => lossy(&path),
        _ => format!("inode {ino}"),
    }
}

pub(crate) fn no_entry(name: &[u8]) -> CatalogError {
    CatalogError::NoEntry { name: lossy(name) }
}

pub(crate) fn exists(name: &[u8]) -> CatalogError {
    CatalogError::Exists { name: lossy(name) }
}

/// The entry (id, child) of `name` in `parent`.
pub(crate) fn find_entry(db: &Connection, parent: Ino, name: &[u8]) -> Result<Option<(i64, Ino)>> {
    let mut stmt =
        db.prepare_cached("SELECT id, child FROM entries WHERE parent = ?1 AND name = ?2")?;
    Ok(stmt
        .query_row(params![parent, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Whether directory `dir` has any entry.
pub(crate) fn has_entries(db: &Connection, dir: Ino) -> Result<bool> {
    let mut stmt = db.prepare_cached("SELECT EXISTS (SELECT 1 FROM entries WHERE parent = ?1)")?;
    Ok(stmt.query_row([dir], |r| r.get(0))?)
}

/// The parent directory of `ino` (see [`Catalog::parent`]).
pub(crate) fn parent_of(db: &Connection, ino: Ino) -> Result<Option<Ino>> {
    if ino == Ino::ROOT {
        return Ok(Some(Ino::ROOT));
    }
    let mut stmt =
        db.prepare_cached("SELECT parent FROM entries WHERE child = ?1 ORDER BY id LIMIT 1")?;
    Ok(stmt.query_row([ino], |r| r.get(0)).optional()?)
}

pub(crate) fn insert_entry(db: &Connection, parent: Ino, name: &[u8], child: Ino) -> Result<()> {
    db.prepare_cached("INSERT INTO entries (parent, name, child) VALUES (?1, ?2, ?3)")?
        .execute(params![parent, name, child])?;
    Ok(())
}

/// Stamps `ino` as changed at `now` and adds `nlink_delta` to its link count; for a
/// directory whose entries changed, that is its mtime too.
pub(crate) fn touch(db: &Connection, ino: Ino, now: i64, nlink_delta: i64) -> Result<()> {
    db.prepare_cached(
        "UPDATE nodes SET nlink = nlink + ?2, ctime = ?3,
            mtime = CASE WHEN kind = 2 THEN ?3 ELSE mtime END, change = change + 1
         WHERE ino = ?1",
    )?
    .execute(params![ino, nlink_delta, now])?;
    Ok(())
}

/// Checks that the path of `name` in `parent` stays within [`PATH_MAX`](super::names::PATH_MAX).
pub(crate) fn check_new_path(db: &Connection, parent: Ino, name: &[u8]) -> Result<()> {
    let parent_path = paths::path_of(db, parent)?.unwrap_or_default();
    let len = if parent_path.is_empty() {
        name.len()
    } else {
        parent_path.len() + 1 + name.len()
    };
    if len > super::names::PATH_MAX {
        let mut full = parent_path;
        full.push(b'/');
        full.extend_from_slice(name);
        return Err(path_too_long(&full, len));
    }
    Ok(())
}

/// Creates `node` as `name` in `parent` (validated by the caller) and returns it.
pub(crate) fn insert_child(
    db: &Connection,
    parent: Ino,
    name: &[u8],
    node: &NewNode<'_>,
    now: i64,
) -> Result<Attr> {
    require_dir(db, parent)?;
    if find_entry(db, parent, name)?.is_some() {
        return Err(exists(name));
    }
    check_new_path(db, parent, name)?;
    let nlink = if node.kind == NodeKind::Dir { 2 } else { 1 };
    let size = node.target.map_or(0, <[u8]>::len) as i64;
    db.prepare_cached(
        "INSERT INTO nodes (kind, mode, uid, gid, size, atime, mtime, ctime, nlink, target)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7, ?8)",
    )?
    .execute(params![
        node.kind.code(),
        node.mode & 0o7777,
        node.uid,
        node.gid,
        size,
        now,
        nlink,
        node.target
    ])?;
    let ino = Ino(u64::try_from(db.last_insert_rowid()).map_err(|_| {
        CatalogError::Corrupt("SQLite returned a negative inode number".to_owned())
    })?);
    insert_entry(db, parent, name, ino)?;
    touch(
        db,
        parent,
        now,
        if node.kind == NodeKind::Dir { 1 } else { 0 },
    )?;
    require(db, ino)
}

/// Removes entry `entry` naming file or symlink `attr`, and frees or orphans the node if
/// that was its last link. The parent's timestamps are the caller's business.
pub(crate) fn drop_link(
    db: &Connection,
    entry: i64,
    attr: &Attr,
    now: i64,
    last: LastLink,
    catalog: &Catalog,
) -> Result<Removed> {
    db.prepare_cached("DELETE FROM entries WHERE id = ?1")?
        .execute([entry])?;
    touch(db, attr.ino, now, -1)?;
    let unreachable = attr.nlink <= 1;
    if unreachable {
        match last {
            LastLink::Free => free_node(db, attr.ino)?,
            LastLink::Orphan => {
                db.prepare_cached(
                    "INSERT OR REPLACE INTO orphans (ino, pid, proc_start, since)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    attr.ino,
                    catalog.me.pid,
                    catalog.me.start.map(clamp),
                    now
                ])?;
            }
        }
    }
    Ok(Removed {
        ino: attr.ino,
        kind: attr.kind,
        unreachable,
    })
}

/// Removes entry `entry` naming the empty directory `dir` in `parent`, and frees it.
pub(crate) fn drop_dir(db: &Connection, entry: i64, dir: Ino, parent: Ino, now: i64) -> Result<()> {
    db.prepare_cached("DELETE FROM entries WHERE id = ?1")?
        .execute([entry])?;
    free_node(db, dir)?;
    touch(db, parent, now, -1)
}

/// Deletes node `ino` and everything hanging off it. Its chunks lose their references;
/// those left unreferenced go to the GC queue in this transaction.
pub(crate) fn free_node(db: &Connection, ino: Ino) -> Result<()> {
    content::drop_versions(db, ino, None)?;
    for table in ["tags", "xattrs", "orphans"] {
        db.prepare_cached(&format!("DELETE FROM {table} WHERE ino = ?1"))?
            .execute([ino])?;
    }
    db.prepare_cached("DELETE FROM nodes WHERE ino = ?1")?
        .execute([ino])?;
    Ok(())
}
