//! The catalog's self-check: every invariant of the module docs, as queries.
//!
//! [`Catalog::verify`] reads one snapshot and reports each broken invariant as a line of
//! text naming the rows involved; an empty report means the catalog is consistent. It
//! never changes anything. `datamesh check` prints it; the tests run it after every step.
//! With `deep`, SQLite's own `PRAGMA quick_check` of the file's structure runs too.

use rusqlite::Connection;

use super::sql::get_u64;
use super::{Catalog, Result};

/// Problems found by [`Catalog::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IntegrityReport {
    /// One line per problem; empty when the catalog is consistent.
    pub problems: Vec<String>,
    /// Nodes checked.
    pub nodes: u64,
    /// Chunks checked.
    pub chunks: u64,
}

impl IntegrityReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Each check: a description and a query returning one text row per violation.
const CHECKS: &[(&str, &str)] = &[
    (
        "refcount differs from the version references",
        "SELECT hex(c.id) || ': refcount ' || c.refcount || ', references ' ||
             (SELECT count(*) FROM version_chunks v WHERE v.chunk = c.id)
         FROM chunks c
         WHERE c.refcount != (SELECT count(*) FROM version_chunks v WHERE v.chunk = c.id)",
    ),
    (
        "dead chunk outside the GC queue (refcount 0, not pinned)",
        "SELECT hex(c.id) FROM chunks c
         WHERE c.refcount = 0 AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.chunk = c.id)",
    ),
    (
        "reference to a chunk that does not exist",
        "SELECT v.ino || '/' || v.seq || ': ' || hex(v.chunk) FROM version_chunks v
         WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = v.chunk)",
    ),
    (
        "reference longer than its chunk",
        "SELECT v.ino || '/' || v.seq || ' pos ' || v.pos FROM version_chunks v
         JOIN chunks c ON c.id = v.chunk WHERE v.length > c.plain_len OR v.length <= 0",
    ),
    (
        "chunk references of a version overlap or pass its size",
        "SELECT a.ino || '/' || a.seq || ' pos ' || a.pos FROM version_chunks a
         JOIN versions w ON w.ino = a.ino AND w.seq = a.seq
         WHERE a.file_offset + a.length > w.size
            OR EXISTS (SELECT 1 FROM version_chunks b WHERE b.ino = a.ino AND b.seq = a.seq
                       AND b.pos = a.pos + 1 AND b.file_offset < a.file_offset + a.length)",
    ),
    (
        "inline chunk with shards, or inline length differs from the sealed length",
        "SELECT hex(c.id) FROM chunks c WHERE c.inline IS NOT NULL
            AND (length(c.inline) != c.sealed_len OR EXISTS (SELECT 1 FROM shards s WHERE s.chunk = c.id))",
    ),
    (
        "chunk with fewer than k shards (unreadable)",
        "SELECT hex(c.id) || ': ' || (SELECT count(*) FROM shards s WHERE s.chunk = c.id) || ' of ' || c.k
         FROM chunks c WHERE c.inline IS NULL
            AND (SELECT count(*) FROM shards s WHERE s.chunk = c.id) < c.k",
    ),
    (
        "shard index outside its stripe",
        "SELECT hex(s.id) FROM shards s JOIN chunks c ON c.id = s.chunk WHERE s.idx >= c.k + c.m",
    ),
    (
        "shard both live and queued or intended",
        "SELECT hex(s.id) FROM shards s
         WHERE EXISTS (SELECT 1 FROM gc_queue g WHERE g.shard = s.id)
            OR EXISTS (SELECT 1 FROM intents i WHERE i.shard = s.id)",
    ),
    (
        "shard both intended and queued",
        "SELECT hex(i.shard) FROM intents i WHERE EXISTS (SELECT 1 FROM gc_queue g WHERE g.shard = i.shard)",
    ),
    (
        "intent of an abandoned upload",
        "SELECT hex(i.shard) FROM intents i JOIN uploads u ON u.token = i.token WHERE u.abandoned IS NOT NULL",
    ),
    (
        "file size differs from its current version",
        "SELECT n.ino || ': size ' || n.size FROM nodes n WHERE n.kind = 1 AND n.size !=
            coalesce((SELECT v.size FROM versions v WHERE v.ino = n.ino AND v.seq = n.version), 0)",
    ),
    (
        "current version does not exist, or next_seq is not past every version",
        "SELECT n.ino FROM nodes n
         WHERE (n.version IS NOT NULL AND NOT EXISTS
                   (SELECT 1 FROM versions v WHERE v.ino = n.ino AND v.seq = n.version))
            OR EXISTS (SELECT 1 FROM versions v WHERE v.ino = n.ino AND v.seq >= n.next_seq)",
    ),
    (
        "versions of a node that is not a file",
        "SELECT DISTINCT v.ino FROM versions v JOIN nodes n ON n.ino = v.ino WHERE n.kind != 1",
    ),
    (
        "directory link count is not 2 + subdirectories",
        "SELECT n.ino || ': nlink ' || n.nlink FROM nodes n WHERE n.kind = 2 AND n.nlink !=
            2 + (SELECT count(*) FROM entries e JOIN nodes c ON c.ino = e.child
                 WHERE e.parent = n.ino AND c.kind = 2)",
    ),
    (
        "file or symlink link count differs from its entries",
        "SELECT n.ino || ': nlink ' || n.nlink FROM nodes n WHERE n.kind != 2
            AND n.nlink != (SELECT count(*) FROM entries e WHERE e.child = n.ino)",
    ),
    (
        "unreachable node that is not an orphan",
        "SELECT n.ino FROM nodes n WHERE n.ino != 1 AND n.nlink = 0
            AND NOT EXISTS (SELECT 1 FROM orphans o WHERE o.ino = n.ino)",
    ),
    (
        "orphan that still has links",
        "SELECT o.ino FROM orphans o JOIN nodes n ON n.ino = o.ino WHERE n.nlink > 0",
    ),
    (
        "directory not named by exactly one entry (the root by none)",
        "SELECT n.ino FROM nodes n WHERE n.kind = 2 AND (SELECT count(*) FROM entries e WHERE e.child = n.ino)
            != CASE WHEN n.ino = 1 THEN 0 ELSE 1 END",
    ),
    (
        "entry in something that is not a directory",
        "SELECT e.id FROM entries e JOIN nodes p ON p.ino = e.parent WHERE p.kind != 2",
    ),
    (
        "symlink without a target",
        "SELECT n.ino FROM nodes n WHERE n.kind = 3 AND n.target IS NULL",
    ),
];

impl Catalog {
    /// Checks every invariant (see the module docs). `deep` adds SQLite's structural
    /// check of the file.
    pub fn verify(&self, deep: bool) -> Result<IntegrityReport> {
        self.read("verifying the catalog", |db| {
            let mut report = IntegrityReport {
                nodes: db.query_row("SELECT count(*) FROM nodes", [], |r| get_u64(r, 0))?,
                chunks: db.query_row("SELECT count(*) FROM chunks", [], |r| get_u64(r, 0))?,
                ..IntegrityReport::default()
            };
            for (what, sql) in CHECKS {
                for row in rows(db, sql)? {
                    report.problems.push(format!("{what}: {row}"));
                }
            }
            let mut fk = db.prepare("PRAGMA foreign_key_check")?;
            let broken = fk.query_map([], |r| {
                Ok(format!(
                    "{} row {} breaks a reference to {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
                    r.get::<_, String>(2)?
                ))
            })?;
            for line in broken {
                report.problems.push(format!("foreign key: {}", line?));
            }
            if deep {
                for line in rows(db, "PRAGMA quick_check")? {
                    if line != "ok" {
                        report.problems.push(format!("sqlite: {line}"));
                    }
                }
            }
            Ok(report)
        })
    }
}

fn rows(db: &Connection, sql: &str) -> Result<Vec<String>> {
    let mut stmt = db.prepare(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            rusqlite::types::ValueRef::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
