//! `datamesh mount DIR` and `datamesh unmount DIR`.
//!
//! # Mount
//!
//! Foreground by default (like `rclone mount`): the command returns when the filesystem
//! is unmounted. Order of start-up, cheapest checks first:
//!
//! 1. the repository exists (on a terminal, offer to create it; otherwise say how);
//! 2. `--daemon`: hand over to a detached child and wait until it is mounted
//!    ([`daemon`]);
//! 3. the repository's mount lock ([`lock`]): a second mount of one repository fails
//!    at once, naming the first;
//! 4. the mountpoint: a stale mount left by a crashed mount (`ENOTCONN`) is detached;
//!    a missing, non-empty or already mounted directory is a clear error;
//! 5. unlock the keystore, reap what dead processes left (uploads), open the mount's
//!    backend (`adapters::mount`), mount (recovering the staging area: files handed
//!    over before a crash are committed again), start the control socket so other
//!    commands run inside this process ([`owner`]).
//!
//! Then it waits for SIGINT or SIGTERM, or for the kernel mount to go away (`umount
//! DIR`, `datamesh unmount DIR`). Either way every staged file is committed, the catalog
//! made durable, garbage collected, and the process exits 0. A second signal during
//! that wait exits at once (status 130); whatever was not committed yet stays staged and
//! is committed by the next mount.
//!
//! # Unmount
//!
//! `datamesh unmount DIR` unmounts (refused while files are open, unless `--lazy`) and
//! then, if the repository's mount lock names DIR, waits for the mount process to finish
//! committing and exit, so that a script can rely on everything being durable once it
//! returns. A stale mount is detached.

mod daemon;
pub mod lock;
mod owner;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use datamesh_mount::{MountError, MountOptions};

use super::CliContext;
use crate::adapters::mount::{Capacity, CommitPolicy, MountBackend};
use crate::config::{ByteSize, Config};
use crate::control::server::ControlServer;
use crate::crypto::keystore::KdfParams;
use crate::engine::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::RepoPaths;

/// `datamesh mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Directory to show the mesh in (must exist and be empty)
    pub dir: PathBuf,
    /// Mount read-only: every change fails with EROFS
    #[arg(long)]
    pub read_only: bool,
    /// Let other users access the mount (still subject to the files' permissions)
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for cached verified chunks, e.g. 512MiB [default: config cache.memory]
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<ByteSize>,
    /// Run in the background; return once the mount is ready
    #[arg(long)]
    pub daemon: bool,
}

/// `datamesh unmount`.
#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// The mounted directory
    pub dir: PathBuf,
    /// Detach now even if files are open (they keep working until closed)
    #[arg(long)]
    pub lazy: bool,
}

/// The crate error for a mount failure, with a kind scripts can branch on.
fn mount_error(e: MountError) -> Error {
    let kind = match &e {
        MountError::NotFound(_) => ErrorKind::NotFound,
        MountError::NotADirectory(_) | MountError::NotEmpty(_) => ErrorKind::InvalidInput,
        MountError::AlreadyMounted(_) | MountError::Busy(_) => ErrorKind::Busy,
        MountError::Fuse(_, io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            ErrorKind::NotPermitted
        }
        _ => ErrorKind::Io,
    };
    let hint = match &e {
        MountError::NotFound(p) => format!(": create it first (mkdir {})", p.display()),
        MountError::NotEmpty(_) => {
            ": mounting would hide its files; use an empty directory".to_owned()
        }
        MountError::AlreadyMounted(p) => {
            format!(": unmount it first (`datamesh unmount {}`)", p.display())
        }
        MountError::Fuse(..) => {
            ": is FUSE available (/dev/fuse, the fuse3 package for non-root users)?".to_owned()
        }
        _ => String::new(),
    };
    Error::new(kind, format!("{e}{hint}"))
}

/// The repository, created on the spot when missing and a person is at the terminal.
async fn ensure_repository(ctx: &CliContext, paths: &RepoPaths) -> anyhow::Result<()> {
    if paths.exists() {
        return Ok(());
    }
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !tty {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no datamesh repository at {}: create one with `datamesh init` (or point --repo / DATAMESH_HOME at an existing one), then mount again",
                paths.root().display()
            ),
        )
        .into());
    }
    eprint!(
        "There is no datamesh repository at {}. Create one now? [y/N] ",
        paths.root().display()
    );
    let answer = blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line)
    })
    .await?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "no repository at {}: create one with `datamesh init`",
                paths.root().display()
            ),
        )
        .into());
    }
    let repo =
        super::key_cmds::create(ctx, paths.clone(), Config::default(), KdfParams::DEFAULT).await?;
    ctx.note(format!(
        "Created a datamesh repository at {}. Back up the keys: `datamesh key export FILE`.",
        repo.paths().root().display()
    ));
    Ok(())
}

/// The mountpoint as an absolute path (a missing one is reported by the checks).
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

pub async fn mount(ctx: &CliContext, args: MountArgs) -> anyhow::Result<()> {
    let mut ready = daemon::Ready::from_env();
    let result = run(ctx, &args, &mut ready).await;
    if let Err(e) = &result {
        ready.failed(e);
    }
    result
}

async fn run(ctx: &CliContext, args: &MountArgs, ready: &mut daemon::Ready) -> anyhow::Result<()> {
    let paths = ctx.paths()?;
    let dir = absolute(&args.dir);
    if !ready.is_child() {
        ensure_repository(ctx, &paths).await?;
    }
    if args.daemon && !ready.is_child() {
        // Fail fast on the mountpoint before detaching.
        datamesh_mount::mount::prepare_mountpoint(&dir).map_err(mount_error)?;
        return daemon::spawn(ctx, &paths, &dir).await;
    }
    let lock = lock::MountLock::acquire(&paths, &dir)?;
    datamesh_mount::mount::prepare_mountpoint(&dir).map_err(mount_error)?;
    let (repo, cli_engine) = ctx.open_engine().await?;
    let store = ctx.store(&repo).await?;
    let cache = args.cache_size.unwrap_or(repo.config().cache.memory).0;
    let policy = CommitPolicy {
        keep_versions: repo.config().mount.keep_versions,
    };
    // statfs shows where new data goes: the mesh's capacity when joined.
    let capacity = if ctx.joins_mesh(&repo) {
        Capacity::Store(store.clone())
    } else {
        Capacity::LocalDir(repo.paths().shards())
    };
    let backend = Arc::new(MountBackend::open(
        &repo,
        store.clone(),
        capacity,
        cache,
        policy,
    )?);
    let opts = MountOptions {
        read_only: args.read_only,
        allow_other: args.allow_other,
        fsname: format!("datamesh:{}", repo.paths().root().display()),
        ..MountOptions::default()
    };
    let handle = datamesh_mount::mount(
        backend.clone(),
        backend.clone(),
        &dir,
        &repo.paths().staging(),
        opts,
    )
    .await
    .map_err(mount_error)?;
    let recovered = handle.recovery().clone();
    let mountpoint = handle.mountpoint().to_path_buf();
    let fs = handle.fs().clone();
    let shared: owner::SharedHandle = Arc::new(Mutex::new(Some(handle)));
    let owner = Arc::new(owner::MountOwner {
        handle: shared.clone(),
        fs,
        backend: backend.clone(),
        engine: cli_engine,
        store,
    });
    let control = match ControlServer::start(crate::cli::context::Attached {
        repo: repo.clone(),
        owner,
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            let handle = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                let _ = h.detach().await;
            }
            return Err(e.into());
        }
    };
    tracing::info!(?recovered, "recovery at mount");
    ctx.note(format!(
        "datamesh: {} mounted at {} (Ctrl-C or `datamesh unmount {}` to stop)",
        repo.paths().root().display(),
        mountpoint.display(),
        mountpoint.display()
    ));
    ready.ready();

    let why = wait_for_stop(&shared).await?;
    tracing::info!("stopping: {why}");
    drop(control);
    let handle = shared.lock().unwrap_or_else(|p| p.into_inner()).take();
    let stop = async {
        if let Some(h) = handle {
            if h.session_ended() {
                h.unmount().await.map_err(mount_error)?;
            } else {
                h.detach().await.map_err(mount_error)?;
            }
        }
        backend.make_durable()?;
        if let Err(e) = backend.engine().collect_garbage().await {
            tracing::warn!("garbage collection at unmount failed: {e}");
        }
        Ok::<(), Error>(())
    };
    tokio::select! {
        r = stop => r?,
        _ = second_signal() => {
            ctx.error("interrupted again: exiting now; what was not committed stays staged and is committed by the next mount");
            std::process::exit(130);
        }
    }
    drop(lock);
    ctx.note(format!("datamesh: unmounted {}", mountpoint.display()));
    Ok(())
}

/// Waits for SIGINT, SIGTERM or the end of the FUSE session; says which.
async fn wait_for_stop(shared: &owner::SharedHandle) -> Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = tick.tick() => {
                let ended = shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_none_or(|h| h.session_ended());
                if ended {
                    return Ok("unmounted");
                }
            }
        }
    }
}

async fn second_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `umount2`, or fusermount when not root.
fn kernel_unmount(dir: &Path, lazy: bool) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        return Err(std::io::Error::last_os_error());
    }
    let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
    for tool in ["fusermount3", "fusermount"] {
        let mut cmd = std::process::Command::new(tool);
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        match cmd.arg(dir).status() {
            Ok(s) if s.success() => return Ok(()),
            Ok(_) => return Err(std::io::Error::from_raw_os_error(libc::EBUSY)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub async fn unmount(ctx: &CliContext, args: UnmountArgs) -> anyhow::Result<()> {
    let dir = absolute(&args.dir);
    let stale = datamesh_mount::mount::clear_stale_mount(&dir).map_err(mount_error)?;
    if stale {
        ctx.note(format!(
            "detached a stale mount at {} (its process had died); the next mount recovers what it staged",
            dir.display()
        ));
        return Ok(());
    }
    let mounted = datamesh_mount::mount::is_mountpoint(&dir)
        .map_err(|e| Error::from(e).context(dir.display()))?;
    if !mounted {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} is not mounted", dir.display()),
        )
        .into());
    }
    let owner = match ctx.paths() {
        Ok(paths) => lock::holder(&paths)
            .ok()
            .flatten()
            .filter(|h| absolute(&h.mountpoint) == dir)
            .map(|h| (paths, h)),
        Err(_) => None,
    };
    let (d, lazy) = (dir.clone(), args.lazy);
    blocking(move || {
        kernel_unmount(&d, lazy).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                Error::new(
                    ErrorKind::Busy,
                    format!(
                        "{} is busy (files are open in it): close them, or pass --lazy to detach it now",
                        d.display()
                    ),
                )
            } else {
                Error::from(e).context(format!("unmounting {}", d.display()))
            }
        })
    })
    .await?;
    if let Some((paths, holder)) = owner {
        ctx.note(format!(
            "waiting for the mount process ({}) to commit what was written",
            holder.pid
        ));
        loop {
            match lock::holder(&paths)? {
                Some(h) if h.pid == holder.pid => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => break,
            }
        }
    }
    Ok(())
}
