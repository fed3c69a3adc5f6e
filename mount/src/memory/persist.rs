//! Snapshot encoding of the memory backend's state, and its atomic, durable write.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::state::{Dir, Node, State};
use crate::codec::{Dec, Enc};
use crate::error::FsError;
use crate::ports::{Extent, FsResult, Layout, NodeAttr, NodeKind, VersionId};

const MAGIC: &[u8; 8] = b"DMMEM001";

pub(super) fn encode(s: &State) -> Vec<u8> {
    let mut e = Enc::default();
    e.0.extend_from_slice(MAGIC);
    e.u64(s.next_ino).u64(s.next_chunk).u64(s.next_version);
    e.u64(s.nodes.len() as u64);
    for n in s.nodes.values() {
        let a = &n.attr;
        let kind = match a.kind {
            NodeKind::File => 0,
            NodeKind::Directory => 1,
            NodeKind::Symlink => 2,
        };
        e.u64(a.ino).u8(kind).u32(a.perm).u32(a.uid).u32(a.gid);
        e.u64(a.size)
            .u32(a.nlink)
            .i64(a.atime)
            .i64(a.mtime)
            .i64(a.ctime);
        e.u64(n.parent).bytes(&n.target);
        e.u64(n.xattrs.len() as u64);
        for (k, v) in &n.xattrs {
            e.bytes(k).bytes(v);
        }
        match &n.dir {
            None => {
                e.u8(0);
            }
            Some(d) => {
                e.u8(1).u64(d.next_cookie).u64(d.by_name.len() as u64);
                for (name, &(cookie, ino)) in &d.by_name {
                    e.bytes(name).u64(cookie).u64(ino);
                }
            }
        }
        let l = &n.layout;
        e.u64(l.version.map_or(0, |v| v.0)).u64(l.size);
        e.u64(l.extents.len() as u64);
        for x in &l.extents {
            e.u64(x.offset).u64(x.len).u64(x.chunk);
        }
    }
    e.u64(s.chunks.len() as u64);
    for (id, (bytes, refs)) in &s.chunks {
        e.u64(*id).u64(*refs as u64).bytes(bytes);
    }
    e.0
}

pub(super) fn decode(buf: &[u8]) -> Option<State> {
    let body = buf.strip_prefix(MAGIC)?;
    let mut d = Dec::new(body);
    let next_ino = d.u64()?;
    let next_chunk = d.u64()?;
    let next_version = d.u64()?;
    let count = d.u64()?;
    let mut nodes = HashMap::new();
    for _ in 0..count {
        let ino = d.u64()?;
        let kind = match d.u8()? {
            0 => NodeKind::File,
            1 => NodeKind::Directory,
            2 => NodeKind::Symlink,
            _ => return None,
        };
        let attr = NodeAttr {
            ino,
            kind,
            perm: d.u32()?,
            uid: d.u32()?,
            gid: d.u32()?,
            size: d.u64()?,
            nlink: d.u32()?,
            atime: d.i64()?,
            mtime: d.i64()?,
            ctime: d.i64()?,
        };
        let parent = d.u64()?;
        let target = d.bytes()?.to_vec();
        let mut xattrs = BTreeMap::new();
        for _ in 0..d.u64()? {
            let k = d.bytes()?.to_vec();
            xattrs.insert(k, d.bytes()?.to_vec());
        }
        let dir = match d.u8()? {
            0 => None,
            _ => {
                let mut dir = Dir {
                    next_cookie: d.u64()?,
                    ..Dir::default()
                };
                for _ in 0..d.u64()? {
                    let name = d.bytes()?.to_vec();
                    let cookie = d.u64()?;
                    let child = d.u64()?;
                    dir.by_cookie.insert(cookie, name.clone());
                    dir.by_name.insert(name, (cookie, child));
                }
                Some(dir)
            }
        };
        let version = match d.u64()? {
            0 => None,
            v => Some(VersionId(v)),
        };
        let size = d.u64()?;
        let mut extents = Vec::new();
        for _ in 0..d.u64()? {
            extents.push(Extent {
                offset: d.u64()?,
                len: d.u64()?,
                chunk: d.u64()?,
            });
        }
        let layout = Arc::new(Layout {
            version,
            size,
            extents,
        });
        nodes.insert(
            ino,
            Node {
                attr,
                parent,
                target,
                xattrs,
                dir,
                layout,
            },
        );
    }
    let mut chunks = HashMap::new();
    for _ in 0..d.u64()? {
        let id = d.u64()?;
        let refs = usize::try_from(d.u64()?).ok()?;
        chunks.insert(id, (Bytes::copy_from_slice(d.bytes()?), refs));
    }
    Some(State {
        nodes,
        next_ino,
        chunks,
        next_chunk,
        next_version,
    })
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file whole.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> FsResult<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| FsError::io("write snapshot", e))
}
