//! `put -r` / `get -r` of trees of many small files (the batched paths): exact round
//! trips, dedup, versions and refcounts, and kill -9 in the middle followed by a rerun.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Repo, random};

/// A tree of `n` files under `root`: mostly small (inline), some between the inline limit
/// and the minimum chunk (sharded, batched), a few empty, a few identical, one larger
/// than the minimum chunk (streamed). Returns relative path -> content.
fn make_tree(root: &Path, n: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let rel = format!("d{}/s{}/f{i:05}.txt", i % 7, i % 13);
        let data = match i % 50 {
            0 => Vec::new(),
            1 | 2 => b"the same content in several files\n".to_vec(),
            3 => random(40_000 + i, seed + i as u64),
            _ => random(200 + (i * 37) % 9_000, seed + i as u64),
        };
        out.insert(rel, data);
    }
    out.insert("big.bin".to_owned(), random(700_000, seed));
    for (rel, data) in &out {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    std::fs::set_permissions(
        root.join("d1/s1/f00001.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    out
}

/// Every regular file under `root`, relative path -> content.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn visit(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                visit(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, root, &mut out);
    out
}

fn put_tree(repo: &Repo, root: &Path) -> serde_json::Value {
    let out = repo.ok(&["put", "-r", root.to_str().unwrap(), "--name", "t", "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn get_tree(repo: &Repo, name: &str) -> PathBuf {
    let dest = repo.work().join(name);
    repo.ok(&["get", "-r", "t", dest.to_str().unwrap()]);
    dest
}

/// Shard files on disk are exactly the live ones plus those queued for deletion.
fn assert_no_leak(repo: &Repo) {
    let stats = repo.stats();
    assert_eq!(
        repo.shard_files().len() as u64,
        stats["shards"].as_u64().unwrap() + stats["gc_pending"].as_u64().unwrap(),
        "{stats}"
    );
}

#[test]
fn a_tree_of_small_files_round_trips_with_dedup_versions_and_metadata() {
    let repo = Repo::new();
    let root = repo.work().join("src");
    let mut tree = make_tree(&root, 1_200, 1);
    let put = put_tree(&repo, &root);
    assert_eq!(put["files"].as_u64().unwrap(), tree.len() as u64, "{put}");
    let stats = repo.stats();
    // Identical files share one chunk, empty files have none.
    let distinct: std::collections::BTreeSet<&Vec<u8>> =
        tree.values().filter(|d| !d.is_empty()).collect();
    // big.bin (700 kB) may be cut into up to three chunks.
    let chunks = stats["chunks"].as_u64().unwrap();
    let distinct = distinct.len() as u64;
    assert!(
        (distinct..=distinct + 2).contains(&chunks),
        "{distinct} {stats}"
    );
    assert!(
        stats["shards"].as_u64().unwrap() > 0,
        "mid-size files are sharded"
    );
    let back = get_tree(&repo, "back1");
    assert_eq!(read_tree(&back), tree);
    let m = std::fs::metadata(back.join("d1/s1/f00001.txt")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600, "mode restored");
    let src_m = std::fs::metadata(root.join("d2/s2/f00002.txt")).unwrap();
    let back_m = std::fs::metadata(back.join("d2/s2/f00002.txt")).unwrap();
    assert_eq!(src_m.mtime(), back_m.mtime(), "mtime restored");

    // Change two files: only they get new versions; nothing else is re-stored.
    let changed = ["d3/s3/f00003.txt", "d4/s4/f00004.txt"];
    for (k, rel) in changed.iter().enumerate() {
        let data = format!("changed {k}").into_bytes();
        std::fs::write(root.join(rel), &data).unwrap();
        tree.insert((*rel).to_owned(), data);
    }
    let again = put_tree(&repo, &root);
    assert_eq!(again["files"].as_u64().unwrap(), 2, "{again}");
    let versions: serde_json::Value =
        serde_json::from_str(&repo.ok(&["versions", "t/d3/s3/f00003.txt", "--json"])).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");
    let old = repo
        .cmd()
        .args(["get", "t/d3/s3/f00003.txt", "-", "--version", "1"])
        .output()
        .unwrap();
    assert_eq!(old.stdout.len(), 40_003, "the old version is kept");
    assert_eq!(read_tree(&get_tree(&repo, "back2")), tree);
    // Pruning the old versions frees their chunks and only theirs.
    repo.ok(&["prune", "--keep-last", "1"]);
    assert_eq!(read_tree(&get_tree(&repo, "back3")), tree);
    repo.ok(&["check"]);
    assert_no_leak(&repo);
}

#[test]
fn kill_9_during_a_tree_put_then_a_rerun_stores_every_file_exactly() {
    let repo = Repo::new();
    let root = repo.work().join("src");
    let tree = make_tree(&root, 4_000, 2);
    // Kill at several points: early (walking, first batches) and later.
    for wait_for in [1usize, 200, 600] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_datamesh"))
            .arg("--repo")
            .arg(repo.path())
            .env("DATAMESH_PASSWORD", common::PASS)
            .args(["put", "-r", root.to_str().unwrap(), "--name", "t"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut finished = false;
        while repo.shard_files().len() < wait_for {
            assert!(Instant::now() < deadline, "put made no progress");
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !finished || wait_for > 1,
            "the first kill must land mid-put"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // The catalog never points at missing data, and what it holds is exact.
        repo.ok(&["check"]);
        if repo.run(&["info", "t"]).status.success() {
            let dest = repo.work().join(format!("partial-{wait_for}"));
            repo.ok(&["get", "-r", "t", dest.to_str().unwrap()]);
            for (rel, data) in read_tree(&dest) {
                assert_eq!(
                    Some(&data),
                    tree.get(&rel),
                    "{rel} after kill at {wait_for}"
                );
            }
        }
        if finished {
            break;
        }
    }
    // A rerun completes: every file reads back exactly, invariants hold, nothing leaks.
    let put = put_tree(&repo, &root);
    assert!(put["failed"].as_array().unwrap().is_empty(), "{put}");
    assert_eq!(read_tree(&get_tree(&repo, "back")), tree);
    repo.ok(&["check", "--read-data"]);
    let again = put_tree(&repo, &root);
    assert_eq!(again["files"].as_u64().unwrap(), 0, "{again}");
    assert_no_leak(&repo);
}
