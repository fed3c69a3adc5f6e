//! Test support for real kernel mounts: a mount over the memory backend on its own tokio
//! runtime (so the test thread's file system calls never run on a runtime worker), that
//! always unmounts itself, even when the test panics.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datamesh_mount::memory::MemoryBackend;
use datamesh_mount::{FsConfig, MountError, MountHandle, MountOptions, mount};

/// Options that make tests fast and deterministic enough.
pub fn test_options() -> MountOptions {
    MountOptions {
        fs: FsConfig {
            batch_delay: Duration::from_millis(2),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
            ..FsConfig::default()
        },
        ..MountOptions::default()
    }
}

/// A mounted memory filesystem.
pub struct TestMount {
    pub mem: MemoryBackend,
    pub opts: MountOptions,
    handle: Option<MountHandle<MemoryBackend, MemoryBackend>>,
    rt: tokio::runtime::Runtime,
    root: tempfile::TempDir,
}

/// Why mounting is impossible here, if it is (no /dev/fuse, not permitted).
pub fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent".into());
    }
    None
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl TestMount {
    /// Mounts a fresh memory backend, or returns None (after a loud message) when this
    /// machine cannot mount FUSE at all.
    pub fn new(opts: MountOptions) -> Option<TestMount> {
        Self::with_backend(MemoryBackend::new(), opts)
    }

    pub fn with_backend(mem: MemoryBackend, opts: MountOptions) -> Option<TestMount> {
        if let Some(why) = fuse_unavailable() {
            eprintln!("\n!!! SKIPPING kernel-mount test: {why} !!!\n");
            return None;
        }
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("mnt")).unwrap();
        std::fs::create_dir(root.path().join("stage")).unwrap();
        let mut t = TestMount {
            mem,
            opts,
            handle: None,
            rt: runtime(),
            root,
        };
        match t.mount_again() {
            Ok(()) => Some(t),
            Err(MountError::Fuse(_, e)) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("\n!!! SKIPPING kernel-mount test: mounting not permitted: {e} !!!\n");
                None
            }
            Err(e) => panic!("mount failed: {e}"),
        }
    }

    /// The mountpoint.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("mnt")
    }

    /// `path()/name`.
    pub fn p(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// The staging directory.
    pub fn stage(&self) -> PathBuf {
        self.root.path().join("stage")
    }

    /// Mounts (again) over the same backend and staging directory.
    pub fn mount_again(&mut self) -> Result<(), MountError> {
        assert!(self.handle.is_none());
        let mem = Arc::new(self.mem.clone());
        let (mnt, stage, opts) = (self.path(), self.stage(), self.opts.clone());
        let h = self
            .rt
            .block_on(async move { mount(mem.clone(), mem, &mnt, &stage, opts).await })?;
        self.handle = Some(h);
        Ok(())
    }

    /// Unmounts cleanly (commits everything).
    pub fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.unmount()).expect("unmount");
        }
    }

    /// Unmount, then mount again: everything must come back from the backend.
    pub fn remount(&mut self) {
        self.unmount();
        self.mount_again().expect("remount");
    }

    /// Waits until every staged change is committed.
    pub fn settle(&self) {
        if let Some(h) = &self.handle {
            self.rt.block_on(h.fs().flush_all()).expect("flush_all");
        }
    }

    pub fn handle(&self) -> &MountHandle<MemoryBackend, MemoryBackend> {
        self.handle.as_ref().expect("mounted")
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            // Never leave a mount behind, whatever state the test left.
            let r = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), h.detach()).await
            });
            if !matches!(r, Ok(Ok(()))) {
                eprintln!("warning: test mount did not detach cleanly: {r:?}");
            }
        }
    }
}

/// The errno of an I/O error (panics on success: the test expected a failure).
pub fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// A tiny deterministic RNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
