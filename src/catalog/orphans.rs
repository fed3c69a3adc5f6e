//! Orphans: files whose last link is gone while a process still has them open.
//!
//! POSIX lets a program keep reading and writing a file after it was unlinked; the
//! space is freed when the last descriptor closes. The mount gets that by unlinking with
//! [`LastLink::Orphan`](super::LastLink): the node stays (nlink 0, no entries, versions
//! intact) in the `orphans` table with this process as owner. When the kernel forgets the
//! inode the mount calls [`Catalog::free_orphan`]. If the owner dies first (`kill -9`,
//! power cut), [`Catalog::reap_orphans`] — called when a repository is opened — frees
//! every orphan whose owner process is gone, so nothing leaks across crashes.

use rusqlite::params;

use super::namespace::{free_node, get_attr};
use super::process::ProcessId;
use super::sql::get_opt_u64;
use super::{Catalog, Ino, Result};

impl Catalog {
    /// Frees `ino` if it has no links left (an orphan whose last user is done). Returns
    /// whether it was freed; a node that still has links, or no longer exists, is left
    /// alone.
    pub fn free_orphan(&self, ino: Ino) -> Result<bool> {
        self.write("freeing an orphan", |db| {
            match get_attr(db, ino)? {
                Some(attr) if attr.nlink == 0 => {
                    free_node(db, ino)?;
                    Ok(true)
                }
                Some(_) => {
                    // Linked again is impossible, but a stale orphan row must not outlive
                    // the question.
                    db.prepare_cached("DELETE FROM orphans WHERE ino = ?1")?
                        .execute([ino])?;
                    Ok(false)
                }
                None => Ok(false),
            }
        })
    }

    /// Frees the orphans whose owning process is gone; returns how many.
    pub fn reap_orphans(&self) -> Result<u64> {
        self.write("reaping orphans", |db| {
            let owners: Vec<(Ino, u32, Option<u64>)> = {
                let mut stmt = db.prepare_cached("SELECT ino, pid, proc_start FROM orphans")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, get_opt_u64(r, 2)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut freed = 0;
            for (ino, pid, start) in owners {
                if (ProcessId { pid, start }).is_alive() {
                    continue;
                }
                match get_attr(db, ino)? {
                    Some(attr) if attr.nlink == 0 => {
                        free_node(db, ino)?;
                        freed += 1;
                    }
                    _ => {
                        db.prepare_cached("DELETE FROM orphans WHERE ino = ?1")?
                            .execute(params![ino])?;
                    }
                }
            }
            Ok(freed)
        })
    }

    /// The orphans of this catalog (nodes kept only because a process has them open).
    pub fn orphans(&self) -> Result<Vec<Ino>> {
        self.read("listing orphans", |db| {
            let mut stmt = db.prepare_cached("SELECT ino FROM orphans ORDER BY ino")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<Ino>>>()?)
        })
    }
}
