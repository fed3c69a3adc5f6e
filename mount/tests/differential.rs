//! Random operations applied both to a real kernel mount and to a plain local directory:
//! every result (success or errno) and, at the end and after a remount, the whole tree
//! (names, kinds, sizes, contents, link counts, symlink targets) must agree.

mod support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use support::{Rng, TestMount, pattern, test_options};

const NAMES: [&str; 6] = ["a", "b", "c", "d1", "d2", "d1/x"];

fn pick(rng: &mut Rng) -> &'static str {
    NAMES[rng.below(NAMES.len() as u64) as usize]
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    let a = CString::new(from.as_os_str().as_bytes()).unwrap();
    let b = CString::new(to.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One random operation on `root`; the outcome as a comparable string.
fn apply(root: &Path, op: u64, a: &str, b: &str, arg: u64) -> String {
    let pa = root.join(a);
    let pb = root.join(b);
    let res: std::io::Result<String> = (|| match op {
        0 => fs::write(&pa, pattern((arg % 70_000) as usize, arg)).map(|_| String::new()),
        1 => {
            let f = OpenOptions::new().write(true).open(&pa)?;
            f.write_all_at(&pattern((arg % 5000) as usize + 1, arg), arg % 100_000)?;
            Ok(String::new())
        }
        2 => OpenOptions::new()
            .write(true)
            .open(&pa)?
            .set_len(arg % 90_000)
            .map(|_| String::new()),
        3 => fs::create_dir(&pa).map(|_| String::new()),
        4 => fs::remove_dir(&pa).map(|_| String::new()),
        5 => fs::remove_file(&pa).map(|_| String::new()),
        6 => fs::rename(&pa, &pb).map(|_| String::new()),
        7 => renameat2(&pa, &pb, libc::RENAME_NOREPLACE).map(|_| String::new()),
        8 => renameat2(&pa, &pb, libc::RENAME_EXCHANGE).map(|_| String::new()),
        9 => fs::hard_link(&pa, &pb).map(|_| String::new()),
        10 => std::os::unix::fs::symlink(b, &pa).map(|_| String::new()),
        11 => fs::read(&pa).map(|v| {
            format!(
                "{} bytes, sum {}",
                v.len(),
                v.iter().map(|&x| x as u64).sum::<u64>()
            )
        }),
        12 => {
            let f = OpenOptions::new().append(true).open(&pa)?;
            use std::io::Write;
            (&f).write_all(&pattern((arg % 3000) as usize, arg + 1))?;
            Ok(String::new())
        }
        _ => fs::symlink_metadata(&pa).map(|m| format!("nlink {}", m.nlink())),
    })();
    match res {
        Ok(s) => format!("ok {s}"),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

/// The tree under `root`: path -> description.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let desc = if md.file_type().is_symlink() {
                format!("symlink -> {:?}", fs::read_link(&p).unwrap())
            } else if md.is_dir() {
                stack.push(p.clone());
                format!("dir nlink {}", md.nlink())
            } else {
                let data = fs::read(&p).unwrap();
                assert_eq!(
                    data.len() as u64,
                    md.len(),
                    "{} size vs content",
                    p.display()
                );
                format!(
                    "file nlink {} len {} sum {}",
                    md.nlink(),
                    data.len(),
                    data.iter().map(|&x| x as u64).sum::<u64>()
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}

#[test]
fn random_operations_match_a_local_directory() {
    let Some(mut m) = TestMount::new(test_options()) else {
        return;
    };
    let reference = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut succeeded = 0;
    for step in 0..600 {
        let op = rng.below(14);
        let (a, b, arg) = (pick(&mut rng), pick(&mut rng), rng.next() % 1_000_000);
        let got = apply(&m.path(), op, a, b, arg);
        let want = apply(reference.path(), op, a, b, arg);
        assert_eq!(got, want, "step {step}: op {op} {a} {b} {arg}");
        succeeded += usize::from(got.starts_with("ok"));
        if step % 150 == 149 {
            assert_eq!(
                snapshot(&m.path()),
                snapshot(reference.path()),
                "tree at step {step}"
            );
        }
    }
    assert!(
        succeeded > 150,
        "too few operations succeeded ({succeeded}) to test much"
    );
    let want = snapshot(reference.path());
    assert!(want.len() >= 2, "the final tree is trivial: {want:?}");
    assert_eq!(snapshot(&m.path()), want);
    m.remount();
    assert_eq!(snapshot(&m.path()), want, "after remount");
}
