//! Mountpoint checks for the CLI: refuse a mountpoint that is missing, not a directory,
//! not empty or already mounted, with clear errors; detect a stale mount (its daemon
//! died: `stat` fails with ENOTCONN) and detach it lazily so it can be reused.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::MountError;

/// Detaches a stale FUSE mount at `path` (`stat` gives ENOTCONN). Returns whether there
/// was one.
pub fn clear_stale_mount(path: &Path) -> Result<bool, MountError> {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            umount(path, true).map_err(|e| MountError::Stale(path.to_path_buf(), e))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Checks that `path` can be mounted on: an existing, empty directory that is not a
/// mountpoint.
pub fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MountError::NotFound(path.to_path_buf()));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::Stale(path.to_path_buf(), e));
        }
        Err(e) => return Err(MountError::Io(path.to_path_buf(), e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(path.to_path_buf()));
    }
    if is_mountpoint(path).map_err(|e| MountError::Io(path.to_path_buf(), e))? {
        return Err(MountError::AlreadyMounted(path.to_path_buf()));
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| MountError::Io(path.to_path_buf(), e))?;
    if entries.next().is_some() {
        return Err(MountError::NotEmpty(path.to_path_buf()));
    }
    Ok(())
}

/// [`clear_stale_mount`] then [`check_mountpoint`].
pub fn prepare_mountpoint(path: &Path) -> Result<(), MountError> {
    if clear_stale_mount(path)? {
        tracing::info!(mountpoint = %path.display(), "detached a stale mount");
    }
    check_mountpoint(path)
}

/// True if `path` is the mount point of some mount (per /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> std::io::Result<bool> {
    let canon = path.canonicalize()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == canon))
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// `umount2(path, MNT_DETACH if lazy)`.
pub(crate) fn umount(path: &Path, lazy: bool) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::umount2(c.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_file_and_non_empty_paths() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            check_mountpoint(&missing),
            Err(MountError::NotFound(_))
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_mountpoint(&file),
            Err(MountError::NotADirectory(_))
        ));
        assert!(matches!(
            check_mountpoint(dir.path()),
            Err(MountError::NotEmpty(_))
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check_mountpoint(&empty).unwrap();
    }

    #[test]
    fn detects_existing_mountpoints() {
        assert!(
            is_mountpoint(Path::new("/")).unwrap(),
            "/ is always mounted"
        );
        assert!(matches!(
            check_mountpoint(Path::new("/proc")),
            Err(MountError::AlreadyMounted(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mountpoint(dir.path()).unwrap());
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(r"/a\040b\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape(r"/trailing\04"), PathBuf::from(r"/trailing\04"));
    }
}
