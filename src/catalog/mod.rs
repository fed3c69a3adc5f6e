//! The catalog: the user's map of the repository, in one SQLite file (`catalog.db`).
//!
//! # Model
//!
//! * **Namespace** — an inode model that the FUSE mount maps onto 1:1. Nodes ([`Ino`],
//!   root = 1) are files, directories or symlinks with POSIX attributes ([`Attr`]).
//!   Directory entries map (parent, name bytes) to a child. Hard links are several
//!   entries naming one file. A file whose last link goes while a process still has it
//!   open becomes an *orphan* owned by that process, freed when the process frees it or
//!   is gone ([`Catalog::free_orphan`], [`Catalog::reap_orphans`]). Names and paths
//!   follow [`names`]. Files, directories and symlinks can carry tags and extended
//!   attributes.
//! * **Content** — a file's content is a *version*: an ordered list of chunk references
//!   ([`ChunkRef`]). Each commit makes a new version (seq 1, 2, 3, … per file) current;
//!   old versions stay until pruned. A chunk record ([`ChunkRecord`]) holds either the
//!   sealed bytes inline or the placement of its k + m shards, and a reference count of
//!   the version references to it. Identical content is stored once.
//! * **Uploads and garbage collection** — a small protocol (upload tokens, shard
//!   intents, pins, a GC queue; see [`uploads`] and docs/design/catalog.md) that keeps
//!   the catalog from ever pointing at missing data and keeps shards from leaking,
//!   under `kill -9` at any point and with several processes writing at once.
//!
//! # Invariants (checked by [`Catalog::verify`])
//!
//! * Every chunk's refcount equals the number of version references to it.
//! * No chunk has refcount 0 unless an upload in flight pins it; otherwise it was moved,
//!   in the same transaction that dropped the last reference, to the GC queue.
//! * Every live shard belongs to a live chunk; every shard ever recorded is live, intended
//!   by an upload in flight, or in the GC queue, until GC confirms its deletion.
//! * A node's size is its current version's size (0 without one); directories have one
//!   entry naming them (root none) and nlink = 2 + subdirectories; other nodes have
//!   nlink = number of entries naming them, and nlink 0 only while orphaned.
//!
//! # Storage and concurrency
//!
//! WAL journal, `synchronous=FULL` (a commit is durable when the call returns: `fsync`
//! in the mount and `put` rely on it), foreign keys on, a 10 s busy timeout. Every
//! operation is one transaction; writes take the write lock up front (`BEGIN IMMEDIATE`)
//! so processes never deadlock on lock upgrades, reads see one consistent snapshot.
//! [`Catalog`] is `Send + Sync` with `&self` methods: a write connection and a read
//! connection, each behind a mutex, so reads never wait for another thread's commit.
//! All methods block (SQLite I/O): async callers run them in `spawn_blocking`.
//!
//! # Schema versions
//!
//! `PRAGMA user_version` numbers the schema; older catalogs are migrated on open, newer
//! ones are refused untouched with [`ErrorKind::Unsupported`](crate::ErrorKind).

mod batch;
mod content;
mod error;
mod gc;
mod meta;
mod mount;
pub mod names;
mod namespace;
mod orphans;
mod paths;
pub mod process;
mod query;
mod rename;
mod schema;
mod sql;
pub mod uploads;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use batch::{FileCommit, NewNodes};
pub use content::{
    ChunkData, ChunkRecord, ChunkRef, Content, PruneReport, ShardRecord, VersionInfo,
};
pub use error::CatalogError;
pub use gc::DeadShard;
pub use meta::{TagCount, XattrMode};
pub use mount::{Durability, InlineCommit, Unlinked, Usage};
pub use namespace::{Attr, DirEntry, LastLink, NodeKind, Removed, SetAttr};
pub use process::ProcessId;
pub use query::{
    ChunkSummary, DegradedChunk, HolderUsage, ListEntry, ListFilter, NodeInfo, RecentEntry,
    SearchQuery, Stats,
};
pub use rename::{RenameMode, Renamed};
pub use uploads::{ChunkCommit, ReapPolicy, ReapReport, UploadInfo, UploadToken};
pub use verify::IntegrityReport;

use schema::{APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};

/// An inode number. The root directory is [`Ino::ROOT`]; numbers are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);
}

impl fmt::Display for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// The catalog is shared by reference across blocking tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Catalog>();
};

/// How long a connection waits for another process's write lock before failing Busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Permission bits of the root directory of a new catalog.
const ROOT_MODE: u32 = 0o755;

/// A handle on one catalog file. See the module docs.
pub struct Catalog {
    /// The connection every write transaction runs on.
    conn: Mutex<Connection>,
    /// A second connection for read transactions: in WAL mode readers do not wait for a
    /// writer, so a lookup is not stuck behind another thread's commit and its fsync
    /// (the worst lookup during a stream of commits fell from ~20-36 ms to under 1 ms;
    /// see docs/design/catalog.md).
    reader: Mutex<Connection>,
    path: PathBuf,
    /// This process, as recorded on upload tokens and orphans it owns.
    me: ProcessId,
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

impl Catalog {
    /// Creates a new, empty catalog at `path` (which must not exist): schema, root
    /// directory owned by the calling user. Fails with AlreadyExists if the file exists.
    pub fn create(path: impl AsRef<Path>) -> Result<Catalog> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        // create_new makes "does it exist" and "create it" one atomic step.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => CatalogError::AlreadyCreated {
                    path: shown.clone(),
                },
                _ => CatalogError::Io {
                    path: shown.clone(),
                    source,
                },
            })?;
        // The new file is owned by this process's effective user and group: the owner of
        // the root directory, learnt without an unsafe getuid call.
        let owner = file.metadata().map_err(|source| CatalogError::Io {
            path: shown.clone(),
            source,
        })?;
        drop(file);
        let result = Self::initialise(path, owner.uid(), owner.gid());
        if result.is_err() {
            // Leave no half-made catalog behind: a retry must be able to create it.
            let _ = std::fs::remove_file(path);
            for suffix in ["-wal", "-shm"] {
                let mut side = path.as_os_str().to_owned();
                side.push(suffix);
                let _ = std::fs::remove_file(side);
            }
        }
        result
    }

    fn initialise(path: &Path, uid: u32, gid: u32) -> Result<Catalog> {
        let mut conn = connect(path)?;
        configure(&conn)?;
        enable_wal(&conn)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        for sql in MIGRATIONS {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let now = sql::now_ns();
        tx.execute(
            "INSERT INTO nodes (ino, kind, mode, uid, gid, atime, mtime, ctime, nlink)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, 2)",
            rusqlite::params![Ino::ROOT, NodeKind::Dir.code(), ROOT_MODE, uid, gid, now],
        )?;
        tx.commit()?;
        Self::from_connection(conn, path)
    }

    /// Opens an existing catalog, migrating an older schema. Fails with NotFound if the
    /// file does not exist, Unsupported if a newer datamesh wrote it (the file is not
    /// touched), Corrupt if it is not a datamesh catalog.
    pub fn open(path: impl AsRef<Path>) -> Result<Catalog> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CatalogError::Missing { path: shown });
            }
            Err(source) => {
                return Err(CatalogError::Io {
                    path: shown,
                    source,
                });
            }
        }
        let mut conn = connect(path)?;
        let not_a_catalog = |reason: &str| CatalogError::NotACatalog {
            path: shown.clone(),
            reason: reason.to_owned(),
        };
        // Read the header before changing anything: a newer or foreign file must stay
        // exactly as it is.
        let (app_id, version) = match read_header(&conn) {
            Ok(header) => header,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
                ) =>
            {
                return Err(not_a_catalog("not an SQLite database"));
            }
            Err(e) => return Err(CatalogError::from(e).in_op("reading the catalog header")),
        };
        if version > SCHEMA_VERSION {
            return Err(CatalogError::NewerSchema {
                path: shown,
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if app_id != APPLICATION_ID || version == 0 {
            // Version 0 with our id cannot come from `create` (it sets both in one
            // transaction): it is an empty database like any other.
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| CatalogError::from(e).in_op("reading the catalog header"))?;
            return Err(not_a_catalog(if tables == 0 {
                "an empty database: if `datamesh init` was interrupted, remove the file and run it again"
            } else {
                "an SQLite database of another program"
            }));
        }
        configure(&conn)?;
        enable_wal(&conn)?;
        if version < SCHEMA_VERSION {
            migrate(&mut conn, &shown)?;
        }
        Self::from_connection(conn, path)
    }

    /// The handle around a configured, migrated write connection; opens the reader.
    fn from_connection(conn: Connection, path: &Path) -> Result<Catalog> {
        let reader = connect(path)?;
        configure(&reader)?;
        // The reader never writes; make SQLite enforce that.
        reader
            .pragma_update(None, "query_only", true)
            .map_err(|e| CatalogError::from(e).in_op("opening the catalog"))?;
        Ok(Catalog {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            path: path.to_owned(),
            me: ProcessId::current(),
        })
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A panic while it was held rolled back the open transaction (the
    /// transaction guard's drop), so the connection is usable and poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), committed if `f` succeeds
    /// and rolled back, changing nothing, if it fails.
    fn write<T>(&self, op: &'static str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| CatalogError::from(e).in_op(op))?;
        let out = f(&tx).map_err(|e| e.in_op(op))?;
        tx.commit().map_err(|e| CatalogError::from(e).in_op(op))?;
        Ok(out)
    }

    /// Runs `f` in one read transaction: every query in it sees the same snapshot.
    fn read<T>(&self, op: &'static str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| CatalogError::from(e).in_op(op))?;
        let out = f(&tx).map_err(|e| e.in_op(op))?;
        // Ending a read transaction only releases the snapshot.
        tx.commit().map_err(|e| CatalogError::from(e).in_op(op))?;
        Ok(out)
    }
}

/// Opens a connection to an existing file, touching nothing in it yet.
fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| CatalogError::from(e).in_op("opening the catalog"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| CatalogError::from(e).in_op("opening the catalog"))?;
    Ok(conn)
}

/// The per-connection settings that read the file, applied once it is known to be a
/// catalog: foreign keys on, `synchronous=FULL`.
fn configure(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| CatalogError::from(e).in_op("configuring the catalog connection"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| CatalogError::from(e).in_op("configuring the catalog connection"))?;
    Ok(())
}

/// Switches the file to WAL (persistent; a no-op when it already is).
fn enable_wal(conn: &Connection) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| CatalogError::from(e).in_op("enabling the write-ahead log"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CatalogError::Corrupt(format!(
            "the catalog could not be switched to WAL mode (it is in {mode} mode)"
        )));
    }
    Ok(())
}

/// `application_id` and `user_version` of the open file.
fn read_header(conn: &Connection) -> rusqlite::Result<(i32, i64)> {
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok((app_id, version))
}

/// Brings an older schema up to [`SCHEMA_VERSION`] in one transaction. The version is
/// read again under the write lock: another process may have migrated meanwhile.
fn migrate(conn: &mut Connection, shown: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(CatalogError::NewerSchema {
            path: shown.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    let done = usize::try_from(version).unwrap_or(0);
    for sql in MIGRATIONS.iter().skip(done) {
        tx.execute_batch(sql)
            .map_err(|e| CatalogError::from(e).in_op("migrating the catalog schema"))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}
