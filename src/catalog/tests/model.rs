//! A proptest of random operation sequences against a simple in-memory model.
//!
//! Operations: put (a version made of chunks from a small pool, through the full upload
//! protocol), rm, rename, duplicate, prune, an upload killed part-way, reaping, and GC
//! rounds. After every step the catalog must satisfy:
//!
//! * each chunk's refcount equals the count of version references in the model;
//! * no chunk with refcount 0 exists unless an upload pins it (else it would have moved
//!   to the GC queue);
//! * live shards ∪ GC queue ∪ intended shards = every shard ever announced − those GC
//!   confirmed deleted, and the three sets are disjoint (nothing leaks, nothing is
//!   deleted while referenced);
//! * the namespace and each file's versions match the model;
//! * [`Catalog::verify`] finds nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

const NAMES: u8 = 4;
const POOL: u8 = 7;

#[derive(Clone, Debug)]
enum Op {
    Put {
        name: u8,
        chunks: Vec<u8>,
    },
    Rm {
        name: u8,
    },
    Rename {
        from: u8,
        to: u8,
    },
    Duplicate {
        from: u8,
        to: u8,
    },
    Prune {
        name: Option<u8>,
        keep: u32,
    },
    /// An upload that committed `committed` of its missing chunks and was killed.
    Crashed {
        chunks: Vec<u8>,
        committed: usize,
    },
    Reap,
    Gc {
        batch: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..NAMES, vec(0..POOL, 0..4)).prop_map(|(name, chunks)| Op::Put { name, chunks }),
        2 => (0..NAMES).prop_map(|name| Op::Rm { name }),
        2 => (0..NAMES, 0..NAMES).prop_map(|(from, to)| Op::Rename { from, to }),
        2 => (0..NAMES, 0..NAMES).prop_map(|(from, to)| Op::Duplicate { from, to }),
        1 => (proptest::option::of(0..NAMES), 0..3u32).prop_map(|(name, keep)| Op::Prune { name, keep }),
        1 => (vec(0..POOL, 1..4), 0..4usize).prop_map(|(chunks, committed)| Op::Crashed { chunks, committed }),
        1 => Just(Op::Reap),
        2 => (1..8usize).prop_map(|batch| Op::Gc { batch }),
    ]
}

fn name(n: u8) -> Vec<u8> {
    format!("f{n}").into_bytes()
}

/// The harness: the catalog, the model (name → versions, oldest first; the last is
/// current), and shard accounting.
struct Harness {
    _dir: tempfile::TempDir,
    cat: Catalog,
    files: BTreeMap<u8, Vec<Vec<u8>>>,
    written: Written,
    done: BTreeSet<ShardId>,
    dead: ProcessId,
}

impl Harness {
    fn new(dead: ProcessId) -> Self {
        let (dir, cat) = fresh();
        Harness {
            _dir: dir,
            cat,
            files: BTreeMap::new(),
            written: Written::default(),
            done: BTreeSet::new(),
            dead,
        }
    }

    fn ino(&self, n: u8) -> Option<Ino> {
        self.cat.lookup(Ino::ROOT, &name(n)).ok().map(|a| a.ino)
    }

    fn apply(&mut self, op: &Op) -> std::result::Result<(), TestCaseError> {
        let cat = &self.cat;
        match op {
            Op::Put { name: n, chunks } => {
                let ino = match self.ino(*n) {
                    Some(ino) => ino,
                    None => {
                        cat.create_file(Ino::ROOT, &name(*n), 0o644, 0, 0)
                            .unwrap()
                            .ino
                    }
                };
                put(cat, ino, chunks, &mut self.written);
                self.files.entry(*n).or_default().push(chunks.clone());
            }
            Op::Rm { name: n } => {
                let result = cat.unlink(Ino::ROOT, &name(*n), LastLink::Free);
                if self.files.remove(n).is_some() {
                    prop_assert!(result.unwrap().unreachable);
                } else {
                    prop_assert!(
                        matches!(result, Err(CatalogError::NoEntry { .. })),
                        "expected NoEntry, got {:?}",
                        result
                    );
                }
            }
            Op::Rename { from, to } => {
                let result = cat.rename(
                    Ino::ROOT,
                    &name(*from),
                    Ino::ROOT,
                    &name(*to),
                    RenameMode::Replace,
                    LastLink::Free,
                );
                match self.files.remove(from) {
                    None => prop_assert!(
                        matches!(result, Err(CatalogError::NoEntry { .. })),
                        "expected NoEntry, got {:?}",
                        result
                    ),
                    Some(versions) => {
                        let renamed = result.unwrap();
                        let replaced = from != to && self.files.contains_key(to);
                        prop_assert_eq!(renamed.replaced.is_some(), replaced);
                        self.files.insert(*to, versions);
                    }
                }
            }
            Op::Duplicate { from, to } => {
                let src = self.ino(*from);
                let result = src.map(|src| cat.duplicate(src, Ino::ROOT, &name(*to)));
                match (self.files.get(from).cloned(), result) {
                    (None, None) => {}
                    (Some(versions), Some(result)) => {
                        if self.files.contains_key(to) {
                            prop_assert!(
                                matches!(result, Err(CatalogError::Exists { .. })),
                                "expected Exists, got {:?}",
                                result
                            );
                        } else {
                            result.unwrap();
                            let current = versions.last().cloned().unwrap_or_default();
                            self.files.insert(*to, vec![current]);
                        }
                    }
                    (model, found) => {
                        return Err(TestCaseError::fail(format!(
                            "model has {model:?} but the catalog answered {found:?}"
                        )));
                    }
                }
            }
            Op::Prune { name: n, keep } => {
                let keep_n = usize::try_from((*keep).max(1)).unwrap();
                let prune = |versions: &mut Vec<Vec<u8>>| {
                    let cut = versions.len().saturating_sub(keep_n);
                    versions.drain(..cut).count() as u64
                };
                match n {
                    Some(n) => {
                        if let Some(ino) = self.ino(*n) {
                            let report = cat.prune_versions(ino, *keep).unwrap();
                            let removed = prune(self.files.get_mut(n).unwrap());
                            prop_assert_eq!(report.versions, removed);
                        }
                    }
                    None => {
                        let report = cat.prune_all(*keep).unwrap();
                        let removed: u64 = self.files.values_mut().map(prune).sum();
                        prop_assert_eq!(report.versions, removed);
                    }
                }
            }
            Op::Crashed { chunks, committed } => {
                let token = cat.begin_upload_as(self.dead).unwrap();
                let mut distinct = chunks.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let ids: Vec<ChunkId> = distinct.iter().map(|&c| chunk_id(c)).collect();
                let exists = cat.pin_existing(&token, &ids).unwrap();
                let missing: Vec<u8> = distinct
                    .iter()
                    .zip(exists)
                    .filter(|(_, e)| !e)
                    .map(|(&c, _)| c)
                    .collect();
                let records: Vec<ChunkRecord> = missing.iter().map(|&c| record(c)).collect();
                for rec in &records {
                    let s = shards(rec);
                    cat.intend_shards(&token, &s).unwrap();
                    self.written.intended.extend(s.iter().map(|(id, _)| *id));
                }
                for rec in records.iter().take(*committed) {
                    cat.commit_chunk(&token, rec).unwrap();
                }
            }
            Op::Reap => {
                let policy = ReapPolicy {
                    max_idle: Duration::from_secs(3600),
                    resume_window: Duration::ZERO,
                };
                cat.reap_stale_uploads(&policy).unwrap();
            }
            Op::Gc { batch } => {
                let dead = cat.gc_batch(*batch).unwrap();
                let ids: Vec<ShardId> = dead.iter().map(|d| d.shard).collect();
                prop_assert_eq!(cat.gc_done(&ids).unwrap(), ids.len() as u64);
                self.done.extend(ids);
            }
        }
        Ok(())
    }

    fn check(&self) -> std::result::Result<(), TestCaseError> {
        let cat = &self.cat;
        let report = cat.verify(false).unwrap();
        prop_assert!(report.is_ok(), "{}", report.problems.join("\n"));

        // Refcounts against the model.
        let mut expected: BTreeMap<ChunkId, u64> = BTreeMap::new();
        for versions in self.files.values() {
            for v in versions {
                for &c in v {
                    *expected.entry(chunk_id(c)).or_default() += 1;
                }
            }
        }
        let pinned: BTreeSet<ChunkId> = {
            let conn = cat.lock();
            let mut stmt = conn.prepare("SELECT chunk FROM pins").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        for n in 0..POOL {
            let id = chunk_id(n);
            let want = expected.get(&id).copied().unwrap_or(0);
            match refcount(cat, &id) {
                Some(have) => {
                    prop_assert_eq!(have, want, "refcount of chunk {}", n);
                    prop_assert!(
                        have > 0 || pinned.contains(&id),
                        "chunk {} dead but listed",
                        n
                    );
                }
                None => prop_assert_eq!(want, 0, "chunk {} referenced but missing", n),
            }
        }

        // Shard accounting.
        let (live, queued, intended) = (live_shards(cat), queued_shards(cat), intended_shards(cat));
        prop_assert!(
            live.is_disjoint(&queued)
                && live.is_disjoint(&intended)
                && queued.is_disjoint(&intended)
        );
        let mut known: BTreeSet<ShardId> = live.clone();
        known.extend(queued.iter().copied());
        known.extend(intended.iter().copied());
        let outstanding: BTreeSet<ShardId> = self
            .written
            .intended
            .difference(&self.done)
            .copied()
            .collect();
        prop_assert_eq!(known, outstanding);

        // Namespace and versions.
        let listed: Vec<Vec<u8>> = cat
            .readdir(Ino::ROOT, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        let names: Vec<Vec<u8>> = self.files.keys().map(|&n| name(n)).collect();
        prop_assert_eq!(listed_sorted, names);
        for (&n, versions) in &self.files {
            let ino = self.ino(n).unwrap();
            let content = cat.current_content(ino).unwrap();
            let current = versions.last().cloned().unwrap_or_default();
            prop_assert_eq!(&content.chunks, &layout(&current).0);
            prop_assert_eq!(content.size, layout(&current).1);
            let seqs = cat.versions(ino).unwrap();
            prop_assert_eq!(seqs.len(), versions.len());
            for (info, chunks) in seqs.iter().zip(versions) {
                prop_assert_eq!(
                    cat.version_content(ino, info.seq).unwrap(),
                    layout(chunks).0
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(ops in vec(op(), 1..30)) {
        let mut h = Harness::new(dead_process());
        for op in &ops {
            h.apply(op)?;
            h.check()?;
        }
        // In the end, reaping and collecting everything leaves exactly the live shards.
        h.apply(&Op::Reap)?;
        h.apply(&Op::Gc { batch: usize::MAX })?;
        h.check()?;
        prop_assert!(queued_shards(&h.cat).is_empty());
        prop_assert!(intended_shards(&h.cat).is_empty());
        let live = live_shards(&h.cat);
        let outstanding: BTreeSet<ShardId> = h.written.intended.difference(&h.done).copied().collect();
        prop_assert_eq!(live, outstanding);
    }
}
