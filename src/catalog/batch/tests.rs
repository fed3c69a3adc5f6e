//! Batched commits: per-file savepoints, refcounts, pins and tokens.

use std::time::Duration;

use super::super::tests::{
    assert_consistent, chunk_id, fresh, intended_shards, queued_shards, record, refcount, shards,
};
use super::*;
use crate::catalog::ReapPolicy;

const NEW: NewNodes = NewNodes {
    dir_mode: 0o755,
    uid: 0,
    gid: 0,
};

fn file(path: &str, chunks: &[u8]) -> FileCommit {
    let (refs, size) = super::super::tests::layout(chunks);
    FileCommit {
        path: path.as_bytes().to_vec(),
        mode: 0o640,
        mtime: 7_000,
        size,
        chunks: refs,
    }
}

/// One batch the way `put -r` runs it: begin+pin, sharded chunks intended and committed,
/// inline ones and the files in the last transaction.
fn batch(cat: &Catalog, files: &[FileCommit], pool: &[u8]) -> Vec<Result<VersionInfo>> {
    let ids: Vec<ChunkId> = pool.iter().map(|&n| chunk_id(n)).collect();
    let (token, exists) = cat.begin_upload_pinning(&ids).unwrap();
    let (mut inline, mut sharded) = (Vec::new(), Vec::new());
    for (&n, e) in pool.iter().zip(exists) {
        if e {
            continue;
        }
        let r = record(n);
        match r.data {
            ChunkData::Inline(_) => inline.push(r),
            ChunkData::Sharded { .. } => sharded.push(r),
        }
    }
    let intents: Vec<_> = sharded.iter().flat_map(shards).collect();
    cat.intend_shards(&token, &intents).unwrap();
    let outcomes = cat.commit_chunks(&token, &sharded).unwrap();
    assert!(outcomes.iter().all(|o| *o == ChunkCommit::Stored));
    cat.commit_files(&token, &inline, files, &["tree".to_owned()], NEW)
        .unwrap()
}

#[test]
fn a_batch_commits_every_file_counts_references_and_ends_its_token() {
    let (_d, cat) = fresh();
    let dirs = cat
        .mkdir_p_many(
            &[b"t/a".to_vec(), b"t/b/c".to_vec(), b"t".to_vec()],
            0o750,
            0,
            0,
        )
        .unwrap();
    assert!(dirs.iter().all(|d| d.is_ok()));
    cat.create_file(cat.resolve("t").unwrap().ino, b"f", 0o644, 0, 0)
        .unwrap();
    // 3 and 6 are inline, 1 and 2 sharded; 3 is shared by two files; t/a is a directory.
    let files = [
        file("t/x", &[3]),
        file("t/y", &[3, 1]),
        file("t/a", &[6]),
        file("t/b/c/z", &[2]),
        file("t/empty", &[]),
    ];
    let r = batch(&cat, &files, &[1, 2, 3, 6]);
    assert!(r[0].is_ok() && r[1].is_ok() && r[3].is_ok() && r[4].is_ok());
    assert!(
        matches!(r[2], Err(CatalogError::IsDir { .. })),
        "{:?}",
        r[2]
    );
    assert_eq!(refcount(&cat, &chunk_id(3)), Some(2));
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    assert_eq!(
        refcount(&cat, &chunk_id(6)),
        None,
        "only the failed file used it"
    );
    let y = cat.resolve("t/y").unwrap();
    assert_eq!(
        (y.mode & 0o7777, y.mtime, y.size),
        (0o640, 7_000, r[1].as_ref().unwrap().size)
    );
    assert_eq!(cat.tags(y.ino).unwrap(), ["tree"]);
    assert!(cat.uploads().unwrap().is_empty(), "the token ended");
    assert_eq!(cat.resolve("t/empty").unwrap().size, 0);
    assert_consistent(&cat);

    // Again: new versions, the old ones kept, every chunk deduplicated.
    let again = batch(&cat, &files[..2], &[1, 3]);
    assert_eq!(
        again[1].as_ref().unwrap().seq,
        r[1].as_ref().unwrap().seq + 1
    );
    assert_eq!(cat.versions(y.ino).unwrap().len(), 2);
    assert_eq!(refcount(&cat, &chunk_id(3)), Some(4));
    let found = cat
        .resolve_many(&[b"t/y".to_vec(), b"t/nope".to_vec(), b"t/x/under".to_vec()])
        .unwrap();
    assert_eq!(found[0].as_ref().unwrap().as_ref().unwrap().ino, y.ino);
    assert!(found[1].as_ref().unwrap().is_none());
    assert!(found[2].is_err(), "a file in the middle of a path");
    let contents = cat.current_contents(&[y.ino, Ino(424_242)]).unwrap();
    assert_eq!(contents[0].as_ref().unwrap().chunks.len(), 2);
    assert!(contents[1].is_err());
    assert_consistent(&cat);
}

#[test]
fn a_batch_whose_token_was_reaped_commits_nothing_and_leaks_nothing() {
    let (_d, cat) = fresh();
    let (token, _) = cat.begin_upload_pinning(&[chunk_id(1)]).unwrap();
    let rec = record(1);
    let intents = shards(&rec);
    cat.intend_shards(&token, &intents).unwrap();
    // The process "died" after writing its shards but before committing them.
    let reaped = cat
        .reap_stale_uploads(&ReapPolicy {
            max_idle: Duration::ZERO,
            resume_window: Duration::ZERO,
        })
        .unwrap();
    assert_eq!(reaped.abandoned, 1);
    assert!(intended_shards(&cat).is_empty());
    assert_eq!(queued_shards(&cat).len(), intents.len());
    assert!(matches!(
        cat.commit_chunks(&token, &[rec]),
        Err(CatalogError::UploadGone { .. })
    ));
    let inline = record(3);
    assert!(matches!(
        cat.commit_files(&token, &[inline], &[file("f", &[3])], &[], NEW),
        Err(CatalogError::UploadGone { .. })
    ));
    assert!(cat.resolve("f").is_err(), "nothing committed");
    assert_eq!(refcount(&cat, &chunk_id(3)), None);
    assert_consistent(&cat);
}

#[test]
fn a_rerun_after_a_crash_reuses_the_chunks_the_dead_batch_committed() {
    let (_d, cat) = fresh();
    let (token, _) = cat.begin_upload_pinning(&[chunk_id(1)]).unwrap();
    let rec = record(1);
    cat.intend_shards(&token, &shards(&rec)).unwrap();
    cat.commit_chunks(&token, &[rec]).unwrap();
    // Killed before commit_files. The reaper keeps the pins for the resume window.
    let policy = ReapPolicy {
        max_idle: Duration::ZERO,
        resume_window: Duration::from_secs(3600),
    };
    cat.reap_stale_uploads(&policy).unwrap();
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(0), "kept, pinned");
    let r = batch(&cat, &[file("f", &[1])], &[1]);
    assert!(r[0].is_ok());
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    assert_consistent(&cat);
}
