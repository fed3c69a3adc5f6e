//! Property tests of the whole engine over a fault-injecting store: any ≤ m shards of
//! every chunk lost or corrupted still returns the exact bytes (and repairs them); more
//! than m gives a clean error, never wrong bytes.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;

use datamesh::catalog::{Catalog, ChunkData};
use datamesh::chunker::ChunkSizes;
use datamesh::crypto::chunk::ChunkKeys;
use datamesh::crypto::keys::Keys;
use datamesh::engine::reader::CacheUse;
use datamesh::engine::{Engine, EngineSettings, FetchPolicy};
use datamesh::store::DynStore;
use datamesh::store::faulty::FaultyStore;
use datamesh::store::memory::MemoryStore;
use datamesh::stripe::Layout;

fn engine(dir: &std::path::Path, store: DynStore, k: u8, m: u8) -> Engine {
    let catalog = Arc::new(Catalog::create(dir.join("catalog.db")).unwrap());
    let keys = ChunkKeys::new(&Keys::generate());
    let seed = keys.chunker_seed();
    let settings = EngineSettings {
        layout: Layout::new(k, m).unwrap(),
        chunk_sizes: ChunkSizes {
            min: 2048,
            avg: 8192,
            max: 32768,
        },
        inline_max: 0,
        parallel_chunks: 3,
        fetch: FetchPolicy {
            timeout: std::time::Duration::from_secs(5),
            ..FetchPolicy::default()
        },
        placement_matters: false,
    };
    Engine::new(keys, seed, catalog, store, 0, settings)
}

async fn read_all(
    engine: &Engine,
    refs: Vec<datamesh::catalog::ChunkRef>,
) -> datamesh::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut s = engine.read_extents(refs, CacheUse::Bypass);
    while let Some(item) = s.next().await {
        let (r, chunk) = item?;
        out.extend_from_slice(&chunk.data()[..r.len as usize]);
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn round_trip_under_faults(
        data in proptest::collection::vec(any::<u8>(), 0..120_000),
        k in 1u8..5, m in 0u8..3,
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 8),
        corrupt in any::<bool>(),
        too_many in any::<bool>(),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let memory: DynStore = Arc::new(MemoryStore::new());
        let (faulty, plan) = FaultyStore::new(memory.clone());
        let engine = engine(dir.path(), Arc::new(faulty), k, m);
        let upload = rt.block_on(engine.upload(std::io::Cursor::new(data.clone()), None)).unwrap();
        let refs = upload.extents.clone();
        let ino = {
            let c = engine.catalog();
            c.ensure_file("f", 0o644, 0o755, 0, 0).unwrap().ino
        };
        rt.block_on(engine.commit(upload, ino, 0, false)).unwrap();

        // Break `m` shards of every chunk (or m + 1 when `too_many`).
        let total = (k + m) as usize;
        let lose = if too_many { m as usize + 1 } else { m as usize };
        {
            let mut p = plan.lock().unwrap();
            for r in &refs {
                let rec = engine.catalog().chunk(&r.chunk).unwrap().unwrap();
                let ChunkData::Sharded { shards, .. } = rec.data else { panic!("inline_max is 0") };
                let mut chosen = std::collections::BTreeSet::new();
                for pick in picks.iter() {
                    if chosen.len() == lose { break; }
                    chosen.insert(pick.index(total));
                }
                let mut i = 0;
                while chosen.len() < lose { chosen.insert(i); i += 1; }
                for idx in chosen {
                    let id = shards[idx].id;
                    if corrupt { p.corrupt.insert(id, Bytes::from_static(b"garbage")); } else { p.missing.insert(id); }
                }
            }
        }
        let got = rt.block_on(read_all(&engine, refs.clone()));
        if too_many && !refs.is_empty() {
            let err = got.expect_err("more than m bad shards must fail");
            prop_assert!(matches!(err.kind(), datamesh::ErrorKind::Unavailable), "{err}");
        } else {
            prop_assert_eq!(got.unwrap(), data.clone());
            // Lifting the faults on a repaired store changes nothing: still exact.
            *plan.lock().unwrap() = Default::default();
            prop_assert_eq!(rt.block_on(read_all(&engine, refs)).unwrap(), data);
        }
    }
}

#[test]
fn a_hanging_holder_costs_bounded_time() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memory: DynStore = Arc::new(MemoryStore::new());
    let (faulty, plan) = FaultyStore::new(memory.clone());
    let engine = engine(dir.path(), Arc::new(faulty), 4, 2);
    let data: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let upload = rt
        .block_on(engine.upload(std::io::Cursor::new(data.clone()), None))
        .unwrap();
    let refs = upload.extents.clone();
    // the first data shard of every chunk never answers: hedging must route around it
    for r in &refs {
        let rec = engine.catalog().chunk(&r.chunk).unwrap().unwrap();
        let ChunkData::Sharded { shards, .. } = rec.data else {
            unreachable!()
        };
        plan.lock().unwrap().hang.insert(shards[0].id);
    }
    let start = std::time::Instant::now();
    let got = rt.block_on(read_all(&engine, refs)).unwrap();
    assert_eq!(got, data);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    assert!(memory.stats_blocking_len() > 0);
}

trait Len {
    fn stats_blocking_len(&self) -> u64;
}
impl Len for DynStore {
    fn stats_blocking_len(&self) -> u64 {
        futures::executor::block_on(self.stats()).unwrap().shards
    }
}
