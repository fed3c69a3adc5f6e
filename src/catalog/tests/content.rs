//! Versions, chunk references, refcounts, pruning, truncation and duplication.

use super::*;

fn file(cat: &Catalog, name: &str) -> Ino {
    cat.ensure_file(name, 0o644, 0o755, 1000, 100)
        .expect("ensure_file")
        .ino
}

fn chunk_ids(content: &Content) -> Vec<ChunkId> {
    content.chunks.iter().map(|r| r.chunk).collect()
}

#[test]
fn each_commit_is_a_new_current_version() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    let v1 = put(&cat, ino, &[1, 2], &mut w);
    let v2 = put(&cat, ino, &[2, 4], &mut w);
    assert_eq!((v1.seq, v2.seq), (1, 2));
    assert!(v2.current && v2.chunks == 2);
    let attr = cat.getattr(ino).unwrap();
    assert_eq!(
        (attr.version, attr.size, attr.mtime),
        (Some(2), v2.size, 1_000)
    );
    let versions = cat.versions(ino).unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.seq, v.current))
            .collect::<Vec<_>>(),
        [(1, false), (2, true)]
    );
    assert_eq!(cat.version_content(ino, 1).unwrap(), layout(&[1, 2]).0);
    assert_eq!(
        chunk_ids(&cat.current_content(ino).unwrap()),
        [chunk_id(2), chunk_id(4)]
    );
    assert_eq!(
        cat.version_content(ino, 3).unwrap_err().errno(),
        libc::EINVAL
    );
    // Chunk 2 is referenced by both versions, 1 and 4 by one each.
    assert_eq!(refcount(&cat, &chunk_id(2)), Some(2));
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    assert_consistent(&cat);
}

#[test]
fn identical_content_is_stored_once() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let a = file(&cat, "a");
    let b = file(&cat, "b");
    put(&cat, a, &[1, 2], &mut w);
    let shards_after_a = live_shards(&cat);
    // The second put finds every chunk already there: nothing new is written.
    put(&cat, b, &[1, 2, 1], &mut w);
    assert_eq!(live_shards(&cat), shards_after_a);
    assert_eq!(
        refcount(&cat, &chunk_id(1)),
        Some(3),
        "a chunk used twice in a version counts twice"
    );
    let stats = cat.stats().unwrap();
    assert_eq!(stats.chunks, 2);
    assert_eq!(stats.chunk_bytes, plain_len(1) + plain_len(2));
    assert_eq!(stats.referenced_bytes, 3 * plain_len(1) + 2 * plain_len(2));
    assert!(
        (stats.dedup_ratio - 507.0 / 203.0).abs() < 1e-9,
        "{}",
        stats.dedup_ratio
    );
    assert_consistent(&cat);
}

#[test]
fn a_commit_naming_missing_chunks_changes_nothing() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1], &mut w);
    let token = cat.begin_upload().unwrap();
    let (refs, size) = layout(&[1, 7, 8, 7]);
    let err = cat
        .commit_version(ino, size, 5, &refs, Some(&token))
        .unwrap_err();
    match &err {
        CatalogError::MissingChunks(ids) => assert_eq!(ids, &[chunk_id(7), chunk_id(8)]),
        other => panic!("expected MissingChunks, got {other:?}"),
    }
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::NotFound);
    assert_eq!(cat.versions(ino).unwrap().len(), 1);
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    // The token survived the failed commit: the engine uploads the missing chunks and
    // retries with it.
    upload_chunks(&cat, &token, &[7, 8], &mut w);
    let v = cat
        .commit_version(ino, size, 5, &refs, Some(&token))
        .unwrap();
    assert_eq!(v.seq, 2);
    assert!(
        cat.uploads().unwrap().is_empty(),
        "the commit ended the upload"
    );
    assert_consistent(&cat);
}

#[test]
fn malformed_versions_are_refused() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1, 2], &mut w);
    let r = |offset, len, n| ChunkRef {
        offset,
        len,
        chunk: chunk_id(n),
    };
    let cases: Vec<(Vec<ChunkRef>, u64)> = vec![
        (vec![r(0, 101, 1), r(100, 50, 2)], 1000), // overlap
        (vec![r(0, 101, 1)], 100),                 // beyond the size
        (vec![r(0, 0, 1)], 100),                   // empty reference
        (vec![r(0, 102, 1)], 1000),                // longer than the chunk
        (vec![r(u64::MAX, 2, 1)], u64::MAX),       // overflow
    ];
    for (refs, size) in cases {
        let err = cat.commit_version(ino, size, 0, &refs, None).unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::InvalidVersion { .. } | CatalogError::TooLarge { .. }
            ),
            "{refs:?}: {err:?}"
        );
    }
    // Holes and partial chunks are fine.
    let v = cat
        .commit_version(ino, 5000, 0, &[r(10, 50, 1), r(4000, 102, 2)], None)
        .unwrap();
    assert_eq!(v.size, 5000);
    let dir = cat.mkdir(Ino::ROOT, b"d", 0o755, 0, 0).unwrap();
    assert_eq!(
        cat.commit_version(dir.ino, 0, 0, &[], None)
            .unwrap_err()
            .errno(),
        libc::EISDIR
    );
    assert_eq!(cat.versions(ino).unwrap().len(), 2);
    assert_consistent(&cat);
}

#[test]
fn pruning_frees_only_unshared_chunks() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1, 2], &mut w); // v1
    put(&cat, ino, &[2, 4], &mut w); // v2
    put(&cat, ino, &[4, 5], &mut w); // v3 (current)
    let live_before = live_shards(&cat);
    let report = cat.prune_versions(ino, 2).unwrap();
    // v1 goes: chunk 1 (2+1 stripe) dies, chunk 2 lives on in v2.
    assert_eq!(
        report,
        PruneReport {
            versions: 1,
            chunks: 1,
            shards: 3
        }
    );
    assert_eq!(
        cat.versions(ino)
            .unwrap()
            .iter()
            .map(|v| v.seq)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(refcount(&cat, &chunk_id(1)), None);
    assert_eq!(refcount(&cat, &chunk_id(2)), Some(1));
    let dead: BTreeSet<ShardId> = live_before
        .difference(&live_shards(&cat))
        .copied()
        .collect();
    assert_eq!(dead.len(), 3);
    assert_eq!(
        queued_shards(&cat),
        dead,
        "exactly the dead chunk's shards are queued"
    );
    // keep_last 0 still keeps the current version.
    let report = cat.prune_versions(ino, 0).unwrap();
    assert_eq!(report.versions, 1);
    assert_eq!(cat.versions(ino).unwrap().len(), 1);
    assert!(cat.versions(ino).unwrap()[0].current);
    // v2 went: chunk 2 died, chunk 4 lives on in v3.
    assert_eq!(refcount(&cat, &chunk_id(2)), None);
    assert_eq!(refcount(&cat, &chunk_id(4)), Some(1));
    // Seqs are never reused after a prune.
    assert_eq!(put(&cat, ino, &[7], &mut w).seq, 4);
    assert_consistent(&cat);
}

#[test]
fn prune_all_keeps_the_newest_of_every_file() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let a = file(&cat, "a");
    let b = file(&cat, "b");
    for pool in [[1u8], [2], [4]] {
        put(&cat, a, &pool, &mut w);
        put(&cat, b, &pool, &mut w);
    }
    let report = cat.prune_all(1).unwrap();
    assert_eq!(report.versions, 4);
    assert_eq!(report.chunks, 2, "chunks 1 and 2 are gone from both files");
    for ino in [a, b] {
        let v = cat.versions(ino).unwrap();
        assert_eq!(v.iter().map(|v| v.seq).collect::<Vec<_>>(), [3]);
    }
    assert_eq!(refcount(&cat, &chunk_id(4)), Some(2));
    assert_consistent(&cat);
}

#[test]
fn replace_and_restore() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1], &mut w);
    put(&cat, ino, &[2], &mut w);
    // replace_version drops the version that was current (v2), not older ones.
    let (refs, size) = layout(&[2, 4]);
    let token = cat.begin_upload().unwrap();
    upload_chunks(&cat, &token, &[2, 4], &mut w);
    let v3 = cat
        .replace_version(ino, size, 9, &refs, Some(&token))
        .unwrap();
    assert_eq!(v3.seq, 3);
    assert_eq!(
        cat.versions(ino)
            .unwrap()
            .iter()
            .map(|v| v.seq)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(
        refcount(&cat, &chunk_id(2)),
        Some(1),
        "v2's reference went, v3's came"
    );
    // Restoring v1 is a new version with v1's content.
    let v4 = cat.restore_version(ino, 1).unwrap();
    assert_eq!((v4.seq, v4.size, v4.current), (4, plain_len(1), true));
    assert_eq!(chunk_ids(&cat.current_content(ino).unwrap()), [chunk_id(1)]);
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(2));
    assert_eq!(
        cat.restore_version(ino, 2).unwrap_err().errno(),
        libc::EINVAL
    );
    assert_consistent(&cat);
}

#[test]
fn truncation_reuses_chunks() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1, 2, 4], &mut w); // 101 + 102 + 104 bytes
    let shrink = |size| SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };

    // Cut in the middle of the second chunk.
    let attr = cat.setattr(ino, &shrink(150)).unwrap();
    assert_eq!((attr.size, attr.version), (150, Some(2)));
    let content = cat.current_content(ino).unwrap();
    assert_eq!(
        content.chunks,
        vec![
            ChunkRef {
                offset: 0,
                len: 101,
                chunk: chunk_id(1)
            },
            ChunkRef {
                offset: 101,
                len: 49,
                chunk: chunk_id(2)
            },
        ]
    );
    // Growing leaves a hole; no reference is added.
    let attr = cat.setattr(ino, &shrink(10_000)).unwrap();
    assert_eq!((attr.size, attr.version), (10_000, Some(3)));
    assert_eq!(cat.current_content(ino).unwrap().chunks.len(), 2);
    // Truncating to 0 clears the content; old versions stay.
    let attr = cat.setattr(ino, &shrink(0)).unwrap();
    assert_eq!((attr.size, attr.version), (0, None));
    let content = cat.current_content(ino).unwrap();
    assert_eq!(
        (content.version, content.size, content.chunks.len()),
        (None, 0, 0)
    );
    assert_eq!(cat.versions(ino).unwrap().len(), 3);
    assert_eq!(live_shards(&cat).len(), 9, "no chunk was freed or added");
    // Pruning with no current version keeps only what keep_last says.
    cat.prune_versions(ino, 0).unwrap();
    assert!(cat.versions(ino).unwrap().is_empty());
    assert_eq!(live_shards(&cat).len(), 0);
    assert_consistent(&cat);
}

#[test]
fn duplicate_shares_chunks() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let src = file(&cat, "src");
    put(&cat, src, &[1, 2], &mut w);
    cat.setattr(
        src,
        &SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let shards = live_shards(&cat);
    let copy = cat.duplicate(src, Ino::ROOT, b"copy").unwrap();
    assert_eq!(
        (copy.size, copy.mode, copy.mtime),
        (plain_len(1) + plain_len(2), 0o600, 1_000)
    );
    assert_eq!(live_shards(&cat), shards, "no data copied");
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(2));
    assert_eq!(
        cat.duplicate(src, Ino::ROOT, b"copy").unwrap_err().errno(),
        libc::EEXIST
    );
    // The copy outlives the original.
    cat.unlink(Ino::ROOT, b"src", LastLink::Free).unwrap();
    assert_eq!(
        chunk_ids(&cat.current_content(copy.ino).unwrap()),
        [chunk_id(1), chunk_id(2)]
    );
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    // An empty file duplicates to an empty file.
    let empty = file(&cat, "empty");
    let copy = cat.duplicate(empty, Ino::ROOT, b"empty2").unwrap();
    assert_eq!((copy.size, copy.version), (0, None));
    assert_consistent(&cat);
}

#[test]
fn inline_chunks_vanish_without_gc() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "small");
    put(&cat, ino, &[3], &mut w);
    match cat.chunk(&chunk_id(3)).unwrap().unwrap().data {
        ChunkData::Inline(bytes) => assert_eq!(bytes, vec![3; 120]),
        other => panic!("expected inline, got {other:?}"),
    }
    assert_eq!(cat.stats().unwrap().stored_bytes, 120);
    cat.unlink(Ino::ROOT, b"small", LastLink::Free).unwrap();
    assert_eq!(cat.chunk(&chunk_id(3)).unwrap(), None);
    assert_eq!(cat.gc_pending().unwrap(), 0);
    assert_consistent(&cat);
}

#[test]
fn chunk_records_and_placement() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1, 2], &mut w);
    let rec = cat.chunk(&chunk_id(1)).unwrap().unwrap();
    let ChunkData::Sharded { k, m, shards } = &rec.data else {
        panic!("expected shards");
    };
    assert_eq!(
        (*k, *m, shards.len(), rec.plain_len, rec.codec),
        (2, 1, 3, 101, 1)
    );
    let first = shards[0].clone();
    assert_eq!(
        cat.shard(&first.id).unwrap(),
        Some((chunk_id(1), first.clone()))
    );
    assert_eq!(cat.shard(&shard_id()).unwrap(), None);

    cat.set_holder(&first.id, &Holder("peer-9".into())).unwrap();
    assert_eq!(
        cat.shard(&first.id).unwrap().unwrap().1.holder,
        Holder("peer-9".into())
    );
    assert_eq!(
        cat.set_holder(&shard_id(), &Holder::local())
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    let on9 = cat.shards_on(&Holder("peer-9".into()), None, 10).unwrap();
    assert_eq!(
        on9,
        vec![(
            chunk_id(1),
            ShardRecord {
                holder: Holder("peer-9".into()),
                ..first
            }
        )]
    );
    let holders = cat.holders().unwrap();
    let names: Vec<(&str, u64)> = holders
        .iter()
        .map(|h| (h.holder.as_str(), h.shards))
        .collect();
    assert_eq!(
        names,
        [("peer-0", 1), ("peer-1", 2), ("peer-2", 2), ("peer-9", 1)]
    );
    let both = cat.chunks(&[chunk_id(2), chunk_id(9)]).unwrap();
    assert!(both[0].is_some() && both[1].is_none());
    assert_consistent(&cat);
}
