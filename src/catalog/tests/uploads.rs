//! The upload protocol: tokens, intents, pins, races, reaping and GC.

use std::time::Duration;

use super::*;

fn file(cat: &Catalog, name: &str) -> Ino {
    cat.ensure_file(name, 0o644, 0o755, 1000, 100)
        .expect("ensure_file")
        .ino
}

/// Reap everything stale at once: no resume window.
const NOW: ReapPolicy = ReapPolicy {
    max_idle: Duration::from_secs(3600),
    resume_window: Duration::ZERO,
};

#[test]
fn commits_need_a_live_token_and_announced_shards() {
    let (_d, cat) = fresh();
    let token = cat.begin_upload().unwrap();
    let rec = record(1);
    // Shards not announced first are refused: a crash after writing them would leak.
    let err = cat.commit_chunk(&token, &rec).unwrap_err();
    assert!(matches!(err, CatalogError::NotIntended { .. }), "{err:?}");
    assert_eq!(crate::Error::from(err).kind(), crate::ErrorKind::Internal);
    assert_eq!(cat.chunk(&rec.id).unwrap(), None);

    let unknown = UploadToken([7; 16]);
    for err in [
        cat.intend_shards(&unknown, &shards(&rec)).unwrap_err(),
        cat.commit_chunk(&unknown, &rec).unwrap_err(),
        cat.pin_existing(&unknown, &[rec.id]).unwrap_err(),
    ] {
        assert!(matches!(err, CatalogError::UploadGone { .. }), "{err:?}");
    }
    let ino = file(&cat, "f");
    let err = cat
        .commit_version(ino, 0, 0, &[], Some(&unknown))
        .unwrap_err();
    assert!(matches!(err, CatalogError::UploadGone { .. }));
    assert_eq!(cat.versions(ino).unwrap().len(), 0);

    // A shard id the catalog knows cannot be announced again, by anyone.
    let mut w = Written::default();
    upload_chunks(&cat, &token, &[1], &mut w);
    let other = cat.begin_upload().unwrap();
    let committed: Vec<(ShardId, Holder)> = live_shards(&cat)
        .into_iter()
        .map(|id| (id, Holder::local()))
        .collect();
    assert_eq!(committed.len(), 3);
    let err = cat.intend_shards(&other, &committed).unwrap_err();
    assert!(matches!(err, CatalogError::ShardKnown { .. }), "{err:?}");
    // Not even the upload that committed them may announce them again.
    let err = cat.intend_shards(&token, &committed).unwrap_err();
    assert!(matches!(err, CatalogError::ShardKnown { .. }), "{err:?}");
    let fresh_shards = shards(&record(2));
    cat.intend_shards(&token, &fresh_shards).unwrap();
    assert!(matches!(
        cat.intend_shards(&other, &fresh_shards).unwrap_err(),
        CatalogError::ShardKnown { .. }
    ));
    // The same token may announce them again (e.g. with the holders put_shards chose).
    cat.intend_shards(&token, &fresh_shards).unwrap();
    assert_consistent(&cat);
}

#[test]
fn malformed_chunk_records_are_refused() {
    let (_d, cat) = fresh();
    let token = cat.begin_upload().unwrap();
    let good = record(1);
    cat.intend_shards(&token, &shards(&good)).unwrap();
    let broken = |edit: fn(&mut Vec<ShardRecord>)| {
        let mut rec = good.clone();
        let ChunkData::Sharded { shards, .. } = &mut rec.data else {
            unreachable!("pool chunk 1 is sharded");
        };
        edit(shards);
        rec
    };
    let cases: [fn(&mut Vec<ShardRecord>); 4] = [
        |s| s[1].index = 0,    // repeated index
        |s| s[1].index = 5,    // beyond the 2+1 stripe
        |s| s.truncate(1),     // fewer than k
        |s| s[1].id = s[0].id, // one shard listed twice
    ];
    for edit in cases {
        let err = cat.commit_chunk(&token, &broken(edit)).unwrap_err();
        assert!(matches!(err, CatalogError::InvalidChunk { .. }), "{err:?}");
    }
    let mut inline = record(3);
    inline.sealed_len = 5; // disagrees with the bytes
    assert!(matches!(
        cat.commit_chunk(&token, &inline).unwrap_err(),
        CatalogError::InvalidChunk { .. }
    ));
    assert_eq!(cat.stats().unwrap().chunks, 0);
    // The well-formed record still commits.
    assert_eq!(
        cat.commit_chunk(&token, &good).unwrap(),
        ChunkCommit::Stored
    );
    assert_consistent(&cat);
}

#[test]
fn losing_a_race_queues_the_redundant_shards() {
    let (_d, cat) = fresh();
    let a = cat.begin_upload().unwrap();
    let b = cat.begin_upload().unwrap();
    // Both uploaders found chunk 1 missing and wrote their own shards.
    let (ra, rb) = (record(1), record(1));
    cat.intend_shards(&a, &shards(&ra)).unwrap();
    cat.intend_shards(&b, &shards(&rb)).unwrap();
    assert_eq!(cat.commit_chunk(&a, &ra).unwrap(), ChunkCommit::Stored);
    assert_eq!(cat.commit_chunk(&b, &rb).unwrap(), ChunkCommit::Redundant);
    let ids = |r: &ChunkRecord| {
        shards(r)
            .into_iter()
            .map(|(id, _)| id)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(live_shards(&cat), ids(&ra));
    assert_eq!(queued_shards(&cat), ids(&rb));
    assert!(intended_shards(&cat).is_empty());
    // Both versions commit against the one chunk.
    let (refs, size) = layout(&[1]);
    cat.commit_version(file(&cat, "x"), size, 0, &refs, Some(&a))
        .unwrap();
    cat.commit_version(file(&cat, "y"), size, 0, &refs, Some(&b))
        .unwrap();
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(2));
    assert_consistent(&cat);
}

#[test]
fn pins_keep_chunks_alive_until_the_version_commits() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let old = file(&cat, "old");
    put(&cat, old, &[1, 2], &mut w);
    let token = cat.begin_upload().unwrap();
    assert_eq!(
        cat.pin_existing(&token, &[chunk_id(1), chunk_id(9), chunk_id(2)])
            .unwrap(),
        [true, false, true]
    );
    // The only file using the chunks goes away meanwhile: pinned, they stay.
    cat.unlink(Ino::ROOT, b"old", LastLink::Free).unwrap();
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(0));
    assert_consistent(&cat);
    // The new version references chunk 1 only; the commit releases the pins and chunk 2,
    // now unreferenced, is collected in the same transaction.
    let (refs, size) = layout(&[1]);
    cat.commit_version(file(&cat, "new"), size, 0, &refs, Some(&token))
        .unwrap();
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    assert_eq!(refcount(&cat, &chunk_id(2)), None);
    assert_eq!(queued_shards(&cat).len(), 3);
    assert_consistent(&cat);
}

#[test]
fn ending_an_upload_queues_what_it_left() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let token = cat.begin_upload().unwrap();
    upload_chunks(&cat, &token, &[1], &mut w);
    let failed = shards(&record(2));
    cat.intend_shards(&token, &failed).unwrap();
    // Half of a failed write is abandoned explicitly; the rest waits for the end.
    assert_eq!(
        cat.abandon_shards(&token, &[failed[0].0, shard_id()])
            .unwrap(),
        1
    );
    assert_eq!(queued_shards(&cat), BTreeSet::from([failed[0].0]));
    cat.end_upload(&token).unwrap();
    assert_eq!(
        refcount(&cat, &chunk_id(1)),
        None,
        "unreferenced once unpinned"
    );
    assert!(intended_shards(&cat).is_empty() && live_shards(&cat).is_empty());
    assert_eq!(
        queued_shards(&cat),
        w.intended
            .iter()
            .copied()
            .chain(failed.iter().map(|s| s.0))
            .collect()
    );
    assert!(cat.uploads().unwrap().is_empty());
    cat.end_upload(&token).unwrap(); // idempotent
    assert_consistent(&cat);
}

#[test]
fn stale_uploads_of_dead_processes_are_reaped() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let dead = cat.begin_upload_as(dead_process()).unwrap();
    let alive = cat.begin_upload().unwrap();
    upload_chunks(&cat, &dead, &[1, 3], &mut w);
    let orphan_shards = shards(&record(2));
    cat.intend_shards(&dead, &orphan_shards).unwrap();
    upload_chunks(&cat, &alive, &[4], &mut w);

    let report = cat.reap_stale_uploads(&NOW).unwrap();
    assert_eq!(
        report,
        ReapReport {
            abandoned: 1,
            released: 1,
            shards: 6,
            chunks: 2
        }
    );
    // The dead upload's intents and its committed-but-unversioned chunk 1 are queued;
    // the live upload is untouched.
    assert_eq!(refcount(&cat, &chunk_id(1)), None);
    assert_eq!(refcount(&cat, &chunk_id(3)), None);
    assert_eq!(refcount(&cat, &chunk_id(4)), Some(0));
    assert_eq!(cat.uploads().unwrap().len(), 1);
    let err = cat.pin_existing(&dead, &[chunk_id(4)]).unwrap_err();
    assert!(matches!(err, CatalogError::UploadGone { .. }));
    let (refs, size) = layout(&[4]);
    cat.commit_version(file(&cat, "f"), size, 0, &refs, Some(&alive))
        .unwrap();
    assert_consistent(&cat);

    // An upload idle for longer than max_idle is stale even though its process lives.
    let idle = cat.begin_upload().unwrap();
    assert_eq!(
        cat.reap_stale_uploads(&NOW).unwrap().abandoned,
        0,
        "not idle yet"
    );
    // Last activity over an hour ago, rather than waiting for the clock to move.
    cat.lock()
        .execute("UPDATE uploads SET touched = touched - 3601000000000", [])
        .unwrap();
    assert_eq!(cat.reap_stale_uploads(&NOW).unwrap().abandoned, 1);
    assert!(matches!(
        cat.pin_existing(&idle, &[]).unwrap_err(),
        CatalogError::UploadGone { .. }
    ));
    assert_consistent(&cat);
}

#[test]
fn a_rerun_after_a_crash_reuses_committed_chunks() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    // The first run committed chunks 1 and 2, announced 4, and was killed.
    let crashed = cat.begin_upload_as(dead_process()).unwrap();
    upload_chunks(&cat, &crashed, &[1, 2], &mut w);
    let lost = shards(&record(4));
    cat.intend_shards(&crashed, &lost).unwrap();
    let committed = live_shards(&cat);

    // Opening the repository reaps with the default resume window: the crashed upload is
    // abandoned (its uncommitted shards queued) but its chunks stay pinned.
    let report = cat.reap_stale_uploads(&ReapPolicy::default()).unwrap();
    assert_eq!(
        (report.abandoned, report.released, report.chunks),
        (1, 0, 0)
    );
    assert_eq!(queued_shards(&cat), lost.iter().map(|s| s.0).collect());
    assert_consistent(&cat);

    // The rerun pins them and uploads only chunk 4.
    let rerun = cat.begin_upload().unwrap();
    assert_eq!(
        cat.pin_existing(&rerun, &[chunk_id(1), chunk_id(2), chunk_id(4)])
            .unwrap(),
        [true, true, false]
    );
    upload_chunks(&cat, &rerun, &[4], &mut w);
    let (refs, size) = layout(&[1, 2, 4]);
    cat.commit_version(file(&cat, "big"), size, 0, &refs, Some(&rerun))
        .unwrap();
    assert!(
        committed.is_subset(&live_shards(&cat)),
        "chunks of the first run were reused"
    );

    // When the window ends the abandoned token goes, and nothing in use is collected.
    let report = cat.reap_stale_uploads(&NOW).unwrap();
    assert_eq!((report.released, report.chunks), (1, 0));
    assert!(cat.uploads().unwrap().is_empty());
    assert_eq!(refcount(&cat, &chunk_id(1)), Some(1));
    assert_consistent(&cat);
}

#[test]
fn gc_hands_out_dead_shards_until_confirmed() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1, 2], &mut w);
    cat.unlink(Ino::ROOT, b"f", LastLink::Free).unwrap();
    assert_eq!(cat.gc_pending().unwrap(), 6);
    let batch = cat.gc_batch(4).unwrap();
    assert_eq!(batch.len(), 4);
    assert!(
        batch
            .iter()
            .all(|d| w.intended.contains(&d.shard) && d.holder.as_str().starts_with("peer-"))
    );
    // Until confirmed, a batch is handed out again (a crash before gc_done is harmless).
    assert_eq!(cat.gc_batch(4).unwrap(), batch);
    let ids: Vec<ShardId> = batch.iter().map(|d| d.shard).collect();
    assert_eq!(cat.gc_done(&ids).unwrap(), 4);
    assert_eq!(
        cat.gc_done(&ids).unwrap(),
        0,
        "confirming twice is harmless"
    );
    let rest = cat.gc_batch(100).unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|d| !ids.contains(&d.shard)));
    assert_consistent(&cat);
}

#[test]
fn discard_and_repair_shards() {
    let (_d, cat) = fresh();
    let mut w = Written::default();
    let ino = file(&cat, "f");
    put(&cat, ino, &[1], &mut w);
    // discard_shards queues only shards the catalog does not know.
    let live: Vec<(ShardId, Holder)> = live_shards(&cat)
        .into_iter()
        .map(|s| (s, Holder::local()))
        .collect();
    let stray = (shard_id(), Holder::local());
    assert_eq!(
        cat.discard_shards(&[live[0].clone(), stray.clone()])
            .unwrap(),
        1
    );
    assert_eq!(queued_shards(&cat), BTreeSet::from([stray.0]));

    // Repair rebuilds shard 0 of chunk 1 onto a new holder under an upload token.
    let before = cat.chunk(&chunk_id(1)).unwrap().unwrap();
    let ChunkData::Sharded { shards: old, .. } = &before.data else {
        unreachable!()
    };
    let token = cat.begin_upload().unwrap();
    let rebuilt = ShardRecord {
        index: 0,
        id: shard_id(),
        holder: Holder("peer-7".into()),
        len: 64,
    };
    let err = cat
        .attach_shards(&token, &chunk_id(1), std::slice::from_ref(&rebuilt))
        .unwrap_err();
    assert!(matches!(err, CatalogError::NotIntended { .. }));
    cat.intend_shards(&token, &[(rebuilt.id, rebuilt.holder.clone())])
        .unwrap();
    assert_eq!(
        cat.attach_shards(&token, &chunk_id(1), std::slice::from_ref(&rebuilt))
            .unwrap(),
        vec![old[0].id]
    );
    cat.end_upload(&token).unwrap();
    let after = cat.chunk(&chunk_id(1)).unwrap().unwrap();
    let ChunkData::Sharded { shards: new, .. } = &after.data else {
        unreachable!()
    };
    assert_eq!(new[0], rebuilt);
    assert!(queued_shards(&cat).contains(&old[0].id));
    let token = cat.begin_upload().unwrap();
    let err = cat.attach_shards(&token, &chunk_id(9), &[]).unwrap_err();
    assert!(matches!(err, CatalogError::MissingChunks(_)));
    assert_consistent(&cat);
}
