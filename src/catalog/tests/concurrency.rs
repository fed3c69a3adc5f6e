//! Several connections and several processes on one catalog, including processes killed
//! with SIGKILL in the middle of uploads.
//!
//! The multi-process tests re-execute this test binary: a child started with
//! `DATAMESH_CATALOG_WORKER` set runs [`worker`] instead of the test and exits. Shards
//! are files in a directory (the "store"), written between `intend_shards` and
//! `commit_chunk` exactly as the engine writes real shards, so that after the dust
//! settles the test can compare the store with the catalog: every live shard has its
//! file (nothing dangles) and every file is a live shard (nothing leaks).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;

use super::*;

const WORKER_ENV: &str = "DATAMESH_CATALOG_WORKER";

/// Puts and removes on names private to `id` and on names shared by everyone.
fn random_name(rng: &mut impl Rng, id: usize) -> String {
    if rng.gen_bool(0.5) {
        format!("shared/s{}", rng.gen_range(0..2))
    } else {
        format!("w{id}/f{}", rng.gen_range(0..3))
    }
}

fn random_pool(rng: &mut impl Rng) -> Vec<u8> {
    (0..rng.gen_range(0..4))
        .map(|_| rng.gen_range(0..8))
        .collect()
}

/// One put through the protocol, writing shard files into `store` (if given). Races
/// with other writers are expected: the file may be removed before the commit.
fn racing_put(
    cat: &Catalog,
    store: Option<&Path>,
    path: &str,
    pool: &[u8],
) -> std::result::Result<(), CatalogError> {
    let ino = match cat.ensure_file(path, 0o644, 0o755, 0, 0) {
        Ok(attr) => attr.ino,
        // Another writer removed the directory between our steps.
        Err(CatalogError::NoNode(_) | CatalogError::NoEntry { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let token = cat.begin_upload()?;
    let mut distinct = pool.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let ids: Vec<ChunkId> = distinct.iter().map(|&n| chunk_id(n)).collect();
    let exists = cat.pin_existing(&token, &ids)?;
    for (&n, exists) in distinct.iter().zip(exists) {
        if exists {
            continue;
        }
        let rec = record(n);
        let shards = shards(&rec);
        cat.intend_shards(&token, &shards)?;
        if let Some(store) = store {
            for (id, _) in &shards {
                std::fs::write(store.join(id.to_hex()), id.as_bytes())
                    .expect("writing a shard file");
            }
        }
        cat.commit_chunk(&token, &rec)?;
    }
    let (refs, size) = layout(pool);
    match cat.commit_version(ino, size, 0, &refs, Some(&token)) {
        Ok(_) => Ok(()),
        Err(CatalogError::NoNode(_)) => cat.end_upload(&token),
        Err(e) => Err(e),
    }
}

fn racing_rm(cat: &Catalog, path: &str) -> std::result::Result<(), CatalogError> {
    let Some((dir, name)) = path.rsplit_once('/') else {
        unreachable!("test paths have a directory")
    };
    let parent = match cat.resolve(dir) {
        Ok(attr) => attr.ino,
        Err(CatalogError::NoEntry { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    match cat.unlink(parent, name.as_bytes(), LastLink::Free) {
        Ok(_) | Err(CatalogError::NoEntry { .. } | CatalogError::NoNode(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes every queued shard from `store` and confirms it.
fn collect(cat: &Catalog, store: &Path, limit: usize) {
    loop {
        let batch = cat.gc_batch(limit).expect("gc_batch");
        if batch.is_empty() {
            return;
        }
        for dead in &batch {
            match std::fs::remove_file(store.join(dead.shard.to_hex())) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("deleting a shard file: {e}"),
            }
        }
        let ids: Vec<ShardId> = batch.iter().map(|d| d.shard).collect();
        cat.gc_done(&ids).expect("gc_done");
        if limit != usize::MAX {
            return;
        }
    }
}

fn store_files(store: &Path) -> BTreeSet<ShardId> {
    std::fs::read_dir(store)
        .expect("listing the store")
        .map(|e| {
            let name = e.expect("a store entry").file_name();
            name.to_str()
                .and_then(|n| n.parse().ok())
                .expect("store files are shard ids")
        })
        .collect()
}

#[test]
fn two_connections_interleave_safely() {
    let (dir, first) = fresh();
    let second = Catalog::open(first.path()).unwrap();
    std::thread::scope(|s| {
        for (id, cat) in [(0, &first), (1, &second)] {
            s.spawn(move || {
                let mut rng = rand::thread_rng();
                for _ in 0..40 {
                    let path = random_name(&mut rng, id);
                    let result = if rng.gen_bool(0.7) {
                        racing_put(cat, None, &path, &random_pool(&mut rng))
                    } else {
                        racing_rm(cat, &path)
                    };
                    // Never Busy (writes wait for the lock), never MissingChunks (pins).
                    result.unwrap_or_else(|e| panic!("{path}: {e:?}"));
                }
            });
        }
    });
    assert_consistent(&first);
    assert!(intended_shards(&first).is_empty());
    assert!(first.uploads().unwrap().is_empty());
    drop(dir);
}

/// The worker side of the multi-process tests (see the module docs).
fn worker(catalog: &Path, store: &Path, id: usize, rounds: Option<usize>) {
    let cat = Catalog::open(catalog).expect("worker opens the catalog");
    let mut rng = rand::thread_rng();
    let mut done = 0;
    while rounds.is_none_or(|r| done < r) {
        let path = random_name(&mut rng, id);
        if rng.gen_bool(0.7) {
            racing_put(&cat, Some(store), &path, &random_pool(&mut rng)).expect("worker put");
        } else {
            racing_rm(&cat, &path).expect("worker rm");
        }
        if rng.gen_bool(0.2) {
            collect(&cat, store, 8);
        }
        done += 1;
        println!("WORKER {id} done {done}");
    }
}

/// Runs the worker and exits if this process is one; otherwise returns.
fn worker_if_requested() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (Some(catalog), Some(store), Some(id), Some(rounds)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {WORKER_ENV}: {spec}");
    };
    let id: usize = id.parse().expect("worker id");
    let rounds: usize = rounds.parse().expect("worker rounds");
    worker(
        Path::new(catalog),
        Path::new(store),
        id,
        (rounds > 0).then_some(rounds),
    );
    std::process::exit(0);
}

fn spawn_worker(test: &str, catalog: &Path, store: &Path, id: usize, rounds: usize) -> Child {
    let exe = std::env::current_exe().expect("the test binary");
    Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(
            WORKER_ENV,
            format!("{}|{}|{id}|{rounds}", catalog.display(), store.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning a worker process")
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.db");
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    drop(Catalog::create(&catalog).unwrap());
    (dir, catalog, store)
}

/// After the workers: reap, collect everything, and compare store and catalog.
fn settle_and_compare(catalog: &Path, store: &Path) {
    let cat = Catalog::open(catalog).unwrap();
    let policy = ReapPolicy {
        max_idle: Duration::from_secs(3600),
        resume_window: Duration::ZERO,
    };
    cat.reap_stale_uploads(&policy).unwrap();
    assert!(
        cat.uploads().unwrap().is_empty(),
        "every worker's uploads were reaped"
    );
    collect(&cat, store, usize::MAX);
    assert_consistent(&cat);
    assert!(intended_shards(&cat).is_empty());
    let live = live_shards(&cat);
    let files = store_files(store);
    let dangling: Vec<_> = live.difference(&files).collect();
    let leaked: Vec<_> = files.difference(&live).collect();
    assert!(
        dangling.is_empty(),
        "catalog points at missing shards: {dangling:?}"
    );
    assert!(leaked.is_empty(), "shards leaked: {leaked:?}");
}

#[test]
fn two_processes_share_a_catalog() {
    worker_if_requested();
    let (_dir, catalog, store) = setup();
    let test = "catalog::tests::concurrency::two_processes_share_a_catalog";
    let mut workers: Vec<Child> = (0..2)
        .map(|id| spawn_worker(test, &catalog, &store, id, 25))
        .collect();
    for w in &mut workers {
        let out = BufReader::new(w.stdout.take().expect("piped stdout"));
        let last = out
            .lines()
            .map_while(|l| l.ok())
            .filter(|l| l.starts_with("WORKER "))
            .last();
        assert!(
            last.as_ref().is_some_and(|l| l.ends_with("done 25")),
            "a worker stopped early: {last:?}"
        );
        assert!(w.wait().unwrap().success());
    }
    settle_and_compare(&catalog, &store);
}

#[test]
fn processes_killed_mid_upload_leak_nothing() {
    worker_if_requested();
    let (_dir, catalog, store) = setup();
    let test = "catalog::tests::concurrency::processes_killed_mid_upload_leak_nothing";
    let mut workers: Vec<Child> = (0..2)
        .map(|id| spawn_worker(test, &catalog, &store, id, 0))
        .collect();
    // Wait until each has done real work, then kill it wherever it is.
    let (tx, rx) = mpsc::channel();
    for (id, w) in workers.iter_mut().enumerate() {
        let out = BufReader::new(w.stdout.take().expect("piped stdout"));
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(|l| l.ok()) {
                if line.starts_with("WORKER ") && tx.send(id).is_err() {
                    return;
                }
            }
        });
    }
    let mut progress = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress.iter().any(|&p| p < 8) {
        let left = deadline.saturating_duration_since(Instant::now());
        let id = rx.recv_timeout(left).expect("workers make progress");
        progress[id] += 1;
    }
    for w in &mut workers {
        w.kill().expect("SIGKILL a worker");
        w.wait().expect("reaping a worker");
    }
    settle_and_compare(&catalog, &store);
}
