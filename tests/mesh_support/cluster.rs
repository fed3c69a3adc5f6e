//! Real `datamesh` processes on 127.0.0.1: repositories, a bootstrap node and storage
//! nodes, each killed when its guard drops, and an in-test client joined to them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use datamesh::mesh::{BootstrapEntry, MeshConfig, MeshStore};
use libp2p::identity::Keypair;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_datamesh");
/// Passphrase of every test repository.
const PASSWORD: &str = "mesh test passphrase";
/// Longest a node may take to print its ready line.
const READY_WAIT: Duration = Duration::from_secs(30);

/// `datamesh` with the test passphrase and quiet logs.
pub fn datamesh(repo: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--repo")
        .arg(repo)
        .env("DATAMESH_PASSWORD", PASSWORD)
        .env("RUST_LOG", "error")
        .env_remove("DATAMESH_HOME");
    c
}

/// Creates a repository with a cheap key-derivation setting.
pub fn init_repo(repo: &Path) {
    let out = datamesh(repo)
        .args(["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"])
        .output()
        .expect("run datamesh init");
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running node process; killed (and reaped) on drop.
pub struct Node {
    pub child: Option<Child>,
    pub repo: PathBuf,
    pub peer_id: String,
    pub addr: String,
    stderr_tail: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Node {
    /// Starts `datamesh <args>` on `repo` and waits for its ready line.
    pub fn start(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = datamesh(repo);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn datamesh");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t2 = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = t2.lock().unwrap();
                t.push(line);
                if t.len() > 50 {
                    t.remove(0);
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix("ready ") {
                    let _ = tx.send(json.to_owned());
                }
            }
        });
        let ready = match rx.recv_timeout(READY_WAIT) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "node {args:?} did not get ready: {}",
                    tail.lock().unwrap().join("\n")
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&ready).expect("ready line is JSON");
        let peer_id = v["peer_id"].as_str().unwrap().to_owned();
        let addr = v["addrs"][0].as_str().unwrap().to_owned();
        assert!(addr.ends_with(&format!("/p2p/{peer_id}")), "{addr}");
        Node {
            child: Some(child),
            repo: repo.to_owned(),
            peer_id,
            addr,
            stderr_tail: tail,
        }
    }

    /// Kills the process (SIGKILL: no goodbye, like a machine that dies).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it to exit (at most 10 s).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The last lines the node wrote to stderr.
    pub fn stderr(&self) -> String {
        self.stderr_tail.lock().unwrap().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bootstrap node and storage nodes, each in its own repository under one temp dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub boot: Node,
    pub storage: Vec<Node>,
}

/// Arguments of a storage node on loopback.
pub fn service_args(boot: &str) -> Vec<String> {
    vec![
        "service".into(),
        "--listen".into(),
        "/ip4/127.0.0.1/tcp/0".into(),
        "--bootstrap".into(),
        boot.into(),
    ]
}

impl Cluster {
    /// A bootstrap node and `n` storage nodes.
    pub fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let boot_repo = dir.path().join("boot");
        init_repo(&boot_repo);
        let boot = Node::start(
            &boot_repo,
            &["bootstrap", "--listen", "/ip4/127.0.0.1/tcp/0"],
            &[],
        );
        let mut cluster = Cluster {
            dir,
            boot,
            storage: Vec::new(),
        };
        for _ in 0..n {
            cluster.add_storage(&[], &[]);
        }
        cluster
    }

    /// Starts one more storage node with extra arguments and environment.
    pub fn add_storage(&mut self, extra: &[&str], env: &[(&str, &str)]) -> &Node {
        let repo = self.dir.path().join(format!("s{}", self.storage.len()));
        init_repo(&repo);
        let mut args = service_args(&self.boot.addr);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.storage.push(Node::start(&repo, &args, env));
        self.storage.last().unwrap()
    }

    /// Restarts storage node `i` on its repository (same identity, same shards).
    pub fn restart(&mut self, i: usize) {
        self.storage[i].kill();
        let repo = self.storage[i].repo.clone();
        let args = service_args(&self.boot.addr);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::start(&repo, &args, &[]);
        assert_eq!(
            node.peer_id, self.storage[i].peer_id,
            "identity survives a restart"
        );
        self.storage[i] = node;
    }

    /// The index of the storage node with `peer_id`.
    pub fn index_of(&self, peer_id: &str) -> usize {
        self.storage
            .iter()
            .position(|n| n.peer_id == peer_id)
            .unwrap_or_else(|| panic!("{peer_id} is no storage node of the cluster"))
    }

    /// A client `MeshStore` in this test process, joined and aware of `expect` storage
    /// peers (fails the test after 20 s).
    pub async fn client(&self, expect: usize) -> MeshStore {
        let config = MeshConfig {
            bootstrap: vec![BootstrapEntry::new(self.boot.addr.clone())],
            listen: Vec::new(),
            request_timeout_secs: 5,
            ..MeshConfig::default()
        };
        let store = MeshStore::connect(Keypair::generate_ed25519(), &config, &[])
            .await
            .expect("client joins");
        let known = store
            .client()
            .wait_for_storage_peers(expect, Duration::from_secs(20))
            .await
            .unwrap();
        assert!(
            known >= expect,
            "client knows {known} storage peers, expected {expect}"
        );
        store
    }
}
