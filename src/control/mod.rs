//! The control socket: how short commands reach the process that owns a repository.
//!
//! # Model
//!
//! While `datamesh mount` (or another long-running owner) has a repository open, it
//! serves `REPO/control.sock`. A command such as `datamesh put` or `datamesh list` run
//! meanwhile does not open the catalog behind the owner's back: it connects, sends the
//! parsed command ([`Request`]), and the owner runs it in-process — against its open
//! catalog, its unlocked engine and its shard store — streaming the command's stdout and
//! stderr back and ending with the exit code. So the mount sees every change as it
//! happens (and drops what the kernel cached about it), and the client needs no
//! passphrase: reaching the socket (mode 0600, same user checked with SO_PEERCRED) is the
//! credential, exactly as holding the unlocked mount is.
//!
//! Paths in the request are made absolute by the client, because the owner runs with
//! its own working directory. `put -` streams the client's stdin in frames.
//!
//! # Invariants
//!
//! * A request is answered with zero or more output frames and exactly one exit frame,
//!   unless the connection breaks; the client reports a broken connection as an error.
//! * Frames are bounded (1 MiB) and checked before allocation ([`frame`]).
//! * A stale socket (no one accepting) is replaced by the next owner and ignored by
//!   clients, which then run the command directly.

pub mod client;
mod frame;
pub mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::args::{
    CheckArgs, DuplicateArgs, GetArgs, InfoArgs, JsonArg, ListArgs, PruneArgs, PutArgs, RecentArgs,
    RenameArgs, RmArgs, SearchArgs, TagArgs, VersionsArgs,
};

/// Protocol version; a server refuses other versions with a clear message.
pub const PROTOCOL: u32 = 1;

/// The commands that run inside the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// `put`
    Put(PutArgs),
    /// `get`
    Get(GetArgs),
    /// `list`
    List(ListArgs),
    /// `info`
    Info(InfoArgs),
    /// `stats`
    Stats(JsonArg),
    /// `rm`
    Rm(RmArgs),
    /// `rename`
    Rename(RenameArgs),
    /// `duplicate`
    Duplicate(DuplicateArgs),
    /// `search`
    Search(SearchArgs),
    /// `recent`
    Recent(RecentArgs),
    /// `versions`
    Versions(VersionsArgs),
    /// `prune`
    Prune(PruneArgs),
    /// `tag`
    Tag(TagArgs),
    /// `check`
    Check(CheckArgs),
    /// `sync`
    Sync,
}

/// What a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The command.
    pub command: Forwarded,
    /// `--quiet`.
    pub quiet: bool,
    /// Whether the client's stdin will follow in frames.
    pub stdin: bool,
}

/// Serde for paths as raw bytes (paths need not be UTF-8).
pub mod serde_path {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes the path's bytes.
    #[allow(clippy::ptr_arg)] // serde's `with` passes &PathBuf
    pub fn serialize<S: Serializer>(p: &PathBuf, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(p.as_os_str().as_bytes())
    }

    /// Deserializes a path from bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let bytes: Vec<u8> = Vec::deserialize(d)?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
}

/// `path` made absolute against the current directory (`-` stays `-`).
pub(crate) fn absolute(path: &std::path::Path) -> PathBuf {
    if path.as_os_str() == "-" || path.is_absolute() {
        return path.to_path_buf();
    }
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
