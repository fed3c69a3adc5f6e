//! Errors of the catalog.
//!
//! [`CatalogError`] names each failure precisely, so that the mount adapter can turn it
//! into the exact errno ([`CatalogError::errno`]) and the engine can react to the ones it
//! handles itself ([`CatalogError::MissingChunks`], [`CatalogError::UploadGone`]). Every
//! variant converts into the crate [`Error`] with the [`ErrorKind`] of
//! [`CatalogError::kind`]; code branches on the kind or on the variant, never on text.

use rusqlite::ErrorCode;

use super::Ino;
use crate::error::{Error, ErrorKind};
use crate::ids::{ChunkId, ShardId};

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// `Catalog::open` of a file that does not exist.
    #[error(
        "catalog {path} does not exist: create the repository with `datamesh init`, or check the repository path"
    )]
    Missing {
        /// The catalog file.
        path: String,
    },
    /// `Catalog::create` of a file that already exists.
    #[error(
        "catalog {path} already exists: open the existing repository instead of creating one there"
    )]
    AlreadyCreated {
        /// The catalog file.
        path: String,
    },
    /// The file's schema is newer than this build knows; it was not touched.
    #[error(
        "{path} was written by a newer datamesh (schema {found}; this build knows up to {known}): upgrade datamesh"
    )]
    NewerSchema {
        /// The catalog file.
        path: String,
        /// The file's `user_version`.
        found: i64,
        /// The newest schema this build knows.
        known: i64,
    },
    /// The file is not a datamesh catalog at all.
    #[error(
        "{path} is not a datamesh catalog ({reason}): move it out of the way and put back a copy of catalog.db from a backup of the repository"
    )]
    NotACatalog {
        /// The catalog file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored value breaks the catalog's own invariants.
    #[error(
        "the catalog is damaged: {0}; run `datamesh check`; if the problem remains, put back a copy of catalog.db from a backup of the repository"
    )]
    Corrupt(String),
    /// No entry of that name (ENOENT).
    #[error("no such file or directory: {name}")]
    NoEntry {
        /// The name or path, lossily shown.
        name: String,
    },
    /// The inode does not exist (any more) (ENOENT).
    #[error("inode {0} does not exist (it was deleted)")]
    NoNode(Ino),
    /// The target name is taken (EEXIST).
    #[error("{name} already exists")]
    Exists {
        /// The name, lossily shown.
        name: String,
    },
    /// A directory that must be empty is not (ENOTEMPTY).
    #[error("directory {name} is not empty")]
    NotEmpty {
        /// The name, lossily shown.
        name: String,
    },
    /// A directory where something else is needed (EISDIR).
    #[error("{name} is a directory")]
    IsDir {
        /// The name, lossily shown.
        name: String,
    },
    /// Something else where a directory is needed (ENOTDIR).
    #[error("{name} is not a directory")]
    NotDir {
        /// The name, lossily shown.
        name: String,
    },
    /// Content operations on a node that is not a regular file (EINVAL).
    #[error("{name} is not a regular file")]
    NotFile {
        /// The name or inode, shown.
        name: String,
    },
    /// `readlink` of something that is not a symbolic link (EINVAL).
    #[error("{name} is not a symbolic link")]
    NotSymlink {
        /// The name or inode, shown.
        name: String,
    },
    /// A name that cannot be stored (EINVAL).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name, lossily shown.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A name longer than 255 bytes (ENAMETOOLONG).
    #[error("name too long ({len} bytes; the limit is 255): {name}")]
    NameTooLong {
        /// The name, lossily shown.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A path longer than 4096 bytes (ENAMETOOLONG).
    #[error("path too long ({len} bytes; the limit is 4096): {path}")]
    PathTooLong {
        /// The start of the path, lossily shown.
        path: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Renaming a directory into its own subtree (EINVAL).
    #[error("cannot move directory {name} into itself or one of its own subdirectories")]
    IntoItself {
        /// The directory, lossily shown.
        name: String,
    },
    /// The root directory cannot be removed, renamed or replaced (EBUSY).
    #[error("the root directory cannot be {what}")]
    Root {
        /// What was attempted.
        what: &'static str,
    },
    /// Hard links to directories are not allowed (EPERM).
    #[error("cannot hard-link {name}: it is a directory")]
    DirLink {
        /// The directory, shown.
        name: String,
    },
    /// The node has the maximum number of links (EMLINK).
    #[error("{name} has too many links")]
    TooManyLinks {
        /// The node, shown.
        name: String,
    },
    /// No such extended attribute (ENODATA).
    #[error("no extended attribute {name}")]
    NoAttr {
        /// The attribute name, lossily shown.
        name: String,
    },
    /// The extended attribute exists and `XATTR_CREATE` was given (EEXIST).
    #[error("extended attribute {name} already exists")]
    AttrExists {
        /// The attribute name, lossily shown.
        name: String,
    },
    /// A value over its size limit (E2BIG).
    #[error("{what} too large ({len} bytes; the limit is {max})")]
    TooLarge {
        /// What value.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A tag that cannot be stored (EINVAL).
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag.
        tag: String,
        /// Why.
        reason: &'static str,
    },
    /// A search pattern that is not a valid regular expression.
    #[error("invalid search pattern: {0}")]
    Pattern(String),
    /// A chunk record the engine passed in is inconsistent (a bug upstream, or bad input).
    #[error("invalid chunk record {chunk}: {reason}")]
    InvalidChunk {
        /// The chunk id (short form).
        chunk: String,
        /// What is wrong.
        reason: String,
    },
    /// A version's chunk list is inconsistent with its size or the chunks.
    #[error("invalid new version of inode {ino}: {reason}")]
    InvalidVersion {
        /// The file.
        ino: Ino,
        /// What is wrong.
        reason: String,
    },
    /// Chunks a new version references are not in the catalog (collected meanwhile, or
    /// never committed). Nothing was changed: upload these chunks again and retry.
    #[error(
        "{} chunk(s) of the new version are no longer in the catalog (first: {}): upload them again and retry the commit",
        .0.len(),
        .0.first().map(ChunkId::short).unwrap_or_default()
    )]
    MissingChunks(Vec<ChunkId>),
    /// No such version of a file.
    #[error("inode {ino} has no version {seq}")]
    NoVersion {
        /// The file.
        ino: Ino,
        /// The version asked for.
        seq: u64,
    },
    /// No live shard has that id.
    #[error("shard {shard} is not in the catalog (it was deleted or never committed)")]
    NoShard {
        /// The shard.
        shard: ShardId,
    },
    /// The upload token is not registered (any more): it was reaped as stale, or
    /// already finished. Its intended shards are queued for deletion.
    #[error(
        "upload {token} is no longer registered (it was finished, or abandoned as stale): start the upload again"
    )]
    UploadGone {
        /// The token, in hex.
        token: String,
    },
    /// A shard was committed without being announced first (an engine bug).
    #[error(
        "shard {shard} was not announced with intend_shards by this upload (a bug in datamesh): the upload was not recorded"
    )]
    NotIntended {
        /// The shard.
        shard: ShardId,
    },
    /// A shard id the catalog already knows was announced again (an engine bug: every
    /// upload must produce fresh, salted shards).
    #[error(
        "shard {shard} is already known to the catalog (a bug in datamesh: every upload must write freshly salted shards)"
    )]
    ShardKnown {
        /// The shard.
        shard: ShardId,
    },
    /// SQLite failed.
    #[error("catalog database error while {op}: {source}")]
    Sqlite {
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// File-system failure around the database file.
    #[error("catalog {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The `op` of SQLite errors raised through `?` before the operation name is known.
const UNNAMED_OP: &str = "accessing the catalog";

impl From<rusqlite::Error> for CatalogError {
    fn from(source: rusqlite::Error) -> Self {
        CatalogError::Sqlite {
            op: UNNAMED_OP,
            source,
        }
    }
}

impl From<CatalogError> for Error {
    fn from(err: CatalogError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

impl CatalogError {
    /// Names the operation of an SQLite error raised through `?`.
    pub(crate) fn in_op(self, op: &'static str) -> Self {
        match self {
            CatalogError::Sqlite {
                op: UNNAMED_OP,
                source,
            } => CatalogError::Sqlite { op, source },
            other => other,
        }
    }

    /// The catalog error inside a crate [`Error`], if that is what it wraps.
    pub fn of(err: &Error) -> Option<&CatalogError> {
        err.inner().and_then(|e| e.downcast_ref::<CatalogError>())
    }

    /// The crate error kind of this error.
    pub fn kind(&self) -> ErrorKind {
        use CatalogError as C;
        match self {
            C::Missing { .. } => ErrorKind::NotFound,
            C::AlreadyCreated { .. } => ErrorKind::AlreadyExists,
            C::NewerSchema { .. } => ErrorKind::Unsupported,
            C::NotACatalog { .. } | C::Corrupt(_) => ErrorKind::Corrupt,
            C::NoEntry { .. }
            | C::NoNode(_)
            | C::NoAttr { .. }
            | C::NoVersion { .. }
            | C::NoShard { .. }
            | C::MissingChunks(_)
            | C::UploadGone { .. } => ErrorKind::NotFound,
            C::Exists { .. } | C::AttrExists { .. } => ErrorKind::AlreadyExists,
            C::NotEmpty { .. }
            | C::IsDir { .. }
            | C::NotDir { .. }
            | C::Root { .. }
            | C::DirLink { .. }
            | C::TooManyLinks { .. } => ErrorKind::NotPermitted,
            C::NotFile { .. }
            | C::NotSymlink { .. }
            | C::InvalidName { .. }
            | C::NameTooLong { .. }
            | C::PathTooLong { .. }
            | C::IntoItself { .. }
            | C::TooLarge { .. }
            | C::InvalidTag { .. }
            | C::Pattern(_)
            | C::InvalidChunk { .. }
            | C::InvalidVersion { .. } => ErrorKind::InvalidInput,
            C::NotIntended { .. } | C::ShardKnown { .. } => ErrorKind::Internal,
            C::Sqlite { source, .. } => sqlite_kind(source),
            C::Io { source, .. } => ErrorKind::of_io(source),
        }
    }

    /// The errno a file system should answer for this error.
    pub fn errno(&self) -> i32 {
        use CatalogError as C;
        match self {
            C::NoEntry { .. } | C::NoNode(_) | C::Missing { .. } | C::NoShard { .. } => {
                libc::ENOENT
            }
            C::Exists { .. } | C::AttrExists { .. } | C::AlreadyCreated { .. } => libc::EEXIST,
            C::NotEmpty { .. } => libc::ENOTEMPTY,
            C::IsDir { .. } => libc::EISDIR,
            C::NotDir { .. } => libc::ENOTDIR,
            C::NameTooLong { .. } | C::PathTooLong { .. } => libc::ENAMETOOLONG,
            C::Root { .. } => libc::EBUSY,
            C::DirLink { .. } => libc::EPERM,
            C::TooManyLinks { .. } => libc::EMLINK,
            C::NoAttr { .. } => libc::ENODATA,
            C::TooLarge { .. } => libc::E2BIG,
            C::NotFile { .. }
            | C::NotSymlink { .. }
            | C::InvalidName { .. }
            | C::IntoItself { .. }
            | C::InvalidTag { .. }
            | C::Pattern(_)
            | C::InvalidChunk { .. }
            | C::InvalidVersion { .. }
            | C::NoVersion { .. } => libc::EINVAL,
            other => match other.kind() {
                ErrorKind::NoSpace => libc::ENOSPC,
                ErrorKind::Busy => libc::EAGAIN,
                ErrorKind::NotPermitted => libc::EACCES,
                _ => libc::EIO,
            },
        }
    }
}

/// The kind of an SQLite failure.
fn sqlite_kind(err: &rusqlite::Error) -> ErrorKind {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Busy,
            ErrorCode::DiskFull => ErrorKind::NoSpace,
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => ErrorKind::Corrupt,
            ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::NoLargeFileSupport => {
                ErrorKind::Io
            }
            ErrorCode::ReadOnly | ErrorCode::PermissionDenied => ErrorKind::NotPermitted,
            _ => ErrorKind::Internal,
        },
        // Values that do not fit their Rust type were written by something else.
        rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => ErrorKind::Corrupt,
        _ => ErrorKind::Internal,
    }
}
