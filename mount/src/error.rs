//! The one error type of the mount: ports return it, the core returns it, the FUSE adapter
//! turns it into an errno through [`crate::errno`] (the only place that knows errnos).
//!
//! Variants name what went wrong in filesystem terms; backends pick the closest one and
//! put detail in the message of `Io`/`Backend`.

use std::sync::Arc;

/// Everything that can go wrong in a filesystem operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    /// No such node, entry or handle target.
    #[error("not found")]
    NotFound,
    /// An entry (or xattr) of that name exists.
    #[error("already exists")]
    AlreadyExists,
    /// Directory not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// A directory was required.
    #[error("not a directory")]
    NotADirectory,
    /// A non-directory was required.
    #[error("is a directory")]
    IsADirectory,
    /// The request makes no sense (bad flags, rename into own subtree, readlink on a file).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A name over 255 bytes.
    #[error("name too long")]
    NameTooLong,
    /// No room left in the store or the staging area.
    #[error("no space left")]
    NoSpace,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoAttribute,
    /// The caller's buffer is too small for the answer (xattr size probes).
    #[error("result too large for the buffer")]
    Range,
    /// Not supported by this filesystem (e.g. device nodes, `system.*` xattrs).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// Permission check failed.
    #[error("permission denied")]
    PermissionDenied,
    /// Operation not permitted (e.g. hard link to a directory).
    #[error("operation not permitted")]
    NotPermitted,
    /// Too many hard links.
    #[error("too many links")]
    TooManyLinks,
    /// The mount is read-only.
    #[error("read-only filesystem")]
    ReadOnly,
    /// Unknown file handle.
    #[error("bad file handle")]
    BadHandle,
    /// The node went away under an open handle.
    #[error("stale file handle")]
    Stale,
    /// Busy (e.g. removing the root).
    #[error("busy")]
    Busy,
    /// Offset or size beyond what a file may have.
    #[error("file too large")]
    FileTooLarge,
    /// A local I/O error (staging area, journal); keeps the OS errno when there is one.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        source: Arc<std::io::Error>,
    },
    /// The storage backend failed (network, decode, verification): surfaced as EIO.
    #[error("backend: {0}")]
    Backend(String),
}

impl FsError {
    /// Wraps an OS error with what was being done.
    pub fn io(context: &'static str, source: std::io::Error) -> Self {
        FsError::Io {
            context,
            source: Arc::new(source),
        }
    }

    /// A backend failure with a message.
    pub fn backend(msg: impl Into<String>) -> Self {
        FsError::Backend(msg.into())
    }
}
