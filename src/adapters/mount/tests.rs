//! The port conformance suite and the adapter's own rules, against a real repository.

use std::sync::Arc;

use datamesh_mount::ports::{
    CommitRequest, CommitSource, ContentStore, Namespace, NewNode, NewNodeKind, ROOT_INO,
};

use super::{Capacity, CommitPolicy, MountBackend};
use crate::config::Config;
use crate::crypto::keystore::KdfParams;
use crate::crypto::passphrase::Passphrase;
use crate::repo::{RepoPaths, Repository};
use crate::store::DynStore;

fn repository(dir: &std::path::Path) -> Repository {
    let pass = Passphrase::new("test".to_owned(), "test").unwrap();
    Repository::init(
        RepoPaths::new(dir.join("repo")),
        Config::default(),
        &pass,
        KdfParams::MINIMUM,
    )
    .unwrap()
}

fn backend(repo: &Repository, keep_versions: bool) -> MountBackend {
    let store: DynStore = Arc::new(repo.local_store().unwrap());
    MountBackend::open(
        repo,
        store,
        Capacity::LocalDir(repo.paths().shards()),
        64 << 20,
        CommitPolicy { keep_versions },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let b = backend(&repo, false);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    datamesh_mount::conformance::run(&b, &b, &scratch).await;
    let report = repo.catalog().verify(true).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_replace_by_default_and_keep_versions_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let file = NewNode {
        kind: NewNodeKind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
    };
    for keep in [false, true] {
        let b = backend(&repo, keep);
        let name = format!("f{keep}");
        let f = b.create(ROOT_INO, name.as_bytes(), &file).await.unwrap();
        let big = vec![7u8; 100_000];
        for source in [
            CommitSource::Bytes(bytes::Bytes::from_static(b"one")),
            CommitSource::Bytes(bytes::Bytes::from(big)),
            CommitSource::Bytes(bytes::Bytes::from_static(b"three")),
        ] {
            let r = b.commit(&[CommitRequest { ino: f.ino, source }]).await;
            r[0].as_ref().unwrap();
        }
        let versions = repo.catalog().versions(crate::catalog::Ino(f.ino)).unwrap();
        assert_eq!(
            versions.len(),
            if keep { 3 } else { 1 },
            "keep_versions = {keep}"
        );
        let layout = b.layout(f.ino).await.unwrap();
        let bytes = b.fetch(&layout.extents[0].chunk).await.unwrap();
        assert_eq!(&bytes[..], b"three");
    }
    // The replaced 100 kB versions were sharded: once GC ran, no shard of theirs is left.
    let local = repo.local_store().unwrap();
    let store: DynStore = Arc::new(local.clone());
    crate::engine::gc::collect(repo.catalog(), &store)
        .await
        .unwrap();
    assert_eq!(repo.catalog().gc_pending().unwrap(), 0);
    let stats = repo.catalog().stats().unwrap();
    assert_eq!(
        local.list().await.unwrap().len() as u64,
        stats.shards,
        "shard files on disk = shards the catalog references"
    );
    let report = repo.catalog().verify(true).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statfs_reports_the_store_and_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let b = backend(&repo, false);
    let s = b.statfs().await.unwrap();
    let raw = crate::store::local::free_space(&repo.paths().shards()).unwrap();
    // 4+2 by default: two thirds of the raw free space (allow for other writers).
    let expect = raw / 3 * 2;
    assert!(
        s.free_bytes.abs_diff(expect) < expect / 20 + (1 << 20),
        "{s:?} vs {expect}"
    );
    assert_eq!(s.avail_bytes, s.free_bytes);
    assert!(s.total_bytes >= s.free_bytes);
    assert!(s.free_inodes < s.total_inodes, "the root is counted");
}
