//! Start-up recovery of the staging area.
//!
//! 1. Read the journal (a torn tail is ignored) and fold it per staged file.
//! 2. Keep the files whose last word is `Handover` (close, release or fsync handed them
//!    over) if the journal was written during the current boot. After a reboot the
//!    unsynced bytes of those files may be torn, so they are discarded: the committed
//!    version, which holds everything fsync acknowledged, stays.
//! 3. Delete every other staged file and any file in the directory the journal does not
//!    know (incomplete garbage).
//! 4. The kept files become staged copies again, dirty and handed over, so they are read
//!    from at once and committed by the committer in the background. A kept file whose
//!    base version is needed (not fully materialized) but is no longer the file's current
//!    version cannot be completed and is discarded with a warning.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::Fs;
use crate::error::FsError;
use crate::ports::{ContentStore, FsResult, Namespace};
use crate::stage::journal::{self, Journal, StagedRecord};
use crate::stage::staged::Staged;
use crate::stage::{data_path, journal_path, parse_data_name};

/// What recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Staged files from the last run queued for commit.
    pub recovered: usize,
    /// Staged files dropped (not handed over, from an earlier boot, or garbage).
    pub discarded: usize,
    /// Handed-over files that could not be completed (their base version is gone).
    pub unrecoverable: usize,
}

/// The journal's verdict before the filesystem exists.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) keep: HashMap<u64, StagedRecord>,
    pub(crate) next_id: u64,
    discarded: usize,
}

/// Steps 1–3.
pub(crate) fn scan(dir: &Path) -> FsResult<Found> {
    let records = Journal::read(&journal_path(dir)).map_err(|e| FsError::io("read journal", e))?;
    let replay = journal::replay(&records);
    let same_boot = replay.boot.as_deref() == Some(&journal::boot_id()[..]);
    let mut max_id = 0u64;
    let mut discarded = 0usize;
    // Newest staged file per inode only (an older one can linger if a crash hit between a
    // retirement and its End record).
    let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
    for (&id, rec) in &replay.files {
        max_id = max_id.max(id);
        if rec.handed_over && same_boot && (rec.inline.is_some() || data_path(dir, id).exists()) {
            let slot = newest.entry(rec.ino).or_insert(id);
            *slot = (*slot).max(id);
        }
    }
    let keep: HashMap<u64, StagedRecord> = newest
        .values()
        .map(|&id| (id, replay.files[&id].clone()))
        .collect();
    let entries = std::fs::read_dir(dir).map_err(|e| FsError::io("list staging dir", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("list staging dir", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = parse_data_name(&name) {
            max_id = max_id.max(id);
            if !keep.contains_key(&id) {
                discarded += 1;
                remove(&entry.path());
            }
        } else if name.ends_with(".tmp") {
            remove(&entry.path());
        }
    }
    Ok(Found {
        keep,
        next_id: max_id + 1,
        discarded,
    })
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove staging garbage");
    }
}

impl<N: Namespace, C: ContentStore> Fs<N, C> {
    /// Step 4.
    pub(crate) async fn adopt_recovered(&self, found: Found) -> FsResult<RecoveryReport> {
        let mut report = RecoveryReport {
            discarded: found.discarded,
            ..RecoveryReport::default()
        };
        let mut ids: Vec<_> = found.keep.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let rec = &found.keep[&id];
            match self.adopt_one(id, rec).await {
                Ok(true) => report.recovered += 1,
                Ok(false) => {
                    report.unrecoverable += 1;
                    self.inner.area.remove(id);
                }
                Err(FsError::NotFound) => {
                    report.discarded += 1;
                    self.inner.area.remove(id);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn adopt_one(&self, id: u64, rec: &StagedRecord) -> FsResult<bool> {
        if let Some(data) = &rec.inline {
            let staged = Staged::from_inline(&self.inner.area, id, rec.ino, data.clone());
            return Ok(self.adopt(staged));
        }
        let path = self.inner.area.data_path(id);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| FsError::io("open staged file", e))?;
        let needs_base = rec.base_len > 0 && (rec.materialized.len() as u64) < rec.extents;
        let base = if needs_base {
            let layout = self.inner.content.layout(rec.ino).await?;
            if layout.version != rec.base || layout.extents.len() as u64 != rec.extents {
                tracing::warn!(
                    ino = rec.ino,
                    id,
                    "staged file's base version is gone; discarding it"
                );
                return Ok(false);
            }
            Some(layout)
        } else {
            None
        };
        let staged = Staged::reopen(id, rec.ino, file, base, rec.base_len, &rec.materialized)?;
        Ok(self.adopt(staged))
    }

    /// Makes a recovered staged file live: dirty, handed over, queued.
    fn adopt(&self, staged: Staged<C::Chunk>) -> bool {
        staged.track.with(|t| {
            t.dirty_gen = 1;
            t.handed_gen = 1;
        });
        let staged = Arc::new(staged);
        let ino = staged.ino;
        self.inner.inodes.with(ino, |e| e.staged = Some(staged));
        self.inner.queue.push(ino, true);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::journal::Record;

    fn journal_with_boot(dir: &Path, boot: Vec<u8>) {
        let records = [
            Record::Boot(boot),
            Record::Begin {
                id: 7,
                ino: 3,
                base: None,
                base_len: 0,
                extents: 0,
            },
            Record::Handover(7),
            Record::Inline {
                id: 8,
                ino: 4,
                data: b"inline".to_vec(),
            },
        ];
        Journal::rewrite(&journal_path(dir), &records).unwrap();
        std::fs::write(data_path(dir, 7), b"staged").unwrap();
        std::fs::write(dir.join("99.data"), b"unknown garbage").unwrap();
    }

    #[test]
    fn handed_over_files_of_this_boot_are_kept_and_garbage_removed() {
        let dir = tempfile::tempdir().unwrap();
        journal_with_boot(dir.path(), journal::boot_id());
        let found = scan(dir.path()).unwrap();
        let mut kept: Vec<_> = found.keep.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [7, 8]);
        assert_eq!(found.discarded, 1, "the file the journal does not know");
        assert!(!dir.path().join("99.data").exists());
        assert!(found.next_id > 99, "ids are never reused");
    }

    #[test]
    fn after_a_reboot_uncommitted_files_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        journal_with_boot(dir.path(), b"some-other-boot".to_vec());
        let found = scan(dir.path()).unwrap();
        assert!(
            found.keep.is_empty(),
            "torn bytes must not replace a good version"
        );
        assert!(!data_path(dir.path(), 7).exists());
    }
}
