//! Real kernel mounts through the real binary: `datamesh mount` as a child process, with
//! a guard that always stops it and never leaves a mount behind, even when a test panics.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{PASS, Repo};

/// Why this machine cannot run kernel-mount tests, if it cannot.
pub fn fuse_unavailable() -> Option<&'static str> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent");
    }
    None
}

/// Returns true (after a loud message) when the test must be skipped.
pub fn skip() -> bool {
    match fuse_unavailable() {
        Some(why) => {
            eprintln!("\n!!! SKIPPING kernel-mount test: {why} !!!\n");
            true
        }
        None => false,
    }
}

/// Whether `dir` is a mountpoint right now.
pub fn is_mounted(dir: &Path) -> bool {
    datamesh_mount::mount::is_mountpoint(dir).unwrap_or(false)
}

/// `umount2(dir, MNT_DETACH)`, ignoring errors.
pub fn detach(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// A `datamesh mount` child.
pub struct Mounted {
    child: Option<Child>,
    pub dir: PathBuf,
    log: PathBuf,
}

/// `datamesh --repo REPO mount ARGS... DIR` as a command.
pub fn mount_cmd(repo: &Repo, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_datamesh"));
    c.arg("--repo")
        .arg(repo.path())
        .env("DATAMESH_PASSWORD", PASS)
        .env_remove("DATAMESH_HOME")
        .arg("mount")
        .args(args)
        .arg(dir);
    c
}

impl Mounted {
    /// Mounts `repo` at `dir` (created if missing) and waits until it is mounted.
    pub fn start(repo: &Repo, dir: &Path, args: &[&str]) -> Mounted {
        if std::fs::metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            std::fs::create_dir_all(dir).unwrap();
        }
        let log = dir.with_extension(format!("log{}", rand_suffix()));
        let child = mount_cmd(repo, dir, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mounted {
            child: Some(child),
            dir: dir.to_path_buf(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(dir) || std::fs::metadata(dir).is_err() {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "datamesh mount exited with {status} before mounting:\n{}",
                    m.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not mounted after 60 s:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// What the mount printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mount process's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `sig` to the mount process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with a pid of our own child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits (at most `secs`) for the mount process to exit.
    pub fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "mount did not exit in {secs} s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(120)
    }

    /// SIGKILL, as a crash; the mount stays behind, stale, until the returned guard is
    /// dropped (which detaches it only if it is still stale).
    pub fn kill9(mut self) -> StaleMount {
        self.signal(libc::SIGKILL);
        self.wait(30);
        StaleMount(self.dir.clone())
    }
}

/// A mountpoint left stale by a killed mount.
pub struct StaleMount(pub PathBuf);

fn is_stale(dir: &Path) -> bool {
    std::fs::metadata(dir).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN)
}

impl Drop for StaleMount {
    fn drop(&mut self) {
        if is_stale(&self.0) {
            detach(&self.0);
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        {
            // SAFETY: kill with a pid of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(&self.dir) || is_stale(&self.dir) {
            detach(&self.dir);
        }
    }
}

fn rand_suffix() -> u32 {
    rand::random::<u32>()
}

/// A fresh repository and a mountpoint beside it.
pub fn repo_and_dir() -> (Repo, PathBuf) {
    let repo = Repo::new();
    let dir = repo.dir.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    (repo, dir)
}
