//! Conversions between the core's types and fuser's: attributes, times, errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

use crate::core::SetTime;
use crate::errno::errno;
use crate::error::FsError;
use crate::ports::{NodeAttr, NodeKind};

/// `st_blksize` reported for every node: large, so `cp` and friends use large buffers.
const BLKSIZE: u32 = 1 << 20;

pub(crate) fn errno_of(e: &FsError) -> Errno {
    Errno::from_i32(errno(e))
}

pub(crate) fn kind(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Directory => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
    }
}

pub(crate) fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// SystemTime to ns since the epoch; out of the i64 range is an error (EINVAL).
pub(crate) fn nanos(t: SystemTime) -> Result<i64, FsError> {
    let too_far = || FsError::InvalidArgument("time out of range");
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).map_err(|_| too_far()),
        Err(e) => i64::try_from(e.duration().as_nanos())
            .map(|v| -v)
            .map_err(|_| too_far()),
    }
}

pub(crate) fn set_time(t: TimeOrNow) -> Result<SetTime, FsError> {
    match t {
        TimeOrNow::Now => Ok(SetTime::Now),
        TimeOrNow::SpecificTime(t) => nanos(t).map(SetTime::At),
    }
}

pub(crate) fn file_attr(a: &NodeAttr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.mtime),
        kind: kind(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// The attributes the kernel gets for a negative entry (node id 0: "no such name", cached
/// for the entry TTL).
pub(crate) fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

/// Attributes good enough for `.` and `..` in readdirplus (the kernel ignores them).
pub(crate) fn dot_attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        ..negative_attr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_including_before_the_epoch() {
        for ns in [0i64, 1, 1_700_000_000_123_456_789, -1, -86_400_000_000_123] {
            assert_eq!(nanos(system_time(ns)).unwrap(), ns);
        }
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        assert!(
            nanos(far).is_err(),
            "beyond i64 ns must be refused, not wrapped"
        );
    }
}
