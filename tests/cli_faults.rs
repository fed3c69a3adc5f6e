//! Bad input of every kind through the CLI: each gets a clear message and the right exit
//! code, and nothing already stored is lost.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Repo, random, same};
use datamesh::catalog::{Catalog, ChunkData};

/// The shard files of every chunk of `name`'s current version, by chunk, in index order.
fn shards_of(repo: &Repo, name: &str) -> Vec<Vec<PathBuf>> {
    let catalog = Catalog::open(repo.path().join("catalog.db")).unwrap();
    let attr = catalog.resolve(name).unwrap();
    let content = catalog.current_content(attr.ino).unwrap();
    content
        .chunks
        .iter()
        .map(|r| match catalog.chunk(&r.chunk).unwrap().unwrap().data {
            ChunkData::Sharded { shards, .. } => shards
                .iter()
                .map(|s| {
                    let hex = s.id.to_hex();
                    repo.path().join("shards").join(&hex[..2]).join(hex)
                })
                .collect(),
            ChunkData::Inline(_) => Vec::new(),
        })
        .collect()
}

fn flip(path: &PathBuf, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x55;
    std::fs::write(path, b).unwrap();
}

fn verifies(path: &PathBuf) -> bool {
    let b = std::fs::read(path).unwrap_or_default();
    let name = path.file_name().unwrap().to_str().unwrap();
    blake3::hash(&b).to_hex().as_str() == name
}

fn stored(repo: &Repo, name: &str, data: &[u8]) {
    let src = repo.file(&format!("src-{}", name.replace('/', "_")), data);
    repo.ok(&["put", src.to_str().unwrap(), "--name", name]);
}

#[test]
fn up_to_m_damaged_shards_per_chunk_read_back_exactly_and_are_repaired() {
    let repo = Repo::new();
    let data = random(3_000_000, 11);
    stored(&repo, "f", &data);
    let chunks = shards_of(&repo, "f");
    assert!(chunks.len() >= 2);
    for (i, shards) in chunks.iter().enumerate() {
        // two data shards, so decoding must use parity: one flipped, one truncated or gone
        flip(&shards[0], 100);
        match i % 2 {
            0 => std::fs::write(&shards[1], b"short").unwrap(),
            _ => std::fs::remove_file(&shards[1]).unwrap(),
        }
    }
    let out = repo.work().join("out");
    repo.ok(&["get", "f", out.to_str().unwrap()]);
    assert!(same(&out, &data));
    // repair on read rewrote the bad shards under their ids
    for shards in &chunks {
        assert!(
            verifies(&shards[0]) && verifies(&shards[1]),
            "shards were not repaired"
        );
    }
    repo.ok(&["check"]);
}

#[test]
fn more_than_m_bad_shards_fail_cleanly_and_name_the_file() {
    let repo = Repo::new();
    let data = random(1_500_000, 12);
    stored(&repo, "docs/precious.bin", &data);
    let chunks = shards_of(&repo, "docs/precious.bin");
    for s in &chunks[0][..3] {
        flip(s, 50);
    }
    let out = repo.work().join("out");
    let err = repo.fails(&["get", "docs/precious.bin", out.to_str().unwrap()], 5);
    assert!(err.contains("docs/precious.bin"), "{err}");
    assert!(err.contains("intact"), "{err}");
    assert!(!out.exists(), "no partial output may be left");
    // presence alone cannot see bad bytes; the scrub can
    repo.ok(&["check"]);
    let report: serde_json::Value =
        serde_json::from_slice(&repo.run(&["check", "--json"]).stdout).unwrap();
    assert_eq!(
        report["shards_missing"], 0,
        "flipped shards are present, just wrong"
    );
    let scrub = repo.run(&["check", "--read-data", "--json"]);
    assert_eq!(scrub.status.code(), Some(5));
    let report: serde_json::Value = serde_json::from_slice(&scrub.stdout).unwrap();
    assert_eq!(
        report["chunks_lost"].as_array().unwrap().len(),
        1,
        "{report}"
    );
}

#[test]
fn check_read_data_repairs_unread_parity() {
    let repo = Repo::new();
    let data = random(1_200_000, 13);
    stored(&repo, "p", &data);
    let chunks = shards_of(&repo, "p");
    // parity shards are not read by a normal get: only a scrub finds them
    std::fs::remove_file(&chunks[0][5]).unwrap();
    flip(&chunks[0][4], 10);
    let err = repo.fails(&["check"], 5);
    assert!(err.contains("degraded"), "{err}");
    let out = repo.ok(&["check", "--read-data"]);
    assert!(out.contains("repaired 2 shards"), "{out}");
    assert!(verifies(&chunks[0][4]) && verifies(&chunks[0][5]));
    repo.ok(&["check"]);
}

#[test]
fn wrong_missing_or_damaged_keystore() {
    let repo = Repo::new();
    stored(&repo, "a", b"content");
    let out = repo
        .cmd()
        .args(["get", "a", "-"])
        .env("DATAMESH_PASSWORD", "not it")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    let ks = repo.path().join("keystore");
    let original = std::fs::read(&ks).unwrap();
    std::fs::write(&ks, &original[..original.len() / 2]).unwrap();
    let err = repo.fails(&["get", "a", "-"], 5);
    assert!(
        err.contains("damaged") && err.contains("key import"),
        "{err}"
    );
    std::fs::write(&ks, b"this is not a keystore at all").unwrap();
    repo.fails(&["get", "a", "-"], 5);
    std::fs::write(&ks, &original).unwrap();
    let out = repo.cmd().args(["get", "a", "-"]).output().unwrap();
    assert_eq!(out.stdout, b"content");
}

#[test]
fn missing_repository_and_bad_config() {
    let dir = tempfile::tempdir_in(common::scratch()).unwrap();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_datamesh"))
        .arg("--repo")
        .arg(dir.path().join("none"))
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("datamesh init"));

    let repo = Repo::new();
    let cfg = repo.path().join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("data_shards = 4", "data_shard = 4")).unwrap();
    let err = repo.fails(&["list"], 11);
    assert!(err.contains("config.toml"), "{err}");
    std::fs::write(&cfg, text.replace("data_shards = 4", "data_shards = 0")).unwrap();
    repo.fails(&["list"], 11);
}

#[test]
fn newer_or_foreign_catalog_is_refused_untouched() {
    let repo = Repo::new();
    stored(&repo, "a", b"x");
    let db = repo.path().join("catalog.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let err = repo.fails(&["list"], 8);
    assert!(err.contains("newer datamesh"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "a newer catalog must not be touched"
    );
    std::fs::write(
        &db,
        b"garbage garbage garbage garbage garbage garbage garbage",
    )
    .unwrap();
    let _ = std::fs::remove_file(repo.path().join("catalog.db-wal"));
    let _ = std::fs::remove_file(repo.path().join("catalog.db-shm"));
    repo.fails(&["list"], 5);
}

#[test]
fn kill_9_during_put_leaves_a_consistent_catalog_and_a_rerun_completes() {
    let repo = Repo::new();
    stored(&repo, "before", b"stored before the crash");
    let data = random(96 << 20, 14);
    let src = repo.file("big", &data);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_datamesh"))
        .arg("--repo")
        .arg(repo.path())
        .env("DATAMESH_PASSWORD", common::PASS)
        .args(["put", src.to_str().unwrap(), "--name", "big"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while repo.shard_files().len() < 60 {
        assert!(Instant::now() < deadline, "put made no progress");
        if child.try_wait().unwrap().is_some() {
            panic!("put finished before it could be killed; make the file larger");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // the catalog never points at missing data: check passes, the name is not there yet
    repo.ok(&["check"]);
    let list = repo.ok(&["list"]);
    assert!(!list.contains("big"), "{list}");
    let out = repo.cmd().args(["get", "before", "-"]).output().unwrap();
    assert_eq!(out.stdout, b"stored before the crash");

    // a rerun completes, reusing the chunks committed before the kill
    let out = repo.ok(&["put", src.to_str().unwrap(), "--name", "big", "--json"]);
    let put: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        put["dedup_bytes"].as_u64().unwrap() > 0,
        "rerun re-uploaded everything: {put}"
    );
    let back = repo.work().join("big.out");
    repo.ok(&["get", "big", back.to_str().unwrap()]);
    assert!(same(&back, &data));
    repo.ok(&["check"]);
    // every shard file on disk is referenced or queued: nothing leaked beyond the GC queue
    let stats = repo.stats();
    let on_disk = repo.shard_files().len() as u64;
    assert_eq!(
        on_disk,
        stats["shards"].as_u64().unwrap() + stats["gc_pending"].as_u64().unwrap(),
        "{stats}"
    );
}

#[test]
fn a_full_disk_fails_the_put_and_loses_nothing() {
    let repo = Repo::new();
    let shards = repo.path().join("shards");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "dm-test-full"])
        .arg(&shards)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!(
            "SKIPPED a_full_disk_fails_the_put_and_loses_nothing: cannot mount a small tmpfs (not root?)"
        );
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(shards.clone());
    let small = random(400_000, 15);
    stored(&repo, "small", &small);
    let big = random(8 << 20, 16);
    let src = repo.file("big", &big);
    let err = repo.fails(&["put", src.to_str().unwrap(), "--name", "big"], 6);
    assert!(err.to_lowercase().contains("no space"), "{err}");
    assert!(!repo.ok(&["list"]).contains("big"));
    let out = repo.cmd().args(["get", "small", "-"]).output().unwrap();
    assert_eq!(out.stdout, small);
    repo.ok(&["check"]);
    // the failed upload's shards were freed again
    let stats = repo.stats();
    assert_eq!(
        repo.shard_files().len() as u64,
        stats["shards"].as_u64().unwrap(),
        "{stats}"
    );
}

#[test]
fn several_processes_at_once_never_corrupt_the_repository() {
    let repo = Repo::new();
    let shared = random(1_000_000, 17);
    let mut children = Vec::new();
    for i in 0..4 {
        let mut data = shared.clone();
        data.extend_from_slice(&random(200_000, 100 + i));
        let src = repo.file(&format!("p{i}"), &data);
        let script = format!(
            "set -e; B={bin}; for n in 1 2 3; do $B put {src} --name proc{i}/f$n >/dev/null; done; $B rm proc{i}/f1; $B put {src} --name shared >/dev/null",
            bin = env!("CARGO_BIN_EXE_datamesh"),
            src = src.display(),
        );
        children.push(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("DATAMESH_HOME", repo.path())
                .env("DATAMESH_PASSWORD", common::PASS)
                .spawn()
                .unwrap(),
        );
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    repo.ok(&["check", "--read-data"]);
    let list = repo.ok(&["list"]);
    for i in 0..4 {
        assert!(!list.contains(&format!("proc{i}/f1")));
        assert!(list.contains(&format!("proc{i}/f3")));
    }
    let versions: serde_json::Value =
        serde_json::from_str(&repo.ok(&["versions", "shared", "--json"])).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 4);
}
