//! The `fuser::Filesystem` adapter. It only decodes a request, spawns the matching core
//! method on the runtime handle, and replies from that task; `forget` is the only
//! synchronous call. All semantics live in the core; all errnos come from `errno.rs`.
//!
//! Kernel features requested at init (when the kernel offers them): writeback cache
//! (unless read-only), readdirplus (adaptive), parallel directory operations, atomic
//! `O_TRUNC`, cached symlinks, 1 MiB writes and readahead.

mod convert;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    AccessFlags, BsdFileFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::core::{Caller, Fs, SetAttr};
use crate::error::FsError;
use crate::ports::{ContentStore, Namespace};
use convert::{dot_attr, errno_of, file_attr, kind, negative_attr, set_time};

const GEN: Generation = Generation(0);
/// Block size reported by statfs.
const STATFS_BSIZE: u64 = 4096;
/// Items asked of the core per readdir / readdirplus reply (a reply is one page).
const READDIR_ITEMS: usize = 128;
const READDIRPLUS_ITEMS: usize = 32;

/// Cache lifetimes handed to the kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ttls {
    pub(crate) attr: Duration,
    pub(crate) entry: Duration,
    pub(crate) negative: Duration,
}

/// The adapter.
pub(crate) struct FuseFs<N, C: ContentStore> {
    pub(crate) fs: Fs<N, C>,
    pub(crate) rt: Handle,
    pub(crate) ttl: Ttls,
    pub(crate) writeback: bool,
    /// Run metadata requests on the session threads (see [`FuseFs::run`]).
    pub(crate) inline: bool,
}

fn name(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

impl<N: Namespace, C: ContentStore> FuseFs<N, C> {
    /// Runs a request that may wait long (network fetches, commits) as a task on the
    /// runtime; the session thread goes back to reading requests at once.
    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.rt.spawn(f);
    }

    /// Runs a request bounded by one namespace call (metadata) on the session thread itself
    /// when `inline` is set: that saves two thread hand-offs per request, which is most of
    /// the cost of small-file workloads. Otherwise it is spawned.
    fn run(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.run_or_spawn(true, f);
    }

    fn run_or_spawn(
        &self,
        inline: bool,
        f: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        if inline && self.inline {
            self.rt.block_on(f);
        } else {
            self.rt.spawn(f);
        }
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno_of(&e)),
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, FsError>) {
    match r {
        Err(e) => reply.error(errno_of(&e)),
        Ok(v) if size == 0 => match u32::try_from(v.len()) {
            Ok(n) => reply.size(n),
            Err(_) => reply.error(errno_of(&FsError::Range)),
        },
        Ok(v) if v.len() > size as usize => reply.error(errno_of(&FsError::Range)),
        Ok(v) => reply.data(&v),
    }
}

impl<N: Namespace, C: ContentStore> Filesystem for FuseFs<N, C> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut wanted = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_MAX_PAGES;
        if self.writeback {
            wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        let offered = config.capabilities();
        let _ = config.add_capabilities(wanted & offered);
        self.writeback &= offered.contains(InitFlags::FUSE_WRITEBACK_CACHE);
        // Errors here only say "not that much": the nearest allowed value is then used.
        let _ = config.set_max_write(1 << 20);
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        tracing::debug!(writeback = self.writeback, "FUSE session initialised");
        Ok(())
    }

    fn destroy(&mut self) {
        // Unmounted (possibly by someone else's umount): commit everything before the
        // session ends.
        if let Err(e) = self.rt.block_on(self.fs.flush_all()) {
            tracing::error!(error = %e, "could not commit every staged file at unmount; they stay staged for the next mount");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let fs = self.fs.clone();
        let n = name(n);
        let ttl = self.ttl;
        self.run(async move {
            match fs.lookup(parent.0, &n).await {
                Ok(a) => reply.entry_with_ttls(&ttl.attr, &ttl.entry, &file_attr(&a), GEN),
                Err(FsError::NotFound) if !ttl.negative.is_zero() => {
                    reply.entry_with_ttls(&Duration::ZERO, &ttl.negative, &negative_attr(), GEN)
                }
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.fs.clone();
        let ttl = self.ttl.attr;
        self.run(async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let req = (|| -> Result<SetAttr, FsError> {
            Ok(SetAttr {
                mode,
                uid,
                gid,
                size,
                atime: atime.map(set_time).transpose()?,
                mtime: mtime.map(set_time).transpose()?,
                ctime: ctime.map(convert::nanos).transpose()?,
            })
        })();
        let req = match req {
            Ok(r) => r,
            Err(e) => return reply.error(errno_of(&e)),
        };
        let fs = self.fs.clone();
        let ttl = self.ttl.attr;
        let truncates = req.size.is_some();
        self.run_or_spawn(!truncates, async move {
            match fs.setattr(ino.0, req).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.readlink(ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let (fs, n, c) = (self.fs.clone(), name(n), caller(req));
        let me = self.clone_shallow();
        self.run(async move {
            let r = fs.mknod(parent.0, &n, mode, umask, c).await;
            me.reply_entry(reply, r);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, n, c) = (self.fs.clone(), name(n), caller(req));
        let me = self.clone_shallow();
        self.run(async move {
            let r = fs.mkdir(parent.0, &n, mode, umask, c).await;
            me.reply_entry(reply, r);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (fs, n) = (self.fs.clone(), name(n));
        self.run(async move { empty(reply, fs.unlink(parent.0, &n).await) });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (fs, n) = (self.fs.clone(), name(n));
        self.run(async move { empty(reply, fs.rmdir(parent.0, &n).await) });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, n: &OsStr, target: &Path, reply: ReplyEntry) {
        let (fs, n, c) = (self.fs.clone(), name(n), caller(req));
        let target = target.as_os_str().as_bytes().to_vec();
        let me = self.clone_shallow();
        self.run(async move {
            let r = fs.symlink(parent.0, &n, &target, c).await;
            me.reply_entry(reply, r);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (fs, n, nn) = (self.fs.clone(), name(n), name(newname));
        self.run(async move {
            empty(
                reply,
                fs.rename(parent.0, &n, newparent.0, &nn, flags.bits())
                    .await,
            )
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (fs, nn) = (self.fs.clone(), name(newname));
        let me = self.clone_shallow();
        self.run(async move {
            let r = fs.link(ino.0, newparent.0, &nn).await;
            me.reply_entry(reply, r);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.open(ino.0, flags.0).await {
                Ok(o) => reply.opened(FileHandle(o.fh), open_flags(o.keep_cache)),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = self.fs.clone();
        let data = Bytes::copy_from_slice(data);
        let cached = write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
        self.spawn(async move {
            match fs.write(fh.0, offset, data, cached).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.run(async move { empty(reply, fs.flush(fh.0).await) });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.run(async move { empty(reply, fs.release(fh.0).await) });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move { empty(reply, fs.fsync(ino.0).await) });
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Stateless listing by cookie; the kernel may cache it (we are the only writer and
        // the kernel drops the cache when it changes the directory itself).
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.readdir(ino.0, offset, READDIR_ITEMS).await {
                Ok(items) => {
                    for it in items {
                        if reply.add(
                            INodeNo(it.ino),
                            it.offset,
                            kind(it.kind),
                            OsStr::from_bytes(&it.name),
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = self.fs.clone();
        let ttl = self.ttl;
        self.run(async move {
            match fs.readdir(ino.0, offset, READDIRPLUS_ITEMS).await {
                Ok(items) => {
                    for it in items {
                        let name = OsStr::from_bytes(&it.name);
                        match &it.attr {
                            None => {
                                if reply.add(
                                    INodeNo(it.ino),
                                    it.offset,
                                    name,
                                    &ttl.entry,
                                    &dot_attr(it.ino),
                                    GEN,
                                ) {
                                    break;
                                }
                            }
                            Some(a) => {
                                if reply.add(
                                    INodeNo(it.ino),
                                    it.offset,
                                    name,
                                    &ttl.entry,
                                    &file_attr(a),
                                    GEN,
                                ) {
                                    break;
                                }
                                // The kernel now holds a reference to this entry.
                                fs.note_lookup(it.ino);
                            }
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move { empty(reply, fs.fsyncdir().await) });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.statfs().await {
                Ok(s) => reply.statfs(
                    s.total_bytes / STATFS_BSIZE,
                    s.free_bytes / STATFS_BSIZE,
                    s.avail_bytes / STATFS_BSIZE,
                    s.total_inodes,
                    s.free_inodes,
                    STATFS_BSIZE as u32,
                    255,
                    STATFS_BSIZE as u32,
                ),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            return reply.error(errno_of(&FsError::InvalidArgument("xattr position")));
        }
        let (fs, n, v) = (self.fs.clone(), name(n), value.to_vec());
        self.run(async move { empty(reply, fs.set_xattr(ino.0, &n, &v, flags).await) });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let (fs, n) = (self.fs.clone(), name(n));
        self.run(async move { xattr_reply(reply, size, fs.get_xattr(ino.0, &n).await) });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.run(async move { xattr_reply(reply, size, fs.list_xattr(ino.0).await) });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let (fs, n) = (self.fs.clone(), name(n));
        self.run(async move { empty(reply, fs.remove_xattr(ino.0, &n).await) });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let (fs, c) = (self.fs.clone(), caller(req));
        self.run(async move { empty(reply, fs.access(ino.0, mask.bits(), c).await) });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, n, c) = (self.fs.clone(), name(n), caller(req));
        let ttl = self.ttl;
        self.run(async move {
            match fs.create(parent.0, &n, mode, umask, flags, c).await {
                Ok((a, o)) => reply.created(
                    &ttl.entry,
                    &file_attr(&a),
                    GEN,
                    FileHandle(o.fh),
                    open_flags(o.keep_cache),
                ),
                Err(e) => reply.error(errno_of(&e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move { empty(reply, fs.fallocate(ino.0, offset, length, mode).await) });
    }
}

fn open_flags(keep_cache: bool) -> FopenFlags {
    if keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

impl<N: Namespace, C: ContentStore> FuseFs<N, C> {
    /// What a spawned task needs to build an entry reply.
    fn clone_shallow(&self) -> EntryReplier {
        EntryReplier { ttl: self.ttl }
    }
}

/// Builds entry replies from a task.
struct EntryReplier {
    ttl: Ttls,
}

impl EntryReplier {
    fn reply_entry(&self, reply: ReplyEntry, r: Result<crate::ports::NodeAttr, FsError>) {
        match r {
            Ok(a) => reply.entry_with_ttls(&self.ttl.attr, &self.ttl.entry, &file_attr(&a), GEN),
            Err(e) => reply.error(errno_of(&e)),
        }
    }
}
