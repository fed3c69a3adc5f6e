//! Rename, with the semantics of Linux `renameat2(2)`.
//!
//! * [`RenameMode::Replace`] (plain `rename`): an existing target is replaced atomically.
//!   A directory may only replace an empty directory (else ENOTEMPTY), a non-directory
//!   only a non-directory (else EISDIR / ENOTDIR). The replaced node loses one link,
//!   with the same [`LastLink`] choice as unlink.
//! * [`RenameMode::NoReplace`] (`RENAME_NOREPLACE`): an existing target is EEXIST.
//! * [`RenameMode::Exchange`] (`RENAME_EXCHANGE`): both names must exist; they swap.
//!
//! A directory cannot move into its own subtree (EINVAL). Renaming a name onto itself,
//! or onto another hard link of the same file, succeeds and changes nothing (POSIX). The
//! moved entry keeps its readdir cookie when it stays in the same directory, so a
//! directory listing in progress does not see it twice.

use rusqlite::{Connection, params};

use super::names::{check_name, lossy};
use super::namespace::{
    self, LastLink, NodeKind, Removed, check_new_path, drop_dir, drop_link, find_entry,
    has_entries, no_entry, require, require_dir, touch,
};
use super::paths::is_within;
use super::sql::now_ns;
use super::{Catalog, CatalogError, Ino, Result};

/// How a rename treats an existing target (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace an existing target.
    #[default]
    Replace,
    /// Fail with EEXIST if the target exists.
    NoReplace,
    /// Swap source and target, which must both exist.
    Exchange,
}

/// What a rename did to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Renamed {
    /// The node that was replaced and lost a link (Replace mode only).
    pub replaced: Option<Removed>,
}

impl Catalog {
    /// Renames `parent`/`name` to `new_parent`/`new_name` (see the module docs).
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
        last: LastLink,
    ) -> Result<Renamed> {
        check_name(name)?;
        check_name(new_name)?;
        self.write("rename", |db| {
            let now = now_ns();
            require_dir(db, parent)?;
            require_dir(db, new_parent)?;
            let (src_entry, src) = find_entry(db, parent, name)?.ok_or_else(|| no_entry(name))?;
            let src = require(db, src)?;
            let dst = find_entry(db, new_parent, new_name)?;
            if src.kind == NodeKind::Dir && is_within(db, new_parent, src.ino)? {
                return Err(CatalogError::IntoItself { name: lossy(name) });
            }
            let unchanged = Renamed { replaced: None };
            if mode == RenameMode::Exchange {
                let (dst_entry, dst) = dst.ok_or_else(|| no_entry(new_name))?;
                let dst = require(db, dst)?;
                if dst.kind == NodeKind::Dir && is_within(db, parent, dst.ino)? {
                    return Err(CatalogError::IntoItself {
                        name: lossy(new_name),
                    });
                }
                if src_entry == dst_entry {
                    return Ok(unchanged);
                }
                check_new_path(db, new_parent, new_name)?;
                check_new_path(db, parent, name)?;
                set_child(db, src_entry, dst.ino)?;
                set_child(db, dst_entry, src.ino)?;
                // A directory changing parent moves one ".." link between them.
                let dirs = |kind| i64::from(kind == NodeKind::Dir);
                let (src_dir, dst_dir) = (dirs(src.kind), dirs(dst.kind));
                if parent != new_parent {
                    touch(db, parent, now, dst_dir - src_dir)?;
                    touch(db, new_parent, now, src_dir - dst_dir)?;
                } else {
                    touch(db, parent, now, 0)?;
                }
                touch(db, src.ino, now, 0)?;
                touch(db, dst.ino, now, 0)?;
                return Ok(unchanged);
            }
            let mut replaced = None;
            if let Some((dst_entry, dst)) = dst {
                if mode == RenameMode::NoReplace {
                    return Err(namespace::exists(new_name));
                }
                if dst_entry == src_entry || dst == src.ino {
                    return Ok(unchanged);
                }
                let dst = require(db, dst)?;
                match (src.kind == NodeKind::Dir, dst.kind == NodeKind::Dir) {
                    (true, false) => {
                        return Err(CatalogError::NotDir {
                            name: lossy(new_name),
                        });
                    }
                    (false, true) => {
                        return Err(CatalogError::IsDir {
                            name: lossy(new_name),
                        });
                    }
                    (true, true) => {
                        if has_entries(db, dst.ino)? {
                            return Err(CatalogError::NotEmpty {
                                name: lossy(new_name),
                            });
                        }
                        drop_dir(db, dst_entry, dst.ino, new_parent, now)?;
                        replaced = Some(Removed {
                            ino: dst.ino,
                            kind: dst.kind,
                            unreachable: true,
                        });
                    }
                    (false, false) => {
                        replaced = Some(drop_link(db, dst_entry, &dst, now, last, self)?);
                    }
                }
            }
            check_new_path(db, new_parent, new_name)?;
            db.prepare_cached("UPDATE entries SET parent = ?2, name = ?3 WHERE id = ?1")?
                .execute(params![src_entry, new_parent, new_name])?;
            let moved_dir = i64::from(src.kind == NodeKind::Dir);
            if parent != new_parent {
                touch(db, parent, now, -moved_dir)?;
                touch(db, new_parent, now, moved_dir)?;
            } else {
                touch(db, parent, now, 0)?;
            }
            touch(db, src.ino, now, 0)?;
            Ok(Renamed { replaced })
        })
    }
}

/// Points entry `entry` at `child`.
fn set_child(db: &Connection, entry: i64, child: Ino) -> Result<()> {
    db.prepare_cached("UPDATE entries SET child = ?2 WHERE id = ?1")?
        .execute(params![entry, child])?;
    Ok(())
}
