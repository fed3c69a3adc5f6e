//! `datamesh mount --daemon`: run the mount in a detached child and return once it is up.
//!
//! The parent re-executes itself with the same arguments minus `--daemon`, in a new
//! session (`setsid`: no controlling terminal, no SIGHUP when the shell exits), with
//! stdin and stdout on /dev/null and stderr appended to `REPO/mount.log`. The child finds
//! a readiness pipe in `DATAMESH_MOUNT_READY_FD` and writes exactly one message on it:
//! `ready` once the filesystem is mounted and serving, or `error KIND` and the error's
//! message if it fails before that. The parent waits for that message and exits 0, or
//! with the child's error (and its exit code); a child that dies silently is reported
//! with its exit status and the log's path.
//!
//! The passphrase: a child has no terminal, so when the passphrase would come from a
//! prompt the parent asks for it and hands it to the child in its environment
//! (`DATAMESH_PASSWORD`, readable only by the same user, as the keystore is).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::crypto::passphrase::{PASSWORD_ENV, Purpose};
use crate::engine::blocking;
use crate::error::{Error, ErrorKind};
use crate::repo::RepoPaths;

use super::super::CliContext;

/// The variable naming the readiness pipe's descriptor in the child.
const READY_ENV: &str = "DATAMESH_MOUNT_READY_FD";

/// The child's end of the readiness pipe.
pub struct Ready(Option<File>);

impl Ready {
    /// The pipe, when this process is a daemon child.
    pub fn from_env() -> Ready {
        let fd: Option<RawFd> = std::env::var(READY_ENV).ok().and_then(|v| v.parse().ok());
        // SAFETY: the parent created this descriptor for us alone and passed its number;
        // nothing else in this process owns it.
        Ready(
            fd.filter(|fd| *fd > 2)
                .map(|fd| unsafe { File::from_raw_fd(fd) }),
        )
    }

    /// Whether this process runs detached for a parent waiting on it.
    pub fn is_child(&self) -> bool {
        self.0.is_some()
    }

    /// Tells the parent the mount is up.
    pub fn ready(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"ready\n");
        }
    }

    /// Tells the parent why the mount failed.
    pub fn failed(&mut self, err: &anyhow::Error) {
        if let Some(mut f) = self.0.take() {
            let kind = err
                .chain()
                .find_map(|e| e.downcast_ref::<Error>())
                .map_or(ErrorKind::Io, Error::kind);
            let _ = write!(f, "error {}\n{err:#}", kind.label());
        }
    }
}

fn kind_of(label: &str) -> ErrorKind {
    use ErrorKind as K;
    [
        K::NotFound,
        K::AlreadyExists,
        K::InvalidInput,
        K::WrongPassphrase,
        K::Corrupt,
        K::Unavailable,
        K::NoSpace,
        K::Unsupported,
        K::Busy,
        K::Io,
        K::Network,
        K::NotPermitted,
        K::Internal,
    ]
    .into_iter()
    .find(|k| k.label() == label)
    .unwrap_or(K::Io)
}

/// Starts the detached child and waits until it is mounted (or failed).
pub async fn spawn(ctx: &CliContext, paths: &RepoPaths, mountpoint: &Path) -> anyhow::Result<()> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::from(std::io::Error::last_os_error())
            .context("creating the readiness pipe")
            .into());
    }
    // SAFETY: both descriptors were just created and are owned here alone.
    let (mut read_end, write_end) =
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let log_path = paths.root().join("mount.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::from(e).context(format!("opening {}", log_path.display())))?;
    let args: Vec<OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let exe = std::env::current_exe()
        .map_err(|e| Error::from(e).context("finding the datamesh executable"))?;
    let mut cmd = Command::new(exe);
    // `--repo`, if given, is among the arguments (relative paths stay valid: the child
    // keeps this working directory); otherwise the child finds the same repository here.
    cmd.args(args)
        .env(
            "DATAMESH_HOME",
            std::path::absolute(paths.root()).unwrap_or_else(|_| paths.root().to_path_buf()),
        )
        .env(READY_ENV, fds[1].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if std::env::var_os(PASSWORD_ENV).is_none() && ctx.global.password_file.is_none() {
        let what = format!("the keystore {}", paths.keystore().display());
        let pass = ctx.passphrase(Purpose::Open, what).await?;
        let text = String::from_utf8_lossy(pass.as_bytes()).into_owned();
        cmd.env(PASSWORD_ENV, text);
    }
    let ready_fd = fds[1];
    // SAFETY: runs in the forked child before exec and calls only async-signal-safe
    // functions (setsid, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::fcntl(ready_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::from(e).context("starting the mount process"))?;
    drop(write_end);
    let (message, status) = blocking(move || {
        let mut text = String::new();
        let _ = read_end.read_to_string(&mut text);
        let status = if text.starts_with("ready") {
            None
        } else {
            Some(child.wait()?)
        };
        Ok((text, status))
    })
    .await?;
    if message.starts_with("ready") {
        ctx.note(format!(
            "mounted at {} (log: {}; `datamesh unmount {}` to stop)",
            mountpoint.display(),
            log_path.display(),
            mountpoint.display()
        ));
        return Ok(());
    }
    if let Some(rest) = message.strip_prefix("error ") {
        let (label, msg) = rest.split_once('\n').unwrap_or((rest, "the mount failed"));
        return Err(Error::new(kind_of(label.trim()), msg.to_owned()).into());
    }
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "the mount process exited ({}) before the mount was ready; see {}",
            status.map_or_else(|| "no status".to_owned(), |s| s.to_string()),
            log_path.display()
        ),
    )
    .into())
}
