//! POSIX behaviour through a real kernel mount over the memory backend, case by case, with
//! the errno each failure must carry. Skips (loudly) only where FUSE cannot be mounted.

mod support;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use support::{TestMount, errno, pattern, test_options};

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: valid NUL-terminated paths; AT_FDCWD.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

macro_rules! mounted {
    () => {
        match TestMount::new(test_options()) {
            Some(m) => m,
            None => return,
        }
    };
}

#[test]
fn files_and_directories_with_their_errnos() {
    let m = mounted!();
    fs::write(m.p("a"), b"hello").unwrap();
    assert_eq!(fs::read(m.p("a")).unwrap(), b"hello");
    assert_eq!(errno(fs::read(m.p("missing"))), libc::ENOENT);
    assert_eq!(
        errno(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(m.p("a"))
        ),
        libc::EEXIST
    );
    fs::create_dir(m.p("d")).unwrap();
    assert_eq!(errno(fs::create_dir(m.p("d"))), libc::EEXIST);
    fs::write(m.p("d/inner"), b"x").unwrap();
    assert_eq!(errno(fs::remove_dir(m.p("d"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::remove_file(m.p("d"))), libc::EISDIR);
    assert_eq!(errno(fs::remove_dir(m.p("a"))), libc::ENOTDIR);
    assert_eq!(errno(fs::read(m.p("a/x"))), libc::ENOTDIR);
    assert_eq!(errno(fs::create_dir(m.p("nodir/sub"))), libc::ENOENT);
    assert_eq!(
        errno(fs::write(m.p(&"n".repeat(256)), b"")),
        libc::ENAMETOOLONG
    );
    fs::remove_file(m.p("d/inner")).unwrap();
    fs::remove_dir(m.p("d")).unwrap();
    let mut names: Vec<_> = fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a"]);
    let d = fs::metadata(m.path()).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.nlink(), 2);
}

#[test]
fn rename_replace_noreplace_exchange() {
    let m = mounted!();
    fs::write(m.p("x"), b"X").unwrap();
    fs::write(m.p("y"), b"Y").unwrap();
    assert_eq!(
        errno(renameat2(&m.p("x"), &m.p("y"), libc::RENAME_NOREPLACE)),
        libc::EEXIST
    );
    renameat2(&m.p("x"), &m.p("y"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(m.p("x")).unwrap(), b"Y");
    assert_eq!(fs::read(m.p("y")).unwrap(), b"X");
    assert_eq!(
        errno(renameat2(&m.p("x"), &m.p("nope"), libc::RENAME_EXCHANGE)),
        libc::ENOENT
    );
    fs::rename(m.p("x"), m.p("y")).unwrap();
    assert_eq!(fs::read(m.p("y")).unwrap(), b"Y");
    assert_eq!(errno(fs::metadata(m.p("x"))), libc::ENOENT);
    fs::create_dir_all(m.p("d1/sub")).unwrap();
    fs::create_dir(m.p("d2")).unwrap();
    assert_eq!(errno(fs::rename(m.p("d1"), m.p("d1/sub/in"))), libc::EINVAL);
    assert_eq!(errno(fs::rename(m.p("d2"), m.p("d1"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs::rename(m.p("y"), m.p("d2"))), libc::EISDIR);
    assert_eq!(errno(fs::rename(m.p("d2"), m.p("y"))), libc::ENOTDIR);
    fs::rename(m.p("d1/sub"), m.p("d2/moved")).unwrap();
    assert!(fs::metadata(m.p("d2/moved")).unwrap().is_dir());
    assert_eq!(
        fs::metadata(m.p("d1")).unwrap().nlink(),
        2,
        "parent lost a subdirectory"
    );
    assert_eq!(fs::metadata(m.p("d2")).unwrap().nlink(), 3);
    renameat2(&m.p("y"), &m.p("d2"), libc::RENAME_EXCHANGE).unwrap();
    assert!(fs::metadata(m.p("y")).unwrap().is_dir());
    assert_eq!(fs::read(m.p("d2")).unwrap(), b"Y");
}

#[test]
fn append_truncate_holes_and_large_offsets() {
    let m = mounted!();
    fs::write(m.p("log"), b"one\n").unwrap();
    let mut f = OpenOptions::new().append(true).open(m.p("log")).unwrap();
    f.write_all(b"two\n").unwrap();
    f.write_all(b"three\n").unwrap();
    drop(f);
    assert_eq!(fs::read(m.p("log")).unwrap(), b"one\ntwo\nthree\n");
    let f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p("log"))
        .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 0, "O_TRUNC");
    drop(f);
    fs::write(m.p("t"), pattern(10_000, 1)).unwrap();
    let f = OpenOptions::new().write(true).open(m.p("t")).unwrap();
    f.set_len(100).unwrap();
    f.set_len(5000).unwrap();
    drop(f);
    let got = fs::read(m.p("t")).unwrap();
    assert_eq!(got.len(), 5000);
    assert_eq!(&got[..100], &pattern(10_000, 1)[..100]);
    assert!(
        got[100..].iter().all(|&b| b == 0),
        "truncate up reads zeros"
    );
    let f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .read(true)
        .open(m.p("sparse"))
        .unwrap();
    let far = 5u64 << 30;
    f.write_all_at(b"beyond 4 GiB", far).unwrap();
    f.write_all_at(b"mid", 1 << 20).unwrap();
    drop(f);
    let f = File::open(m.p("sparse")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), far + 12);
    let mut buf = [1u8; 4096];
    f.read_exact_at(&mut buf, 8192).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "hole reads zeros");
    let mut tail = [0u8; 12];
    f.read_exact_at(&mut tail, far).unwrap();
    assert_eq!(&tail, b"beyond 4 GiB");
    let mut mid = [0u8; 3];
    f.read_exact_at(&mut mid, 1 << 20).unwrap();
    assert_eq!(&mid, b"mid");
}

#[test]
fn hard_links_symlinks_and_unlink_while_open() {
    let m = mounted!();
    fs::write(m.p("orig"), b"shared").unwrap();
    fs::hard_link(m.p("orig"), m.p("alias")).unwrap();
    assert_eq!(fs::metadata(m.p("orig")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.p("orig")).unwrap().ino(),
        fs::metadata(m.p("alias")).unwrap().ino()
    );
    fs::write(m.p("alias"), b"changed via alias").unwrap();
    assert_eq!(fs::read(m.p("orig")).unwrap(), b"changed via alias");
    fs::remove_file(m.p("orig")).unwrap();
    assert_eq!(fs::metadata(m.p("alias")).unwrap().nlink(), 1);
    fs::create_dir(m.p("dir")).unwrap();
    assert_eq!(
        errno(fs::hard_link(m.p("dir"), m.p("dirlink"))),
        libc::EPERM
    );
    std::os::unix::fs::symlink("alias", m.p("sym")).unwrap();
    assert_eq!(fs::read_link(m.p("sym")).unwrap(), Path::new("alias"));
    assert!(
        fs::symlink_metadata(m.p("sym"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(m.p("sym")).unwrap(), b"changed via alias");
    std::os::unix::fs::symlink("nowhere", m.p("dangling")).unwrap();
    assert_eq!(errno(fs::read(m.p("dangling"))), libc::ENOENT);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("alias"))
        .unwrap();
    fs::remove_file(m.p("alias")).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b" and more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(
        s, "changed via alias and more",
        "an unlinked open file stays usable"
    );
    drop(f);
    // The kernel sends RELEASE asynchronously after close() returns.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while m.mem.orphan_count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "orphan never reclaimed after close"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn xattrs_modes_and_times() {
    let m = mounted!();
    fs::write(m.p("f"), b"x").unwrap();
    let p = cpath(&m.p("f"));
    let name = CString::new("user.color").unwrap();
    // SAFETY: valid pointers and lengths for every call below.
    unsafe {
        assert_eq!(
            libc::setxattr(p.as_ptr(), name.as_ptr(), b"blue".as_ptr().cast(), 4, 0),
            0
        );
        assert_eq!(
            libc::setxattr(
                p.as_ptr(),
                name.as_ptr(),
                b"red".as_ptr().cast(),
                3,
                libc::XATTR_CREATE
            ),
            -1
        );
        assert_eq!(*libc::__errno_location(), libc::EEXIST);
        assert_eq!(
            libc::getxattr(p.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0),
            4
        );
        let mut buf = [0u8; 16];
        assert_eq!(
            libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 16),
            4
        );
        assert_eq!(&buf[..4], b"blue");
        let mut small = [0u8; 2];
        assert_eq!(
            libc::getxattr(p.as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), 2),
            -1
        );
        assert_eq!(*libc::__errno_location(), libc::ERANGE);
        let mut list = [0u8; 64];
        let n = libc::listxattr(p.as_ptr(), list.as_mut_ptr().cast(), 64);
        assert_eq!(&list[..n as usize], b"user.color\0");
        assert_eq!(libc::removexattr(p.as_ptr(), name.as_ptr()), 0);
        assert_eq!(
            libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 16),
            -1
        );
        assert_eq!(*libc::__errno_location(), libc::ENODATA);
    }
    fs::set_permissions(m.p("f"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(m.p("f")).unwrap().mode() & 0o7777, 0o640);
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_234_567_890, 123_456_789);
    let f = File::options().write(true).open(m.p("f")).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
    drop(f);
    let md = fs::metadata(m.p("f")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_234_567_890, 123_456_789));
    // A write after utimens moves mtime forward again.
    fs::write(m.p("f"), b"new").unwrap();
    assert!(fs::metadata(m.p("f")).unwrap().mtime() > 1_234_567_890);
    // SAFETY: plain chown of a path we own (root in CI).
    let r = unsafe { libc::chown(p.as_ptr(), 1234, 5678) };
    if r == 0 {
        let md = fs::metadata(m.p("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
    }
}

#[test]
fn shared_mmap_writes_reach_the_file() {
    let mut m = mounted!();
    let len = 3 * 4096 + 100;
    fs::write(m.p("mapped"), vec![b'.'; len]).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("mapped"))
        .unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: mapping a file we hold open, within its length; unmapped before close.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(ptr, libc::MAP_FAILED);
        let s = std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len);
        s[10..15].copy_from_slice(b"MMAP!");
        s[len - 5..].copy_from_slice(b"TAIL!");
        assert_eq!(libc::msync(ptr, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(ptr, len), 0);
    }
    drop(f);
    let got = fs::read(m.p("mapped")).unwrap();
    assert_eq!(&got[10..15], b"MMAP!");
    assert_eq!(&got[len - 5..], b"TAIL!");
    m.remount();
    let got = fs::read(m.p("mapped")).unwrap();
    assert_eq!(&got[10..15], b"MMAP!", "mmap writes were committed");
    assert_eq!(&got[len - 5..], b"TAIL!");
}

#[test]
fn statfs_reports_the_backend_capacity() {
    let m = mounted!();
    let c = cpath(&m.path());
    // SAFETY: statvfs into a zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_bsize, 4096);
    assert_eq!(
        st.f_blocks * st.f_frsize,
        1 << 40,
        "the memory backend's 1 TiB"
    );
    assert!(st.f_bavail <= st.f_blocks);
}

#[test]
fn persistence_across_remount_and_cold_large_reads() {
    let mut m = mounted!();
    fs::create_dir_all(m.p("a/b/c")).unwrap();
    fs::write(m.p("a/b/c/small"), b"tiny").unwrap();
    let big = pattern(24 << 20, 42);
    let mut f = File::create(m.p("big")).unwrap();
    for piece in big.chunks(1 << 20) {
        f.write_all(piece).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    std::os::unix::fs::symlink("a/b", m.p("link")).unwrap();
    m.remount();
    assert_eq!(fs::read(m.p("link/c/small")).unwrap(), b"tiny");
    m.mem.set_fetch_latency(Duration::from_millis(2));
    let fetched0 = m
        .mem
        .counters()
        .fetches
        .load(std::sync::atomic::Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    let got = fs::read(m.p("big")).unwrap();
    let took = t0.elapsed();
    assert!(got == big, "cold read differs");
    let fetched = m
        .mem
        .counters()
        .fetches
        .load(std::sync::atomic::Ordering::SeqCst)
        - fetched0;
    let chunks = (24 << 20) / datamesh_mount::memory::DEFAULT_CHUNK_SIZE as u64;
    assert!(
        fetched >= chunks && fetched <= chunks + 4,
        "fetched {fetched} chunks for {chunks}"
    );
    // 96 chunks x 2 ms in sequence would be ~190 ms; prefetching overlaps them.
    eprintln!("cold 24 MiB read: {took:?}, {fetched} fetches");
}

#[test]
fn read_only_mount_refuses_writes() {
    let mut opts = test_options();
    opts.read_only = true;
    let Some(m) = TestMount::new(opts) else {
        return;
    };
    assert_eq!(errno(fs::write(m.p("x"), b"no")), libc::EROFS);
    assert_eq!(errno(fs::create_dir(m.p("d"))), libc::EROFS);
    assert!(fs::read_dir(m.path()).unwrap().next().is_none());
}

#[test]
fn mountpoint_refusals() {
    let m = mounted!();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), b"").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = std::sync::Arc::new(datamesh_mount::memory::MemoryBackend::new());
    let try_mount = |p: &Path| {
        let mem = mem.clone();
        let stage = dir.path().join("stage");
        rt.block_on(async move {
            datamesh_mount::mount(mem.clone(), mem, p, &stage, test_options())
                .await
                .map(|_| ())
        })
    };
    assert!(matches!(
        try_mount(dir.path()),
        Err(datamesh_mount::MountError::NotEmpty(_))
    ));
    assert!(matches!(
        try_mount(&m.path()),
        Err(datamesh_mount::MountError::AlreadyMounted(_))
    ));
    assert!(matches!(
        try_mount(&dir.path().join("file")),
        Err(datamesh_mount::MountError::NotADirectory(_))
    ));
    assert!(matches!(
        try_mount(&dir.path().join("nope")),
        Err(datamesh_mount::MountError::NotFound(_))
    ));
}

#[test]
fn unmount_is_refused_while_busy_then_succeeds() {
    let Some(mut m) = TestMount::new(test_options()) else {
        return;
    };
    let f = File::create(m.p("open")).unwrap();
    m.unmount_expect_busy();
    drop(f);
    m.remount();
    assert!(fs::metadata(m.p("open")).unwrap().is_file());
}

trait BusyCheck {
    fn unmount_expect_busy(&mut self);
}

impl BusyCheck for TestMount {
    fn unmount_expect_busy(&mut self) {
        // `umount` of a busy mount must fail and leave it working.
        let c = cpath(&self.path());
        // SAFETY: valid path.
        let r = unsafe { libc::umount2(c.as_ptr(), 0) };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EBUSY)
        );
        assert!(fs::metadata(self.p("open")).is_ok());
    }
}
