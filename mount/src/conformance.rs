//! A conformance suite for implementations of the ports: the rules the core relies on,
//! checked directly against a [`Namespace`] + [`ContentStore`]. The engine's adapter runs
//! it in its own tests (`datamesh_mount::conformance::run(&ns, &content, scratch_dir).await`); the
//! memory backend runs it here. Each check panics with a message naming the rule broken.
//!
//! The suite needs an empty filesystem (root only) and a scratch directory for staged
//! files; it leaves files behind.

use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;

use crate::error::FsError;
use crate::ports::{
    AttrChange, CommitRequest, CommitSource, ContentStore, Ino, Liveness, Namespace, NewNode,
    NewNodeKind, NodeKind, ROOT_INO, RenameMode, XattrMode,
};

/// A [`Liveness`] with an explicit set of open inodes.
#[derive(Debug, Default)]
pub struct OpenSet(pub Mutex<Vec<Ino>>);

impl Liveness for OpenSet {
    fn is_open(&self, ino: Ino) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&ino)
    }
}

fn file() -> NewNode {
    NewNode {
        kind: NewNodeKind::File,
        perm: 0o644,
        uid: 1000,
        gid: 1000,
    }
}

fn dir() -> NewNode {
    NewNode {
        kind: NewNodeKind::Directory,
        perm: 0o755,
        uid: 1000,
        gid: 1000,
    }
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: Result<T, FsError>, want: fn(&FsError) -> bool, rule: &str) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("port rule broken: {rule}: got {other:?}"),
    }
}

/// Runs every check.
pub async fn run<N: Namespace, C: ContentStore>(ns: &N, content: &C, scratch: &Path) {
    names(ns).await;
    readdir(ns).await;
    links_and_orphans(ns).await;
    rename(ns).await;
    xattrs(ns).await;
    commits(ns, content, scratch).await;
}

async fn names<N: Namespace>(ns: &N) {
    let a = ns.create(ROOT_INO, b"names", &dir()).await.unwrap();
    assert_eq!(
        (a.kind, a.nlink, a.perm, a.uid),
        (NodeKind::Directory, 2, 0o755, 1000)
    );
    assert_eq!(
        ns.getattr(ROOT_INO).await.unwrap().kind,
        NodeKind::Directory
    );
    let f = ns.create(a.ino, b"f", &file()).await.unwrap();
    assert_eq!((f.size, f.nlink), (0, 1), "new file: empty, one link");
    assert_eq!(ns.lookup(a.ino, b"f").await.unwrap().ino, f.ino);
    expect_err(
        ns.create(a.ino, b"f", &dir()).await,
        |e| matches!(e, FsError::AlreadyExists),
        "create over an existing name is AlreadyExists",
    );
    expect_err(
        ns.lookup(a.ino, b"nope").await,
        |e| matches!(e, FsError::NotFound),
        "lookup of a missing name is NotFound",
    );
    expect_err(
        ns.lookup(f.ino, b"x").await,
        |e| matches!(e, FsError::NotADirectory),
        "lookup in a file is NotADirectory",
    );
    expect_err(
        ns.create(a.ino, &[b'n'; 256], &file()).await,
        |e| matches!(e, FsError::NameTooLong),
        "names over 255 bytes are NameTooLong",
    );
    let sub = ns.create(a.ino, b"sub", &dir()).await.unwrap();
    assert_eq!(
        ns.getattr(a.ino).await.unwrap().nlink,
        3,
        "a subdirectory adds a link to its parent"
    );
    ns.create(sub.ino, b"inner", &file()).await.unwrap();
    expect_err(
        ns.rmdir(a.ino, b"sub").await,
        |e| matches!(e, FsError::NotEmpty),
        "rmdir of a non-empty directory is NotEmpty",
    );
    expect_err(
        ns.rmdir(a.ino, b"f").await,
        |e| matches!(e, FsError::NotADirectory),
        "rmdir of a file is NotADirectory",
    );
    expect_err(
        ns.unlink(a.ino, b"sub", &OpenSet::default()).await,
        |e| matches!(e, FsError::IsADirectory),
        "unlink of a directory is IsADirectory",
    );
    let s = ns
        .create(
            a.ino,
            b"sym",
            &NewNode {
                kind: NewNodeKind::Symlink(b"../t".to_vec()),
                perm: 0o777,
                uid: 0,
                gid: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!((s.kind, s.size), (NodeKind::Symlink, 4));
    assert_eq!(ns.readlink(s.ino).await.unwrap(), b"../t");
    expect_err(
        ns.readlink(f.ino).await,
        |e| matches!(e, FsError::InvalidArgument(_)),
        "readlink of a file is InvalidArgument",
    );
    let t = ns
        .setattr(
            f.ino,
            &AttrChange {
                perm: Some(0o600),
                mtime: Some(1_000),
                ..AttrChange::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((t.perm, t.mtime), (0o600, 1_000));
    assert!(t.ctime > 1_000, "setattr without ctime sets ctime to now");
}

async fn readdir<N: Namespace>(ns: &N) {
    let d = ns.create(ROOT_INO, b"list", &dir()).await.unwrap();
    for i in 0..20u8 {
        ns.create(d.ino, format!("e{i:02}").as_bytes(), &file())
            .await
            .unwrap();
    }
    let first = ns.readdir(d.ino, 0, 7).await.unwrap();
    assert_eq!(first.len(), 7, "readdir honours the limit");
    assert!(
        first.windows(2).all(|w| w[0].cookie < w[1].cookie),
        "cookies increase"
    );
    assert!(first[0].cookie >= 1);
    // Removing an entry already returned must not shift the rest.
    ns.unlink(d.ino, &first[3].name, &OpenSet::default())
        .await
        .unwrap();
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut after = first.last().unwrap().cookie;
    loop {
        let page = ns.readdir(d.ino, after, 5).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.cookie;
        seen.extend(page.into_iter().map(|e| e.name));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        20,
        "resuming by cookie skips and repeats nothing"
    );
    let entry = &ns.readdir(d.ino, 0, 1).await.unwrap()[0];
    assert_eq!(
        entry.attr,
        ns.lookup(d.ino, &entry.name).await.unwrap(),
        "readdir carries full attributes"
    );
}

async fn links_and_orphans<N: Namespace>(ns: &N) {
    let d = ns.create(ROOT_INO, b"links", &dir()).await.unwrap();
    let f = ns.create(d.ino, b"f", &file()).await.unwrap();
    let l = ns.link(f.ino, d.ino, b"g").await.unwrap();
    assert_eq!((l.ino, l.nlink), (f.ino, 2));
    expect_err(
        ns.link(d.ino, ROOT_INO, b"dlink").await,
        |e| matches!(e, FsError::NotPermitted),
        "hard link to a directory is NotPermitted",
    );
    expect_err(
        ns.link(f.ino, d.ino, b"g").await,
        |e| matches!(e, FsError::AlreadyExists),
        "link over an existing name is AlreadyExists",
    );
    let u = ns.unlink(d.ino, b"f", &OpenSet::default()).await.unwrap();
    assert_eq!((u.ino, u.nlink), (f.ino, 1));
    let open = OpenSet(Mutex::new(vec![f.ino]));
    let u = ns.unlink(d.ino, b"g", &open).await.unwrap();
    assert_eq!(u.nlink, 0);
    assert_eq!(
        ns.getattr(f.ino).await.unwrap().nlink,
        0,
        "an open file losing its last name is kept as an orphan"
    );
    expect_err(
        ns.link(f.ino, d.ino, b"back").await,
        |e| matches!(e, FsError::NotFound),
        "an orphan cannot be linked again",
    );
    ns.reclaim(f.ino).await.unwrap();
    expect_err(
        ns.getattr(f.ino).await,
        |e| matches!(e, FsError::NotFound),
        "reclaim deletes an orphan",
    );
    ns.reclaim(f.ino).await.unwrap();
    let g = ns.create(d.ino, b"closed", &file()).await.unwrap();
    ns.unlink(d.ino, b"closed", &OpenSet::default())
        .await
        .unwrap();
    expect_err(
        ns.getattr(g.ino).await,
        |e| matches!(e, FsError::NotFound),
        "a closed file losing its last name is deleted at once",
    );
    let h = ns.create(d.ino, b"left", &file()).await.unwrap();
    ns.unlink(d.ino, b"left", &OpenSet(Mutex::new(vec![h.ino])))
        .await
        .unwrap();
    ns.reclaim_all_orphans().await.unwrap();
    expect_err(
        ns.getattr(h.ino).await,
        |e| matches!(e, FsError::NotFound),
        "reclaim_all_orphans deletes every orphan",
    );
}

async fn rename<N: Namespace>(ns: &N) {
    let none = OpenSet::default();
    let r = ns.create(ROOT_INO, b"ren", &dir()).await.unwrap();
    let a = ns.create(r.ino, b"a", &file()).await.unwrap();
    let b = ns.create(r.ino, b"b", &file()).await.unwrap();
    let d1 = ns.create(r.ino, b"d1", &dir()).await.unwrap();
    let d2 = ns.create(d1.ino, b"d2", &dir()).await.unwrap();
    let e = ns.create(r.ino, b"e", &dir()).await.unwrap();
    ns.create(e.ino, b"full", &file()).await.unwrap();
    expect_err(
        ns.rename(r.ino, b"a", r.ino, b"b", RenameMode::NoReplace, &none)
            .await,
        |e| matches!(e, FsError::AlreadyExists),
        "NoReplace over an existing name is AlreadyExists",
    );
    expect_err(
        ns.rename(r.ino, b"a", r.ino, b"zz", RenameMode::Exchange, &none)
            .await,
        |e| matches!(e, FsError::NotFound),
        "Exchange with a missing name is NotFound",
    );
    expect_err(
        ns.rename(r.ino, b"d1", d2.ino, b"in", RenameMode::Replace, &none)
            .await,
        |e| matches!(e, FsError::InvalidArgument(_)),
        "a directory into its own subtree is InvalidArgument",
    );
    expect_err(
        ns.rename(r.ino, b"d1", r.ino, b"a", RenameMode::Replace, &none)
            .await,
        |e| matches!(e, FsError::NotADirectory),
        "a directory over a file is NotADirectory",
    );
    expect_err(
        ns.rename(r.ino, b"a", r.ino, b"d1", RenameMode::Replace, &none)
            .await,
        |e| matches!(e, FsError::IsADirectory),
        "a file over a directory is IsADirectory",
    );
    expect_err(
        ns.rename(r.ino, b"d1", r.ino, b"e", RenameMode::Replace, &none)
            .await,
        |e| matches!(e, FsError::NotEmpty),
        "a directory over a non-empty directory is NotEmpty",
    );
    let x = ns
        .rename(r.ino, b"a", r.ino, b"b", RenameMode::Exchange, &none)
        .await
        .unwrap();
    assert_eq!((x.moved, x.exchanged), (a.ino, Some(b.ino)));
    assert_eq!(
        ns.lookup(r.ino, b"a").await.unwrap().ino,
        b.ino,
        "Exchange swaps"
    );
    let y = ns
        .rename(r.ino, b"a", r.ino, b"b", RenameMode::Replace, &none)
        .await
        .unwrap();
    assert_eq!(
        y.replaced.map(|u| (u.ino, u.nlink)),
        Some((a.ino, 0)),
        "Replace reports the replaced node"
    );
    expect_err(
        ns.getattr(a.ino).await,
        |e| matches!(e, FsError::NotFound),
        "a replaced closed file is deleted",
    );
    ns.rename(d1.ino, b"d2", r.ino, b"moved", RenameMode::Replace, &none)
        .await
        .unwrap();
    assert_eq!(
        ns.getattr(d1.ino).await.unwrap().nlink,
        2,
        "moving a directory out drops its old parent's link"
    );
    assert_eq!(
        ns.getattr(r.ino).await.unwrap().nlink,
        5,
        "and adds one to the new parent"
    );
    ns.link(b.ino, r.ino, b"b2").await.unwrap();
    let same = ns
        .rename(r.ino, b"b", r.ino, b"b2", RenameMode::Replace, &none)
        .await
        .unwrap();
    assert!(
        same.replaced.is_none(),
        "renaming a node onto another of its own names changes nothing"
    );
    assert_eq!(ns.getattr(b.ino).await.unwrap().nlink, 2);
}

async fn xattrs<N: Namespace>(ns: &N) {
    let f = ns.create(ROOT_INO, b"xattrs", &file()).await.unwrap();
    expect_err(
        ns.get_xattr(f.ino, b"user.a").await,
        |e| matches!(e, FsError::NoAttribute),
        "a missing xattr is NoAttribute",
    );
    expect_err(
        ns.set_xattr(f.ino, b"user.a", b"1", XattrMode::Replace)
            .await,
        |e| matches!(e, FsError::NoAttribute),
        "Replace of a missing xattr is NoAttribute",
    );
    ns.set_xattr(f.ino, b"user.a", b"1", XattrMode::Create)
        .await
        .unwrap();
    expect_err(
        ns.set_xattr(f.ino, b"user.a", b"2", XattrMode::Create)
            .await,
        |e| matches!(e, FsError::AlreadyExists),
        "Create of an existing xattr is AlreadyExists",
    );
    ns.set_xattr(f.ino, b"user.b", b"", XattrMode::Upsert)
        .await
        .unwrap();
    assert_eq!(ns.get_xattr(f.ino, b"user.a").await.unwrap(), b"1");
    assert_eq!(ns.list_xattr(f.ino).await.unwrap().len(), 2);
    ns.remove_xattr(f.ino, b"user.a").await.unwrap();
    expect_err(
        ns.remove_xattr(f.ino, b"user.a").await,
        |e| matches!(e, FsError::NoAttribute),
        "removing a missing xattr is NoAttribute",
    );
}

async fn commits<N: Namespace, C: ContentStore>(ns: &N, content: &C, dir: &Path) {
    let f = ns.create(ROOT_INO, b"content", &file()).await.unwrap();
    let empty = content.layout(f.ino).await.unwrap();
    assert_eq!(
        (empty.version, empty.size, empty.extents.len()),
        (None, 0, 0),
        "a new file has no version"
    );
    let path = dir.join("conformance-staged");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    // A sparse tail: 1 GiB of hole then 5 bytes.
    let sparse = dir.join("conformance-sparse");
    {
        use std::os::unix::fs::FileExt;
        let s = std::fs::File::create(&sparse).unwrap();
        s.write_all_at(b"tail!", 1 << 30).unwrap();
    }
    let g = ns.create(ROOT_INO, b"sparse", &file()).await.unwrap();
    let batch = [
        CommitRequest {
            ino: f.ino,
            source: CommitSource::File(path),
        },
        CommitRequest {
            ino: 999_999_999,
            source: CommitSource::Bytes(Bytes::from_static(b"x")),
        },
        CommitRequest {
            ino: g.ino,
            source: CommitSource::File(sparse),
        },
    ];
    let r = content.commit(&batch).await;
    assert_eq!(r.len(), 3, "one result per request");
    let c = r[0].as_ref().expect("commit of a staged file");
    assert_eq!(c.size, data.len() as u64);
    expect_err(
        r[1].clone(),
        |e| matches!(e, FsError::NotFound),
        "commit to a missing inode is NotFound, without failing the batch",
    );
    assert_eq!(r[2].as_ref().unwrap().size, (1 << 30) + 5);
    assert_eq!(
        ns.getattr(f.ino).await.unwrap().size,
        data.len() as u64,
        "commit sets the node's size"
    );
    let layout = content.layout(f.ino).await.unwrap();
    assert_eq!(layout.version, Some(c.version));
    let mut back = vec![0u8; layout.size as usize];
    for e in &layout.extents {
        let b = content.fetch(&e.chunk).await.unwrap();
        assert_eq!(
            b.len() as u64,
            e.len,
            "fetch returns exactly the extent's bytes"
        );
        back[e.offset as usize..(e.offset + e.len) as usize].copy_from_slice(&b);
    }
    assert!(back == data, "committed bytes read back");
    let before = ns.getattr(f.ino).await.unwrap();
    let small = content
        .commit(&[CommitRequest {
            ino: f.ino,
            source: CommitSource::Bytes(Bytes::from_static(b"inline")),
        }])
        .await;
    let v2 = small[0].as_ref().unwrap();
    assert_ne!(v2.version, c.version, "a commit makes a new version");
    assert_eq!(content.layout(f.ino).await.unwrap().size, 6);
    assert_eq!(
        before.mtime,
        ns.getattr(f.ino).await.unwrap().mtime,
        "commits leave mtime alone"
    );
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_backend_conforms() {
        let mem = crate::memory::MemoryBackend::new();
        let scratch = tempfile::tempdir().unwrap();
        super::run(&mem, &mem, scratch.path()).await;
    }
}
