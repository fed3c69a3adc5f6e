//! Small files holding secrets: bounded reads and atomic, owner-only writes.
//!
//! # Model
//!
//! A write goes to a fresh temporary file in the same directory (created exclusively,
//! mode 0600), is fsync'd, and then takes the target's name in one step: `rename` when
//! replacing is allowed, `link` when it is not (a link fails if the name exists, so
//! "create only if absent" holds even against a concurrent writer). The directory is
//! then fsync'd so the new name survives a crash. At every instant the target name holds
//! either the complete old file or the complete new one, never a mix.
//!
//! Reads stop at a caller-given limit, so a huge file in place of a keystore cannot make
//! us allocate without bound.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Whether a write may replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Fail with `AlreadyExists` if the target exists.
    Never,
    /// Replace the target atomically.
    Always,
}

/// The permissions of every file written here: read and write for the owner only.
pub(crate) const SECRET_FILE_MODE: u32 = 0o600;

/// Reads at most `limit` bytes of `path`; returns them and whether the file was longer.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let file = File::open(path)?;
    let mut out = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut out)?;
    let longer = out.len() > limit;
    out.truncate(limit);
    Ok((out, longer))
}

/// Writes `bytes` to `path` atomically with mode 0600 (see the module docs).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], replace: Replace) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = dir.join(tmp_name);

    let result = write_tmp(&tmp, bytes).and_then(|()| publish(&tmp, path, replace));
    // After a rename the temporary name is gone; after a link or a failure it remains.
    let _ = std::fs::remove_file(&tmp);
    result?;
    File::open(&dir)?.sync_all()
}

fn write_tmp(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(tmp)?;
    // The umask may have narrowed the mode; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(SECRET_FILE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn publish(tmp: &Path, path: &Path, replace: Replace) -> std::io::Result<()> {
    match replace {
        Replace::Always => std::fs::rename(tmp, path),
        Replace::Never => match std::fs::hard_link(tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
            // Some file systems have no hard links; fall back to check-then-rename,
            // which is only racy against a second writer of the same new keystore.
            Err(_) if !path.exists() => std::fs::rename(tmp, path),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn never_refuses_an_existing_file_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", Replace::Never).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let err = write_atomic(&path, b"two", Replace::Never).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn always_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new", Replace::Always).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn new_file_has_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"x", Replace::Never).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/f");
        let err = write_atomic(&path, b"x", Replace::Never).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn bounded_read_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 100]).unwrap();
        let (bytes, longer) = read_bounded(&path, 10).unwrap();
        assert_eq!(bytes, vec![7u8; 10]);
        assert!(longer);
        let (bytes, longer) = read_bounded(&path, 100).unwrap();
        assert_eq!(bytes.len(), 100);
        assert!(!longer);
    }
}
