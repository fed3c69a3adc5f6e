//! Creating and opening catalog files: schema versions, foreign and garbage files.

use super::*;

fn sha(path: &std::path::Path) -> Vec<u8> {
    blake3::hash(&std::fs::read(path).expect("reading the file"))
        .as_bytes()
        .to_vec()
}

#[test]
fn create_then_open_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let mut w = Written::default();
    {
        let cat = Catalog::create(&path).unwrap();
        let f = cat.ensure_file("a/b.txt", 0o644, 0o755, 1, 2).unwrap();
        put(&cat, f.ino, &[1, 3], &mut w);
    }
    let cat = Catalog::open(&path).unwrap();
    let f = cat.resolve("a/b.txt").unwrap();
    assert_eq!((f.uid, f.gid, f.size), (1, 2, plain_len(1) + plain_len(3)));
    assert_eq!(
        cat.current_content(f.ino).unwrap().chunks,
        layout(&[1, 3]).0
    );
    let mode: String = cat
        .lock()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = cat
        .lock()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: bool = cat
        .lock()
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert!(fk);
    // The root belongs to whoever created the catalog.
    let owner = std::fs::metadata(&path).unwrap();
    let root = cat.getattr(Ino::ROOT).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((root.uid, root.gid), (owner.uid(), owner.gid()));
    assert_consistent(&cat);
}

#[test]
fn create_refuses_an_existing_file_and_open_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let err = Catalog::open(&path)
        .err()
        .expect("a missing catalog is an error");
    assert!(matches!(err, CatalogError::Missing { .. }));
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::NotFound);
    assert!(!path.exists(), "open must not create the file");
    Catalog::create(&path).unwrap();
    let err = Catalog::create(&path)
        .err()
        .expect("creating twice is an error");
    assert!(matches!(err, CatalogError::AlreadyCreated { .. }));
    assert_eq!(
        crate::Error::from(err).kind(),
        crate::ErrorKind::AlreadyExists
    );
    assert!(Catalog::open(&path).is_ok(), "the first catalog is intact");
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    drop(Catalog::create(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        // Checkpoint, so that the main file compared below holds the whole database.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let before = sha(&path);
    let err = Catalog::open(&path)
        .err()
        .expect("a newer schema is refused");
    assert_eq!(
        err.to_string(),
        format!(
            "{} was written by a newer datamesh (schema 3; this build knows up to 1): upgrade datamesh",
            path.display()
        )
    );
    assert_eq!(
        crate::Error::from(err).kind(),
        crate::ErrorKind::Unsupported
    );
    assert_eq!(sha(&path), before, "the file was not modified");
}

#[test]
fn garbage_and_foreign_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not an SQLite database, just some bytes\n".repeat(100),
    )
    .unwrap();
    let before = sha(&garbage);
    let err = Catalog::open(&garbage).err().expect("garbage is refused");
    assert!(matches!(err, CatalogError::NotACatalog { .. }), "{err:?}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::Corrupt);
    assert_eq!(sha(&garbage), before);

    let foreign = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 1;")
            .unwrap();
    }
    let err = Catalog::open(&foreign)
        .err()
        .expect("another program's database is refused");
    assert!(err.to_string().contains("another program"), "{err}");
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::Corrupt);

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = Catalog::open(&empty)
        .err()
        .expect("an empty file is refused");
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::Corrupt);
}
