//! The single mapping from [`FsError`] to errno. Nothing else in the crate names an errno
//! for an error (the FUSE adapter calls [`errno`] and nothing more).

use crate::error::FsError;

/// The errno the kernel should see for `err`.
pub fn errno(err: &FsError) -> i32 {
    match err {
        FsError::NotFound => libc::ENOENT,
        FsError::AlreadyExists => libc::EEXIST,
        FsError::NotEmpty => libc::ENOTEMPTY,
        FsError::NotADirectory => libc::ENOTDIR,
        FsError::IsADirectory => libc::EISDIR,
        FsError::InvalidArgument(_) => libc::EINVAL,
        FsError::NameTooLong => libc::ENAMETOOLONG,
        FsError::NoSpace => libc::ENOSPC,
        FsError::NoAttribute => libc::ENODATA,
        FsError::Range => libc::ERANGE,
        FsError::Unsupported(_) => libc::EOPNOTSUPP,
        FsError::PermissionDenied => libc::EACCES,
        FsError::NotPermitted => libc::EPERM,
        FsError::TooManyLinks => libc::EMLINK,
        FsError::ReadOnly => libc::EROFS,
        FsError::BadHandle => libc::EBADF,
        FsError::Stale => libc::ESTALE,
        FsError::Busy => libc::EBUSY,
        FsError::FileTooLarge => libc::EFBIG,
        // Keep the OS's own answer (ENOSPC, EDQUOT, EIO...) for local I/O; anything the OS
        // did not number is an I/O error.
        FsError::Io { source, .. } => match source.raw_os_error() {
            Some(code) if code > 0 => code,
            _ => libc::EIO,
        },
        FsError::Backend(_) => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_the_os_errno_and_fall_back_to_eio() {
        let enospc = FsError::io("write", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno(&enospc), libc::ENOSPC);
        let custom = FsError::io("write", std::io::Error::other("no errno"));
        assert_eq!(errno(&custom), libc::EIO);
        assert_eq!(errno(&FsError::backend("fetch failed")), libc::EIO);
    }

    #[test]
    fn posix_kinds_map_to_their_errno() {
        assert_eq!(errno(&FsError::NotFound), libc::ENOENT);
        assert_eq!(errno(&FsError::NotEmpty), libc::ENOTEMPTY);
        assert_eq!(errno(&FsError::NoAttribute), libc::ENODATA);
        assert_eq!(errno(&FsError::IsADirectory), libc::EISDIR);
    }
}
