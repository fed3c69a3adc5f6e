//! The repository's mount lock: one process mounts a repository at a time.
//!
//! `REPO/mount.lock` is held with an exclusive `flock` for the life of the mount; the
//! kernel releases it when the process ends, however it ends, so a crashed mount never
//! leaves a stale lock. The file says who holds it (pid, mountpoint) for the error a
//! second mount gets, and for `datamesh unmount` to wait for the right process. The
//! file itself stays (removing a lock file races with the next locker); its contents are
//! cleared on release.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::repo::RepoPaths;

/// The lock file of a repository.
pub fn lock_path(paths: &RepoPaths) -> PathBuf {
    paths.root().join("mount.lock")
}

/// Who holds a repository's mount lock, as its file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The mounting process.
    pub pid: u32,
    /// Where it mounted.
    pub mountpoint: PathBuf,
}

/// A held mount lock; released on drop.
pub struct MountLock {
    file: File,
}

fn flock(file: &File, op: i32) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor this process owns; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), op) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::from(e).context(format!("opening {}", path.display())))
}

fn parse(text: &str) -> Option<Holder> {
    let mut pid = None;
    let mut mountpoint = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pid=") {
            pid = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("mountpoint=") {
            mountpoint = Some(PathBuf::from(v));
        }
    }
    Some(Holder {
        pid: pid?,
        mountpoint: mountpoint?,
    })
}

/// The holder of the lock, if a live process holds it.
pub fn holder(paths: &RepoPaths) -> Result<Option<Holder>> {
    let path = lock_path(paths);
    if !path.exists() {
        return Ok(None);
    }
    let file = open(&path)?;
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        // Nobody holds it.
        Ok(()) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let mut text = String::new();
            let _ = (&file).read_to_string(&mut text);
            Ok(parse(&text))
        }
        Err(e) => Err(Error::from(e).context(format!("checking {}", path.display()))),
    }
}

impl MountLock {
    /// Takes the lock for a mount at `mountpoint`, or fails with [`ErrorKind::Busy`]
    /// naming the process that has it.
    pub fn acquire(paths: &RepoPaths, mountpoint: &Path) -> Result<MountLock> {
        let path = lock_path(paths);
        let mut file = open(&path)?;
        if let Err(e) = flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::from(e).context(format!("locking {}", path.display())));
            }
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let who = match parse(&text) {
                Some(h) => format!(
                    "is already mounted at {} by process {}: unmount it first (`datamesh unmount {}`)",
                    h.mountpoint.display(),
                    h.pid,
                    h.mountpoint.display()
                ),
                None => "is being mounted by another process".to_owned(),
            };
            return Err(Error::new(
                ErrorKind::Busy,
                format!("the repository at {} {who}", paths.root().display()),
            ));
        }
        let text = format!(
            "pid={}\nmountpoint={}\n",
            std::process::id(),
            mountpoint.display()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(|e| Error::from(e).context(format!("writing {}", path.display())))?;
        Ok(MountLock { file })
    }
}

impl Drop for MountLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // Closing the descriptor releases the flock.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_first_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RepoPaths::new(dir.path());
        let first = MountLock::acquire(&paths, Path::new("/mnt/a")).unwrap();
        let held = holder(&paths).unwrap().unwrap();
        assert_eq!(held.pid, std::process::id());
        assert_eq!(held.mountpoint, PathBuf::from("/mnt/a"));
        let err = MountLock::acquire(&paths, Path::new("/mnt/b"))
            .err()
            .expect("second lock");
        assert_eq!(err.kind(), ErrorKind::Busy);
        assert!(err.to_string().contains("/mnt/a"), "{err}");
        drop(first);
        assert_eq!(holder(&paths).unwrap(), None);
        MountLock::acquire(&paths, Path::new("/mnt/b")).unwrap();
    }
}
