//! `datamesh mount` end to end through the kernel: what is written through the mount is
//! in the repository (for `list`, `get`, `check`) and what the CLI stores shows in the
//! mount, while mounted (through the control socket) and after; contents survive a
//! remount; SIGTERM unmounts cleanly; read-only mounts refuse changes.

mod common;
mod mount_support;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::random;
use mount_support::{Mounted, is_mounted, repo_and_dir, skip};

#[test]
fn files_cross_between_the_mount_and_the_cli_and_survive_a_remount() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let big = random(700_000, 1);
    let mid = random(20_000, 2);
    {
        let m = Mounted::start(&repo, &dir, &[]);
        std::fs::create_dir_all(dir.join("docs/deep")).unwrap();
        std::fs::write(dir.join("docs/small.txt"), b"hello mesh").unwrap();
        std::fs::write(dir.join("docs/deep/mid.bin"), &mid).unwrap();
        let mut f = std::fs::File::create(dir.join("big.bin")).unwrap();
        f.write_all(&big).unwrap();
        f.sync_all().unwrap();
        drop(f);
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("docs/small.txt", dir.join("link")).unwrap();
        std::fs::hard_link(dir.join("docs/small.txt"), dir.join("hard.txt")).unwrap();
        std::fs::set_permissions(dir.join("big.bin"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert_eq!(std::fs::metadata(dir.join("hard.txt")).unwrap().nlink(), 2);

        // While mounted, commands run inside the mount (no passphrase needed).
        let src = repo.file("from-cli.txt", b"stored by put");
        let out = repo
            .cmd()
            .env_remove("DATAMESH_PASSWORD")
            .args(["put", src.to_str().unwrap(), "--name", "cli/put.txt"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(dir.join("cli/put.txt")).unwrap(),
            b"stored by put",
            "a put through the socket shows in the mount at once"
        );
        repo.ok(&["sync"]);
        let got = repo
            .cmd()
            .env_remove("DATAMESH_PASSWORD")
            .args(["get", "docs/deep/mid.bin", "-"])
            .output()
            .unwrap();
        assert_eq!(
            got.stdout, mid,
            "after sync, get reads what the mount wrote"
        );
        repo.ok(&["rm", "empty"]);
        assert!(
            !dir.join("empty").exists(),
            "an rm through the socket shows in the mount"
        );
        let listed = repo.ok(&["list"]);
        assert!(
            listed.contains("docs/small.txt") && listed.contains("big.bin"),
            "{listed}"
        );

        let status = m.stop();
        assert!(status.success(), "SIGTERM unmounts cleanly: {status}");
    }
    assert!(!is_mounted(&dir), "nothing left mounted");
    assert!(!repo.path().join("control.sock").exists());

    // After unmount, the CLI opens the repository directly.
    let out = repo.run(&["get", "big.bin", "-"]);
    assert_eq!(out.stdout, big);
    assert_eq!(repo.run(&["get", "hard.txt", "-"]).stdout, b"hello mesh");
    let long = repo.ok(&["list", "-l"]);
    assert!(long.contains("-rw-------"), "mode kept: {long}");
    repo.ok(&["check"]);
    let src = repo.file("later.txt", b"put while unmounted");
    repo.ok(&["put", src.to_str().unwrap(), "--name", "docs/later.txt"]);

    // A remount shows everything, old and new.
    let m = Mounted::start(&repo, &dir, &[]);
    assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(dir.join("docs/deep/mid.bin")).unwrap(), mid);
    assert_eq!(std::fs::read(dir.join("link")).unwrap(), b"hello mesh");
    assert_eq!(
        std::fs::read_link(dir.join("link")).unwrap(),
        std::path::PathBuf::from("docs/small.txt")
    );
    assert_eq!(
        std::fs::read(dir.join("docs/later.txt")).unwrap(),
        b"put while unmounted"
    );
    assert_eq!(
        std::fs::read(dir.join("cli/put.txt")).unwrap(),
        b"stored by put"
    );
    assert!(!dir.join("empty").exists());
    let st = nix_statvfs(&dir);
    assert!(st.0 > 0 && st.1 > 0, "statfs reports capacity: {st:?}");
    assert!(m.stop().success());
    repo.ok(&["check", "--read-data"]);
}

/// (total blocks, free blocks) of the filesystem at `dir`.
fn nix_statvfs(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct on success.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    (st.f_blocks, st.f_bavail)
}

#[test]
fn a_read_only_mount_refuses_every_change() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let src = repo.file("a.txt", b"read me");
    repo.ok(&["put", src.to_str().unwrap(), "--name", "a.txt"]);
    let m = Mounted::start(&repo, &dir, &["--read-only"]);
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"read me");
    let erofs = |r: std::io::Result<()>| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    };
    erofs(std::fs::write(dir.join("new.txt"), b"x"));
    erofs(std::fs::create_dir(dir.join("d")));
    erofs(std::fs::remove_file(dir.join("a.txt")));
    erofs(std::fs::rename(dir.join("a.txt"), dir.join("b.txt")));
    erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("a.txt"))
            .map(|_| ()),
    );
    assert!(m.stop().success());
    assert_eq!(repo.ok(&["list"]).trim(), "a.txt");
}
