//! [`ContentStore`] for [`MemoryBackend`]: layouts from the state, fetches from the chunk
//! table, commits that read the staged file (skipping holes) into fixed-size chunks.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;

use super::{MemChunk, MemoryBackend, delay};
use crate::error::FsError;
use crate::ports::{
    CommitRequest, CommitSource, Committed, ContentStore, Extent, FsResult, Ino, Layout, NodeKind,
    VersionId,
};

#[async_trait]
impl ContentStore for MemoryBackend {
    type Chunk = MemChunk;

    async fn layout(&self, ino: Ino) -> FsResult<Arc<Layout<MemChunk>>> {
        self.meta_delay().await;
        let st = self.lock();
        let n = st.node(ino)?;
        if n.attr.kind != NodeKind::File {
            return Err(FsError::InvalidArgument("not a file"));
        }
        Ok(n.layout.clone())
    }

    async fn fetch(&self, chunk: &MemChunk) -> FsResult<Bytes> {
        delay(&self.inner.faults.fetch_latency_us).await;
        self.inner.counters.fetches.fetch_add(1, Ordering::Relaxed);
        if self.inner.faults.fail_fetches.load(Ordering::SeqCst) {
            return Err(FsError::backend("injected fetch failure"));
        }
        let st = self.lock();
        st.chunks
            .get(chunk)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| FsError::backend(format!("chunk {chunk} missing")))
    }

    async fn commit(&self, batch: &[CommitRequest]) -> Vec<FsResult<Committed>> {
        let c = &self.inner.counters;
        c.commit_batches.fetch_add(1, Ordering::Relaxed);
        c.commit_requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        c.max_batch.fetch_max(batch.len() as u64, Ordering::Relaxed);
        delay(&self.inner.faults.commit_latency_us).await;
        let mut out = Vec::with_capacity(batch.len());
        for req in batch {
            out.push(self.commit_one(req).await);
        }
        out
    }
}

impl MemoryBackend {
    fn injected_failure(&self) -> bool {
        let f = &self.inner.faults;
        if f.fail_all_commits.load(Ordering::SeqCst) {
            return true;
        }
        f.fail_next_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    async fn commit_one(&self, req: &CommitRequest) -> FsResult<Committed> {
        if self.injected_failure() {
            self.inner
                .counters
                .injected_commit_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(FsError::backend("injected commit failure"));
        }
        let chunk_size = self.inner.chunk_size;
        let (size, pieces) = match &req.source {
            CommitSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_chunks(&path, chunk_size))
                    .await
                    .map_err(|e| FsError::backend(format!("commit task: {e}")))?
                    .map_err(|e| FsError::io("read staged file", e))?
            }
            CommitSource::Bytes(b) => (b.len() as u64, split_chunks(b, chunk_size)),
        };
        let mut st = self.lock();
        let node = st.node(req.ino)?;
        if node.attr.kind != NodeKind::File {
            return Err(FsError::InvalidArgument("not a file"));
        }
        let old = node.layout.clone();
        let mut extents = Vec::with_capacity(pieces.len());
        for (offset, bytes) in pieces {
            let id = st.next_chunk;
            st.next_chunk += 1;
            extents.push(Extent {
                offset,
                len: bytes.len() as u64,
                chunk: id,
            });
            st.chunks.insert(id, (bytes, 1));
        }
        let version = VersionId(st.next_version);
        st.next_version += 1;
        let layout = Arc::new(Layout {
            version: Some(version),
            size,
            extents,
        });
        st.release_layout(&old);
        if let Some(n) = st.nodes.get_mut(&req.ino) {
            n.layout = layout;
            n.attr.size = size;
        }
        self.persist(&st)?;
        Ok(Committed { version, size })
    }
}

/// The non-zero `chunk_size` pieces of in-memory content.
fn split_chunks(b: &Bytes, chunk_size: usize) -> Vec<(u64, Bytes)> {
    (0..b.len())
        .step_by(chunk_size)
        .map(|at| (at as u64, b.slice(at..(at + chunk_size).min(b.len()))))
        .filter(|(_, piece)| piece.iter().any(|&x| x != 0))
        .collect()
}

/// Reads the non-hole, non-zero `chunk_size` pieces of a file. Returns the size read and
/// the pieces with their offsets.
fn read_chunks(path: &Path, chunk_size: usize) -> io::Result<(u64, Vec<(u64, Bytes)>)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let cs = chunk_size as u64;
    let mut pieces = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let Some(data) = seek(&file, pos, libc::SEEK_DATA)? else {
            break;
        };
        let hole = seek(&file, data, libc::SEEK_HOLE)?
            .unwrap_or(size)
            .min(size);
        let mut cell = data / cs * cs;
        while cell < hole {
            let end = (cell + cs).min(size);
            let mut buf = vec![0u8; (end - cell) as usize];
            let n = read_full(&file, &mut buf, cell)?;
            buf.truncate(n);
            if buf.iter().any(|&b| b != 0) {
                pieces.push((cell, Bytes::from(buf)));
            }
            cell = end;
        }
        pos = cell.max(hole);
    }
    Ok((size, pieces))
}

fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `lseek` with SEEK_DATA/SEEK_HOLE; `None` when there is no more data (ENXIO).
fn seek(file: &File, from: u64, whence: i32) -> io::Result<Option<u64>> {
    let off = libc::off_t::try_from(from).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: lseek on a valid open descriptor; no memory is passed.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}
