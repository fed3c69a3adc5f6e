//! datamesh-mount: the FUSE driver of datamesh.
//!
//! Layers, from the kernel down:
//!
//! * [`mount`] — mounting, unmounting, mountpoint checks (stale mounts, non-empty
//!   directories), the [`MountOptions`] the CLI exposes.
//! * `fuse` — a thin `fuser::Filesystem` adapter: decodes each request, spawns the core's
//!   async method on the caller's tokio runtime and replies from the task. No semantics.
//! * [`Fs`] — the async filesystem core: handles, inode lookup counts, orphans, the write
//!   staging area with its crash-safe journal and background committer, the prefetcher.
//! * [`ports`] — what the core needs from storage ([`Namespace`], [`ContentStore`]), in this
//!   crate's vocabulary. The engine implements them; [`memory::MemoryBackend`] implements
//!   them in memory for tests.
//!
//! Errors are [`FsError`]; the errno of each is decided in [`errno`] alone.
//! The POSIX contract is written down in `docs/SEMANTICS.md`.

mod codec;
pub mod conformance;
mod core;
pub mod errno;
mod error;
mod fuse;
mod layout;
pub mod memory;
pub mod mount;
pub mod ports;
mod prefetch;
mod stage;

pub use crate::core::{Caller, DirItem, Fs, FsConfig, Opened, RecoveryReport, SetAttr, SetTime};
pub use crate::error::FsError;
pub use crate::mount::{MountError, MountHandle, MountOptions, mount};
pub use crate::ports::{ContentStore, Namespace};
pub use crate::prefetch::PrefetchConfig;
