//! kill -9 of the mounting process while files are being written: after a remount over
//! the same staging directory and (file-backed) backend, every fsync'd byte is there, and
//! so is every file that was closed before the kill (same boot: recovery commits it).
//!
//! The mounting process is this test binary re-run as a child (`crash_child`, ignored
//! unless started with its environment variable).

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datamesh_mount::memory::MemoryBackend;
use datamesh_mount::mount;
use support::{fuse_unavailable, pattern, test_options};

const CHILD_ENV: &str = "DATAMESH_MOUNT_CRASH_CHILD";

struct Paths {
    mnt: PathBuf,
    stage: PathBuf,
    snapshot: PathBuf,
    ready: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Paths {
        let p = Paths {
            mnt: root.join("mnt"),
            stage: root.join("stage"),
            snapshot: root.join("backend.snapshot"),
            ready: root.join("ready"),
        };
        fs::create_dir_all(&p.mnt).unwrap();
        p
    }
    fn spec(&self) -> String {
        [&self.mnt, &self.stage, &self.snapshot, &self.ready]
            .map(|p| p.to_str().unwrap().to_string())
            .join("|")
    }
}

#[test]
#[ignore = "child process of kill9_loses_nothing_fsynced"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<PathBuf> = spec.split('|').map(PathBuf::from).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = Arc::new(MemoryBackend::open_persistent(&parts[2]).unwrap());
    // Slow commits, so that the closed file is still waiting for its commit at the kill.
    mem.set_commit_latency(Duration::from_millis(150));
    let handle = rt
        .block_on(mount(
            mem.clone(),
            mem,
            &parts[0],
            &parts[1],
            test_options(),
        ))
        .unwrap();
    fs::write(&parts[3], b"ready").unwrap();
    // Serve until killed.
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let _ = handle.mountpoint();
    }
}

/// Kills the child and detaches its mount whatever happens.
struct ChildGuard {
    child: Child,
    mnt: PathBuf,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = datamesh_mount::mount::clear_stale_mount(&self.mnt);
    }
}

#[test]
fn kill9_loses_nothing_fsynced() {
    if let Some(why) = fuse_unavailable() {
        eprintln!("\n!!! SKIPPING kill -9 test: {why} !!!\n");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let p = Paths::new(root.path());
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, p.spec())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard {
        child,
        mnt: p.mnt.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.ready.exists() {
        assert!(Instant::now() < deadline, "child never mounted");
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!("child exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut synced = Vec::new();
    fs::create_dir(p.mnt.join("dir")).unwrap();
    for i in 0..12u64 {
        let path = p.mnt.join(format!("dir/synced-{i}"));
        let data = pattern(1000 + i as usize * 3000, i);
        let mut f = File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        synced.push((path, data));
    }
    // Rewrite one synced file in place and fsync again: the newest fsync'd bytes count.
    let (path0, data0) = &mut synced[0];
    let mut f = fs::OpenOptions::new().write(true).open(&*path0).unwrap();
    f.write_all(b"REWRITTEN").unwrap();
    f.sync_all().unwrap();
    data0[..9].copy_from_slice(b"REWRITTEN");
    drop(f);
    let closed = pattern(20_000, 99);
    fs::write(p.mnt.join("closed-not-synced"), &closed).unwrap();
    // A writer still busy when the mount dies.
    let busy = p.mnt.join("busy");
    let writer = std::thread::spawn(move || {
        let Ok(mut f) = File::create(&busy) else {
            return;
        };
        for i in 0..100_000u32 {
            if f.write_all(&i.to_le_bytes().repeat(256)).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    guard.child.kill().unwrap(); // SIGKILL
    guard.child.wait().unwrap();
    let _ = writer.join();

    // Remount in this process: the stale mount is detached, the staging area recovered.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = Arc::new(MemoryBackend::open_persistent(&p.snapshot).unwrap());
    let handle = rt
        .block_on(mount(mem.clone(), mem, &p.mnt, &p.stage, test_options()))
        .expect("remount after kill -9");
    eprintln!("recovery: {:?}", handle.recovery());
    assert!(
        handle.recovery().recovered >= 1,
        "the closed file's commit was pending at the kill: recovery must commit it"
    );
    let check = || {
        for (path, data) in &synced {
            let got = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(got == *data, "{} differs after kill -9", path.display());
        }
        assert!(
            fs::read(p.mnt.join("closed-not-synced")).unwrap() == closed,
            "a file closed before the kill must be recovered"
        );
        // Whatever the busy file holds, it must read without error.
        fs::read(p.mnt.join("busy")).unwrap();
    };
    check();
    rt.block_on(handle.unmount()).unwrap();
    // And once more from the backend alone, after recovery's commits.
    let mem = Arc::new(MemoryBackend::open_persistent(&p.snapshot).unwrap());
    let handle = rt
        .block_on(mount(mem.clone(), mem, &p.mnt, &p.stage, test_options()))
        .unwrap();
    check();
    rt.block_on(handle.unmount()).unwrap();
    drop(guard);
}
