//! Mounting: options, the [`mount`] entry point and the [`MountHandle`] that unmounts.
//!
//! `mount` checks the mountpoint (see [`mountpoint`]), opens the core (recovering the
//! staging area), mounts `/dev/fuse` directly (as root no fusermount is needed; fuser
//! falls back to fusermount3 otherwise) and runs a multi-threaded fuser session on its
//! own threads, bridging every request into the caller's tokio runtime.
//!
//! Unmount order: the kernel mount goes first (refused with [`MountError::Busy`] while
//! files are open, leaving everything mounted), the session ends, then the core commits
//! every staged file and stops. Dropping a handle without unmounting detaches the mount
//! lazily (`MNT_DETACH`) so a failing test never leaves a mount behind.

pub mod mountpoint;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

use crate::core::{Fs, FsConfig, RecoveryReport};
use crate::error::FsError;
use crate::fuse::{FuseFs, Ttls};
use crate::ports::{ContentStore, Ino, Namespace};

pub use mountpoint::{check_mountpoint, clear_stale_mount, is_mountpoint, prepare_mountpoint};

/// What `datamesh mount` can set.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Mount read-only (EROFS on every change; no writeback cache).
    pub read_only: bool,
    /// Let other users access the mount (`allow_other`; permissions are still checked by
    /// the kernel from the mode bits, `default_permissions`).
    pub allow_other: bool,
    /// How long the kernel caches attributes.
    pub attr_ttl: Duration,
    /// How long the kernel caches names (positive entries).
    pub entry_ttl: Duration,
    /// How long the kernel caches "no such name" (0 disables negative caching).
    pub negative_ttl: Duration,
    /// Use the kernel's writeback cache (large, merged writes; much faster small writes).
    pub writeback_cache: bool,
    /// Threads reading requests from the kernel.
    pub threads: usize,
    /// Serve metadata requests (bounded by one namespace call) on those threads instead
    /// of handing them to the runtime: faster for small files, but a slow namespace call
    /// then holds a session thread. Reads, writes, fsync and truncates are always tasks.
    /// Needs a multi-threaded runtime.
    pub inline_metadata: bool,
    /// Name shown as the mount's source in /proc/mounts.
    pub fsname: String,
    /// The core's tuning (prefetch budget, commit batching...).
    pub fs: FsConfig,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            allow_other: false,
            attr_ttl: Duration::from_secs(300),
            entry_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(300),
            writeback_cache: true,
            threads: 4,
            inline_metadata: true,
            fsname: "datamesh".to_string(),
            fs: FsConfig::default(),
        }
    }
}

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mountpoint does not exist.
    #[error("mountpoint {0} does not exist")]
    NotFound(PathBuf),
    /// The mountpoint is not a directory.
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    /// The mountpoint has entries (mounting would hide them).
    #[error("mountpoint {0} is not empty")]
    NotEmpty(PathBuf),
    /// Something is mounted there already.
    #[error("{0} is already a mountpoint")]
    AlreadyMounted(PathBuf),
    /// A dead mount (its process died) is there and could not be detached.
    #[error("stale mount at {0} could not be detached: {1}")]
    Stale(PathBuf, std::io::Error),
    /// Files are open in the mount: unmount refused.
    #[error("{0} is busy (files are open)")]
    Busy(PathBuf),
    /// Mounting or talking to /dev/fuse failed (no /dev/fuse, not permitted...).
    #[error("FUSE at {0}: {1}")]
    Fuse(PathBuf, std::io::Error),
    /// The filesystem core failed (staging area, recovery, final commits).
    #[error("filesystem: {0}")]
    Fs(#[from] FsError),
    /// Another I/O error on the mountpoint.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// A mounted filesystem. Unmount with [`unmount`](Self::unmount); dropping it detaches the
/// mount lazily instead.
pub struct MountHandle<N, C: ContentStore> {
    fs: Fs<N, C>,
    session: Option<fuser::BackgroundSession>,
    notifier: Option<fuser::Notifier>,
    mountpoint: PathBuf,
    recovery: RecoveryReport,
}

/// Mounts the namespace of `ns`/`content` at `mountpoint`, staging writes in `stage_dir`.
/// Must be called within a tokio runtime (its handle serves every request; use a
/// multi-threaded one: a current-thread runtime serves requests only while its thread
/// is inside `block_on`, and never inline). A stale mount
/// at `mountpoint` (a crashed earlier run) is detached first.
pub async fn mount<N: Namespace, C: ContentStore>(
    ns: Arc<N>,
    content: Arc<C>,
    mountpoint: &Path,
    stage_dir: &Path,
    opts: MountOptions,
) -> Result<MountHandle<N, C>, MountError> {
    prepare_mountpoint(mountpoint)?;
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| MountError::Io(mountpoint.to_path_buf(), e))?;
    let mut fs_cfg = opts.fs.clone();
    fs_cfg.read_only |= opts.read_only;
    let (fs, recovery) = Fs::start(ns, content, stage_dir, fs_cfg).await?;
    let adapter = FuseFs {
        fs: fs.clone(),
        rt: tokio::runtime::Handle::current(),
        ttl: Ttls {
            attr: opts.attr_ttl,
            entry: opts.entry_ttl,
            negative: opts.negative_ttl,
        },
        writeback: opts.writeback_cache && !opts.read_only,
        // A current-thread runtime is only driven by its own thread: requests must then
        // be tasks, never block_on from the session threads.
        inline: opts.inline_metadata
            && tokio::runtime::Handle::current().runtime_flavor()
                != tokio::runtime::RuntimeFlavor::CurrentThread,
    };
    let config = session_config(&opts);
    let mp = mountpoint.clone();
    let session = tokio::task::spawn_blocking(move || {
        fuser::Session::new(adapter, &mp, &config).and_then(|s| s.spawn())
    })
    .await
    .map_err(|e| MountError::Fuse(mountpoint.clone(), std::io::Error::other(e.to_string())))?;
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let _ = fs.shutdown().await;
            return Err(MountError::Fuse(mountpoint, e));
        }
    };
    let notifier = Some(session.notifier());
    Ok(MountHandle {
        fs,
        session: Some(session),
        notifier,
        mountpoint,
        recovery,
    })
}

fn session_config(opts: &MountOptions) -> Config {
    let mut mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("datamesh".to_string()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    mount_options.push(if opts.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let mut c = Config::default();
    c.mount_options = mount_options;
    c.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(opts.threads.max(1));
    c.clone_fd = opts.threads > 1;
    c
}

impl<N: Namespace, C: ContentStore> MountHandle<N, C> {
    /// The filesystem core behind the mount (flush, metrics, invalidation).
    pub fn fs(&self) -> &Fs<N, C> {
        &self.fs
    }

    /// Where it is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// What start-up recovery did.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Unmounts, then commits every staged file. Fails with [`MountError::Busy`] while
    /// files are open (still mounted then; try again or [`detach`](Self::detach)).
    pub async fn unmount(mut self) -> Result<(), MountError> {
        let mp = self.mountpoint.clone();
        let r = tokio::task::spawn_blocking(move || mountpoint::umount(&mp, false))
            .await
            .map_err(|e| MountError::Io(self.mountpoint.clone(), std::io::Error::other(e)))?;
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(MountError::Busy(self.mountpoint.clone()));
            }
            // Unmounted already (someone ran `umount`): still end the session and commit.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.session_ended() => {}
            Err(e) => return Err(MountError::Io(self.mountpoint.clone(), e)),
        }
        self.finish().await
    }

    /// True once the FUSE session has ended: the kernel mount is gone (unmounted from
    /// outside, e.g. `umount DIR`). [`unmount`](Self::unmount) then only commits.
    pub fn session_ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    /// Detaches the mount lazily (`MNT_DETACH`: it disappears from the namespace now, open
    /// files keep working until closed), waits for the session to end, then commits
    /// everything. For SIGTERM: never refused.
    pub async fn detach(mut self) -> Result<(), MountError> {
        let mp = self.mountpoint.clone();
        let r = tokio::task::spawn_blocking(move || mountpoint::umount(&mp, true))
            .await
            .map_err(|e| MountError::Io(self.mountpoint.clone(), std::io::Error::other(e)))?;
        match r {
            Err(e) if !(e.raw_os_error() == Some(libc::EINVAL) && self.session_ended()) => {
                return Err(MountError::Io(self.mountpoint.clone(), e));
            }
            _ => {}
        }
        self.finish().await
    }

    async fn finish(&mut self) -> Result<(), MountError> {
        self.notifier = None;
        if let Some(session) = self.session.take() {
            let mp = self.mountpoint.clone();
            // The kernel mount is already gone: only wait for the session threads (fuser's
            // own unmount would fail on the missing mount).
            tokio::task::spawn_blocking(move || session.join())
                .await
                .map_err(|e| MountError::Io(mp.clone(), std::io::Error::other(e)))?
                .map_err(|e| MountError::Fuse(mp, e))?;
        }
        self.fs.shutdown().await?;
        Ok(())
    }

    /// The content of `ino` changed outside the mount: drop the kernel's cached pages and
    /// attributes of it.
    pub fn invalidate_inode(&self, ino: Ino) -> std::io::Result<()> {
        self.fs.invalidate_content(ino);
        match &self.notifier {
            Some(n) => n.inval_inode(fuser::INodeNo(ino), 0, -1),
            None => Ok(()),
        }
    }

    /// The entry `name` in `parent` changed outside the mount: drop the kernel's cached
    /// lookup of it.
    pub fn invalidate_entry(&self, parent: Ino, name: &[u8]) -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        match &self.notifier {
            Some(n) => n.inval_entry(fuser::INodeNo(parent), OsStr::from_bytes(name)),
            None => Ok(()),
        }
    }
}

impl<N, C: ContentStore> Drop for MountHandle<N, C> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Not unmounted properly (a panic, an early return): never leave the mount
            // behind. Detach lazily, then let the session end on its own thread.
            if let Err(e) = mountpoint::umount(&self.mountpoint, true) {
                tracing::warn!(error = %e, mountpoint = %self.mountpoint.display(), "lazy unmount failed");
            }
            std::thread::spawn(move || {
                let _ = session.join();
            });
        }
    }
}
