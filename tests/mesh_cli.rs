//! The CLI over a real mesh: a bootstrap and six storage nodes as `datamesh` processes on
//! 127.0.0.1, and a client repository whose `put`, `get`, `distribution`, `rm` and
//! `stats` join the mesh through `--bootstrap` (or `mesh.bootstrap` in config.toml).

mod mesh_support;

use std::path::Path;
use std::time::{Duration, Instant};

use mesh_support::cluster::{Cluster, datamesh, init_repo};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs the client with `--bootstrap` and returns (success, stdout, stderr).
fn client(repo: &Path, boot: &str, args: &[&str]) -> (bool, String, String) {
    let out = datamesh(repo)
        .arg("--bootstrap")
        .arg(boot)
        .args(args)
        .output()
        .expect("run datamesh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(repo: &Path, boot: &str, args: &[&str]) -> String {
    let (success, out, err) = client(repo, boot, args);
    assert!(success, "datamesh {args:?} failed: {err}");
    out
}

/// Shard counts in every storage node's repository (`node-shards`), in cluster order.
fn shards_on_disk(cluster: &Cluster) -> Vec<usize> {
    cluster
        .storage
        .iter()
        .map(|n| {
            walkdir(&n.repo.join("node-shards"))
                .into_iter()
                .filter(|p| !p.to_string_lossy().ends_with(".owner"))
                .count()
        })
        .collect()
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.push(p);
        }
    }
    out
}

#[test]
fn put_and_get_over_six_nodes_survive_two_losses_and_fail_cleanly_beyond() {
    let mut cluster = Cluster::start(6);
    let boot = cluster.boot.addr.clone();
    let repo = cluster.dir.path().join("client");
    init_repo(&repo);
    let data = noise(7, 5 << 20);
    let src = cluster.dir.path().join("big.bin");
    std::fs::write(&src, &data).unwrap();

    let (success, _, err) = client(
        &repo,
        &boot,
        &["put", src.to_str().unwrap(), "--name", "big.bin"],
    );
    assert!(success, "put over the mesh failed: {err}");
    assert!(
        !err.contains("warning"),
        "six peers give full tolerance: {err}"
    );
    // A second file, never read before the third loss below: reads repair what they
    // find missing, so the first file may be back at full strength by then.
    let unread = cluster.dir.path().join("unread.bin");
    std::fs::write(&unread, noise(8, 1 << 20)).unwrap();
    ok(
        &repo,
        &boot,
        &["put", unread.to_str().unwrap(), "--name", "unread.bin"],
    );
    // Nothing went to the client's own store.
    assert!(
        walkdir(&repo.join("shards")).is_empty(),
        "client stored locally"
    );

    let json = ok(
        &repo,
        &boot,
        &["distribution", "--file-key", "big.bin", "--json"],
    );
    let chunks: serde_json::Value = serde_json::from_str(&json).unwrap();
    let chunks = chunks.as_array().unwrap();
    assert!(chunks.len() >= 2, "5 MiB makes several chunks: {json}");
    let peers: Vec<&str> = cluster.storage.iter().map(|n| n.peer_id.as_str()).collect();
    for c in chunks {
        assert_eq!(c["full_strength"], true, "{c}");
        assert_eq!(c["distinct_holders"], 6, "{c}");
        for s in c["shards"].as_array().unwrap() {
            assert!(peers.contains(&s["holder"].as_str().unwrap()), "{s}");
        }
    }
    assert!(
        shards_on_disk(&cluster).iter().all(|&n| n >= chunks.len()),
        "every node holds one shard of every chunk: {:?}",
        shards_on_disk(&cluster)
    );

    // Any two storage nodes may die.
    cluster.storage[1].kill();
    cluster.storage[4].kill();
    let out = cluster.dir.path().join("back.bin");
    ok(&repo, &boot, &["get", "big.bin", out.to_str().unwrap()]);
    assert!(
        std::fs::read(&out).unwrap() == data,
        "bytes differ after two losses"
    );

    // A third loss leaves 3 < k shards of the unread file: a clean, bounded error and
    // no wrong bytes.
    cluster.storage[0].kill();
    let out3 = cluster.dir.path().join("back3.bin");
    let started = Instant::now();
    let (success, _, err) = client(&repo, &boot, &["get", "unread.bin", out3.to_str().unwrap()]);
    assert!(!success, "get with three of six holders gone must fail");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "failure took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("unread.bin"),
        "the error names the file: {err}"
    );
    assert!(!out3.exists(), "a failed get leaves no output file");
}

#[test]
fn rm_over_the_mesh_deletes_the_peers_shards_and_config_bootstrap_joins() {
    let cluster = Cluster::start(6);
    let boot = cluster.boot.addr.clone();
    let repo = cluster.dir.path().join("client");
    init_repo(&repo);
    // Join through config.toml instead of the flag.
    let config = repo.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let joined = text.replacen(
        "bootstrap = []",
        &format!("bootstrap = [{{ addr = \"{boot}\", priority = 0 }}]"),
        1,
    );
    assert_ne!(
        text, joined,
        "config.toml has an empty bootstrap list to edit"
    );
    std::fs::write(&config, joined).unwrap();

    let src = cluster.dir.path().join("a.bin");
    std::fs::write(&src, noise(3, 2 << 20)).unwrap();
    let put = datamesh(&repo)
        .args(["put", src.to_str().unwrap(), "--name", "a.bin"])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let before: usize = shards_on_disk(&cluster).iter().sum();
    assert!(before >= 6, "shards are on the peers: {before}");

    // rm asks for no passphrase: the deletes wait for a command that unlocks.
    let rm = datamesh(&repo).args(["rm", "a.bin"]).output().unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(String::from_utf8_lossy(&rm.stderr).contains("freed shards on mesh peers"));
    assert_eq!(shards_on_disk(&cluster).iter().sum::<usize>(), before);

    // The next unlocking command collects them, as the owner the peers recorded.
    let other = cluster.dir.path().join("b.bin");
    std::fs::write(&other, b"small enough to stay inline").unwrap();
    let put = datamesh(&repo)
        .args(["put", other.to_str().unwrap(), "--name", "b.bin"])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert_eq!(
        shards_on_disk(&cluster).iter().sum::<usize>(),
        0,
        "garbage collection deleted the freed shards on every peer"
    );

    let stats = datamesh(&repo).args(["stats", "--json"]).output().unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["store"]["holders"], 6, "{v}");
}
