//! One staged file: the local copy of an inode being written, shared by every handle on
//! that inode (they see each other's writes, like a local filesystem), and its commit
//! tracking.
//!
//! Concurrency: the byte-level state (size, base, materialized set) is behind one async
//! mutex per staged file, held for the duration of a write, truncate or the staged part of
//! a read (a base-chunk fetch for materialization happens under it, so writers on the same
//! inode wait for it; other inodes are not affected). Commit bookkeeping is in [`Tracker`]
//! (a plain mutex, never held across an await).
//!
//! Storage: a new file (no base) starts *inline*, its bytes in memory, while it stays
//! under [`super::INLINE_MAX`] and the area's inline budget allows: no local file is
//! created at all, and handing it over journals its bytes in one record. This makes the
//! common small-file case (untar, builds) cost no staging-directory metadata operations.
//! A file that grows past the limit, or has a base, is *spilled* to a sparse local file.
//!
//! Generations: every change bumps `dirty_gen` after its bytes are in the staged file. A
//! commit records the generation it saw once the file was complete; `fsync` at
//! generation `g` returns when a commit that saw `>= g` succeeded.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::StagingArea;
use super::journal::Record;
use crate::error::FsError;
use crate::layout::{extent_range, fetch_extent};
use crate::ports::{ContentStore, FsResult, Ino, Layout, Nanos};

/// Larger I/O than this goes to the blocking pool; smaller is done inline (a page-cache
/// copy of a few microseconds costs less than the hand-off).
const INLINE_IO: usize = 128 * 1024;

/// Byte-level state of a staged file.
#[derive(Debug)]
struct StageState<K> {
    size: u64,
    /// Inline content (no base, no file), or None once spilled.
    mem: Option<Vec<u8>>,
    /// Bytes of the area's inline budget this file holds.
    charged: u64,
    /// The local file (None while inline).
    file: Option<Arc<File>>,
    base: Option<Arc<Layout<K>>>,
    base_len: u64,
    materialized: Vec<bool>,
}

/// Commit bookkeeping of a staged file.
#[derive(Debug, Default)]
pub(crate) struct Track {
    /// Bumped by every change.
    pub(crate) dirty_gen: u64,
    /// Highest generation a successful commit saw.
    pub(crate) committed_gen: u64,
    /// Highest generation handed over for commit (close, fsync, release).
    pub(crate) handed_gen: u64,
    /// A commit of this file is running.
    pub(crate) inflight: bool,
    /// Number of failed commits so far.
    pub(crate) fail_seq: u64,
    /// The last failure: generation it covered and the error.
    pub(crate) last_fail: Option<(u64, FsError)>,
    /// Delay before the next retry after a failure.
    pub(crate) backoff: Duration,
}

impl Track {
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty_gen > self.committed_gen
    }
    /// Handed-over changes not committed yet.
    pub(crate) fn wants_commit(&self) -> bool {
        self.handed_gen > self.committed_gen
    }
}

/// Commit state plus a wake-up for waiters (fsync, shutdown).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    m: Mutex<Track>,
    pub(crate) notify: Notify,
}

impl Tracker {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Track) -> T) -> T {
        f(&mut self.m.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A staged file.
#[derive(Debug)]
pub(crate) struct Staged<K> {
    pub(crate) id: u64,
    pub(crate) ino: Ino,
    state: tokio::sync::Mutex<StageState<K>>,
    size: AtomicU64,
    pub(crate) track: Tracker,
    /// mtime/ctime of writes not yet told to the namespace (writes that did not come from
    /// the kernel's writeback cache, which sends its own times).
    pending_mtime: Mutex<Option<Nanos>>,
    /// Set once the staged copy is retired (committed and idle, or its inode deleted):
    /// its file is gone and every change must go to a new staged copy.
    retired: AtomicBool,
}

impl<K: Clone + Send + Sync + 'static> Staged<K> {
    /// Creates a staged copy of `ino` whose unwritten bytes come from `base` (None: the
    /// file starts empty). Without base chunks it starts inline.
    pub(crate) fn create(
        area: &StagingArea,
        ino: Ino,
        base: Option<Arc<Layout<K>>>,
    ) -> FsResult<Self> {
        let (version, size, extents) = match &base {
            Some(l) => (l.version, l.size, l.extents.len()),
            None => (None, 0, 0),
        };
        // A base without chunks (empty or all holes) needs no copy-on-write at all.
        let base = base.filter(|l| !l.extents.is_empty());
        let id = area.new_id();
        if base.is_none() && size <= super::INLINE_MAX && area.charge(size) {
            let mut s = Self::assemble(id, ino, None, None, 0, size, Vec::new());
            let st = s.state.get_mut();
            st.mem = Some(vec![0; size as usize]);
            st.charged = size;
            return Ok(s);
        }
        let base_len = if base.is_some() { size } else { 0 };
        let file = area.create_file(id, ino, version, base_len, extents as u64, size)?;
        Ok(Self::assemble(
            id,
            ino,
            Some(file),
            base,
            base_len,
            size,
            Vec::new(),
        ))
    }

    /// An inline staged file found by recovery (its bytes were journaled at handover).
    pub(crate) fn from_inline(area: &StagingArea, id: u64, ino: Ino, data: Vec<u8>) -> Self {
        let size = data.len() as u64;
        area.force_charge(size);
        let mut s = Self::assemble(id, ino, None, None, 0, size, Vec::new());
        let st = s.state.get_mut();
        st.mem = Some(data);
        st.charged = size;
        s
    }

    /// Reopens a staged file found by recovery.
    pub(crate) fn reopen(
        id: u64,
        ino: Ino,
        file: File,
        base: Option<Arc<Layout<K>>>,
        base_len: u64,
        materialized: &[u64],
    ) -> FsResult<Self> {
        let size = file
            .metadata()
            .map_err(|e| FsError::io("stat staged file", e))?
            .len();
        Ok(Self::assemble(
            id,
            ino,
            Some(file),
            base,
            base_len.min(size),
            size,
            materialized.to_vec(),
        ))
    }

    fn assemble(
        id: u64,
        ino: Ino,
        file: Option<File>,
        base: Option<Arc<Layout<K>>>,
        base_len: u64,
        size: u64,
        materialized: Vec<u64>,
    ) -> Self {
        let n = base.as_ref().map_or(0, |l| l.extents.len());
        let mut mat = vec![false; n];
        for i in materialized {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| mat.get_mut(i)) {
                *slot = true;
            }
        }
        Staged {
            id,
            ino,
            state: tokio::sync::Mutex::new(StageState {
                size,
                mem: None,
                charged: 0,
                file: file.map(Arc::new),
                base,
                base_len,
                materialized: mat,
            }),
            size: AtomicU64::new(size),
            track: Tracker::default(),
            pending_mtime: Mutex::new(None),
            retired: AtomicBool::new(false),
        }
    }

    /// Current size (lock-free, for getattr).
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn pending_mtime(&self) -> Option<Nanos> {
        *self.pending_mtime.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_pending_mtime(&self, t: Option<Nanos>) {
        *self.pending_mtime.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Takes the pending mtime if there is one.
    pub(crate) fn take_pending_mtime(&self) -> Option<Nanos> {
        self.pending_mtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// True once retired.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// With no write, truncate or read in progress, retires the copy if `decide` says so.
    /// Returns whether it is retired.
    pub(crate) async fn retire_if(
        &self,
        area: &StagingArea,
        decide: impl FnOnce() -> bool,
    ) -> bool {
        let mut st = self.state.lock().await;
        if self.is_retired() {
            return true;
        }
        if decide() {
            self.retired.store(true, Ordering::Release);
            area.uncharge(std::mem::take(&mut st.charged));
            st.mem = None;
            return true;
        }
        false
    }

    /// Moves inline content to a local file (it grew, or the inline budget is spent).
    fn spill(&self, st: &mut StageState<K>, area: &StagingArea) -> FsResult<()> {
        let Some(mem) = st.mem.take() else {
            return Ok(());
        };
        let file = area.create_file(self.id, self.ino, None, 0, 0, st.size)?;
        file.write_all_at(&mem, 0)
            .map_err(|e| FsError::io("spill staged file", e))?;
        if self.track.with(|t| t.handed_gen > 0) {
            // The inline record handed over earlier is superseded by the Begin record:
            // hand the file over again so recovery still commits what was closed.
            area.append(Record::Handover(self.id))?;
        }
        st.file = Some(Arc::new(file));
        area.uncharge(std::mem::take(&mut st.charged));
        Ok(())
    }

    /// Grows inline content to `len` bytes if the limits allow; false means "spill".
    fn grow_inline(st: &mut StageState<K>, area: &StagingArea, len: u64) -> bool {
        let Some(mem) = &mut st.mem else {
            return false;
        };
        if len > super::INLINE_MAX {
            return false;
        }
        if len > st.charged {
            if !area.charge(len - st.charged) {
                return false;
            }
            st.charged = len;
        }
        if (mem.len() as u64) < len {
            mem.resize(len as usize, 0);
        }
        true
    }

    /// The journal record that hands this file over: its bytes if inline, else a marker.
    pub(crate) async fn handover_record(&self) -> Record {
        let st = self.state.lock().await;
        match &st.mem {
            Some(mem) => Record::Inline {
                id: self.id,
                ino: self.ino,
                data: mem[..st.size as usize].to_vec(),
            },
            None => Record::Handover(self.id),
        }
    }

    fn file(st: &StageState<K>) -> FsResult<Arc<File>> {
        st.file
            .clone()
            .ok_or_else(|| FsError::backend("staged file missing"))
    }

    fn bump(&self) {
        self.track.with(|t| t.dirty_gen += 1);
    }

    /// Writes `data` at `offset`, materializing the base extents it partly covers first.
    pub(crate) async fn write<C: ContentStore<Chunk = K>>(
        &self,
        area: &StagingArea,
        content: &C,
        offset: u64,
        data: bytes::Bytes,
    ) -> FsResult<()> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::FileTooLarge)?;
        let mut st = self.state.lock().await;
        if self.is_retired() {
            return Err(FsError::Stale);
        }
        if st.mem.is_some() {
            let grown = end.max(st.size);
            if Self::grow_inline(&mut st, area, grown) {
                if let Some(mem) = &mut st.mem {
                    mem[offset as usize..end as usize].copy_from_slice(&data);
                }
                st.size = grown;
                self.size.store(grown, Ordering::Release);
                self.bump();
                return Ok(());
            }
            self.spill(&mut st, area)?;
        }
        let mut covered = Vec::new();
        if let Some(base) = st.base.clone() {
            let limit = end.min(st.base_len);
            if offset < limit {
                for i in extent_range(&base, offset, limit) {
                    if st.materialized[i] {
                        continue;
                    }
                    let e = &base.extents[i];
                    let e_end = (e.offset + e.len).min(st.base_len);
                    if offset <= e.offset && e_end <= end {
                        covered.push(i);
                    } else {
                        self.materialize(&mut st, area, content, i).await?;
                    }
                }
            }
        }
        let len = data.len();
        let file = Self::file(&st)?;
        blocking(len, move || file.write_all_at(&data, offset))
            .await
            .map_err(|e| FsError::io("write staged file", e))?;
        // Extents the write covered whole count as materialized only once the user's bytes
        // are there, so a crash in between refills them from the base.
        for i in covered {
            area.append(Record::Materialized {
                id: self.id,
                extent: i as u64,
            })?;
            st.materialized[i] = true;
        }
        if end > st.size {
            st.size = end;
            self.size.store(end, Ordering::Release);
        }
        self.bump();
        Ok(())
    }

    /// Copies base extent `i` into the staged file (the part below `base_len`).
    async fn materialize<C: ContentStore<Chunk = K>>(
        &self,
        st: &mut StageState<K>,
        area: &StagingArea,
        content: &C,
        i: usize,
    ) -> FsResult<()> {
        let Some(base) = st.base.clone() else {
            return Ok(());
        };
        let e = &base.extents[i];
        if e.offset < st.base_len {
            let bytes = fetch_extent(content, e).await?;
            let keep = (st.base_len - e.offset).min(e.len) as usize;
            let file = Self::file(st)?;
            let at = e.offset;
            blocking(keep, move || file.write_all_at(&bytes[..keep], at))
                .await
                .map_err(|e| FsError::io("copy base into staged file", e))?;
        }
        area.append(Record::Materialized {
            id: self.id,
            extent: i as u64,
        })?;
        st.materialized[i] = true;
        Ok(())
    }

    /// Sets the size; shrinking below the base part shortens it for good (extending again
    /// reads zeros, not old bytes).
    pub(crate) async fn truncate(&self, area: &StagingArea, size: u64) -> FsResult<()> {
        let mut st = self.state.lock().await;
        if self.is_retired() {
            return Err(FsError::Stale);
        }
        if st.mem.is_some() {
            if Self::grow_inline(&mut st, area, size) {
                if let Some(mem) = &mut st.mem {
                    mem.truncate(size as usize);
                }
                st.size = size;
                self.size.store(size, Ordering::Release);
                self.bump();
                return Ok(());
            }
            self.spill(&mut st, area)?;
        }
        if size < st.base_len {
            area.append(Record::BaseLen {
                id: self.id,
                len: size,
            })?;
            st.base_len = size;
        }
        if st.base_len == 0 {
            st.base = None;
            st.materialized.clear();
        }
        let file = Self::file(&st)?;
        blocking(0, move || file.set_len(size))
            .await
            .map_err(|e| FsError::io("truncate staged file", e))?;
        st.size = size;
        self.size.store(size, Ordering::Release);
        self.bump();
        Ok(())
    }

    /// Reads up to `len` bytes at `offset` (short at end of file).
    pub(crate) async fn read<C: ContentStore<Chunk = K>>(
        &self,
        content: &C,
        offset: u64,
        len: u32,
    ) -> FsResult<Vec<u8>> {
        let (buf, overlay) = {
            let st = self.state.lock().await;
            if offset >= st.size {
                return Ok(Vec::new());
            }
            let end = st.size.min(offset.saturating_add(u64::from(len)));
            let n = (end - offset) as usize;
            if let Some(mem) = &st.mem {
                return Ok(mem[offset as usize..end as usize].to_vec());
            }
            let file = Self::file(&st)?;
            let buf = blocking(n, move || {
                let mut buf = vec![0u8; n];
                read_into(&file, &mut buf, offset)?;
                Ok(buf)
            })
            .await
            .map_err(|e| FsError::io("read staged file", e))?;
            let mut overlay = Vec::new();
            if let Some(base) = &st.base {
                let limit = end.min(st.base_len);
                if offset < limit {
                    for i in extent_range(base, offset, limit) {
                        if !st.materialized[i] {
                            overlay.push((base.extents[i].clone(), st.base_len));
                        }
                    }
                }
            }
            (buf, overlay)
        };
        let mut buf = buf;
        let end = offset + buf.len() as u64;
        for (e, base_len) in overlay {
            let bytes = fetch_extent(content, &e).await?;
            let from = e.offset.max(offset);
            let to = (e.offset + e.len).min(end).min(base_len);
            if from < to {
                let src = &bytes[(from - e.offset) as usize..(to - e.offset) as usize];
                buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
            }
        }
        Ok(buf)
    }

    /// Materializes every remaining base extent (releasing the lock between extents so
    /// writers progress), then returns the generation the now complete file holds, and
    /// for an inline file a snapshot of its bytes.
    pub(crate) async fn complete<C: ContentStore<Chunk = K>>(
        &self,
        area: &StagingArea,
        content: &C,
    ) -> FsResult<(u64, Option<bytes::Bytes>)> {
        loop {
            let mut st = self.state.lock().await;
            let next = st.materialized.iter().position(|m| !m);
            match (next, st.base.is_some()) {
                (Some(i), true) => self.materialize(&mut st, area, content, i).await?,
                _ => {
                    st.base = None;
                    st.materialized.clear();
                    let snapshot = st
                        .mem
                        .as_ref()
                        .map(|m| bytes::Bytes::copy_from_slice(&m[..st.size as usize]));
                    return Ok((self.track.with(|t| t.dirty_gen), snapshot));
                }
            }
        }
    }
}

/// Fills `buf` from `file` at `offset`; bytes past the end stay zero.
fn read_into(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs blocking file I/O: inline when small, on the blocking pool when large.
async fn blocking<T: Send + 'static>(
    len: usize,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    if len <= INLINE_IO {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("blocking task: {e}")))?
}
