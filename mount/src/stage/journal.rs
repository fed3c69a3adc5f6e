//! The staging journal: an append-only log, in the staging directory, of what each staged
//! file is, so that a restart after kill -9 or a power cut knows what to commit.
//!
//! Records (each `[len u32][crc32 u32][payload]`, little-endian; a torn or corrupt tail is
//! ignored, so a crash mid-append loses at most that record):
//!
//! * `Boot(boot_id)`: first record of a journal; the kernel boot id at creation.
//! * `Begin(id, ino, base_version, base_len, extents)`: staged file `id` for inode `ino`
//!   was created; bytes below `base_len` that are not materialized come from base version
//!   `base_version` (whose layout had `extents` extents).
//! * `Materialized(id, extent)`: base extent `extent` has been copied into the staged file
//!   (appended after the copy and before any user byte lands in that extent).
//! * `BaseLen(id, len)`: a truncate shortened the base part to `len`.
//! * `Inline(id, ino, bytes)`: an inline (in-memory) staged file was handed over; its
//!   whole content is in the record (a later record for `id` supersedes it).
//! * `Handover(id)`: close, release, fsync or an handle-less change handed the file over
//!   for commit: recovery must commit it.
//! * `Clean(id)`: the file's content was committed and nothing changed since.
//! * `End(id)`: the staged file was removed.
//!
//! Recovery rule: a staged file is committed at restart if its last `Handover`/`Clean`
//! record is a `Handover` and the journal's boot id is the current one. After a reboot
//! (power cut) unsynced staged bytes may be torn, so those files are discarded and the
//! last committed version (which holds everything `fsync` acknowledged) stays. Nothing is
//! fsync'd here: `close` does not promise durability, `fsync` waits for the commit itself.
//!
//! The journal is rewritten (compacted) at each start and whenever it outgrows
//! [`COMPACT_BYTES`] while mounted.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::codec::{Dec, Enc};
use crate::ports::{Ino, VersionId};

/// Journal size that triggers a rewrite from the live state.
pub(crate) const COMPACT_BYTES: u64 = 8 << 20;

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Boot(Vec<u8>),
    Begin {
        id: u64,
        ino: Ino,
        base: Option<VersionId>,
        base_len: u64,
        extents: u64,
    },
    Materialized {
        id: u64,
        extent: u64,
    },
    BaseLen {
        id: u64,
        len: u64,
    },
    Inline {
        id: u64,
        ino: Ino,
        data: Vec<u8>,
    },
    Handover(u64),
    Clean(u64),
    End(u64),
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            Record::Boot(b) => {
                e.u8(1).bytes(b);
            }
            Record::Begin {
                id,
                ino,
                base,
                base_len,
                extents,
            } => {
                e.u8(2).u64(*id).u64(*ino);
                match base {
                    Some(v) => e.u8(1).u64(v.0),
                    None => e.u8(0).u64(0),
                };
                e.u64(*base_len).u64(*extents);
            }
            Record::Materialized { id, extent } => {
                e.u8(3).u64(*id).u64(*extent);
            }
            Record::BaseLen { id, len } => {
                e.u8(4).u64(*id).u64(*len);
            }
            Record::Inline { id, ino, data } => {
                e.u8(8).u64(*id).u64(*ino).bytes(data);
            }
            Record::Handover(id) => {
                e.u8(5).u64(*id);
            }
            Record::Clean(id) => {
                e.u8(6).u64(*id);
            }
            Record::End(id) => {
                e.u8(7).u64(*id);
            }
        }
        let payload = e.0;
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    fn decode(payload: &[u8]) -> Option<Record> {
        let mut d = Dec::new(payload);
        let r = match d.u8()? {
            1 => Record::Boot(d.bytes()?.to_vec()),
            2 => {
                let id = d.u64()?;
                let ino = d.u64()?;
                let has = d.u8()?;
                let v = d.u64()?;
                Record::Begin {
                    id,
                    ino,
                    base: (has == 1).then_some(VersionId(v)),
                    base_len: d.u64()?,
                    extents: d.u64()?,
                }
            }
            3 => Record::Materialized {
                id: d.u64()?,
                extent: d.u64()?,
            },
            4 => Record::BaseLen {
                id: d.u64()?,
                len: d.u64()?,
            },
            5 => Record::Handover(d.u64()?),
            8 => Record::Inline {
                id: d.u64()?,
                ino: d.u64()?,
                data: d.bytes()?.to_vec(),
            },
            6 => Record::Clean(d.u64()?),
            7 => Record::End(d.u64()?),
            _ => return None,
        };
        d.is_empty().then_some(r)
    }
}

/// Parses a journal's bytes, stopping at the first torn or corrupt record.
pub(crate) fn parse(buf: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while buf.len() - pos >= 8 {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let start = pos + 8;
        let Some(end) = start.checked_add(len).filter(|&e| e <= buf.len()) else {
            break;
        };
        let payload = &buf[start..end];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match Record::decode(payload) {
            Some(r) => out.push(r),
            None => break,
        }
        pos = end;
    }
    out
}

/// What the journal says about one staged file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StagedRecord {
    pub(crate) ino: Ino,
    pub(crate) base: Option<VersionId>,
    pub(crate) base_len: u64,
    pub(crate) extents: u64,
    pub(crate) materialized: Vec<u64>,
    pub(crate) handed_over: bool,
    /// Content of an inline file (no local file exists).
    pub(crate) inline: Option<Vec<u8>>,
}

/// The journal's content folded per staged file: boot id and the files not ended.
#[derive(Clone, Debug, Default)]
pub(crate) struct Replay {
    pub(crate) boot: Option<Vec<u8>>,
    pub(crate) files: BTreeMap<u64, StagedRecord>,
}

pub(crate) fn replay(records: &[Record]) -> Replay {
    let mut r = Replay::default();
    for rec in records {
        match rec {
            Record::Boot(b) => r.boot = Some(b.clone()),
            Record::Begin {
                id,
                ino,
                base,
                base_len,
                extents,
            } => {
                r.files.insert(
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
                if let Some(f) = r.files.get_mut(id) {
                    f.materialized.push(*extent);
                }
            }
            Record::BaseLen { id, len } => {
                if let Some(f) = r.files.get_mut(id) {
                    f.base_len = f.base_len.min(*len);
                }
            }
            Record::Inline { id, ino, data } => {
                r.files.insert(
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
                if let Some(f) = r.files.get_mut(id) {
                    f.handed_over = true;
                }
            }
            Record::Clean(id) => {
                if let Some(f) = r.files.get_mut(id) {
                    f.handed_over = false;
                }
            }
            Record::End(id) => {
                r.files.remove(id);
            }
        }
    }
    r
}

/// The open journal file. Appends are single `write` calls on an `O_APPEND` descriptor.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Journal {
    /// Reads the existing journal at `path` (empty if none).
    pub(crate) fn read(path: &Path) -> io::Result<Vec<Record>> {
        match File::open(path) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                Ok(parse(&buf))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the journal at `path` with `records` (write a temporary file, fsync,
    /// rename, fsync the directory) and opens it for appending.
    pub(crate) fn rewrite(path: &Path, records: &[Record]) -> io::Result<Journal> {
        let tmp = path.with_extension("tmp");
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&r.encode());
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            len: buf.len() as u64,
        })
    }

    /// Appends one record. Returns the journal's length afterwards.
    pub(crate) fn append(&mut self, rec: &Record) -> io::Result<u64> {
        let bytes = rec.encode();
        self.file.write_all(&bytes)?;
        self.len += bytes.len() as u64;
        Ok(self.len)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Current length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// The kernel's boot id (changes on every boot), or empty where there is none.
pub(crate) fn boot_id() -> Vec<u8> {
    std::fs::read("/proc/sys/kernel/random/boot_id")
        .map(|mut v| {
            while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
                v.pop();
            }
            v
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Boot(b"boot-a".to_vec()),
            Record::Begin {
                id: 1,
                ino: 10,
                base: Some(VersionId(3)),
                base_len: 5000,
                extents: 2,
            },
            Record::Materialized { id: 1, extent: 1 },
            Record::BaseLen { id: 1, len: 4000 },
            Record::Handover(1),
            Record::Begin {
                id: 2,
                ino: 11,
                base: None,
                base_len: 0,
                extents: 0,
            },
            Record::Handover(2),
            Record::Clean(2),
            Record::Begin {
                id: 3,
                ino: 12,
                base: None,
                base_len: 0,
                extents: 0,
            },
            Record::End(3),
        ]
    }

    #[test]
    fn replay_folds_records_per_file() {
        let r = replay(&sample());
        assert_eq!(r.boot.as_deref(), Some(&b"boot-a"[..]));
        assert_eq!(r.files.len(), 2, "ended file 3 must be gone");
        let f1 = &r.files[&1];
        assert_eq!(f1.ino, 10);
        assert_eq!(f1.base, Some(VersionId(3)));
        assert_eq!(f1.base_len, 4000);
        assert_eq!(f1.materialized, vec![1]);
        assert!(f1.handed_over);
        assert!(
            !r.files[&2].handed_over,
            "clean after handover means nothing to do"
        );
    }

    #[test]
    fn torn_or_corrupt_tails_are_ignored() {
        let mut buf = Vec::new();
        for r in sample() {
            buf.extend_from_slice(&r.encode());
        }
        assert_eq!(parse(&buf), sample());
        // Torn last record: everything before it survives.
        let torn = &buf[..buf.len() - 3];
        assert_eq!(parse(torn), sample()[..sample().len() - 1].to_vec());
        // Flipped bit in the middle: parsing stops there, no panic.
        let mut bad = buf.clone();
        bad[20] ^= 0x40;
        assert!(parse(&bad).len() < sample().len());
        // Garbage length field.
        let mut garbage = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        garbage.extend_from_slice(&buf);
        assert!(parse(&garbage).is_empty());
    }

    #[test]
    fn rewrite_then_append_round_trips_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::rewrite(&path, &sample()[..2]).unwrap();
        j.append(&Record::Handover(1)).unwrap();
        let back = Journal::read(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2], Record::Handover(1));
    }
}
