//! Walking a local directory tree: every directory and regular file under a root, parents
//! before children, siblings in byte order of their names, symlinks not followed.
//!
//! Entries that cannot be read (permission denied, vanished while walking) are reported
//! as [`Entry::Unreadable`] with the reason, not silently dropped, so a backup can say
//! exactly what it skipped.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::port::FileMeta;

/// One thing found under the root. `rel` is the path relative to the root, `/`-separated.
#[derive(Debug)]
pub enum Entry {
    /// A directory (the root itself is not reported).
    Dir {
        /// Relative path.
        rel: Vec<u8>,
    },
    /// A regular file.
    File {
        /// Relative path.
        rel: Vec<u8>,
        /// Absolute local path.
        path: PathBuf,
        /// Its metadata.
        meta: FileMeta,
    },
    /// A symlink, fifo, socket or device: not stored.
    Skipped {
        /// Relative path.
        rel: Vec<u8>,
        /// What it is.
        what: &'static str,
    },
    /// Could not be read.
    Unreadable {
        /// Relative path.
        rel: Vec<u8>,
        /// Why.
        reason: String,
    },
}

/// Every entry under `root`, depth first, parents before children. Blocking.
pub fn walk(root: &Path) -> std::io::Result<Vec<Entry>> {
    let meta = fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut out = Vec::new();
    visit(root, &[], &mut out);
    Ok(out)
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        name.to_vec()
    } else {
        let mut v = rel.to_vec();
        v.push(b'/');
        v.extend_from_slice(name);
        v
    }
}

fn visit(dir: &Path, rel: &[u8], out: &mut Vec<Entry>) {
    let mut names = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect::<Vec<_>>(),
        Err(e) => {
            out.push(Entry::Unreadable {
                rel: rel.to_vec(),
                reason: e.to_string(),
            });
            return;
        }
    };
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let child = join(rel, name.as_bytes());
        match fs::symlink_metadata(&path) {
            Err(e) => out.push(Entry::Unreadable {
                rel: child,
                reason: e.to_string(),
            }),
            Ok(m) if m.is_dir() => {
                out.push(Entry::Dir { rel: child.clone() });
                visit(&path, &child, out);
            }
            Ok(m) if m.is_file() => out.push(Entry::File {
                rel: child,
                path,
                meta: FileMeta {
                    size: m.len(),
                    mtime_ns: m
                        .mtime()
                        .saturating_mul(1_000_000_000)
                        .saturating_add(m.mtime_nsec()),
                    mode: m.mode() & 0o7777,
                },
            }),
            Ok(m) => out.push(Entry::Skipped {
                rel: child,
                what: if m.file_type().is_symlink() {
                    "symlink"
                } else {
                    "special file"
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_order_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/z.txt"), b"zz").unwrap();
        fs::write(root.join("a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let names: Vec<String> = walk(root)
            .unwrap()
            .iter()
            .map(|e| match e {
                Entry::Dir { rel } => format!("d:{}", String::from_utf8_lossy(rel)),
                Entry::File { rel, meta, .. } => {
                    format!("f:{}:{}", String::from_utf8_lossy(rel), meta.size)
                }
                Entry::Skipped { rel, what } => {
                    format!("s:{}:{what}", String::from_utf8_lossy(rel))
                }
                Entry::Unreadable { rel, .. } => format!("u:{}", String::from_utf8_lossy(rel)),
            })
            .collect();
        assert_eq!(
            names,
            [
                "f:a.txt:1",
                "d:b",
                "d:b/c",
                "f:b/c/z.txt:2",
                "s:link:symlink"
            ]
        );
    }

    #[test]
    fn a_file_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(walk(&f).is_err());
    }
}
