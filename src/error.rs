//! The crate error: one type with a [`ErrorKind`] that callers branch on.
//!
//! Policy (after rustic_core's written error policy):
//!
//! * Each module has its own `thiserror` enum naming what went wrong in its own terms
//!   (`StoreError`, `CatalogError`, `KeystoreError`, ...). Those enums convert into
//!   [`Error`], which keeps the module error as its source and adds a [`ErrorKind`].
//! * The kind is what code decides on: the CLI turns it into an exit code, the mount
//!   adapter into an errno, the mesh into a wire status. Nobody matches on messages.
//! * Messages say what happened and, where there is one, what to do next. They are
//!   printed once, at the edge (the CLI), never logged-and-returned on the way up.
//! * Nothing that comes from a file, a user or the network may panic; it becomes an
//!   error of kind [`ErrorKind::Corrupt`] or [`ErrorKind::InvalidInput`].

use std::fmt;

/// What kind of failure an [`Error`] is; stable, for code to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A name, key, version, shard or repository that does not exist.
    NotFound,
    /// The target of a create or rename already exists.
    AlreadyExists,
    /// The request itself is malformed (bad name, bad option, bad config value).
    InvalidInput,
    /// The passphrase did not open the keystore.
    WrongPassphrase,
    /// Stored bytes failed verification or could not be parsed.
    Corrupt,
    /// Not enough intact shards (or reachable holders) to rebuild the data.
    Unavailable,
    /// A disk or a storage quota is full.
    NoSpace,
    /// Written by a newer datamesh than this one.
    Unsupported,
    /// Another process holds what is needed; retrying later may work.
    Busy,
    /// An operating-system I/O failure not covered by a more specific kind.
    Io,
    /// A peer or the network failed (timeouts, refused connections, protocol errors).
    Network,
    /// The operation is not allowed in this state (read-only mount, directory not empty, ...).
    NotPermitted,
    /// A bug: an invariant of datamesh itself did not hold.
    Internal,
}

impl ErrorKind {
    /// A short lowercase label, used in `--json` error output.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::WrongPassphrase => "wrong_passphrase",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Busy => "busy",
            ErrorKind::Io => "io",
            ErrorKind::Network => "network",
            ErrorKind::NotPermitted => "not_permitted",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind an operating-system I/O error belongs to.
    pub fn of_io(err: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT) {
            return ErrorKind::NoSpace;
        }
        match err.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::PermissionDenied => ErrorKind::NotPermitted,
            K::InvalidInput => ErrorKind::InvalidInput,
            K::InvalidData | K::UnexpectedEof => ErrorKind::Corrupt,
            K::StorageFull => ErrorKind::NoSpace,
            K::TimedOut | K::ConnectionRefused | K::ConnectionReset => ErrorKind::Network,
            _ => ErrorKind::Io,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The crate error. See the module docs for the policy.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
}

/// Result with the crate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a complete, user-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Wraps a module error, keeping it as the source.
    pub fn wrap(kind: ErrorKind, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error {
            kind,
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Prefixes the message with what was being done, e.g. the file name.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The message without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The wrapped module error, for callers that need to look inside (e.g. for the
    /// raw OS error behind an I/O failure).
    pub fn inner(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {})", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The message already includes the source's text; exposing it again would make
        // chain printers (anyhow's `{:#}`) print it twice.
        None
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::wrap(ErrorKind::of_io(&err), err)
    }
}

/// Extension for adding context to results that carry the crate error.
pub trait ResultExt<T> {
    /// Prefixes an error's message with `what`.
    fn context(self, what: impl fmt::Display) -> Result<T>;
    /// Like [`ResultExt::context`], computing the prefix only on error.
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(Error::from(full).kind(), ErrorKind::NoSpace);
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "x");
        assert_eq!(Error::from(missing).kind(), ErrorKind::NotFound);
    }

    #[test]
    fn context_prefixes_message() {
        let err = Error::new(ErrorKind::NotFound, "no such name").context("docs/a.txt");
        assert_eq!(err.to_string(), "docs/a.txt: no such name");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
