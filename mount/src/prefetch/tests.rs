//! Prefetcher tests: window growth, no duplicate fetches, budget accounting.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::memory::MemoryBackend;
use crate::ports::{CommitRequest, Namespace, NewNode, NewNodeKind, ROOT_INO};

const CHUNK: usize = 64 * 1024;

async fn file_of(chunks: usize) -> (Arc<MemoryBackend>, Arc<Layout<u64>>, Vec<u8>) {
    let mem = Arc::new(MemoryBackend::with_chunk_size(CHUNK));
    let node = NewNode {
        kind: NewNodeKind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
    };
    let attr = mem.create(ROOT_INO, b"f", &node).await.unwrap();
    let data: Vec<u8> = (0..chunks * CHUNK).map(|i| (i % 251) as u8 + 1).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staged");
    std::fs::write(&path, &data).unwrap();
    let r = mem
        .commit(&[CommitRequest {
            ino: attr.ino,
            source: crate::ports::CommitSource::File(path),
        }])
        .await;
    r[0].as_ref().unwrap();
    let layout = mem.layout(attr.ino).await.unwrap();
    assert_eq!(layout.extents.len(), chunks);
    (mem, layout, data)
}

fn cfg(budget: u64) -> PrefetchConfig {
    PrefetchConfig {
        initial_window: CHUNK as u64,
        max_window: 8 * CHUNK as u64,
        budget_bytes: budget,
    }
}

#[tokio::test]
async fn sequential_reads_grow_the_window_and_fetch_each_chunk_once() {
    let (mem, layout, data) = file_of(32).await;
    mem.set_fetch_latency(Duration::from_millis(2));
    let budget = Budget::new(64 << 20);
    let full = budget.available();
    let p = std::sync::Mutex::new(Prefetcher::new(cfg(64 << 20)));
    let mut out = Vec::new();
    let mut max_window = 0;
    while out.len() < data.len() {
        let got = read(&p, &mem, &layout, &budget, out.len() as u64, 16 * 1024)
            .await
            .unwrap();
        out.extend_from_slice(&got);
        max_window = max_window.max(p.lock().unwrap().window());
    }
    assert_eq!(out, data);
    assert_eq!(
        max_window,
        8 * CHUNK as u64,
        "window doubled up to the maximum"
    );
    assert_eq!(
        mem.counters().fetches.load(Ordering::SeqCst),
        32,
        "no chunk fetched twice"
    );
    drop(p);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(budget.available(), full, "every permit returned");
}

#[tokio::test]
async fn random_reads_do_not_prefetch() {
    let (mem, layout, data) = file_of(64).await;
    let budget = Budget::new(64 << 20);
    let p = std::sync::Mutex::new(Prefetcher::new(cfg(64 << 20)));
    // Jumps of more than SLACK between reads, the first not at 0.
    for &c in &[60usize, 2, 40, 5, 50] {
        let off = (c * CHUNK + 100) as u64;
        let got = read(&p, &mem, &layout, &budget, off, 1000).await.unwrap();
        assert_eq!(got, data[off as usize..off as usize + 1000]);
    }
    assert_eq!(
        mem.counters().fetches.load(Ordering::SeqCst),
        5,
        "only what was read"
    );
    assert_eq!(p.lock().unwrap().window(), CHUNK as u64);
}

#[tokio::test]
async fn prefetch_stays_within_the_budget() {
    let (mem, layout, data) = file_of(32).await;
    mem.set_fetch_latency(Duration::from_millis(1));
    let budget = Budget::new(CHUNK as u64);
    let p = std::sync::Mutex::new(Prefetcher::new(PrefetchConfig {
        max_window: 32 * CHUNK as u64,
        ..cfg(CHUNK as u64)
    }));
    let mut out = Vec::new();
    let mut used_budget = false;
    while out.len() < data.len() {
        let got = read(&p, &mem, &layout, &budget, out.len() as u64, 16 * 1024)
            .await
            .unwrap();
        out.extend_from_slice(&got);
        let charged = p.lock().unwrap().charged();
        assert!(
            charged <= 1,
            "{charged} prefetched chunks held with a one-chunk budget"
        );
        used_budget |= charged == 1;
    }
    assert_eq!(out, data, "a starved prefetcher still reads correctly");
    assert!(used_budget, "the budget was used at all");
    assert_eq!(
        mem.counters().fetches.load(Ordering::SeqCst),
        32,
        "no duplicate fetches"
    );
}

#[tokio::test]
async fn a_wrong_length_chunk_is_an_error_not_a_panic() {
    let (mem, layout, _) = file_of(2).await;
    let mut bad = (*layout).clone();
    bad.extents[0].len += 1;
    bad.size += 1;
    bad.extents[1].offset += 1;
    let bad = Arc::new(bad);
    let budget = Budget::new(1 << 20);
    let p = std::sync::Mutex::new(Prefetcher::new(cfg(1 << 20)));
    let r = read(&p, &mem, &bad, &budget, 0, 4096).await;
    assert!(matches!(r, Err(FsError::Backend(_))));
}
