//! Extended attributes and tags of nodes.
//!
//! Extended attributes are the POSIX `getxattr` family, stored byte for byte; the mount
//! decides which namespaces (`user.`, …) it exposes. Setting or removing one changes the
//! node's ctime. Limits are in [`names`](super::names).
//!
//! Tags are datamesh's own labels for organising and filtering listings (`list --tag`).
//! They are not POSIX metadata and change no timestamp. A node's tags are a set: adding
//! a tag twice keeps one.

use rusqlite::{Connection, OptionalExtension, params};

use super::names::{check_tag, check_xattr, lossy};
use super::namespace::{require, touch};
use super::sql::{get_u64, now_ns};
use super::{Catalog, CatalogError, Ino, Result};

/// How [`Catalog::setxattr`] treats an existing attribute (`setxattr(2)` flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Set,
    /// `XATTR_CREATE`: fail with EEXIST if it exists.
    Create,
    /// `XATTR_REPLACE`: fail with ENODATA if it does not exist.
    Replace,
}

/// A tag and how many nodes carry it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TagCount {
    /// The tag.
    pub tag: String,
    /// Nodes carrying it.
    pub nodes: u64,
}

impl Catalog {
    /// The value of extended attribute `name` of `ino`.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>> {
        check_xattr(name, None)?;
        self.read("getxattr", |db| {
            require(db, ino)?;
            db.prepare_cached("SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2")?
                .query_row(params![ino, name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| CatalogError::NoAttr { name: lossy(name) })
        })
    }

    /// Sets extended attribute `name` of `ino` to `value`.
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], mode: XattrMode) -> Result<()> {
        check_xattr(name, Some(value))?;
        self.write("setxattr", |db| {
            require(db, ino)?;
            let present = has_xattr(db, ino, name)?;
            match (mode, present) {
                (XattrMode::Create, true) => {
                    return Err(CatalogError::AttrExists { name: lossy(name) });
                }
                (XattrMode::Replace, false) => {
                    return Err(CatalogError::NoAttr { name: lossy(name) });
                }
                _ => {}
            }
            db.prepare_cached(
                "INSERT OR REPLACE INTO xattrs (ino, name, value) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![ino, name, value])?;
            touch(db, ino, now_ns(), 0)
        })
    }

    /// The names of the extended attributes of `ino`, sorted.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>> {
        self.read("listxattr", |db| {
            require(db, ino)?;
            let mut stmt =
                db.prepare_cached("SELECT name FROM xattrs WHERE ino = ?1 ORDER BY name")?;
            let names = stmt.query_map([ino], |r| r.get(0))?;
            Ok(names.collect::<rusqlite::Result<Vec<Vec<u8>>>>()?)
        })
    }

    /// Removes extended attribute `name` of `ino`.
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<()> {
        check_xattr(name, None)?;
        self.write("removexattr", |db| {
            require(db, ino)?;
            let removed = db
                .prepare_cached("DELETE FROM xattrs WHERE ino = ?1 AND name = ?2")?
                .execute(params![ino, name])?;
            if removed == 0 {
                return Err(CatalogError::NoAttr { name: lossy(name) });
            }
            touch(db, ino, now_ns(), 0)
        })
    }

    /// The tags of `ino`, sorted.
    pub fn tags(&self, ino: Ino) -> Result<Vec<String>> {
        self.read("reading tags", |db| {
            require(db, ino)?;
            tags_of(db, ino)
        })
    }

    /// Replaces the tags of `ino` with `tags`.
    pub fn set_tags<S: AsRef<str>>(&self, ino: Ino, tags: &[S]) -> Result<()> {
        check_tags(tags)?;
        self.write("setting tags", |db| {
            require(db, ino)?;
            db.prepare_cached("DELETE FROM tags WHERE ino = ?1")?
                .execute([ino])?;
            insert_tags(db, ino, tags)
        })
    }

    /// Adds `tags` to those of `ino`.
    pub fn add_tags<S: AsRef<str>>(&self, ino: Ino, tags: &[S]) -> Result<()> {
        check_tags(tags)?;
        self.write("adding tags", |db| {
            require(db, ino)?;
            insert_tags(db, ino, tags)
        })
    }

    /// Removes `tags` from those of `ino` (tags it does not carry are ignored).
    pub fn remove_tags<S: AsRef<str>>(&self, ino: Ino, tags: &[S]) -> Result<()> {
        self.write("removing tags", |db| {
            require(db, ino)?;
            let mut stmt = db.prepare_cached("DELETE FROM tags WHERE ino = ?1 AND tag = ?2")?;
            for tag in tags {
                stmt.execute(params![ino, tag.as_ref()])?;
            }
            Ok(())
        })
    }

    /// Every tag in use and how many nodes carry it, sorted by tag.
    pub fn all_tags(&self) -> Result<Vec<TagCount>> {
        self.read("listing tags", |db| {
            let mut stmt =
                db.prepare_cached("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY tag")?;
            let rows = stmt.query_map([], |r| {
                Ok(TagCount {
                    tag: r.get(0)?,
                    nodes: get_u64(r, 1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

fn has_xattr(db: &Connection, ino: Ino, name: &[u8]) -> Result<bool> {
    Ok(db
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM xattrs WHERE ino = ?1 AND name = ?2)")?
        .query_row(params![ino, name], |r| r.get(0))?)
}

fn check_tags<S: AsRef<str>>(tags: &[S]) -> Result<()> {
    tags.iter().try_for_each(|t| check_tag(t.as_ref()))
}

fn insert_tags<S: AsRef<str>>(db: &Connection, ino: Ino, tags: &[S]) -> Result<()> {
    let mut stmt = db.prepare_cached("INSERT OR IGNORE INTO tags (ino, tag) VALUES (?1, ?2)")?;
    for tag in tags {
        stmt.execute(params![ino, tag.as_ref()])?;
    }
    Ok(())
}

/// The tags of `ino`, sorted.
pub(crate) fn tags_of(db: &Connection, ino: Ino) -> Result<Vec<String>> {
    let mut stmt = db.prepare_cached("SELECT tag FROM tags WHERE ino = ?1 ORDER BY tag")?;
    let tags = stmt.query_map([ino], |r| r.get(0))?;
    Ok(tags.collect::<rusqlite::Result<Vec<String>>>()?)
}
