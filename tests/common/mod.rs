//! Helpers shared by the CLI integration tests: a fresh repository in a temporary
//! directory, and `datamesh` commands pointed at it.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use rand::{RngCore, SeedableRng};

/// The passphrase every test repository uses.
pub const PASS: &str = "correct horse battery staple";

/// A repository in a temporary directory.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// A new repository with cheap KDF settings (8 MiB Argon2, one pass).
    pub fn new() -> Self {
        Self::with_init_args(&[])
    }

    /// A new repository with extra `init` arguments.
    pub fn with_init_args(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dm-test-")
            .tempdir_in(scratch())
            .unwrap();
        let repo = Repo { dir };
        let mut args = vec!["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        repo.ok(&args);
        repo
    }

    /// The repository directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A scratch directory beside the repository (for input and output files).
    pub fn work(&self) -> PathBuf {
        let p = self.dir.path().join("work");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `datamesh --repo REPO ...` with the passphrase in the environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_datamesh"));
        c.arg("--repo")
            .arg(self.path())
            .env("DATAMESH_PASSWORD", PASS)
            .env_remove("DATAMESH_HOME");
        c.timeout(std::time::Duration::from_secs(300));
        c
    }

    /// Runs a command and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "datamesh {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "datamesh {args:?}: expected exit {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes `data` to a new file in the work directory.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.work().join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }

    /// Every shard file in the local store.
    pub fn shard_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(fans) = std::fs::read_dir(self.path().join("shards")) else {
            return out;
        };
        for fan in fans.flatten() {
            if fan.file_name().len() != 2 {
                continue;
            }
            for f in std::fs::read_dir(fan.path()).unwrap().flatten() {
                out.push(f.path());
            }
        }
        out.sort();
        out
    }

    /// `stats --json` as a JSON value.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["stats", "--json"])).unwrap()
    }
}

/// Where test repositories live: the work disk, not /tmp's tmpfs where there is one.
pub fn scratch() -> PathBuf {
    let p = std::env::var_os("DATAMESH_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Deterministic incompressible bytes.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Whether two files hold the same bytes.
pub fn same(a: &Path, b: &[u8]) -> bool {
    std::fs::read(a).map(|x| x == b).unwrap_or(false)
}
