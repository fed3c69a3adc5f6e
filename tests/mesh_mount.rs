//! The mount running over a real mesh: six `datamesh service` processes and a bootstrap
//! on 127.0.0.1, and `datamesh mount --bootstrap ...` of a client repository. What the
//! kernel writes lands as shards on the peers, reads back through the CLI, and reads
//! back through a new mount with two storage nodes dead.

mod common;
mod mesh_support;
mod mount_support;

use std::io::Write;

use common::Repo;
use mesh_support::cluster::Cluster;
use mount_support::{Mounted, skip};

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

#[test]
fn the_mount_stores_on_the_mesh_and_reads_with_two_nodes_dead() {
    if skip() {
        return;
    }
    let mut cluster = Cluster::start(6);
    let boot = cluster.boot.addr.clone();
    let repo = Repo::new();
    let dir = repo.dir.path().join("mnt");
    let data = noise(11, 3 << 20);

    let m = Mounted::start(&repo, &dir, &["--bootstrap", &boot]);
    {
        let mut f = std::fs::File::create(dir.join("f.bin")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap(); // durable in the store: on the peers
    }
    std::fs::create_dir(dir.join("d")).unwrap();
    std::fs::write(dir.join("d/small.txt"), b"tiny files stay in the catalog").unwrap();
    assert!(m.stop().success(), "clean unmount");

    // The shards are on the peers, one per peer for every chunk.
    let out = repo.ok(&[
        "--bootstrap",
        &boot,
        "distribution",
        "--file-key",
        "f.bin",
        "--json",
    ]);
    let chunks: serde_json::Value = serde_json::from_str(&out).unwrap();
    let chunks = chunks.as_array().unwrap();
    assert!(!chunks.is_empty());
    for c in chunks {
        assert_eq!(c["distinct_holders"], 6, "{c}");
        assert_eq!(c["full_strength"], true, "{c}");
    }
    assert!(
        repo.shard_files().is_empty(),
        "the client's local store stays empty: {:?}",
        repo.shard_files()
    );

    // The CLI reads what the mount wrote, over the mesh.
    let back = repo.work().join("back.bin");
    repo.ok(&["--bootstrap", &boot, "get", "f.bin", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data);

    // Two storage nodes die; a new mount still reads every byte.
    cluster.storage[2].kill();
    cluster.storage[5].kill();
    let m = Mounted::start(&repo, &dir, &["--bootstrap", &boot]);
    assert!(std::fs::read(dir.join("f.bin")).unwrap() == data);
    assert_eq!(
        std::fs::read(dir.join("d/small.txt")).unwrap(),
        b"tiny files stay in the catalog"
    );
    assert!(m.stop().success());
}
