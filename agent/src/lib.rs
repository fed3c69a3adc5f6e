//! datamesh-agent: keeping local directories in the mesh — versioned, deduplicated
//! backup of a directory tree, through a [`Repository`] port.
//!
//! # Model
//!
//! The agent does not know the engine. It sees a [`Repository`] (a port, in its own
//! vocabulary): a namespace of `/`-separated byte paths into which it can store a local
//! file (the repository chunks, deduplicates and versions it), create a directory, and
//! ask what it holds under a path (size and mtime) so unchanged files are skipped. The
//! root package implements the port over its engine in `src/adapters/agent.rs`; tests here
//! use an in-memory fake.
//!
//! A backup ([`backup::backup_tree`]) walks a local directory ([`tree`]) without following
//! symlinks, in a deterministic order, and stores every regular file whose size or mtime
//! differs from what the repository holds at the same path. Storing is idempotent and
//! versioned by the repository, so an interrupted backup is completed by running it again.

pub mod backup;
pub mod port;
pub mod tree;

pub use backup::{BackupOptions, BackupReport, backup_tree};
pub use port::{FileMeta, LocalFile, RemoteFile, Repository, RepositoryError};
