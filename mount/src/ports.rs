//! The ports: what the filesystem needs from storage, in the mount's own vocabulary.
//!
//! The mount never depends on the engine. It asks two things of whoever stores the data:
//!
//! * [`Namespace`]: the catalog of nodes (files, directories, symlinks) and the entries
//!   that name them. Inode numbers are `u64`, the root is [`ROOT_INO`]. Every method is one
//!   atomic operation on the catalog; the implementation enforces the POSIX rules listed on
//!   each method (the mount relies on them and does not re-check them).
//! * [`ContentStore`]: a file's content is an immutable *version*, an ordered list of chunk
//!   extents ([`Layout`]). Reading fetches whole chunks; writing hands the store a complete
//!   local file (the mount's staged copy) which it turns into a new version, durable when
//!   the call returns.
//!
//! Invariants the mount relies on:
//! * This process is the only writer of the namespace while it is mounted. Nothing changes
//!   under the mount unless it asked for it (or the owner tells the kernel through
//!   `MountHandle::invalidate_*`).
//! * Every method may be called concurrently from many tasks.
//! * Errors are [`FsError`] values; their errno is decided in exactly one place
//!   (`errno.rs`). Implementations pick the variant that names what went wrong.
//! * Names are raw bytes, never empty, never `.` or `..`, never containing `/` or NUL:
//!   the kernel guarantees it and the mount checks it before calling a port.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::FsError;

/// An inode number. Stable for the life of the node; never reused while the mount runs.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT_INO: Ino = 1;

/// Result of every port and core operation.
pub type FsResult<T> = Result<T, FsError>;

/// Nanoseconds since the Unix epoch (negative before 1970): the catalog's time unit.
pub type Nanos = i64;

/// What a node is. Only these three kinds exist in the mesh (no devices, fifos, sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A regular file, with content versions.
    File,
    /// A directory.
    Directory,
    /// A symbolic link; its target lives in the catalog.
    Symlink,
}

/// The attributes of a node, as the catalog holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAttr {
    /// Inode number.
    pub ino: Ino,
    /// Kind of node.
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`); no type bits.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes: the size of the current version for files, the target length for
    /// symlinks, anything for directories (the mount reports it as given).
    pub size: u64,
    /// Number of hard links (directories: 2 + number of subdirectories).
    pub nlink: u32,
    /// Last access, as recorded (the mount does not update atime on reads: `noatime`).
    pub atime: Nanos,
    /// Last content modification.
    pub mtime: Nanos,
    /// Last status change.
    pub ctime: Nanos,
}

/// What a [`Namespace::create`] call makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewNodeKind {
    /// An empty regular file (no version yet: its layout is empty, size 0).
    File,
    /// An empty directory.
    Directory,
    /// A symlink pointing at these bytes (not interpreted, may dangle).
    Symlink(Vec<u8>),
}

/// A node to create: kind, permission bits (umask already applied) and owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    /// Kind and, for symlinks, target.
    pub kind: NewNodeKind,
    /// Permission bits (`& 0o7777`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A metadata change. `None` leaves the field unchanged. Times are explicit values: the
/// mount resolves "now" before calling. Size is not here: content is the content store's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttrChange {
    /// New permission bits (`& 0o7777`).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<Nanos>,
    /// New modification time.
    pub mtime: Option<Nanos>,
    /// New status-change time. When `None` and anything else changed, the implementation
    /// sets ctime to its own "now".
    pub ctime: Option<Nanos>,
}

impl AttrChange {
    /// True when the change touches nothing.
    pub fn is_empty(&self) -> bool {
        *self == AttrChange::default()
    }
}

/// One directory entry as [`Namespace::readdir`] returns it: name, cookie and the child's
/// attributes (so `readdirplus` needs no extra lookups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name.
    pub name: Vec<u8>,
    /// Position of the entry: strictly increasing within one listing, stable while the
    /// entry exists, at least 1 and below `u64::MAX - 2`. Resuming with `after = cookie`
    /// yields the entries that follow it, even if entries before it were removed.
    pub cookie: u64,
    /// The child's attributes.
    pub attr: NodeAttr,
}

/// How [`Namespace::rename`] treats an existing destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace the destination if compatible (POSIX `rename`).
    Replace,
    /// Fail with [`FsError::AlreadyExists`] if the destination exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and destination atomically; both must exist (`RENAME_EXCHANGE`).
    Exchange,
}

/// A node that lost a name through unlink, rmdir or a replacing rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlinked {
    /// The node that lost the name.
    pub ino: Ino,
    /// Links left. Zero means the node has no name any more: it was deleted, or kept as an
    /// orphan because [`Liveness::is_open`] said the mount still uses it.
    pub nlink: u32,
}

/// Outcome of a rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renamed {
    /// The node that moved.
    pub moved: Ino,
    /// The destination's previous node, if one was replaced (never for `Exchange`).
    pub replaced: Option<Unlinked>,
    /// For `Exchange`: the node that moved the other way.
    pub exchanged: Option<Ino>,
}

/// How [`Namespace::set_xattr`] treats an existing attribute (`XATTR_CREATE`/`REPLACE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrMode {
    /// Create or replace.
    Upsert,
    /// Fail with [`FsError::AlreadyExists`] if it exists.
    Create,
    /// Fail with [`FsError::NoAttribute`] if it does not exist.
    Replace,
}

/// Capacity as `statfs` reports it. Bytes, not blocks: the mount converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Total capacity the user can store (after redundancy overhead).
    pub total_bytes: u64,
    /// Free capacity.
    pub free_bytes: u64,
    /// Free capacity available to this user (quota).
    pub avail_bytes: u64,
    /// Total inodes (an upper bound; `u64::MAX / 2` if unlimited).
    pub total_inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
}

/// Asked by the namespace, inside the operation that removes a node's last name: does the
/// mount still use this node (open handles)? If so the node becomes an orphan, kept until
/// [`Namespace::reclaim`]; if not, it is deleted with its content at once.
pub trait Liveness: Send + Sync {
    /// True while the mount holds the node open. Must be cheap and must not block.
    fn is_open(&self, ino: Ino) -> bool;
}

/// The catalog. See the module docs for the invariants every method honours.
#[async_trait]
pub trait Namespace: Send + Sync + 'static {
    /// The child named `name` in directory `parent`.
    /// Errors: `NotFound` (no such entry or no such parent), `NotADirectory` (parent is not
    /// a directory).
    async fn lookup(&self, parent: Ino, name: &[u8]) -> FsResult<NodeAttr>;

    /// The attributes of `ino`. Orphans (nlink 0, still open) are found too.
    /// Errors: `NotFound`.
    async fn getattr(&self, ino: Ino) -> FsResult<NodeAttr>;

    /// Applies `change` atomically and returns the new attributes. Does not check
    /// permissions (the kernel does, `default_permissions`).
    /// Errors: `NotFound`.
    async fn setattr(&self, ino: Ino, change: &AttrChange) -> FsResult<NodeAttr>;

    /// Up to `limit` entries of directory `dir` whose cookie is greater than `after`
    /// (0 = from the start), in cookie order. No `.` or `..`. An empty result means the
    /// end. Errors: `NotFound`, `NotADirectory`.
    async fn readdir(&self, dir: Ino, after: u64, limit: usize) -> FsResult<Vec<DirEntry>>;

    /// Creates `node` as `name` in `parent`, returning its attributes (a fresh inode number;
    /// nlink 1, or 2 for a directory; all times "now"; the parent's mtime and ctime "now",
    /// and its nlink + 1 for a directory).
    /// Errors: `AlreadyExists` (any entry of that name), `NotFound`, `NotADirectory`,
    /// `NameTooLong` (over 255 bytes), `NoSpace`.
    async fn create(&self, parent: Ino, name: &[u8], node: &NewNode) -> FsResult<NodeAttr>;

    /// Adds the name `new_name` in `new_parent` for the existing non-directory `ino`;
    /// nlink + 1, ctime "now". Returns the node's new attributes.
    /// Errors: `NotFound` (`ino` or `new_parent`), `AlreadyExists`, `NotPermitted` (`ino` is
    /// a directory, or an orphan), `NotADirectory`, `NameTooLong`, `TooManyLinks`.
    async fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> FsResult<NodeAttr>;

    /// Removes the entry `name` (a file or symlink) from `parent`. If it was the last link,
    /// the node is deleted with its content, unless `live.is_open(ino)`: then it becomes an
    /// orphan until [`reclaim`](Self::reclaim).
    /// Errors: `NotFound`, `IsADirectory` (the entry is a directory), `NotADirectory`.
    async fn unlink(&self, parent: Ino, name: &[u8], live: &dyn Liveness) -> FsResult<Unlinked>;

    /// Removes the empty directory `name` from `parent` (parent nlink - 1).
    /// Errors: `NotFound`, `NotADirectory` (the entry or the parent is not a directory),
    /// `NotEmpty`, `Busy` (the root).
    async fn rmdir(&self, parent: Ino, name: &[u8]) -> FsResult<Unlinked>;

    /// Moves `name` in `parent` to `new_name` in `new_parent`, atomically.
    /// Rules (POSIX `rename(2)`, `renameat2(2)`):
    /// * same node under both names (hard links, or the same entry): success, no change;
    /// * `Replace`: a file/symlink may replace a file/symlink; a directory may replace an
    ///   empty directory (`NotEmpty` otherwise); a directory over a non-directory is
    ///   `NotADirectory`, a non-directory over a directory is `IsADirectory`. A replaced
    ///   node that lost its last link is deleted or orphaned as in [`unlink`](Self::unlink);
    /// * `NoReplace`: `AlreadyExists` if the destination exists;
    /// * `Exchange`: both must exist (`NotFound`), kinds may differ;
    /// * moving a directory into itself or one of its descendants: `InvalidArgument`;
    /// * updates ctime of the moved node(s) and mtime/ctime of both parents, and the
    ///   parents' nlink when a directory changes parent.
    ///
    /// Other errors: `NotFound`, `NotADirectory` (a parent), `NameTooLong`.
    async fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
        live: &dyn Liveness,
    ) -> FsResult<Renamed>;

    /// The target of symlink `ino`. Errors: `NotFound`, `InvalidArgument` (not a symlink).
    async fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>>;

    /// The mount no longer uses orphan `ino`: delete it and its content. A no-op (Ok) if
    /// the node has links again or is already gone.
    async fn reclaim(&self, ino: Ino) -> FsResult<()>;

    /// Deletes every orphan. Called once at mount time, before serving: no handle survives
    /// a restart, so every orphan left by a crash is garbage.
    async fn reclaim_all_orphans(&self) -> FsResult<()>;

    /// The value of extended attribute `name`. Errors: `NotFound`, `NoAttribute`.
    async fn get_xattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>>;

    /// Sets extended attribute `name` (ctime "now").
    /// Errors: `NotFound`, `AlreadyExists`/`NoAttribute` per `mode`, `NoSpace`.
    async fn set_xattr(&self, ino: Ino, name: &[u8], value: &[u8], mode: XattrMode)
    -> FsResult<()>;

    /// The names of all extended attributes of `ino`, in a stable order.
    async fn list_xattr(&self, ino: Ino) -> FsResult<Vec<Vec<u8>>>;

    /// Removes extended attribute `name` (ctime "now"). Errors: `NotFound`, `NoAttribute`.
    async fn remove_xattr(&self, ino: Ino, name: &[u8]) -> FsResult<()>;

    /// Real capacity of the store for this user.
    async fn statfs(&self) -> FsResult<FsStats>;

    /// Makes every metadata operation that has returned so far durable (`fsyncdir`,
    /// `syncfs`). A no-op where each operation is already durable on return.
    async fn sync(&self) -> FsResult<()>;
}

/// A version's identity. Opaque to the mount beyond equality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(pub u64);

/// One chunk of a version: bytes `[offset, offset + len)` of the file are the chunk's
/// plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extent<C> {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes (> 0); `fetch` returns exactly this many bytes.
    pub len: u64,
    /// The store's reference to the chunk.
    pub chunk: C,
}

/// A file's current content: which version, how long, and where each byte lives. Bytes
/// not covered by an extent (holes) read as zeros.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout<C> {
    /// The version, or `None` for a file that never had content (size 0).
    pub version: Option<VersionId>,
    /// Size in bytes.
    pub size: u64,
    /// Extents sorted by offset, not overlapping, ending at or before `size`. The mount
    /// validates this and answers EIO to readers of a malformed layout.
    pub extents: Vec<Extent<C>>,
}

/// Where the new content of a commit is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitSource {
    /// A local file holding the complete new content (holes are zeros; sparse files stay
    /// cheap if the store uses `SEEK_DATA`/`SEEK_HOLE`). The mount may keep writing to
    /// this file while the commit runs: read it front to back once and commit exactly the
    /// bytes read (its length is where reading stopped); the mount commits again
    /// afterwards if it changed.
    File(std::path::PathBuf),
    /// The complete new content of a small file (at most 128 KiB), already in memory: the
    /// mount keeps small new files inline, so they never touch the staging directory.
    Bytes(Bytes),
}

/// A staged file to commit as the new content of `ino`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRequest {
    /// The file whose content this becomes.
    pub ino: Ino,
    /// The new content.
    pub source: CommitSource,
}

/// A committed version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The new current version of the file.
    pub version: VersionId,
    /// Its size: the number of bytes read from the staged file.
    pub size: u64,
}

/// File content: layouts, chunk bytes, and commits of staged files.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// The store's reference to one chunk, cloned into every extent that uses it.
    type Chunk: Clone + Send + Sync + std::fmt::Debug + 'static;

    /// The current content of file `ino`. Errors: `NotFound`; `InvalidArgument` if `ino`
    /// is not a file.
    async fn layout(&self, ino: Ino) -> FsResult<Arc<Layout<Self::Chunk>>>;

    /// The verified plaintext of one chunk: exactly the extent's length. May take
    /// milliseconds (decrypt, erasure decode, network); called concurrently by the
    /// prefetcher. Errors: `Io`/`Backend` when the chunk cannot be had.
    async fn fetch(&self, chunk: &Self::Chunk) -> FsResult<Bytes>;

    /// Commits each staged file as the new current version of its inode (setting the
    /// node's size to the committed size; mtime/ctime are the namespace's business and are
    /// NOT changed). Durable on return: the version, and every namespace operation that
    /// returned before this call started. Returns one result per request, in order; one
    /// request failing must not fail the others. Batches are many small files (cheap to
    /// commit in one transaction) or one large file. `NotFound` for a file deleted
    /// meanwhile is expected and harmless.
    async fn commit(&self, batch: &[CommitRequest]) -> Vec<FsResult<Committed>>;
}
