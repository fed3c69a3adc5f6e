//! The catalog's SQL schema and its migrations.
//!
//! `PRAGMA user_version` is the schema version: migration `i` (0-based) of [`MIGRATIONS`]
//! turns schema `i` into schema `i + 1`. A catalog is refused, untouched, when its
//! version is newer than [`SCHEMA_VERSION`]. Migrations only ever append: a released
//! migration is never edited, a change is a new migration.
//!
//! `PRAGMA application_id` is [`APPLICATION_ID`], so that an SQLite file of some other
//! program is recognised as "not a datamesh catalog" rather than misread.
//!
//! Integer columns hold `u64` values as SQLite's signed 64-bit integers; every value
//! written is checked to fit, and every value read is checked to be non-negative.
//! Times are nanoseconds since the Unix epoch. Ids are 32-byte blobs.
//!
//! See docs/design/catalog.md for what every table means and the invariants between them.

/// `PRAGMA application_id` of a datamesh catalog: "DMsh".
pub const APPLICATION_ID: i32 = 0x444d_7368;

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Schema migrations; see the module docs.
pub const MIGRATIONS: &[&str] = &[SCHEMA_1];

/// Schema 1: the namespace, content, uploads and garbage collection.
const SCHEMA_1: &str = r#"
-- One row per inode. kind: 1 file, 2 directory, 3 symlink. mode holds permission bits
-- only (07777). version is the current version's seq (files; NULL = empty content).
-- next_seq is the seq the next version gets, so seqs are never reused after a prune.
-- change counts modifications (NFS-style change attribute). AUTOINCREMENT: inode
-- numbers are never reused, so the FUSE generation number can stay constant.
CREATE TABLE nodes (
    ino      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     INTEGER NOT NULL CHECK (kind IN (1, 2, 3)),
    mode     INTEGER NOT NULL CHECK (mode BETWEEN 0 AND 4095),
    uid      INTEGER NOT NULL,
    gid      INTEGER NOT NULL,
    size     INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
    atime    INTEGER NOT NULL,
    mtime    INTEGER NOT NULL,
    ctime    INTEGER NOT NULL,
    nlink    INTEGER NOT NULL CHECK (nlink >= 0),
    target   BLOB,
    version  INTEGER,
    next_seq INTEGER NOT NULL DEFAULT 1,
    change   INTEGER NOT NULL DEFAULT 1
);

-- Directory entries. id is the readdir cookie: entries list in id order, so a cursor
-- stays valid while entries are added and removed.
CREATE TABLE entries (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER NOT NULL REFERENCES nodes (ino),
    name   BLOB NOT NULL,
    child  INTEGER NOT NULL REFERENCES nodes (ino),
    UNIQUE (parent, name)
);
CREATE INDEX entries_by_child ON entries (child);
CREATE INDEX entries_by_parent ON entries (parent, id);

-- File versions: seq 1, 2, 3, ... per file.
CREATE TABLE versions (
    ino       INTEGER NOT NULL REFERENCES nodes (ino),
    seq       INTEGER NOT NULL,
    size      INTEGER NOT NULL CHECK (size >= 0),
    mtime     INTEGER NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (ino, seq)
) WITHOUT ROWID;
CREATE INDEX versions_by_commit ON versions (committed);

-- Chunks. Either inline (sealed bytes here, k = m = 0, no shards) or k + m shards.
-- refcount = number of version_chunks rows naming the chunk.
CREATE TABLE chunks (
    id         BLOB PRIMARY KEY CHECK (length(id) = 32),
    plain_len  INTEGER NOT NULL CHECK (plain_len >= 0),
    sealed_len INTEGER NOT NULL CHECK (sealed_len >= 0),
    codec      INTEGER NOT NULL,
    k          INTEGER NOT NULL,
    m          INTEGER NOT NULL,
    refcount   INTEGER NOT NULL DEFAULT 0 CHECK (refcount >= 0),
    inline     BLOB,
    created    INTEGER NOT NULL
) WITHOUT ROWID;
-- Unreferenced chunks: only those pinned by uploads in flight, so the sweep is cheap.
CREATE INDEX chunks_unreferenced ON chunks (id) WHERE refcount = 0;

-- A version's content: pos orders the references; [file_offset, file_offset + length)
-- is served by the first length bytes of the chunk.
CREATE TABLE version_chunks (
    ino         INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    pos         INTEGER NOT NULL,
    file_offset INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    chunk       BLOB NOT NULL REFERENCES chunks (id),
    PRIMARY KEY (ino, seq, pos),
    FOREIGN KEY (ino, seq) REFERENCES versions (ino, seq)
) WITHOUT ROWID;
CREATE INDEX version_chunks_by_chunk ON version_chunks (chunk);

-- Live shards of committed chunks. A shard id is unique: it names one upload's shard.
CREATE TABLE shards (
    id     BLOB PRIMARY KEY CHECK (length(id) = 32),
    chunk  BLOB NOT NULL REFERENCES chunks (id),
    idx    INTEGER NOT NULL,
    holder TEXT NOT NULL,
    len    INTEGER NOT NULL CHECK (len >= 0),
    UNIQUE (chunk, idx)
) WITHOUT ROWID;
CREATE INDEX shards_by_holder ON shards (holder);

CREATE TABLE tags (
    ino INTEGER NOT NULL REFERENCES nodes (ino),
    tag TEXT NOT NULL,
    PRIMARY KEY (ino, tag)
) WITHOUT ROWID;
CREATE INDEX tags_by_tag ON tags (tag);

CREATE TABLE xattrs (
    ino   INTEGER NOT NULL REFERENCES nodes (ino),
    name  BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ino, name)
) WITHOUT ROWID;

-- Uploads in flight: owner process (pid, start time) and activity times. abandoned is
-- when the upload was found stale: from then on the token is unusable and only its pins
-- remain, for a rerun to reuse the chunks, until the resume window ends.
CREATE TABLE uploads (
    token      BLOB PRIMARY KEY,
    pid        INTEGER NOT NULL,
    proc_start INTEGER,
    started    INTEGER NOT NULL,
    touched    INTEGER NOT NULL,
    abandoned  INTEGER
) WITHOUT ROWID;

-- Shards an upload is about to write (or wrote, not yet committed).
CREATE TABLE intents (
    shard  BLOB PRIMARY KEY,
    token  BLOB NOT NULL REFERENCES uploads (token),
    holder TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX intents_by_token ON intents (token);

-- Chunks an upload relies on before its version is committed.
CREATE TABLE pins (
    token BLOB NOT NULL REFERENCES uploads (token),
    chunk BLOB NOT NULL REFERENCES chunks (id),
    PRIMARY KEY (token, chunk)
) WITHOUT ROWID;
CREATE INDEX pins_by_chunk ON pins (chunk);

-- Dead shards waiting to be deleted from their holders.
CREATE TABLE gc_queue (
    shard  BLOB PRIMARY KEY,
    holder TEXT NOT NULL,
    queued INTEGER NOT NULL
) WITHOUT ROWID;

-- Nodes with no links left that a process still has open.
CREATE TABLE orphans (
    ino        INTEGER PRIMARY KEY REFERENCES nodes (ino),
    pid        INTEGER NOT NULL,
    proc_start INTEGER,
    since      INTEGER NOT NULL
);
"#;
