//! Reference-model property test (after mountpoint-s3's reftests): random sequences of
//! create, open, write at offsets, truncate, read, close, fsync, mkdir, rmdir, unlink,
//! rename (all flags), link, symlink and remount are applied to a plain in-memory model
//! and to the core over the memory backend. Every step's outcome (value or errno) must
//! agree, and after every step the whole visible tree (kinds, contents, sizes, link
//! counts, symlink targets) must agree too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datamesh_mount::memory::MemoryBackend;
use datamesh_mount::ports::{NodeKind, ROOT_INO};
use datamesh_mount::{Caller, Fs, FsConfig, FsError, SetAttr, errno::errno};
use proptest::prelude::*;

const DIRS: [&str; 3] = ["", "d", "e"];
const NAMES: [&str; 4] = ["a", "b", "d", "e"];

#[derive(Clone, Debug)]
enum Op {
    Create(usize, usize),
    Open(usize, usize, bool),
    Write(usize, u32, u16, u8),
    Read(usize, u32, u16),
    Truncate(usize, u32),
    Close(usize),
    Fsync(usize),
    Mkdir(usize, usize),
    Rmdir(usize, usize),
    Unlink(usize, usize),
    Rename(usize, usize, usize, usize, u8),
    Link(usize, usize, usize, usize),
    Symlink(usize, usize),
    Remount,
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let n = 0..NAMES.len();
    prop_oneof![
        3 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Create(d, n)),
        2 => (d.clone(), n.clone(), any::<bool>()).prop_map(|(d, n, t)| Op::Open(d, n, t)),
        4 => (0..4usize, 0..300_000u32, 1..5000u16, any::<u8>()).prop_map(|(h, o, l, b)| Op::Write(h, o, l, b)),
        2 => (0..4usize, 0..300_000u32, 1..9000u16).prop_map(|(h, o, l)| Op::Read(h, o, l)),
        2 => (0..4usize, 0..300_000u32).prop_map(|(h, s)| Op::Truncate(h, s)),
        2 => (0..4usize).prop_map(Op::Close),
        1 => (0..4usize).prop_map(Op::Fsync),
        2 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Mkdir(d, n)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Rmdir(d, n)),
        2 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        3 => (d.clone(), n.clone(), d.clone(), n.clone(), 0..3u8).prop_map(|(a, b, c, e, f)| Op::Rename(a, b, c, e, f)),
        1 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Symlink(d, n)),
        1 => Just(Op::Remount),
    ]
}

// ----------------------------------------------------------------------------- model

#[derive(Clone, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
    Sym(String),
}

#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    nlink: u32,
    parent: u64,
}

#[derive(Debug)]
struct Model {
    nodes: HashMap<u64, Node>,
    next: u64,
}

type R<T> = Result<T, i32>;

impl Model {
    fn new() -> Model {
        let root = Node {
            kind: Kind::Dir(BTreeMap::new()),
            nlink: 2,
            parent: 1,
        };
        Model {
            nodes: HashMap::from([(1, root)]),
            next: 2,
        }
    }
    fn children(&self, dir: u64) -> R<&BTreeMap<String, u64>> {
        match &self.nodes[&dir].kind {
            Kind::Dir(c) => Ok(c),
            _ => Err(libc::ENOTDIR),
        }
    }
    fn children_mut(&mut self, dir: u64) -> &mut BTreeMap<String, u64> {
        match &mut self.nodes.get_mut(&dir).unwrap().kind {
            Kind::Dir(c) => c,
            _ => unreachable!("checked"),
        }
    }
    fn dir(&self, d: &str) -> R<u64> {
        if d.is_empty() {
            return Ok(1);
        }
        let id = *self.children(1)?.get(d).ok_or(libc::ENOENT)?;
        self.children(id)?;
        Ok(id)
    }
    fn lookup(&self, d: &str, n: &str) -> R<u64> {
        let dir = self.dir(d)?;
        self.children(dir)?.get(n).copied().ok_or(libc::ENOENT)
    }
    fn is_dir(&self, id: u64) -> bool {
        matches!(self.nodes[&id].kind, Kind::Dir(_))
    }
    fn add(&mut self, dir: u64, name: &str, kind: Kind) -> R<u64> {
        if self.children(dir)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let id = self.next;
        self.next += 1;
        let is_dir = matches!(kind, Kind::Dir(_));
        self.nodes.insert(
            id,
            Node {
                kind,
                nlink: if is_dir { 2 } else { 1 },
                parent: dir,
            },
        );
        self.children_mut(dir).insert(name.to_string(), id);
        if is_dir {
            self.nodes.get_mut(&dir).unwrap().nlink += 1;
        }
        Ok(id)
    }
    fn drop_link(&mut self, id: u64, open: &[Slot]) {
        let n = self.nodes.get_mut(&id).unwrap();
        n.nlink -= 1;
        if n.nlink == 0 && !open.iter().flatten().any(|&(m, _, _)| m == id) {
            self.nodes.remove(&id);
        }
    }
    fn within(&self, mut dir: u64, anc: u64) -> bool {
        loop {
            if dir == anc {
                return true;
            }
            if dir == 1 {
                return false;
            }
            dir = self.nodes[&dir].parent;
        }
    }
    fn rename(&mut self, sd: &str, sn: &str, dd: &str, dn: &str, mode: u8, open: &[Slot]) -> R<()> {
        // Both parents resolve before the source is looked up (as in rename(2)).
        let sp = self.dir(sd)?;
        let dp = self.dir(dd)?;
        let src = *self.children(sp)?.get(sn).ok_or(libc::ENOENT)?;
        let dst = self.children(dp)?.get(dn).copied();
        if mode == 1 && dst.is_some() {
            return Err(libc::EEXIST);
        }
        if mode == 2 {
            let dst = dst.ok_or(libc::ENOENT)?;
            if src == dst {
                return Ok(());
            }
            if (self.is_dir(src) && self.within(dp, src))
                || (self.is_dir(dst) && self.within(sp, dst))
            {
                return Err(libc::EINVAL);
            }
            self.children_mut(sp).insert(sn.to_string(), dst);
            self.children_mut(dp).insert(dn.to_string(), src);
            if sp != dp {
                for (id, from, to) in [(src, sp, dp), (dst, dp, sp)] {
                    if self.is_dir(id) {
                        self.nodes.get_mut(&id).unwrap().parent = to;
                        self.nodes.get_mut(&from).unwrap().nlink -= 1;
                        self.nodes.get_mut(&to).unwrap().nlink += 1;
                    }
                }
            }
            return Ok(());
        }
        if dst == Some(src) {
            return Ok(());
        }
        if self.is_dir(src) && self.within(dp, src) {
            return Err(libc::EINVAL);
        }
        if let Some(dst) = dst {
            match (self.is_dir(src), self.is_dir(dst)) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.children(dst)?.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.children_mut(sp).remove(sn);
        if let Some(dst) = dst {
            self.children_mut(dp).remove(dn);
            if self.is_dir(dst) {
                self.nodes.remove(&dst);
                self.nodes.get_mut(&dp).unwrap().nlink -= 1;
            } else {
                self.drop_link(dst, open);
            }
        }
        self.children_mut(dp).insert(dn.to_string(), src);
        if sp != dp && self.is_dir(src) {
            self.nodes.get_mut(&src).unwrap().parent = dp;
            self.nodes.get_mut(&sp).unwrap().nlink -= 1;
            self.nodes.get_mut(&dp).unwrap().nlink += 1;
        }
        Ok(())
    }
    fn tree(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(1u64, String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            for (name, &id) in self.children(dir).unwrap() {
                let path = format!("{prefix}/{name}");
                let n = &self.nodes[&id];
                let desc = match &n.kind {
                    Kind::File(d) => describe_file(n.nlink, d),
                    Kind::Dir(_) => {
                        stack.push((id, path.clone()));
                        format!("dir nlink {}", n.nlink)
                    }
                    Kind::Sym(t) => format!("symlink {t}"),
                };
                out.insert(path, desc);
            }
        }
        out
    }
}

fn describe_file(nlink: u32, d: &[u8]) -> String {
    let sum: u64 = d
        .iter()
        .enumerate()
        .map(|(i, &b)| (i as u64 + 1) * b as u64)
        .sum();
    format!("file nlink {nlink} len {} sum {sum}", d.len())
}

// ----------------------------------------------------------------------------- system

type MemFs = Fs<MemoryBackend, MemoryBackend>;

fn cfg() -> FsConfig {
    FsConfig {
        batch_delay: Duration::from_millis(1),
        retry_initial: Duration::from_millis(5),
        ..FsConfig::default()
    }
}

async fn start(mem: &MemoryBackend, stage: &std::path::Path) -> MemFs {
    Fs::start(Arc::new(mem.clone()), Arc::new(mem.clone()), stage, cfg())
        .await
        .unwrap()
        .0
}

fn code(e: FsError) -> i32 {
    errno(&e)
}

async fn sys_dir(fs: &MemFs, d: &str) -> R<u64> {
    if d.is_empty() {
        return Ok(ROOT_INO);
    }
    let a = fs.lookup(ROOT_INO, d.as_bytes()).await.map_err(code)?;
    if a.kind != NodeKind::Directory {
        return Err(libc::ENOTDIR);
    }
    Ok(a.ino)
}

async fn sys_lookup(fs: &MemFs, d: &str, n: &str) -> R<datamesh_mount::ports::NodeAttr> {
    let dir = sys_dir(fs, d).await?;
    fs.lookup(dir, n.as_bytes()).await.map_err(code)
}

async fn sys_tree(fs: &MemFs) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for it in fs.readdir(dir, 0, 10_000).await.unwrap() {
            let Some(a) = it.attr else { continue };
            let path = format!("{prefix}/{}", String::from_utf8(it.name).unwrap());
            let desc = match a.kind {
                NodeKind::File => {
                    let o = fs.open(a.ino, libc::O_RDONLY).await.unwrap();
                    let mut data = Vec::new();
                    loop {
                        let chunk = fs.read(o.fh, data.len() as u64, 1 << 20).await.unwrap();
                        if chunk.is_empty() {
                            break;
                        }
                        data.extend_from_slice(&chunk);
                    }
                    fs.release(o.fh).await.unwrap();
                    assert_eq!(
                        data.len() as u64,
                        a.size,
                        "{path}: size attribute vs content"
                    );
                    describe_file(a.nlink, &data)
                }
                NodeKind::Directory => {
                    stack.push((a.ino, path.clone()));
                    format!("dir nlink {}", a.nlink)
                }
                NodeKind::Symlink => {
                    format!(
                        "symlink {}",
                        String::from_utf8(fs.readlink(a.ino).await.unwrap()).unwrap()
                    )
                }
            };
            out.insert(path, desc);
        }
    }
    out
}

/// An open handle: (model node, core fh, core inode), None once closed.
type Slot = Option<(u64, u64, u64)>;

struct Handles {
    slots: Vec<Slot>,
}

impl Handles {
    fn get(&self, i: usize) -> Option<(u64, u64, u64)> {
        let open: Vec<_> = self.slots.iter().flatten().copied().collect();
        if open.is_empty() {
            None
        } else {
            Some(open[i % open.len()])
        }
    }
}

async fn run(ops: Vec<Op>) {
    let mem = MemoryBackend::with_chunk_size(64 * 1024);
    let stage = tempfile::tempdir().unwrap();
    let mut fs = start(&mem, stage.path()).await;
    let mut model = Model::new();
    let mut h = Handles { slots: Vec::new() };
    for (step, op) in ops.iter().enumerate() {
        let (want, got): (String, String) = match op.clone() {
            Op::Create(d, n) => {
                let (d, n) = (DIRS[d], NAMES[n]);
                let w = model
                    .dir(d)
                    .and_then(|dir| model.add(dir, n, Kind::File(Vec::new())));
                let g = async {
                    let dir = sys_dir(&fs, d).await?;
                    fs.create(dir, n.as_bytes(), 0o644, 0, libc::O_RDWR, Caller::ROOT)
                        .await
                        .map_err(code)
                }
                .await;
                if let (Ok(id), Ok((a, o))) = (&w, &g) {
                    h.slots.push(Some((*id, o.fh, a.ino)));
                }
                (
                    format!("{:?}", w.map(|_| ())),
                    format!("{:?}", g.map(|_| ())),
                )
            }
            Op::Open(d, n, trunc) => {
                let (d, n) = (DIRS[d], NAMES[n]);
                let Ok(id) = model.lookup(d, n) else { continue };
                if !matches!(model.nodes[&id].kind, Kind::File(_)) {
                    continue;
                }
                let attr = sys_lookup(&fs, d, n).await.unwrap();
                let flags = libc::O_RDWR | if trunc { libc::O_TRUNC } else { 0 };
                let o = fs.open(attr.ino, flags).await.unwrap();
                if trunc && let Kind::File(data) = &mut model.nodes.get_mut(&id).unwrap().kind {
                    data.clear();
                }
                h.slots.push(Some((id, o.fh, attr.ino)));
                continue;
            }
            Op::Write(i, off, len, byte) => {
                let Some((id, fh, _)) = h.get(i) else {
                    continue;
                };
                let data = vec![byte; len as usize];
                if let Kind::File(d) = &mut model.nodes.get_mut(&id).unwrap().kind {
                    let end = off as usize + data.len();
                    if d.len() < end {
                        d.resize(end, 0);
                    }
                    d[off as usize..end].copy_from_slice(&data);
                }
                let g = fs
                    .write(fh, off as u64, Bytes::from(data), false)
                    .await
                    .map_err(code);
                ("Ok(())".into(), format!("{:?}", g.map(|_| ())))
            }
            Op::Read(i, off, len) => {
                let Some((id, fh, _)) = h.get(i) else {
                    continue;
                };
                let w = match &model.nodes[&id].kind {
                    Kind::File(d) => {
                        let s = (off as usize).min(d.len());
                        let e = (s + len as usize).min(d.len());
                        d[s..e].to_vec()
                    }
                    _ => unreachable!(),
                };
                let g = fs.read(fh, off as u64, len as u32).await.unwrap();
                (
                    format!("{} {:?}", w.len(), describe_file(0, &w)),
                    format!("{} {:?}", g.len(), describe_file(0, &g)),
                )
            }
            Op::Truncate(i, size) => {
                let Some((id, _, ino)) = h.get(i) else {
                    continue;
                };
                if let Kind::File(d) = &mut model.nodes.get_mut(&id).unwrap().kind {
                    d.resize(size as usize, 0);
                }
                let g = fs
                    .setattr(
                        ino,
                        SetAttr {
                            size: Some(size as u64),
                            ..SetAttr::default()
                        },
                    )
                    .await;
                (
                    "Ok(())".into(),
                    format!("{:?}", g.map(|_| ()).map_err(code)),
                )
            }
            Op::Close(i) => {
                let Some((_, fh, _)) = h.get(i) else { continue };
                fs.flush(fh).await.unwrap();
                fs.release(fh).await.unwrap();
                let slot = h
                    .slots
                    .iter_mut()
                    .find(|s| s.is_some_and(|(_, f, _)| f == fh))
                    .unwrap();
                let (id, _, _) = slot.take().unwrap();
                if model.nodes.get(&id).is_some_and(|n| n.nlink == 0)
                    && !h.slots.iter().flatten().any(|&(m, _, _)| m == id)
                {
                    model.nodes.remove(&id);
                }
                continue;
            }
            Op::Fsync(i) => {
                let Some((_, _, ino)) = h.get(i) else {
                    continue;
                };
                let g = fs.fsync(ino).await.map_err(code);
                ("Ok(())".into(), format!("{g:?}"))
            }
            Op::Mkdir(d, n) => {
                let (d, n) = (DIRS[d], NAMES[n]);
                let w = model
                    .dir(d)
                    .and_then(|dir| model.add(dir, n, Kind::Dir(BTreeMap::new())))
                    .map(|_| ());
                let g = async {
                    let dir = sys_dir(&fs, d).await?;
                    fs.mkdir(dir, n.as_bytes(), 0o755, 0, Caller::ROOT)
                        .await
                        .map(|_| ())
                        .map_err(code)
                }
                .await;
                (format!("{w:?}"), format!("{g:?}"))
            }
            Op::Rmdir(d, n) => {
                let (d, n) = (DIRS[d], NAMES[n]);
                let w = (|| {
                    let dir = model.dir(d)?;
                    let id = *model.children(dir)?.get(n).ok_or(libc::ENOENT)?;
                    if !model.children(id)?.is_empty() {
                        return Err(libc::ENOTEMPTY);
                    }
                    model.children_mut(dir).remove(n);
                    model.nodes.remove(&id);
                    model.nodes.get_mut(&dir).unwrap().nlink -= 1;
                    Ok(())
                })();
                let g = async {
                    let dir = sys_dir(&fs, d).await?;
                    fs.rmdir(dir, n.as_bytes()).await.map_err(code)
                }
                .await;
                (format!("{w:?}"), format!("{g:?}"))
            }
            Op::Unlink(d, n) => {
                let (d, n) = (DIRS[d], NAMES[n]);
                let w = (|| {
                    let dir = model.dir(d)?;
                    let id = *model.children(dir)?.get(n).ok_or(libc::ENOENT)?;
                    if model.is_dir(id) {
                        return Err(libc::EISDIR);
                    }
                    model.children_mut(dir).remove(n);
                    model.drop_link(id, &h.slots);
                    Ok(())
                })();
                let g = async {
                    let dir = sys_dir(&fs, d).await?;
                    fs.unlink(dir, n.as_bytes()).await.map_err(code)
                }
                .await;
                (format!("{w:?}"), format!("{g:?}"))
            }
            Op::Rename(a, b, c, e, mode) => {
                let (sd, sn, dd, dn) = (DIRS[a], NAMES[b], DIRS[c], NAMES[e]);
                let w = model.rename(sd, sn, dd, dn, mode, &h.slots);
                let flags = [0, libc::RENAME_NOREPLACE, libc::RENAME_EXCHANGE][mode as usize];
                let g = async {
                    let sp = sys_dir(&fs, sd).await?;
                    let dp = sys_dir(&fs, dd).await?;
                    fs.rename(sp, sn.as_bytes(), dp, dn.as_bytes(), flags)
                        .await
                        .map_err(code)
                }
                .await;
                (format!("{w:?}"), format!("{g:?}"))
            }
            Op::Link(a, b, c, e) => {
                let (sd, sn, dd, dn) = (DIRS[a], NAMES[b], DIRS[c], NAMES[e]);
                let w = (|| {
                    let src = model.lookup(sd, sn)?;
                    let dp = model.dir(dd)?;
                    model.children(dp)?;
                    if model.is_dir(src) {
                        return Err(libc::EPERM);
                    }
                    if model.children(dp)?.contains_key(dn) {
                        return Err(libc::EEXIST);
                    }
                    model.children_mut(dp).insert(dn.to_string(), src);
                    model.nodes.get_mut(&src).unwrap().nlink += 1;
                    Ok(())
                })();
                let g = async {
                    let src = sys_lookup(&fs, sd, sn).await?;
                    let dp = sys_dir(&fs, dd).await?;
                    fs.link(src.ino, dp, dn.as_bytes())
                        .await
                        .map(|_| ())
                        .map_err(code)
                }
                .await;
                (format!("{w:?}"), format!("{g:?}"))
            }
            Op::Symlink(d, n) => {
                let (d, n) = (DIRS[d], NAMES[n]);
                let target = format!("../{n}");
                let w = model
                    .dir(d)
                    .and_then(|dir| model.add(dir, n, Kind::Sym(target.clone())))
                    .map(|_| ());
                let g = async {
                    let dir = sys_dir(&fs, d).await?;
                    fs.symlink(dir, n.as_bytes(), target.as_bytes(), Caller::ROOT)
                        .await
                        .map(|_| ())
                        .map_err(code)
                }
                .await;
                (format!("{w:?}"), format!("{g:?}"))
            }
            Op::Remount => {
                for (id, fh, _) in h.slots.iter_mut().filter_map(|s| s.take()) {
                    fs.flush(fh).await.unwrap();
                    fs.release(fh).await.unwrap();
                    if model.nodes.get(&id).is_some_and(|n| n.nlink == 0) {
                        model.nodes.remove(&id);
                    }
                }
                fs.shutdown().await.unwrap();
                fs = start(&mem, stage.path()).await;
                assert_eq!(
                    mem.orphan_count(),
                    0,
                    "step {step}: orphans survive a remount"
                );
                continue;
            }
        };
        assert_eq!(got, want, "step {step}: {op:?}");
        assert_eq!(
            sys_tree(&fs).await,
            model.tree(),
            "tree after step {step}: {op:?}"
        );
    }
    fs.shutdown().await.unwrap();
    let fs = start(&mem, stage.path()).await;
    assert_eq!(sys_tree(&fs).await, model.tree(), "after the final remount");
}

proptest! {
    // REFTEST_CASES raises the count for a longer local hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("REFTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]
    #[test]
    fn core_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
