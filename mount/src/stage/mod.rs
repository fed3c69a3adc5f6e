//! The staging area: a local directory holding one sparse file per inode being written,
//! plus the [`journal`] that makes it crash-safe.
//!
//! Model: the first change to a file creates its staged copy `<id>.data` (id unique per
//! staging directory, never reused). Copy-on-write is *lazy*: a staged file starts empty
//! (with its length set) and records which extents of the base version below `base_len`
//! it has materialized; a write into an unmaterialized base extent first copies that
//! extent (one chunk fetch) unless the write covers it whole. Reads take the staged bytes
//! and overlay the base extents not yet materialized. Before a commit every remaining base
//! extent is materialized, so the store always receives a complete file. Truncating to
//! zero (or creating a file) needs no base at all: that is the common case (cp, tar, vim,
//! compilers write whole files).
//!
//! Invariants: `base_len <= size`; the staged file's length is `size`; bytes in
//! unmaterialized base extents are holes in the staged file (never user data); the journal
//! records every change of the materialized set and of `base_len` before user bytes rely
//! on it.

/// Largest file kept inline (in memory, journaled at handover) instead of in a local file.
pub(crate) const INLINE_MAX: u64 = 128 << 10;
/// Most bytes held inline across all files; beyond it new data goes to local files.
pub(crate) const INLINE_BUDGET: u64 = 64 << 20;

pub(crate) mod journal;
pub(crate) mod staged;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use journal::{Journal, Record, StagedRecord};

use crate::error::FsError;
use crate::ports::{FsResult, Ino, VersionId};

/// The staging directory with its journal.
#[derive(Debug)]
pub(crate) struct StagingArea {
    dir: PathBuf,
    boot: Vec<u8>,
    next_id: AtomicU64,
    inline_used: AtomicU64,
    journal: Mutex<JournalState>,
}

#[derive(Debug)]
struct JournalState {
    journal: Journal,
    /// Length right after the last rewrite: compaction waits until the journal doubles
    /// past it, so a large live set (pending inline files) is not rewritten per append.
    compacted_len: u64,
    /// Mirror of what the journal says about live staged files (for compaction).
    live: HashMap<u64, StagedRecord>,
}

impl StagingArea {
    /// Opens `dir` (created if missing) with a fresh journal holding `live` (the files kept
    /// by recovery). `next_id` must exceed every id in use.
    pub(crate) fn open(
        dir: &Path,
        live: HashMap<u64, StagedRecord>,
        next_id: u64,
    ) -> FsResult<StagingArea> {
        let boot = journal::boot_id();
        let path = journal_path(dir);
        let journal = Journal::rewrite(&path, &snapshot_records(&boot, &live))
            .map_err(|e| FsError::io("write staging journal", e))?;
        let compacted_len = journal.len();
        Ok(StagingArea {
            dir: dir.to_path_buf(),
            boot,
            next_id: AtomicU64::new(next_id.max(1)),
            inline_used: AtomicU64::new(0),
            journal: Mutex::new(JournalState {
                journal,
                compacted_len,
                live,
            }),
        })
    }

    /// Path of staged file `id`.
    pub(crate) fn data_path(&self, id: u64) -> PathBuf {
        data_path(&self.dir, id)
    }

    /// A fresh staged-file id.
    pub(crate) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `n` bytes of the inline budget; false if it is spent.
    pub(crate) fn charge(&self, n: u64) -> bool {
        self.inline_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&t| t <= INLINE_BUDGET)
            })
            .is_ok()
    }

    /// Takes `n` bytes of the inline budget unconditionally (recovery).
    pub(crate) fn force_charge(&self, n: u64) {
        self.inline_used.fetch_add(n, Ordering::AcqRel);
    }

    /// Returns `n` bytes to the inline budget.
    pub(crate) fn uncharge(&self, n: u64) {
        let _ = self
            .inline_used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }

    /// Creates the empty local file `id` for `ino`, of length `size`, and journals it.
    pub(crate) fn create_file(
        &self,
        id: u64,
        ino: Ino,
        base: Option<VersionId>,
        base_len: u64,
        extents: u64,
        size: u64,
    ) -> FsResult<std::fs::File> {
        let path = self.data_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| FsError::io("create staged file", e))?;
        file.set_len(size)
            .map_err(|e| FsError::io("size staged file", e))?;
        self.append(Record::Begin {
            id,
            ino,
            base,
            base_len,
            extents,
        })?;
        Ok(file)
    }

    /// Removes staged file `id` and journals its end.
    pub(crate) fn remove(&self, id: u64) {
        if let Err(e) = std::fs::remove_file(self.data_path(id))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(id, error = %e, "cannot remove staged file");
        }
        if let Err(e) = self.append(Record::End(id)) {
            tracing::warn!(id, error = %e, "cannot journal end of staged file");
        }
    }

    /// Appends a record, compacting the journal when it has grown too big.
    pub(crate) fn append(&self, rec: Record) -> FsResult<()> {
        let mut js = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        apply(&mut js.live, &rec);
        let len = js
            .journal
            .append(&rec)
            .map_err(|e| FsError::io("append staging journal", e))?;
        if len > journal::COMPACT_BYTES.max(js.compacted_len.saturating_mul(2)) {
            let records = snapshot_records(&self.boot, &js.live);
            let path = js.journal.path().to_path_buf();
            match Journal::rewrite(&path, &records) {
                Ok(j) => {
                    js.compacted_len = j.len();
                    js.journal = j;
                }
                Err(e) => tracing::warn!(error = %e, "cannot compact staging journal"),
            }
        }
        Ok(())
    }
}

fn apply(live: &mut HashMap<u64, StagedRecord>, rec: &Record) {
    match rec {
        Record::Boot(_) => {}
        Record::Begin {
            id,
            ino,
            base,
            base_len,
            extents,
        } => {
            live.insert(
                *id,
                StagedRecord {
                    ino: *ino,
                    base: *base,
                    base_len: *base_len,
                    extents: *extents,
                    ..StagedRecord::default()
                },
            );
        }
        Record::Materialized { id, extent } => {
            if let Some(f) = live.get_mut(id) {
                f.materialized.push(*extent);
            }
        }
        Record::BaseLen { id, len } => {
            if let Some(f) = live.get_mut(id) {
                f.base_len = f.base_len.min(*len);
            }
        }
        Record::Inline { id, ino, data } => {
            live.insert(
                *id,
                StagedRecord {
                    ino: *ino,
                    inline: Some(data.clone()),
                    handed_over: true,
                    ..StagedRecord::default()
                },
            );
        }
        Record::Handover(id) => {
            if let Some(f) = live.get_mut(id) {
                f.handed_over = true;
            }
        }
        Record::Clean(id) => {
            if let Some(f) = live.get_mut(id) {
                f.handed_over = false;
            }
        }
        Record::End(id) => {
            live.remove(id);
        }
    }
}

/// The records that recreate `live` in a fresh journal.
fn snapshot_records(boot: &[u8], live: &HashMap<u64, StagedRecord>) -> Vec<Record> {
    let mut out = vec![Record::Boot(boot.to_vec())];
    let mut ids: Vec<_> = live.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let f = &live[&id];
        if let Some(data) = &f.inline {
            out.push(Record::Inline {
                id,
                ino: f.ino,
                data: data.clone(),
            });
            continue;
        }
        out.push(Record::Begin {
            id,
            ino: f.ino,
            base: f.base,
            base_len: f.base_len,
            extents: f.extents,
        });
        for &extent in &f.materialized {
            out.push(Record::Materialized { id, extent });
        }
        if f.handed_over {
            out.push(Record::Handover(id));
        }
    }
    out
}

pub(crate) fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal")
}

pub(crate) fn data_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.data"))
}

/// Parses `<id>.data` file names.
pub(crate) fn parse_data_name(name: &str) -> Option<u64> {
    name.strip_suffix(".data")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_exactly_the_live_files() {
        let dir = tempfile::tempdir().unwrap();
        let area = StagingArea::open(dir.path(), HashMap::new(), 1).unwrap();
        let (a, b, c) = (area.new_id(), area.new_id(), area.new_id());
        area.create_file(a, 5, Some(VersionId(2)), 100, 1, 100)
            .unwrap();
        area.create_file(b, 6, None, 0, 0, 0).unwrap();
        area.append(Record::Inline {
            id: c,
            ino: 7,
            data: b"small".to_vec(),
        })
        .unwrap();
        area.append(Record::Materialized { id: a, extent: 0 })
            .unwrap();
        area.append(Record::Handover(a)).unwrap();
        area.remove(b);
        let live = area.journal.lock().unwrap().live.clone();
        let reopened = StagingArea::open(dir.path(), live, 10).unwrap();
        drop(reopened);
        let r = journal::replay(&Journal::read(&journal_path(dir.path())).unwrap());
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.files[&c].inline.as_deref(), Some(&b"small"[..]));
        assert!(r.files[&c].handed_over);
        let f = &r.files[&a];
        assert_eq!(
            (f.ino, f.materialized.clone(), f.handed_over),
            (5, vec![0], true)
        );
        assert!(!data_path(dir.path(), b).exists());
    }

    #[test]
    fn the_journal_is_compacted_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let area = StagingArea::open(dir.path(), HashMap::new(), 1).unwrap();
        let keep = area.new_id();
        area.append(Record::Inline {
            id: keep,
            ino: 1,
            data: vec![7; 1000],
        })
        .unwrap();
        for _ in 0..300 {
            let id = area.new_id();
            area.append(Record::Inline {
                id,
                ino: 2,
                data: vec![1; 32 << 10],
            })
            .unwrap();
            area.append(Record::End(id)).unwrap();
        }
        let len = std::fs::metadata(journal_path(dir.path())).unwrap().len();
        assert!(
            len < journal::COMPACT_BYTES + (64 << 10),
            "journal grew to {len} bytes"
        );
        let r = journal::replay(&Journal::read(&journal_path(dir.path())).unwrap());
        assert_eq!(r.files.len(), 1, "only the live file survives compaction");
        assert_eq!(r.files[&keep].inline.as_deref(), Some(&[7u8; 1000][..]));
    }
}
