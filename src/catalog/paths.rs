//! Paths: the CLI's view of the namespace (`docs/report.pdf`), on top of inodes.
//!
//! A path names a node by walking entries from the root (see [`names`](super::names) for
//! the syntax). Symbolic links are not followed: they are nodes like any other, and a
//! symlink in the middle of a path is "not a directory". The path of an inode is found by
//! walking up its entries; a file with several hard links is shown by its oldest one.
//!
//! Trees deeper than [`MAX_DEPTH`] levels are treated as damaged: a directory loop (which
//! rename's checks rule out) must end in an error, not a hang.

use rusqlite::{Connection, OptionalExtension};

use super::names::{lossy, split_path};
use super::namespace::{self, Attr, NewNode, NodeKind, find_entry, require};
use super::sql::now_ns;
use super::{Catalog, CatalogError, Ino, Result};

/// Deepest tree walked before the tree is taken to contain a loop.
pub const MAX_DEPTH: usize = 65536;

impl Catalog {
    /// The node at `path` (e.g. `docs/report.pdf`; `""` or `/` is the root).
    pub fn resolve(&self, path: impl AsRef<[u8]>) -> Result<Attr> {
        let path = path.as_ref();
        let names = split_path(path)?;
        self.read("resolve", |db| walk(db, &names).map(|(attr, _)| attr))
    }

    /// The directory at `path`, creating it and any missing parents (like `mkdir -p`)
    /// with the given mode and owner.
    pub fn mkdir_p(&self, path: impl AsRef<[u8]>, mode: u32, uid: u32, gid: u32) -> Result<Attr> {
        let names = split_path(path.as_ref())?;
        let dir = NewNode {
            kind: NodeKind::Dir,
            mode,
            uid,
            gid,
            target: None,
        };
        self.write("mkdir -p", |db| make_dirs(db, &names, &dir, now_ns()))
    }

    /// The regular file at `path`, creating it (empty) and any missing parent
    /// directories if needed: what `put --name docs/report.pdf` commits a version to.
    /// Missing directories get `dir_mode`; an existing file is returned as it is.
    pub fn ensure_file(
        &self,
        path: impl AsRef<[u8]>,
        file_mode: u32,
        dir_mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attr> {
        let path = path.as_ref();
        let names = split_path(path)?;
        self.write("creating a file", |db| {
            ensure_file_in(db, path, &names, file_mode, dir_mode, uid, gid, now_ns())
        })
    }

    /// The path of `ino` relative to the root (empty for the root itself), or `None` for
    /// an orphan.
    pub fn path_of(&self, ino: Ino) -> Result<Option<Vec<u8>>> {
        self.read("finding a path", |db| {
            require(db, ino)?;
            path_of(db, ino)
        })
    }
}

/// Walks `names` from the root; returns the node and its path (for messages).
pub(crate) fn walk(db: &Connection, names: &[&[u8]]) -> Result<(Attr, Vec<u8>)> {
    let mut attr = require(db, Ino::ROOT)?;
    let mut walked: Vec<u8> = Vec::new();
    for name in names {
        if attr.kind != NodeKind::Dir {
            return Err(CatalogError::NotDir {
                name: lossy(&walked),
            });
        }
        if !walked.is_empty() {
            walked.push(b'/');
        }
        walked.extend_from_slice(name);
        let (_, child) = find_entry(db, attr.ino, name)?.ok_or_else(|| CatalogError::NoEntry {
            name: lossy(&walked),
        })?;
        attr = require(db, child)?;
    }
    Ok((attr, walked))
}

/// [`Catalog::ensure_file`] inside the caller's transaction; `names` is
/// `split_path(path)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ensure_file_in(
    db: &Connection,
    path: &[u8],
    names: &[&[u8]],
    file_mode: u32,
    dir_mode: u32,
    uid: u32,
    gid: u32,
    now: i64,
) -> Result<Attr> {
    let Some((name, parents)) = names.split_last() else {
        return Err(CatalogError::IsDir {
            name: "/".to_owned(),
        });
    };
    let dir = NewNode {
        kind: NodeKind::Dir,
        mode: dir_mode,
        uid,
        gid,
        target: None,
    };
    let file = NewNode {
        kind: NodeKind::File,
        mode: file_mode,
        uid,
        gid,
        target: None,
    };
    let parent = make_dirs(db, parents, &dir, now)?;
    match find_entry(db, parent.ino, name)? {
        None => namespace::insert_child(db, parent.ino, name, &file, now),
        Some((_, child)) => {
            let attr = require(db, child)?;
            match attr.kind {
                NodeKind::File => Ok(attr),
                NodeKind::Dir => Err(CatalogError::IsDir { name: lossy(path) }),
                NodeKind::Symlink => Err(CatalogError::NotFile { name: lossy(path) }),
            }
        }
    }
}

/// Walks `names` from the root, creating missing directories as `dir`.
pub(crate) fn make_dirs(
    db: &Connection,
    names: &[&[u8]],
    dir: &NewNode<'_>,
    now: i64,
) -> Result<Attr> {
    let mut attr = require(db, Ino::ROOT)?;
    let mut walked: Vec<u8> = Vec::new();
    for name in names {
        if !walked.is_empty() {
            walked.push(b'/');
        }
        walked.extend_from_slice(name);
        attr = match find_entry(db, attr.ino, name)? {
            None => namespace::insert_child(db, attr.ino, name, dir, now)?,
            Some((_, child)) => {
                let child = require(db, child)?;
                if child.kind != NodeKind::Dir {
                    return Err(CatalogError::NotDir {
                        name: lossy(&walked),
                    });
                }
                child
            }
        };
    }
    Ok(attr)
}

/// The path of `ino` (see [`Catalog::path_of`]).
pub(crate) fn path_of(db: &Connection, ino: Ino) -> Result<Option<Vec<u8>>> {
    if ino == Ino::ROOT {
        return Ok(Some(Vec::new()));
    }
    let mut stmt =
        db.prepare_cached("SELECT parent, name FROM entries WHERE child = ?1 ORDER BY id LIMIT 1")?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut current = ino;
    for _ in 0..MAX_DEPTH {
        let Some((parent, name)) = stmt
            .query_row([current], |r| {
                Ok((r.get::<_, Ino>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?
        else {
            return Ok(None);
        };
        names.push(name);
        if parent == Ino::ROOT {
            names.reverse();
            return Ok(Some(names.join(&b'/')));
        }
        current = parent;
    }
    Err(CatalogError::Corrupt(format!(
        "inode {ino} is more than {MAX_DEPTH} directories deep (a directory loop?)"
    )))
}

/// Whether `node` is `ancestor` or lies below it.
pub(crate) fn is_within(db: &Connection, node: Ino, ancestor: Ino) -> Result<bool> {
    let mut current = node;
    for _ in 0..MAX_DEPTH {
        if current == ancestor {
            return Ok(true);
        }
        match namespace::parent_of(db, current)? {
            Some(parent) if parent != current => current = parent,
            // The root (its own parent) or an orphan: the walk is over.
            _ => return Ok(false),
        }
    }
    Err(CatalogError::Corrupt(format!(
        "inode {node} is more than {MAX_DEPTH} directories deep (a directory loop?)"
    )))
}
