//! Crashes and big files through a real mount: `kill -9` of the mount process while it
//! writes loses nothing that was fsync'd, the stale mountpoint is cleared by the next
//! mount, the repository checks clean; a file larger than the chunk cache reads back
//! through a cold cache.

mod common;
mod mount_support;

use std::io::Write;

use common::random;
use mount_support::{Mounted, repo_and_dir, skip};

#[test]
fn kill9_during_writes_keeps_every_fsynced_byte_and_the_stale_mount_is_cleared() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let m = Mounted::start(&repo, &dir, &[]);
    let mut synced = Vec::new();
    for i in 0..24u64 {
        // Sizes across both commit paths: inline small files and sharded uploads.
        let len = [100, 15_000, 70_000, 400_000][(i % 4) as usize];
        let data = random(len, i);
        let path = dir.join(format!("f{i}"));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        synced.push((path, data));
    }
    // Unsynced work in flight at the moment of the crash.
    let mut open = std::fs::File::create(dir.join("unsynced")).unwrap();
    open.write_all(&random(1_000_000, 99)).unwrap();
    std::fs::write(dir.join("closed-not-synced"), b"maybe").unwrap();
    let _stale = m.kill9();
    drop(open);
    let stale = std::fs::metadata(&dir).unwrap_err();
    assert_eq!(
        stale.raw_os_error(),
        Some(libc::ENOTCONN),
        "the mountpoint is stale"
    );

    let m = Mounted::start(&repo, &dir, &[]);
    for (path, data) in &synced {
        assert!(
            std::fs::read(path).unwrap() == *data,
            "{} lost fsync'd bytes",
            path.display()
        );
    }
    assert!(m.stop().success());
    repo.ok(&["check", "--read-data"]);
    let stats = repo.stats();
    assert_eq!(stats["orphans"], 0, "{stats}");
}

#[test]
fn a_large_file_reads_back_through_a_cold_cache() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let data = random(80 << 20, 7);
    let m = Mounted::start(&repo, &dir, &["--cache-size", "16MiB"]);
    let mut f = std::fs::File::create(dir.join("large.bin")).unwrap();
    for part in data.chunks(1 << 20) {
        f.write_all(part).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    assert!(m.stop().success());
    // A new process: empty chunk cache, no kernel page cache for the new mount.
    let m = Mounted::start(&repo, &dir, &["--cache-size", "16MiB"]);
    let back = std::fs::read(dir.join("large.bin")).unwrap();
    assert!(
        back.len() == data.len() && back == data,
        "80 MiB read back intact"
    );
    assert!(m.stop().success());
    assert_eq!(
        repo.run(&["get", "large.bin", "-"]).stdout.len(),
        data.len()
    );
}
