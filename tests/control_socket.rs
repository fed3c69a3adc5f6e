//! Commands reach a running repository owner through its control socket: they run inside
//! the owner (no passphrase needed, no second catalog connection), their output and exit
//! code come back, and the owner hears what changed.

mod common;

use std::sync::{Arc, Mutex};

use common::{PASS, Repo, random};
use datamesh::cli::context::{Attached, Change, Owner};
use datamesh::control::server::ControlServer;
use datamesh::crypto::passphrase::Passphrase;
use datamesh::engine::Engine;
use datamesh::repo::{RepoPaths, Repository};
use datamesh::store::DynStore;

struct TestOwner {
    engine: Engine,
    store: DynStore,
    changes: Mutex<Vec<Change>>,
    settles: Mutex<u32>,
}

#[async_trait::async_trait]
impl Owner for TestOwner {
    async fn settle(&self) -> datamesh::Result<()> {
        *self.settles.lock().unwrap() += 1;
        Ok(())
    }
    fn store(&self) -> DynStore {
        self.store.clone()
    }
    fn engine(&self) -> Engine {
        self.engine.clone()
    }
    fn changed(&self, changes: &[Change]) {
        self.changes.lock().unwrap().extend_from_slice(changes);
    }
}

#[test]
fn commands_run_inside_the_owner() {
    let repo = Repo::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut opened = Repository::open(RepoPaths::new(repo.path())).unwrap();
    opened
        .unlock(&Passphrase::new(PASS.to_owned(), "test").unwrap())
        .unwrap();
    let store: DynStore = Arc::new(opened.local_store().unwrap());
    let engine = opened.engine(store.clone()).unwrap();
    let owner = Arc::new(TestOwner {
        engine,
        store,
        changes: Mutex::default(),
        settles: Mutex::default(),
    });
    let attached = Attached {
        repo: Arc::new(opened),
        owner: owner.clone(),
    };
    let server = rt.block_on(ControlServer::start(attached.clone())).unwrap();
    // a second owner of the same repository is refused
    let err = rt
        .block_on(ControlServer::start(attached))
        .err()
        .expect("second server must fail");
    assert_eq!(err.kind(), datamesh::ErrorKind::Busy);

    let data = random(600_000, 3);
    let src = repo.file("in.bin", &data);
    // no passphrase in the environment: the owner's unlocked engine does the work
    let no_pass = |args: &[&str]| {
        repo.cmd()
            .env_remove("DATAMESH_PASSWORD")
            .args(args)
            .output()
            .unwrap()
    };
    let out = no_pass(&["put", src.to_str().unwrap(), "--name", "via/socket.bin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stored via/socket.bin version 1"));
    let got = no_pass(&["get", "via/socket.bin", "-"]);
    assert_eq!(got.stdout, data);
    // stdin is streamed to the owner
    let piped = repo
        .cmd()
        .env_remove("DATAMESH_PASSWORD")
        .args(["put", "-", "--name", "piped"])
        .write_stdin(b"from a pipe".to_vec())
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert_eq!(no_pass(&["get", "piped", "-"]).stdout, b"from a pipe");
    // a relative output path is the client's, not the owner's
    let rel = repo
        .cmd()
        .current_dir(repo.work())
        .env_remove("DATAMESH_PASSWORD")
        .args(["get", "piped", "rel.out"])
        .output()
        .unwrap();
    assert!(
        rel.status.success(),
        "{}",
        String::from_utf8_lossy(&rel.stderr)
    );
    assert_eq!(
        std::fs::read(repo.work().join("rel.out")).unwrap(),
        b"from a pipe"
    );
    // errors keep their exit codes and messages
    let missing = no_pass(&["get", "nope", "-"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
    assert!(String::from_utf8_lossy(&no_pass(&["list"]).stdout).contains("via/socket.bin"));
    assert!(no_pass(&["sync"]).status.success());
    assert_eq!(*owner.settles.lock().unwrap(), 1);
    assert!(no_pass(&["rm", "piped"]).status.success());
    let changes = owner.changes.lock().unwrap().clone();
    assert!(
        changes.contains(&Change::Path(b"via/socket.bin".to_vec())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&Change::Path(b"piped".to_vec())),
        "{changes:?}"
    );

    // once the owner is gone, commands run directly again (and need the passphrase)
    drop(server);
    assert!(!repo.path().join("control.sock").exists());
    assert_eq!(
        no_pass(&["get", "via/socket.bin", "-"]).status.code(),
        Some(11)
    );
    assert_eq!(
        repo.cmd()
            .args(["get", "via/socket.bin", "-"])
            .output()
            .unwrap()
            .stdout,
        data
    );
}

#[test]
fn a_stale_socket_is_ignored_by_clients_and_replaced_by_owners() {
    let repo = Repo::new();
    // a socket file nobody listens on, as a crashed mount leaves it
    let path = repo.path().join("control.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let src = repo.file("a", b"direct");
    repo.ok(&["put", src.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut opened = Repository::open(RepoPaths::new(repo.path())).unwrap();
    opened
        .unlock(&Passphrase::new(PASS.to_owned(), "test").unwrap())
        .unwrap();
    let store: DynStore = Arc::new(opened.local_store().unwrap());
    let engine = opened.engine(store.clone()).unwrap();
    let owner = Arc::new(TestOwner {
        engine,
        store,
        changes: Mutex::default(),
        settles: Mutex::default(),
    });
    let _server = rt
        .block_on(ControlServer::start(Attached {
            repo: Arc::new(opened),
            owner,
        }))
        .unwrap();
    let out = repo
        .cmd()
        .env_remove("DATAMESH_PASSWORD")
        .args(["get", "a", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"direct");
}
