//! The CLI's queries: list, search, recent, info, stats, degraded chunks.

use super::*;

/// docs/report.pdf [1,2] tagged work+pdf, docs/notes.txt [4] tagged work,
/// docs2/x.PDF [1], a symlink and an empty dir.
fn sample() -> (tempfile::TempDir, Catalog) {
    let (d, cat) = fresh();
    let mut w = Written::default();
    let report = cat
        .ensure_file("docs/report.pdf", 0o644, 0o755, 0, 0)
        .unwrap();
    put(&cat, report.ino, &[1, 2], &mut w);
    cat.set_tags(report.ino, &["work", "pdf"]).unwrap();
    let notes = cat
        .ensure_file("docs/notes.txt", 0o600, 0o755, 0, 0)
        .unwrap();
    put(&cat, notes.ino, &[4], &mut w);
    put(&cat, notes.ino, &[4, 5], &mut w);
    cat.add_tags(notes.ino, &["work"]).unwrap();
    let x = cat.ensure_file("docs2/x.PDF", 0o644, 0o755, 0, 0).unwrap();
    put(&cat, x.ino, &[1], &mut w);
    cat.symlink(Ino::ROOT, b"link", b"docs", 0, 0).unwrap();
    cat.mkdir(Ino::ROOT, b"empty", 0o755, 0, 0).unwrap();
    (d, cat)
}

fn paths(entries: &[ListEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn list_by_prefix_and_tags() {
    let (_d, cat) = sample();
    let all = cat.list(&ListFilter::default()).unwrap();
    assert_eq!(
        paths(&all),
        [
            "docs",
            "docs/notes.txt",
            "docs/report.pdf",
            "docs2",
            "docs2/x.PDF",
            "empty",
            "link"
        ]
    );
    let notes = &all[1];
    assert_eq!(
        (notes.kind, notes.mode, notes.versions, notes.size),
        (NodeKind::File, 0o600, 2, plain_len(4) + plain_len(5))
    );
    assert_eq!(notes.tags, ["work"]);

    let under = |prefix: &str| {
        let f = ListFilter {
            prefix: prefix.as_bytes().to_vec(),
            tags: vec![],
        };
        cat.list(&f)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect::<Vec<_>>()
    };
    assert_eq!(under("docs/"), ["docs/notes.txt", "docs/report.pdf"]);
    assert_eq!(under("/docs/rep"), ["docs/report.pdf"]);
    assert_eq!(
        under("docs"),
        [
            "docs",
            "docs/notes.txt",
            "docs/report.pdf",
            "docs2",
            "docs2/x.PDF"
        ]
    );
    assert!(under("nowhere/x").is_empty());
    assert!(under("link/").is_empty(), "symlinks are not followed");

    let tagged = |tags: &[&str]| {
        let f = ListFilter {
            prefix: vec![],
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        cat.list(&f)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect::<Vec<_>>()
    };
    assert_eq!(tagged(&["work"]), ["docs/notes.txt", "docs/report.pdf"]);
    assert_eq!(
        tagged(&["work", "pdf"]),
        ["docs/report.pdf"],
        "all tags must match"
    );
    assert!(tagged(&["nope"]).is_empty());
}

#[test]
fn list_shows_odd_names_lossily() {
    let (_d, cat) = fresh();
    let dir = cat.mkdir(Ino::ROOT, b"\xffdir", 0o755, 0, 0).unwrap();
    cat.create_file(dir.ino, b"a\xfe", 0o644, 0, 0).unwrap();
    let all = cat.list(&ListFilter::default()).unwrap();
    assert_eq!(paths(&all), ["\u{fffd}dir", "\u{fffd}dir/a\u{fffd}"]);
    let f = ListFilter {
        prefix: b"\xffdir/".to_vec(),
        tags: vec![],
    };
    assert_eq!(
        cat.list(&f).unwrap().len(),
        1,
        "byte prefixes match raw names"
    );
}

#[test]
fn search_by_substring_regex_kind_and_extension() {
    let (_d, cat) = sample();
    let find = |q: SearchQuery| {
        cat.search(&q)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find(SearchQuery {
            pattern: "port".into(),
            ..Default::default()
        }),
        ["docs/report.pdf"]
    );
    assert_eq!(
        find(SearchQuery {
            pattern: "pdf".into(),
            ignore_case: true,
            ..Default::default()
        }),
        ["docs/report.pdf", "docs2/x.PDF"]
    );
    assert_eq!(
        find(SearchQuery {
            pattern: r"^docs/[a-n]".into(),
            regex: true,
            ..Default::default()
        }),
        ["docs/notes.txt"]
    );
    assert_eq!(
        find(SearchQuery {
            extension: Some(".pdf".into()),
            ..Default::default()
        }),
        ["docs/report.pdf", "docs2/x.PDF"]
    );
    assert_eq!(
        find(SearchQuery {
            kind: Some(NodeKind::Dir),
            ..Default::default()
        }),
        ["docs", "docs2", "empty"]
    );
    assert_eq!(
        find(SearchQuery {
            pattern: "docs".into(),
            limit: Some(2),
            ..Default::default()
        }),
        ["docs", "docs/notes.txt"]
    );
    let err = cat
        .search(&SearchQuery {
            pattern: "(".into(),
            regex: true,
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, CatalogError::Pattern(_)));
    assert_eq!(
        crate::Error::from(err).kind(),
        crate::ErrorKind::InvalidInput
    );
}

#[test]
fn recent_is_newest_first() {
    let (_d, cat) = sample();
    let recent = cat.recent(2, None).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].path.as_deref(), Some("docs2/x.PDF"));
    assert_eq!(
        (recent[1].path.as_deref(), recent[1].version.seq),
        (Some("docs/notes.txt"), 2)
    );
    assert!(recent[0].version.committed >= recent[1].version.committed);
    let all = cat.recent(100, None).unwrap();
    assert_eq!(all.len(), 4);
    let cutoff = all[1].version.committed;
    let since = cat.recent(100, Some(cutoff)).unwrap();
    let expected: Vec<_> = all
        .iter()
        .filter(|r| r.version.committed >= cutoff)
        .cloned()
        .collect();
    assert_eq!(since, expected);
    assert!(since.len() >= 2);
    assert!(cat.recent(100, Some(i64::MAX)).unwrap().is_empty());
}

#[test]
fn info_gathers_a_node() {
    let (_d, cat) = sample();
    let report = cat.resolve("docs/report.pdf").unwrap();
    cat.setxattr(report.ino, b"user.k", b"v", XattrMode::Set)
        .unwrap();
    cat.link(report.ino, Ino::ROOT, b"hard").unwrap();
    let info = cat.info(report.ino).unwrap();
    assert_eq!(info.paths, ["docs/report.pdf", "hard"]);
    assert_eq!(info.tags, ["pdf", "work"]);
    assert_eq!(info.xattrs, ["user.k"]);
    assert_eq!(info.versions.len(), 1);
    assert_eq!(
        info.current,
        Some(ChunkSummary {
            refs: 2,
            chunks: 2,
            inline: 0,
            plain_bytes: 203,
            stored_bytes: 6 * 64,
            degraded: 0
        })
    );
    let link = cat.info(cat.resolve("link").unwrap().ino).unwrap();
    assert_eq!(link.target.as_deref(), Some("docs"));
    assert_eq!(link.current, None);
    // Results serialise for --json.
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["attr"]["kind"], "file");
    assert_eq!(json["paths"][1], "hard");
}

#[test]
fn stats_add_up() {
    let (_d, cat) = sample();
    let s = cat.stats().unwrap();
    assert_eq!((s.files, s.dirs, s.symlinks, s.orphans), (3, 4, 1, 0));
    // report 203, notes 104 + 105, x 101.
    assert_eq!(s.logical_bytes, 203 + 209 + 101);
    assert_eq!((s.versions, s.version_bytes), (4, 203 + 104 + 209 + 101));
    assert_eq!(s.referenced_bytes, 203 + 104 + 209 + 101);
    // Distinct chunks 1, 2, 4, 5, all 2+1 stripes of 64-byte shards.
    assert_eq!((s.chunks, s.inline_chunks, s.shards), (4, 0, 12));
    assert_eq!(s.chunk_bytes, 101 + 102 + 104 + 105);
    assert_eq!((s.sealed_bytes, s.stored_bytes), (4 * 120, 12 * 64));
    assert_eq!((s.gc_pending, s.uploads), (0, 0));
    assert!((s.dedup_ratio - 617.0 / 412.0).abs() < 1e-9);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["chunks"], 4);
}

#[test]
fn degraded_chunks_are_reported() {
    let (_d, cat) = fresh();
    let ino = cat.ensure_file("f", 0o644, 0o755, 0, 0).unwrap().ino;
    let token = cat.begin_upload().unwrap();
    // A 2+1 stripe stored with only shards 0 and 2 (one holder was full).
    let mut rec = record(1);
    if let ChunkData::Sharded { shards, .. } = &mut rec.data {
        shards.remove(1);
    }
    cat.intend_shards(&token, &shards(&rec)).unwrap();
    cat.commit_chunk(&token, &rec).unwrap();
    let (refs, size) = layout(&[1]);
    cat.commit_version(ino, size, 0, &refs, Some(&token))
        .unwrap();
    let mut w = Written::default();
    let healthy = cat.ensure_file("g", 0o644, 0o755, 0, 0).unwrap().ino;
    put(&cat, healthy, &[2], &mut w);
    let degraded = cat.degraded(10).unwrap();
    assert_eq!(
        degraded,
        vec![DegradedChunk {
            chunk: chunk_id(1).to_hex(),
            k: 2,
            m: 1,
            shards: 2,
            missing: vec![1],
            refcount: 1
        }]
    );
    assert_eq!(cat.info(ino).unwrap().current.unwrap().degraded, 1);
    assert_consistent(&cat);
}
