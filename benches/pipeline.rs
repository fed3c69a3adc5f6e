//! Hot paths of the data path, per MiB, and put/get of 256 MiB through the engine the CLI
//! uses (local store in a temporary directory on the work disk).
//!
//! Run: `cargo bench --bench pipeline`. Figures and their comparison with restic are in
//! docs/benchmarks.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngCore, SeedableRng};

use datamesh::chunker::{ChunkSizes, Chunker};
use datamesh::config::Config;
use datamesh::crypto::chunk::{self, ChunkKeys, PlainChunk};
use datamesh::crypto::keys::Keys;
use datamesh::engine::reader::CacheUse;
use datamesh::engine::{Engine, EngineSettings};
use datamesh::store::local::LocalStore;
use datamesh::stripe::{self, Expect, Layout};

const MIB: usize = 1 << 20;

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn primitives(c: &mut Criterion) {
    let keys = ChunkKeys::new(&Keys::generate());
    let layout = Layout::new(4, 2).unwrap();
    let mut g = c.benchmark_group("per_mib");
    g.throughput(Throughput::Bytes(MIB as u64));

    let data = random(64 * MIB, 1);
    g.bench_function("chunk", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let take = left.min(64) as usize;
                let n = Chunker::new(&data[..take * MIB], ChunkSizes::default(), 7).count();
                black_box(n);
                left -= take as u64;
            }
            start.elapsed()
        })
    });

    let mib = random(MIB, 2);
    g.bench_function("chunk_id", |b| {
        b.iter(|| black_box(chunk::chunk_id(&keys, &mib)))
    });
    g.bench_function("seal", |b| {
        b.iter(|| {
            let plain = PlainChunk::from_slice(&keys, &mib);
            black_box(chunk::seal(&keys, plain).unwrap())
        })
    });
    let plain = PlainChunk::from_slice(&keys, &mib);
    let id = *plain.id();
    let sealed = chunk::seal(&keys, plain).unwrap();
    g.bench_function("open", |b| {
        b.iter(|| black_box(chunk::open(&keys, &id, &sealed).unwrap()))
    });
    g.bench_function("encode_4+2", |b| {
        b.iter(|| black_box(stripe::encode(&sealed, layout, [1; 8]).unwrap()))
    });
    let shards = stripe::encode(&sealed, layout, [1; 8]).unwrap();
    let expect = Expect {
        layout,
        sealed_len: sealed.len() as u32,
    };
    let all: Vec<Option<Bytes>> = shards.iter().map(|s| Some(s.bytes.clone())).collect();
    g.bench_function("decode_4+2_intact", |b| {
        b.iter(|| black_box(stripe::decode(&all, expect, &[]).unwrap()))
    });
    let mut two_lost = all.clone();
    two_lost[0] = None;
    two_lost[2] = None;
    g.bench_function("decode_4+2_two_lost", |b| {
        b.iter(|| black_box(stripe::decode(&two_lost, expect, &[]).unwrap()))
    });
    g.finish();
}

fn engine_put_get(c: &mut Criterion) {
    const SIZE: usize = 256 * MIB;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = std::env::var_os("DATAMESH_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir_in("/var/tmp").unwrap(),
    };
    let catalog =
        Arc::new(datamesh::catalog::Catalog::create(dir.path().join("catalog.db")).unwrap());
    let store = Arc::new(LocalStore::open(dir.path().join("shards")).unwrap());
    let keys = ChunkKeys::new(&Keys::generate());
    let config = Config::default();
    let settings = EngineSettings::from_config(&config).unwrap();
    let seed = keys.chunker_seed();
    let engine = Engine::new(keys, seed, catalog, store, config.cache.memory.0, settings);

    let mut g = c.benchmark_group("engine_256MiB");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(SIZE as u64));
    let mut seed = 100u64;
    g.bench_function(BenchmarkId::new("put", "random"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seed += 1;
                let data = random(SIZE, seed); // fresh bytes: no dedup between iterations
                let start = Instant::now();
                let up = rt
                    .block_on(engine.upload(std::io::Cursor::new(data), None))
                    .unwrap();
                total += start.elapsed();
                black_box(up.size);
            }
            total
        })
    });
    let data = random(SIZE, 1);
    let upload = rt
        .block_on(engine.upload(std::io::Cursor::new(data), None))
        .unwrap();
    g.bench_function(BenchmarkId::new("get", "cold_cache"), |b| {
        b.iter(|| {
            rt.block_on(async {
                use futures::StreamExt;
                let mut stream = engine.read_extents(upload.extents.clone(), CacheUse::Bypass);
                let mut n = 0usize;
                while let Some(r) = stream.next().await {
                    n += r.unwrap().1.len();
                }
                assert_eq!(n, SIZE);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, primitives, engine_put_get);
criterion_main!(benches);
