//! Namespace operations and their exact errors.

use super::*;

const UID: u32 = 1000;
const GID: u32 = 100;

fn mkdir(cat: &Catalog, parent: Ino, name: &[u8]) -> Attr {
    cat.mkdir(parent, name, 0o755, UID, GID).expect("mkdir")
}

fn touch(cat: &Catalog, parent: Ino, name: &[u8]) -> Attr {
    cat.create_file(parent, name, 0o644, UID, GID)
        .expect("create_file")
}

fn names(cat: &Catalog, dir: Ino) -> Vec<Vec<u8>> {
    cat.readdir(dir, 0, usize::MAX)
        .expect("readdir")
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[test]
fn create_lookup_getattr_agree() {
    let (_d, cat) = fresh();
    let root = cat.getattr(Ino::ROOT).unwrap();
    assert_eq!(
        (root.kind, root.nlink, root.mode),
        (NodeKind::Dir, 2, 0o755)
    );

    let dir = mkdir(&cat, Ino::ROOT, b"docs");
    assert_eq!(
        (dir.kind, dir.nlink, dir.uid, dir.gid),
        (NodeKind::Dir, 2, UID, GID)
    );
    let file = cat
        .create_file(dir.ino, b"a.txt", 0o100644, UID, GID)
        .unwrap();
    // File-type bits are not permission bits.
    assert_eq!(
        (file.kind, file.nlink, file.mode, file.size),
        (NodeKind::File, 1, 0o644, 0)
    );
    assert_eq!(file.version, None);

    assert_eq!(cat.lookup(dir.ino, b"a.txt").unwrap(), file);
    assert_eq!(cat.getattr(file.ino).unwrap(), file);
    assert_eq!(
        cat.getattr(Ino::ROOT).unwrap().nlink,
        3,
        "a subdirectory adds a link"
    );
    assert_eq!(cat.parent(dir.ino).unwrap(), Some(Ino::ROOT));
    assert_eq!(cat.parent(file.ino).unwrap(), Some(dir.ino));
    assert_eq!(cat.parent(Ino::ROOT).unwrap(), Some(Ino::ROOT));
    assert_consistent(&cat);
}

#[test]
fn existing_names_missing_names_and_wrong_kinds() {
    let (_d, cat) = fresh();
    let file = touch(&cat, Ino::ROOT, b"f");
    let err = cat
        .create_file(Ino::ROOT, b"f", 0o644, UID, GID)
        .unwrap_err();
    assert!(matches!(err, CatalogError::Exists { .. }), "{err:?}");
    assert_eq!(err.errno(), libc::EEXIST);
    assert_eq!(
        cat.mkdir(Ino::ROOT, b"f", 0o755, UID, GID)
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );

    let err = cat.lookup(Ino::ROOT, b"nope").unwrap_err();
    assert!(matches!(err, CatalogError::NoEntry { .. }));
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::NotFound);

    // A file is not a directory, wherever a directory is needed.
    let err = cat.lookup(file.ino, b"x").unwrap_err();
    assert_eq!(err.errno(), libc::ENOTDIR);
    assert_eq!(
        cat.readdir(file.ino, 0, 10).unwrap_err().errno(),
        libc::ENOTDIR
    );
    assert_eq!(
        cat.create_file(file.ino, b"x", 0o644, UID, GID)
            .unwrap_err()
            .errno(),
        libc::ENOTDIR
    );
    assert_eq!(cat.getattr(Ino(9999)).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        cat.getattr(Ino(u64::MAX)).unwrap_err().errno(),
        libc::ENOENT
    );
    assert_consistent(&cat);
}

#[test]
fn odd_byte_names_round_trip_exactly() {
    let (_d, cat) = fresh();
    let odd: &[u8] = b"\xff\xfe bin\x01\n\t\\ \xe2\x82";
    let file = touch(&cat, Ino::ROOT, odd);
    assert_eq!(cat.lookup(Ino::ROOT, odd).unwrap().ino, file.ino);
    assert_eq!(names(&cat, Ino::ROOT), vec![odd.to_vec()]);
    assert_eq!(cat.path_of(file.ino).unwrap(), Some(odd.to_vec()));
    // Another name differing only in invalid bytes is another entry.
    let other = touch(&cat, Ino::ROOT, b"\xfe\xff bin\x01\n\t\\ \xe2\x82");
    assert_ne!(other.ino, file.ino);
    assert_consistent(&cat);
}

#[test]
fn name_limits_and_invalid_names() {
    let (_d, cat) = fresh();
    assert!(
        cat.create_file(Ino::ROOT, &[b'n'; 255], 0o644, UID, GID)
            .is_ok()
    );
    let err = cat
        .create_file(Ino::ROOT, &[b'n'; 256], 0o644, UID, GID)
        .unwrap_err();
    assert!(matches!(err, CatalogError::NameTooLong { len: 256, .. }));
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
        let err = cat.mkdir(Ino::ROOT, bad, 0o755, UID, GID).unwrap_err();
        assert!(
            matches!(err, CatalogError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.errno(), libc::EINVAL);
        assert_eq!(
            crate::Error::from(err).kind(),
            crate::ErrorKind::InvalidInput
        );
    }
    assert_consistent(&cat);
}

#[test]
fn paths_may_reach_4096_bytes_but_not_more() {
    let (_d, cat) = fresh();
    // 15 directories of 255 bytes: 15 * 255 + 14 slashes = 3839 bytes.
    let mut dir = Ino::ROOT;
    for i in 0..15u8 {
        let mut name = vec![b'a' + i; 255];
        name[0] = b'd';
        dir = mkdir(&cat, dir, &name).ino;
    }
    // + "/" + 254 bytes = 4094.
    dir = mkdir(&cat, dir, &[b'z'; 254]).ino;
    assert_eq!(cat.path_of(dir).unwrap().unwrap().len(), 4094);
    // + "/x" = 4096: allowed; + "/xy" = 4097: too long.
    let leaf = touch(&cat, dir, b"x");
    assert_eq!(cat.path_of(leaf.ino).unwrap().unwrap().len(), 4096);
    let path = cat.path_of(leaf.ino).unwrap().unwrap();
    assert_eq!(cat.resolve(&path).unwrap().ino, leaf.ino);
    let err = cat.create_file(dir, b"xy", 0o644, UID, GID).unwrap_err();
    assert!(
        matches!(err, CatalogError::PathTooLong { len: 4097, .. }),
        "{err:?}"
    );
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
    // Links and renames are held to the same limit.
    assert_eq!(
        cat.link(leaf.ino, dir, b"xy").unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
    let top = touch(&cat, Ino::ROOT, b"t");
    let err = cat
        .rename(
            Ino::ROOT,
            b"t",
            dir,
            b"xy",
            RenameMode::Replace,
            LastLink::Free,
        )
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
    assert_eq!(
        cat.lookup(Ino::ROOT, b"t").unwrap().ino,
        top.ino,
        "nothing changed"
    );
    assert_consistent(&cat);
}

#[test]
fn readdir_pages_with_stable_cookies() {
    let (_d, cat) = fresh();
    for i in 0..10 {
        touch(&cat, Ino::ROOT, format!("f{i}").as_bytes());
    }
    let first = cat.readdir(Ino::ROOT, 0, 4).unwrap();
    assert_eq!(first.len(), 4);
    // Changes between pages: one entry already listed and one not yet listed go away,
    // a new one comes.
    cat.unlink(Ino::ROOT, b"f0", LastLink::Free).unwrap();
    cat.unlink(Ino::ROOT, b"f7", LastLink::Free).unwrap();
    touch(&cat, Ino::ROOT, b"new");
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut cookie = first.last().unwrap().cookie;
    loop {
        let page = cat.readdir(Ino::ROOT, cookie, 4).unwrap();
        let Some(last) = page.last() else { break };
        cookie = last.cookie;
        seen.extend(page.iter().map(|e| e.name.clone()));
    }
    let expected: Vec<Vec<u8>> = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f8", "f9", "new"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    assert_eq!(
        seen, expected,
        "each surviving entry once, in order, plus the new one"
    );
    // Entries come with their attributes (readdirplus).
    let listed = cat.readdir(Ino::ROOT, 0, 1).unwrap();
    assert_eq!(
        listed[0].attr,
        cat.lookup(Ino::ROOT, &listed[0].name).unwrap()
    );
    assert_consistent(&cat);
}

#[test]
fn unlink_and_rmdir_errors() {
    let (_d, cat) = fresh();
    let dir = mkdir(&cat, Ino::ROOT, b"d");
    touch(&cat, dir.ino, b"f");
    let err = cat.unlink(Ino::ROOT, b"d", LastLink::Free).unwrap_err();
    assert!(matches!(err, CatalogError::IsDir { .. }));
    assert_eq!(err.errno(), libc::EISDIR);
    let err = cat.rmdir(Ino::ROOT, b"d").unwrap_err();
    assert!(matches!(err, CatalogError::NotEmpty { .. }));
    assert_eq!(err.errno(), libc::ENOTEMPTY);
    assert_eq!(
        crate::Error::from(err).kind(),
        crate::ErrorKind::NotPermitted
    );
    assert_eq!(cat.rmdir(dir.ino, b"f").unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(
        cat.unlink(dir.ino, b"zz", LastLink::Free)
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    assert_eq!(
        cat.rmdir(Ino::ROOT, b"zz").unwrap_err().errno(),
        libc::ENOENT
    );

    let removed = cat.unlink(dir.ino, b"f", LastLink::Free).unwrap();
    assert!(removed.unreachable);
    assert_eq!(cat.getattr(removed.ino).unwrap_err().errno(), libc::ENOENT);
    cat.rmdir(Ino::ROOT, b"d").unwrap();
    assert_eq!(cat.getattr(dir.ino).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(cat.getattr(Ino::ROOT).unwrap().nlink, 2);
    assert!(names(&cat, Ino::ROOT).is_empty());
    assert_consistent(&cat);
}

#[test]
fn hard_links_share_one_node() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let dir = mkdir(&cat, Ino::ROOT, b"d");
    let file = touch(&cat, Ino::ROOT, b"a");
    put(&cat, file.ino, &[1, 2], &mut w);
    let linked = cat.link(file.ino, dir.ino, b"b").unwrap();
    assert_eq!((linked.ino, linked.nlink), (file.ino, 2));
    assert_eq!(cat.lookup(dir.ino, b"b").unwrap().ino, file.ino);
    assert_eq!(cat.info(file.ino).unwrap().paths, vec!["a", "d/b"]);

    assert_eq!(
        cat.link(file.ino, dir.ino, b"b").unwrap_err().errno(),
        libc::EEXIST
    );
    let err = cat.link(dir.ino, Ino::ROOT, b"dl").unwrap_err();
    assert!(matches!(err, CatalogError::DirLink { .. }));
    assert_eq!(err.errno(), libc::EPERM);

    let removed = cat.unlink(Ino::ROOT, b"a", LastLink::Free).unwrap();
    assert!(!removed.unreachable);
    let after = cat.getattr(file.ino).unwrap();
    assert_eq!(after.nlink, 1);
    assert_eq!(
        cat.current_content(file.ino).unwrap().chunks.len(),
        2,
        "content survives"
    );
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));

    let removed = cat.unlink(dir.ino, b"b", LastLink::Free).unwrap();
    assert!(removed.unreachable);
    assert_eq!(cat.getattr(file.ino).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        refcount(&cat, &chunk_id(1)),
        None,
        "the chunks went with the last link"
    );
    assert_consistent(&cat);
}

#[test]
fn orphans_live_until_freed() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let file = touch(&cat, Ino::ROOT, b"open");
    put(&cat, file.ino, &[1], &mut w);
    let removed = cat.unlink(Ino::ROOT, b"open", LastLink::Orphan).unwrap();
    assert!(removed.unreachable);
    // Still there by inode: attributes, content, new versions.
    let attr = cat.getattr(file.ino).unwrap();
    assert_eq!(attr.nlink, 0);
    assert_eq!(cat.path_of(file.ino).unwrap(), None);
    assert_eq!(cat.orphans().unwrap(), vec![file.ino]);
    put(&cat, file.ino, &[2], &mut w);
    assert_eq!(
        cat.current_content(file.ino).unwrap().chunks[0].chunk,
        chunk_id(2)
    );
    // It cannot be linked back, and a live owner keeps it through a reap.
    assert_eq!(
        cat.link(file.ino, Ino::ROOT, b"back").unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(cat.reap_orphans().unwrap(), 0);
    assert_consistent(&cat);

    assert!(cat.free_orphan(file.ino).unwrap());
    assert_eq!(cat.getattr(file.ino).unwrap_err().errno(), libc::ENOENT);
    assert!(cat.orphans().unwrap().is_empty());
    assert_eq!(refcount(&cat, &chunk_id(2)), None);
    // Freeing twice, or freeing a linked node, does nothing.
    assert!(!cat.free_orphan(file.ino).unwrap());
    let linked = touch(&cat, Ino::ROOT, b"linked");
    assert!(!cat.free_orphan(linked.ino).unwrap());
    assert!(cat.getattr(linked.ino).is_ok());
    assert_consistent(&cat);
}

#[test]
fn orphans_of_a_dead_process_are_reaped() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let file = touch(&cat, Ino::ROOT, b"f");
    put(&cat, file.ino, &[1], &mut w);
    cat.unlink(Ino::ROOT, b"f", LastLink::Orphan).unwrap();
    let dead = dead_process();
    cat.lock()
        .execute(
            "UPDATE orphans SET pid = ?1, proc_start = ?2",
            rusqlite::params![dead.pid, dead.start.map(sql::clamp)],
        )
        .unwrap();
    assert_eq!(cat.reap_orphans().unwrap(), 1);
    assert_eq!(cat.getattr(file.ino).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(refcount(&cat, &chunk_id(1)), None);
    assert!(
        !queued_shards(&cat).is_empty(),
        "its shards are queued for deletion"
    );
    assert_consistent(&cat);
}

#[test]
fn symlinks() {
    let (_d, cat) = fresh();
    let link = cat
        .symlink(Ino::ROOT, b"l", b"../target\xff", UID, GID)
        .unwrap();
    assert_eq!(
        (link.kind, link.size, link.nlink),
        (NodeKind::Symlink, 10, 1)
    );
    assert_eq!(cat.readlink(link.ino).unwrap(), b"../target\xff");
    let file = touch(&cat, Ino::ROOT, b"f");
    assert_eq!(cat.readlink(file.ino).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(
        cat.symlink(Ino::ROOT, b"e", b"", UID, GID)
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    // A symlink in the middle of a path is not followed.
    assert_eq!(cat.resolve("l/x").unwrap_err().errno(), libc::ENOTDIR);
    let hard = cat.link(link.ino, Ino::ROOT, b"l2").unwrap();
    assert_eq!(hard.nlink, 2);
    assert_consistent(&cat);
}

#[test]
fn setattr_changes_what_it_is_asked_to() {
    let (_d, cat) = fresh();
    let file = touch(&cat, Ino::ROOT, b"f");
    let changed = cat
        .setattr(
            file.ino,
            &SetAttr {
                mode: Some(0o104_600),
                uid: Some(7),
                atime: Some(11),
                mtime: Some(22),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((changed.mode, changed.uid, changed.gid), (0o4600, 7, GID));
    assert_eq!((changed.atime, changed.mtime), (11, 22));
    assert!(changed.ctime >= file.ctime);
    assert!(changed.change > file.change);
    let dir = mkdir(&cat, Ino::ROOT, b"d");
    let err = cat
        .setattr(
            dir.ino,
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.errno(), libc::EISDIR);
    assert_eq!(cat.getattr(dir.ino).unwrap().size, 0);
    assert_consistent(&cat);
}

fn rename(
    cat: &Catalog,
    from: (Ino, &[u8]),
    to: (Ino, &[u8]),
    mode: RenameMode,
) -> Result<Renamed> {
    cat.rename(from.0, from.1, to.0, to.1, mode, LastLink::Free)
}

#[test]
fn rename_moves_and_replaces() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let a = mkdir(&cat, Ino::ROOT, b"a");
    let b = mkdir(&cat, Ino::ROOT, b"b");
    let f = touch(&cat, a.ino, b"f");
    let cookie = cat.readdir(a.ino, 0, 10).unwrap()[0].cookie;

    // Within a directory: same node, same readdir cookie.
    rename(&cat, (a.ino, b"f"), (a.ino, b"g"), RenameMode::Replace).unwrap();
    let listed = cat.readdir(a.ino, 0, 10).unwrap();
    assert_eq!(
        (listed[0].name.as_slice(), listed[0].cookie),
        (&b"g"[..], cookie)
    );
    assert_eq!(listed[0].attr.ino, f.ino);

    // Across directories, replacing a file: the replaced one loses its last link.
    let victim = touch(&cat, b.ino, b"g");
    put(&cat, victim.ino, &[5], &mut w);
    let done = rename(&cat, (a.ino, b"g"), (b.ino, b"g"), RenameMode::Replace).unwrap();
    assert_eq!(
        done.replaced,
        Some(Removed {
            ino: victim.ino,
            kind: NodeKind::File,
            unreachable: true
        })
    );
    assert_eq!(cat.lookup(b.ino, b"g").unwrap().ino, f.ino);
    assert_eq!(cat.getattr(victim.ino).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(refcount(&cat, &chunk_id(5)), None);
    assert!(names(&cat, a.ino).is_empty());

    // A directory moving between parents moves a link between them.
    let sub = mkdir(&cat, a.ino, b"sub");
    assert_eq!(cat.getattr(a.ino).unwrap().nlink, 3);
    rename(&cat, (a.ino, b"sub"), (b.ino, b"sub"), RenameMode::Replace).unwrap();
    assert_eq!(cat.getattr(a.ino).unwrap().nlink, 2);
    assert_eq!(cat.getattr(b.ino).unwrap().nlink, 3);
    assert_eq!(cat.parent(sub.ino).unwrap(), Some(b.ino));

    // A directory may replace an empty directory, and nothing else.
    mkdir(&cat, a.ino, b"empty");
    rename(
        &cat,
        (b.ino, b"sub"),
        (a.ino, b"empty"),
        RenameMode::Replace,
    )
    .unwrap();
    assert_eq!(cat.lookup(a.ino, b"empty").unwrap().ino, sub.ino);
    assert_eq!(
        (
            cat.getattr(a.ino).unwrap().nlink,
            cat.getattr(b.ino).unwrap().nlink
        ),
        (3, 2)
    );
    touch(&cat, sub.ino, b"inside");
    let full = mkdir(&cat, b.ino, b"full");
    touch(&cat, full.ino, b"x");
    let err = rename(
        &cat,
        (b.ino, b"full"),
        (a.ino, b"empty"),
        RenameMode::Replace,
    )
    .unwrap_err();
    assert_eq!(err.errno(), libc::ENOTEMPTY);
    let err = rename(&cat, (a.ino, b"empty"), (b.ino, b"g"), RenameMode::Replace).unwrap_err();
    assert_eq!(err.errno(), libc::ENOTDIR);
    let err = rename(&cat, (b.ino, b"g"), (b.ino, b"full"), RenameMode::Replace).unwrap_err();
    assert_eq!(err.errno(), libc::EISDIR);
    let err = rename(&cat, (b.ino, b"nope"), (b.ino, b"x"), RenameMode::Replace).unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    assert_consistent(&cat);
}

#[test]
fn rename_no_replace_exchange_and_no_ops() {
    let (_d, cat) = fresh();
    let a = mkdir(&cat, Ino::ROOT, b"a");
    let f = touch(&cat, Ino::ROOT, b"f");
    let g = touch(&cat, Ino::ROOT, b"g");

    let err = rename(
        &cat,
        (Ino::ROOT, b"f"),
        (Ino::ROOT, b"g"),
        RenameMode::NoReplace,
    )
    .unwrap_err();
    assert_eq!(err.errno(), libc::EEXIST);
    rename(
        &cat,
        (Ino::ROOT, b"f"),
        (a.ino, b"f2"),
        RenameMode::NoReplace,
    )
    .unwrap();
    assert_eq!(cat.lookup(a.ino, b"f2").unwrap().ino, f.ino);

    // Exchange a directory and a file across parents: names swap, links follow.
    let d = mkdir(&cat, Ino::ROOT, b"d");
    assert_eq!(cat.getattr(Ino::ROOT).unwrap().nlink, 4);
    let done = rename(
        &cat,
        (Ino::ROOT, b"d"),
        (a.ino, b"f2"),
        RenameMode::Exchange,
    )
    .unwrap();
    assert_eq!(done.replaced, None);
    assert_eq!(cat.lookup(Ino::ROOT, b"d").unwrap().ino, f.ino);
    assert_eq!(cat.lookup(a.ino, b"f2").unwrap().ino, d.ino);
    assert_eq!(cat.getattr(Ino::ROOT).unwrap().nlink, 3);
    assert_eq!(cat.getattr(a.ino).unwrap().nlink, 3);
    let err = rename(
        &cat,
        (Ino::ROOT, b"g"),
        (Ino::ROOT, b"none"),
        RenameMode::Exchange,
    )
    .unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);

    // Renaming onto itself, or onto another link of the same file, changes nothing.
    let before = cat.readdir(Ino::ROOT, 0, 100).unwrap();
    rename(
        &cat,
        (Ino::ROOT, b"g"),
        (Ino::ROOT, b"g"),
        RenameMode::Replace,
    )
    .unwrap();
    cat.link(g.ino, Ino::ROOT, b"g-link").unwrap();
    rename(
        &cat,
        (Ino::ROOT, b"g"),
        (Ino::ROOT, b"g-link"),
        RenameMode::Replace,
    )
    .unwrap();
    assert_eq!(cat.lookup(Ino::ROOT, b"g").unwrap().nlink, 2);
    assert_eq!(cat.lookup(Ino::ROOT, b"g-link").unwrap().ino, g.ino);
    assert_eq!(
        cat.readdir(Ino::ROOT, 0, 100).unwrap().len(),
        before.len() + 1
    );
    assert_consistent(&cat);
}

#[test]
fn a_directory_cannot_move_into_itself() {
    let (_d, cat) = fresh();
    let a = mkdir(&cat, Ino::ROOT, b"a");
    let b = mkdir(&cat, a.ino, b"b");
    let c = mkdir(&cat, b.ino, b"c");
    for target in [a.ino, b.ino, c.ino] {
        let err = rename(
            &cat,
            (Ino::ROOT, b"a"),
            (target, b"moved"),
            RenameMode::Replace,
        )
        .unwrap_err();
        assert!(matches!(err, CatalogError::IntoItself { .. }), "{err:?}");
        assert_eq!(err.errno(), libc::EINVAL);
    }
    let err = rename(&cat, (Ino::ROOT, b"a"), (b.ino, b"c"), RenameMode::Exchange).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    let err = rename(&cat, (b.ino, b"c"), (Ino::ROOT, b"a"), RenameMode::Exchange).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    // Moving a subdirectory up out of its parent is fine.
    rename(&cat, (b.ino, b"c"), (Ino::ROOT, b"c"), RenameMode::Replace).unwrap();
    assert_eq!(cat.parent(c.ino).unwrap(), Some(Ino::ROOT));
    assert_consistent(&cat);
}

#[test]
fn replacing_rename_can_orphan_an_open_target() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    touch(&cat, Ino::ROOT, b"new");
    let open = touch(&cat, Ino::ROOT, b"old");
    put(&cat, open.ino, &[4], &mut w);
    let done = cat
        .rename(
            Ino::ROOT,
            b"new",
            Ino::ROOT,
            b"old",
            RenameMode::Replace,
            LastLink::Orphan,
        )
        .unwrap();
    assert_eq!(done.replaced.map(|r| r.ino), Some(open.ino));
    assert_eq!(cat.getattr(open.ino).unwrap().nlink, 0);
    assert_eq!(cat.orphans().unwrap(), vec![open.ino]);
    assert_eq!(refcount(&cat, &chunk_id(4)), Some(1));
    assert_consistent(&cat);
}

#[test]
fn xattrs() {
    let (_d, cat) = fresh();
    let f = touch(&cat, Ino::ROOT, b"f");
    cat.setxattr(f.ino, b"user.b", b"2", XattrMode::Set)
        .unwrap();
    cat.setxattr(f.ino, b"user.a", b"\x00\xff", XattrMode::Create)
        .unwrap();
    assert_eq!(cat.getxattr(f.ino, b"user.a").unwrap(), b"\x00\xff");
    assert_eq!(
        cat.listxattr(f.ino).unwrap(),
        vec![b"user.a".to_vec(), b"user.b".to_vec()]
    );
    let err = cat
        .setxattr(f.ino, b"user.a", b"x", XattrMode::Create)
        .unwrap_err();
    assert_eq!(err.errno(), libc::EEXIST);
    let err = cat
        .setxattr(f.ino, b"user.c", b"x", XattrMode::Replace)
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENODATA);
    cat.setxattr(f.ino, b"user.a", b"new", XattrMode::Replace)
        .unwrap();
    assert_eq!(cat.getxattr(f.ino, b"user.a").unwrap(), b"new");
    cat.removexattr(f.ino, b"user.a").unwrap();
    assert_eq!(
        cat.getxattr(f.ino, b"user.a").unwrap_err().errno(),
        libc::ENODATA
    );
    assert_eq!(
        cat.removexattr(f.ino, b"user.a").unwrap_err().errno(),
        libc::ENODATA
    );
    let big = vec![0u8; names::XATTR_VALUE_MAX + 1];
    assert_eq!(
        cat.setxattr(f.ino, b"user.big", &big, XattrMode::Set)
            .unwrap_err()
            .errno(),
        libc::E2BIG
    );
    // They go with the node.
    cat.unlink(Ino::ROOT, b"f", LastLink::Free).unwrap();
    assert_eq!(cat.listxattr(f.ino).unwrap_err().errno(), libc::ENOENT);
    assert_consistent(&cat);
}

#[test]
fn paths_resolve_create_and_name() {
    let (_d, cat) = fresh();
    let dir = cat.mkdir_p("/docs//2024/./q1", 0o750, UID, GID).unwrap();
    assert_eq!(
        cat.path_of(dir.ino).unwrap(),
        Some(b"docs/2024/q1".to_vec())
    );
    assert_eq!(
        cat.mkdir_p("docs/2024/q1", 0o750, UID, GID).unwrap().ino,
        dir.ino,
        "idempotent"
    );
    let file = cat
        .ensure_file("docs/2024/q1/report.pdf", 0o640, 0o750, UID, GID)
        .unwrap();
    assert_eq!(
        cat.ensure_file("docs/2024/q1/report.pdf", 0o600, 0o700, 0, 0)
            .unwrap(),
        file,
        "an existing file is returned as it is"
    );
    let made = cat
        .ensure_file("new/deep/f", 0o640, 0o700, UID, GID)
        .unwrap();
    assert_eq!(cat.resolve("new/deep").unwrap().mode, 0o700);
    assert_eq!(cat.resolve("new/deep/f").unwrap().ino, made.ino);
    assert_eq!(cat.resolve("").unwrap().ino, Ino::ROOT);
    assert_eq!(cat.resolve("/").unwrap().ino, Ino::ROOT);
    assert_eq!(
        cat.resolve("docs/2024/q1/report.pdf").unwrap().ino,
        file.ino
    );

    let err = cat.resolve("docs/nope/x").unwrap_err();
    assert!(err.to_string().contains("docs/nope"), "{err}");
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(
        cat.resolve("docs/../etc").unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(
        cat.mkdir_p("docs/2024/q1/report.pdf/sub", 0o755, UID, GID)
            .unwrap_err()
            .errno(),
        libc::ENOTDIR
    );
    assert_eq!(
        cat.ensure_file("docs", 0o644, 0o755, UID, GID)
            .unwrap_err()
            .errno(),
        libc::EISDIR
    );
    assert_eq!(
        cat.ensure_file("", 0o644, 0o755, UID, GID)
            .unwrap_err()
            .errno(),
        libc::EISDIR
    );
    assert_consistent(&cat);
}

#[test]
fn tags() {
    let (_d, cat) = fresh();
    let f = touch(&cat, Ino::ROOT, b"f");
    cat.set_tags(f.ino, &["work", "2024"]).unwrap();
    cat.add_tags(f.ino, &["work", "urgent"]).unwrap();
    assert_eq!(cat.tags(f.ino).unwrap(), vec!["2024", "urgent", "work"]);
    cat.remove_tags(f.ino, &["2024", "never-had"]).unwrap();
    assert_eq!(cat.tags(f.ino).unwrap(), vec!["urgent", "work"]);
    cat.set_tags(f.ino, &["only"]).unwrap();
    assert_eq!(cat.tags(f.ino).unwrap(), vec!["only"]);
    let err = cat.add_tags(f.ino, &["two words"]).unwrap_err();
    assert!(matches!(err, CatalogError::InvalidTag { .. }));
    assert_eq!(
        cat.tags(f.ino).unwrap(),
        vec!["only"],
        "a bad tag changes nothing"
    );
    let g = touch(&cat, Ino::ROOT, b"g");
    cat.add_tags(g.ino, &["only"]).unwrap();
    assert_eq!(
        cat.all_tags().unwrap(),
        vec![TagCount {
            tag: "only".into(),
            nodes: 2
        }]
    );
    cat.unlink(Ino::ROOT, b"g", LastLink::Free).unwrap();
    assert_eq!(cat.all_tags().unwrap()[0].nodes, 1, "tags go with the node");
    assert_consistent(&cat);
}
