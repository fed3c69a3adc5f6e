//! Core tests against the in-memory backend, with latency and failure injection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::memory::MemoryBackend;
use crate::ports::{ContentStore, ROOT_INO};

type MemFs = Fs<MemoryBackend, MemoryBackend>;

struct H {
    fs: MemFs,
    mem: MemoryBackend,
    dir: tempfile::TempDir,
}

fn fast_cfg() -> FsConfig {
    FsConfig {
        batch_delay: Duration::from_millis(5),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(50),
        ..FsConfig::default()
    }
}

async fn harness_with(mem: MemoryBackend, cfg: FsConfig) -> H {
    let dir = tempfile::tempdir().unwrap();
    let (fs, _) = Fs::start(
        Arc::new(mem.clone()),
        Arc::new(mem.clone()),
        dir.path(),
        cfg,
    )
    .await
    .unwrap();
    H { fs, mem, dir }
}

async fn harness() -> H {
    harness_with(MemoryBackend::with_chunk_size(64 * 1024), fast_cfg()).await
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl H {
    async fn create(&self, name: &str) -> (u64, u64) {
        let (a, o) = self
            .fs
            .create(
                ROOT_INO,
                name.as_bytes(),
                0o644,
                0o022,
                libc::O_RDWR,
                Caller::ROOT,
            )
            .await
            .unwrap();
        (a.ino, o.fh)
    }

    async fn write(&self, fh: u64, off: u64, data: &[u8]) {
        let n = self
            .fs
            .write(fh, off, Bytes::copy_from_slice(data), false)
            .await
            .unwrap();
        assert_eq!(n as usize, data.len());
    }

    async fn read_all(&self, fh: u64, size: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let chunk = self
                .fs
                .read(fh, out.len() as u64, 128 * 1024)
                .await
                .unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        out
    }

    async fn close(&self, fh: u64) {
        self.fs.flush(fh).await.unwrap();
        self.fs.release(fh).await.unwrap();
    }

    /// The committed content of `ino` in the backend.
    async fn committed(&self, ino: u64) -> Vec<u8> {
        let layout = self.mem.layout(ino).await.unwrap();
        let mut out = vec![0u8; layout.size as usize];
        for e in &layout.extents {
            let b = self.mem.fetch(&e.chunk).await.unwrap();
            out[e.offset as usize..(e.offset + e.len) as usize].copy_from_slice(&b);
        }
        out
    }

    fn staged_files(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".data")
            })
            .count()
    }
}

#[tokio::test]
async fn written_file_is_committed_after_close_and_staged_copy_retired() {
    let h = harness().await;
    let (ino, fh) = h.create("a").await;
    let data = pattern(300_000, 1);
    h.write(fh, 0, &data).await;
    assert_eq!(
        h.fs.getattr(ino).await.unwrap().size,
        300_000,
        "staged size overlays"
    );
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    assert_eq!(h.committed(ino).await, data);
    assert_eq!(h.mem.node_attr(ino).unwrap().size, 300_000);
    assert_eq!(
        h.staged_files(),
        0,
        "a clean, closed file keeps no staged copy"
    );
    assert_eq!(h.fs.pending_commits(), 0);
}

#[tokio::test]
async fn small_files_stay_inline_and_spill_to_disk_when_they_grow() {
    let h = harness().await;
    let (ino, fh) = h.create("grows").await;
    let first = pattern(100_000, 4);
    h.write(fh, 0, &first).await;
    assert_eq!(h.staged_files(), 0, "a small new file is kept in memory");
    let second = pattern(200_000, 5);
    h.write(fh, 100_000, &second).await;
    assert_eq!(
        h.staged_files(),
        1,
        "past the inline limit it spills to a local file"
    );
    let mut all = first.clone();
    all.extend_from_slice(&second);
    assert_eq!(h.read_all(fh, all.len() as u64).await, all);
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    assert_eq!(h.committed(ino).await, all);
    assert_eq!(h.staged_files(), 0);
}

#[tokio::test]
async fn handles_share_one_staged_copy() {
    let h = harness().await;
    let (ino, fh1) = h.create("shared").await;
    let fh2 = h.fs.open(ino, libc::O_RDWR).await.unwrap().fh;
    h.write(fh1, 0, b"hello ").await;
    h.write(fh2, 6, b"world").await;
    assert_eq!(h.fs.read(fh1, 0, 100).await.unwrap(), b"hello world");
    assert_eq!(h.fs.read(fh2, 0, 100).await.unwrap(), b"hello world");
    h.close(fh1).await;
    h.close(fh2).await;
    h.fs.flush_all().await.unwrap();
    assert_eq!(h.committed(ino).await, b"hello world");
}

#[tokio::test]
async fn commit_failure_is_eio_on_fsync_and_data_is_kept_for_retry() {
    let h = harness().await;
    let (ino, fh) = h.create("f").await;
    h.write(fh, 0, b"precious").await;
    h.mem.fail_all_commits(true);
    let err = h.fs.fsync(ino).await.unwrap_err();
    assert_eq!(crate::errno::errno(&err), libc::EIO);
    assert_eq!(
        h.fs.read(fh, 0, 100).await.unwrap(),
        b"precious",
        "still readable"
    );
    assert_eq!(h.fs.pending_commits(), 1, "staged data kept");
    h.mem.fail_all_commits(false);
    h.fs.fsync(ino).await.unwrap();
    assert_eq!(h.committed(ino).await, b"precious");
    h.close(fh).await;
}

#[tokio::test]
async fn background_retry_commits_after_transient_failures() {
    let h = harness().await;
    let (ino, fh) = h.create("f").await;
    h.write(fh, 0, b"eventually").await;
    h.mem.fail_next_commits(2);
    h.close(fh).await;
    // No fsync: the committer must retry by itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.fs.pending_commits() > 0 {
        assert!(Instant::now() < deadline, "retries never succeeded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.committed(ino).await, b"eventually");
    assert!(
        h.mem
            .counters()
            .injected_commit_failures
            .load(Ordering::SeqCst)
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fetches_do_not_block_other_handles_or_metadata() {
    let h = harness().await;
    let (a, fa) = h.create("a").await;
    let (b, fb) = h.create("b").await;
    h.write(fa, 0, &pattern(64 * 1024, 1)).await;
    h.write(fb, 0, &pattern(64 * 1024, 2)).await;
    h.close(fa).await;
    h.close(fb).await;
    h.fs.flush_all().await.unwrap();
    h.mem.set_fetch_latency(Duration::from_millis(400));
    let ra = h.fs.open(a, libc::O_RDONLY).await.unwrap().fh;
    let rb = h.fs.open(b, libc::O_RDONLY).await.unwrap().fh;
    let t0 = Instant::now();
    let slow = {
        let fs = h.fs.clone();
        tokio::spawn(async move { fs.read(ra, 0, 4096).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t_meta = Instant::now();
    h.fs.getattr(a).await.unwrap();
    assert!(
        t_meta.elapsed() < Duration::from_millis(100),
        "metadata waited for a fetch"
    );
    let (x, y) = tokio::join!(slow, h.fs.read(rb, 0, 4096));
    assert_eq!(x.unwrap(), pattern(4096, 1));
    assert_eq!(y.unwrap(), pattern(4096, 2));
    assert!(
        t0.elapsed() < Duration::from_millis(750),
        "reads were serialised: {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn copy_on_write_fetches_only_the_touched_chunk() {
    let h = harness().await;
    let (ino, fh) = h.create("cow").await;
    let data = pattern(64 * 1024 * 4, 7);
    h.write(fh, 0, &data).await;
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    let fetched0 = h.mem.counters().fetches.load(Ordering::SeqCst);
    let fh = h.fs.open(ino, libc::O_RDWR).await.unwrap().fh;
    h.write(fh, 64 * 1024 + 10, b"XYZ").await;
    assert_eq!(
        h.mem.counters().fetches.load(Ordering::SeqCst) - fetched0,
        1,
        "only the chunk under the write is copied"
    );
    let mut expect = data.clone();
    expect[64 * 1024 + 10..64 * 1024 + 13].copy_from_slice(b"XYZ");
    assert_eq!(
        h.read_all(fh, expect.len() as u64).await,
        expect,
        "unmaterialized chunks read from the base"
    );
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    assert_eq!(h.committed(ino).await, expect);
}

#[tokio::test]
async fn truncate_down_then_up_reads_zeros_not_old_bytes() {
    let h = harness().await;
    let (ino, fh) = h.create("t").await;
    h.write(fh, 0, &pattern(200_000, 3)).await;
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    h.fs.setattr(
        ino,
        SetAttr {
            size: Some(1000),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    h.fs.setattr(
        ino,
        SetAttr {
            size: Some(150_000),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    let fh = h.fs.open(ino, libc::O_RDONLY).await.unwrap().fh;
    let got = h.read_all(fh, 150_000).await;
    assert_eq!(&got[..1000], &pattern(200_000, 3)[..1000]);
    assert!(
        got[1000..].iter().all(|&b| b == 0),
        "extended region must be zeros"
    );
    h.fs.release(fh).await.unwrap();
    h.fs.flush_all().await.unwrap();
    let c = h.committed(ino).await;
    assert_eq!(c.len(), 150_000);
    assert!(c[1000..].iter().all(|&b| b == 0));
}

#[tokio::test]
async fn sparse_file_beyond_4gib() {
    let h = harness().await;
    let (ino, fh) = h.create("sparse").await;
    let off = 5u64 << 30;
    h.write(fh, off, b"far away").await;
    assert_eq!(h.fs.getattr(ino).await.unwrap().size, off + 8);
    assert_eq!(h.fs.read(fh, off, 8).await.unwrap(), b"far away");
    assert!(
        h.fs.read(fh, 1 << 32, 4096)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    let layout = h.mem.layout(ino).await.unwrap();
    assert_eq!(layout.size, off + 8);
    assert_eq!(layout.extents.len(), 1, "holes are not stored");
    let fh = h.fs.open(ino, libc::O_RDONLY).await.unwrap().fh;
    assert_eq!(
        h.fs.read(fh, off - 4, 12).await.unwrap(),
        b"\0\0\0\0far away"
    );
}

#[tokio::test]
async fn unlinked_open_file_is_an_orphan_until_release() {
    let h = harness().await;
    let (ino, fh) = h.create("gone").await;
    h.write(fh, 0, b"still here").await;
    h.fs.unlink(ROOT_INO, b"gone").await.unwrap();
    assert!(matches!(
        h.fs.lookup(ROOT_INO, b"gone").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(h.mem.orphan_count(), 1);
    assert_eq!(h.fs.read(fh, 0, 100).await.unwrap(), b"still here");
    h.close(fh).await;
    assert_eq!(h.mem.orphan_count(), 0, "reclaimed at last release");
    h.fs.flush_all().await.unwrap();
    assert_eq!(
        h.staged_files(),
        0,
        "an orphan's staged data is dropped, not committed"
    );
    assert!(h.mem.node_attr(ino).is_none());
}

#[tokio::test]
async fn unlink_of_closed_file_with_pending_commit_drops_its_staged_copy() {
    let h = harness().await;
    h.mem.set_commit_latency(Duration::from_millis(50));
    let (_, fh) = h.create("tmp").await;
    h.write(fh, 0, b"scratch").await;
    h.close(fh).await;
    h.fs.unlink(ROOT_INO, b"tmp").await.unwrap();
    h.fs.flush_all().await.unwrap();
    assert_eq!(h.staged_files(), 0);
    assert_eq!(h.mem.node_count(), 1, "only the root is left");
}

#[tokio::test]
async fn many_small_files_are_committed_in_batches() {
    let h = harness_with(
        MemoryBackend::new(),
        FsConfig {
            batch_delay: Duration::from_millis(50),
            ..fast_cfg()
        },
    )
    .await;
    for i in 0..60 {
        let (_, fh) = h.create(&format!("f{i}")).await;
        h.write(fh, 0, format!("content {i}").as_bytes()).await;
        h.close(fh).await;
    }
    h.fs.flush_all().await.unwrap();
    let c = h.mem.counters();
    assert_eq!(c.commit_requests.load(Ordering::SeqCst), 60);
    assert!(
        c.commit_batches.load(Ordering::SeqCst) <= 10,
        "60 small files took {} commit calls",
        c.commit_batches.load(Ordering::SeqCst)
    );
    assert!(c.max_batch.load(Ordering::SeqCst) >= 6);
}

#[tokio::test]
async fn repeated_closes_coalesce() {
    let h = harness_with(
        MemoryBackend::new(),
        FsConfig {
            batch_delay: Duration::from_millis(100),
            ..fast_cfg()
        },
    )
    .await;
    let (ino, fh) = h.create("log").await;
    for i in 0..20u64 {
        h.write(fh, i * 4, b"abcd").await;
        h.fs.flush(fh).await.unwrap();
    }
    h.fs.release(fh).await.unwrap();
    h.fs.flush_all().await.unwrap();
    assert!(h.mem.counters().commit_requests.load(Ordering::SeqCst) <= 3);
    assert_eq!(h.committed(ino).await, b"abcd".repeat(20));
}

#[tokio::test]
async fn fsync_waits_for_durability() {
    let h = harness().await;
    h.mem.set_commit_latency(Duration::from_millis(100));
    let (ino, fh) = h.create("durable").await;
    h.write(fh, 0, b"now").await;
    h.fs.fsync(ino).await.unwrap();
    // No flush_all: fsync's return alone must mean it is in the backend.
    assert_eq!(h.committed(ino).await, b"now");
    h.close(fh).await;
}

#[tokio::test]
async fn keep_cache_follows_the_version() {
    let h = harness().await;
    let (ino, fh) = h.create("k").await;
    h.write(fh, 0, b"v1").await;
    h.close(fh).await;
    h.fs.flush_all().await.unwrap();
    let o1 = h.fs.open(ino, libc::O_RDONLY).await.unwrap();
    h.fs.release(o1.fh).await.unwrap();
    assert!(
        o1.keep_cache,
        "the kernel wrote v1 itself: its cache is current"
    );
    h.fs.invalidate_content(ino);
    let o2 = h.fs.open(ino, libc::O_RDONLY).await.unwrap();
    assert!(!o2.keep_cache, "changed outside the mount: cache must go");
    h.fs.release(o2.fh).await.unwrap();
    let o3 = h.fs.open(ino, libc::O_RDONLY).await.unwrap();
    assert!(o3.keep_cache);
    h.fs.release(o3.fh).await.unwrap();
}

#[tokio::test]
async fn readdir_resumes_by_offset_despite_removals() {
    let h = harness().await;
    for i in 0..10 {
        let (_, fh) = h.create(&format!("e{i}")).await;
        h.fs.release(fh).await.unwrap();
    }
    let first = h.fs.readdir(ROOT_INO, 0, 5).await.unwrap();
    let names: Vec<_> = first.iter().map(|d| d.name.clone()).collect();
    assert_eq!(names[..2], [b".".to_vec(), b"..".to_vec()]);
    // Remove an already listed entry and the next unlisted one.
    h.fs.unlink(ROOT_INO, &names[2]).await.unwrap();
    h.fs.unlink(ROOT_INO, b"e3").await.unwrap();
    let rest =
        h.fs.readdir(ROOT_INO, first.last().unwrap().offset, 100)
            .await
            .unwrap();
    let mut all: Vec<_> = names[2..].to_vec();
    all.extend(rest.iter().map(|d| d.name.clone()));
    assert!(!all.contains(&b"e3".to_vec()));
    assert_eq!(all.len(), 9, "nothing skipped or repeated: {all:?}");
}

#[tokio::test]
async fn read_only_refuses_changes() {
    let h = harness_with(
        MemoryBackend::new(),
        FsConfig {
            read_only: true,
            ..fast_cfg()
        },
    )
    .await;
    let err =
        h.fs.create(ROOT_INO, b"x", 0o644, 0, libc::O_RDWR, Caller::ROOT)
            .await
            .unwrap_err();
    assert_eq!(crate::errno::errno(&err), libc::EROFS);
    assert_eq!(
        crate::errno::errno(
            &h.fs
                .mkdir(ROOT_INO, b"d", 0o755, 0, Caller::ROOT)
                .await
                .unwrap_err()
        ),
        libc::EROFS
    );
}

#[test]
fn recovery_commits_handed_over_files_and_discards_the_rest() {
    let mem = MemoryBackend::new();
    let dir = tempfile::tempdir().unwrap();
    // First life: files written, one handed over (closed) while commits fail, one still
    // open; then the runtime dies with its tasks, like kill -9.
    let (closed_ino, open_ino) = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let r = rt.block_on(async {
            mem.fail_all_commits(true);
            let (fs, _) = Fs::start(
                Arc::new(mem.clone()),
                Arc::new(mem.clone()),
                dir.path(),
                fast_cfg(),
            )
            .await
            .unwrap();
            let (a, o) = fs
                .create(ROOT_INO, b"closed", 0o644, 0, libc::O_RDWR, Caller::ROOT)
                .await
                .unwrap();
            fs.write(o.fh, 0, Bytes::from_static(b"handed over"), false)
                .await
                .unwrap();
            fs.flush(o.fh).await.unwrap();
            fs.release(o.fh).await.unwrap();
            let (b, o2) = fs
                .create(ROOT_INO, b"open", 0o644, 0, libc::O_RDWR, Caller::ROOT)
                .await
                .unwrap();
            fs.write(o2.fh, 0, Bytes::from_static(b"never closed"), false)
                .await
                .unwrap();
            (a.ino, b.ino)
        });
        drop(rt);
        r
    };
    mem.fail_all_commits(false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (fs, report) = Fs::start(
            Arc::new(mem.clone()),
            Arc::new(mem.clone()),
            dir.path(),
            fast_cfg(),
        )
        .await
        .unwrap();
        assert_eq!(report.recovered, 1);
        // The never-closed file was inline: nothing of it reached the staging area.
        assert_eq!(report.discarded, 0);
        // Readable at once through the staged copy.
        let o = fs.open(closed_ino, libc::O_RDONLY).await.unwrap();
        assert_eq!(fs.read(o.fh, 0, 100).await.unwrap(), b"handed over");
        fs.release(o.fh).await.unwrap();
        fs.flush_all().await.unwrap();
        let l = mem.layout(closed_ino).await.unwrap();
        assert_eq!(l.size, 11);
        let l2 = mem.layout(open_ino).await.unwrap();
        assert_eq!(l2.size, 0, "unhanded data is discarded");
        fs.shutdown().await.unwrap();
    });
}

#[test]
fn recovery_completes_a_partly_materialized_copy_from_its_base() {
    let mem = MemoryBackend::with_chunk_size(64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let base = pattern(64 * 1024 * 3, 9);
    let ino = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (fs, _) = Fs::start(
                Arc::new(mem.clone()),
                Arc::new(mem.clone()),
                dir.path(),
                fast_cfg(),
            )
            .await
            .unwrap();
            let (a, o) = fs
                .create(ROOT_INO, b"big", 0o644, 0, libc::O_RDWR, Caller::ROOT)
                .await
                .unwrap();
            fs.write(o.fh, 0, Bytes::from(base.clone()), false)
                .await
                .unwrap();
            fs.release(o.fh).await.unwrap();
            fs.flush_all().await.unwrap();
            mem.fail_all_commits(true);
            let o = fs.open(a.ino, libc::O_RDWR).await.unwrap();
            fs.write(o.fh, 100, Bytes::from_static(b"EDIT"), false)
                .await
                .unwrap();
            fs.flush(o.fh).await.unwrap();
            a.ino
        })
    };
    mem.fail_all_commits(false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (fs, report) = Fs::start(
            Arc::new(mem.clone()),
            Arc::new(mem.clone()),
            dir.path(),
            fast_cfg(),
        )
        .await
        .unwrap();
        assert_eq!(report.recovered, 1);
        fs.flush_all().await.unwrap();
        let h = H {
            fs,
            mem: mem.clone(),
            dir: tempfile::tempdir().unwrap(),
        };
        let mut expect = base.clone();
        expect[100..104].copy_from_slice(b"EDIT");
        assert_eq!(
            h.committed(ino).await,
            expect,
            "untouched chunks refilled from the base"
        );
    });
}
