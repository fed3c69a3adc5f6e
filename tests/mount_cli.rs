//! The `mount` and `unmount` commands' own behaviour: one mount per repository, clear
//! errors for bad mountpoints and a missing repository, `--daemon`, `unmount` waiting
//! for the commit.

mod common;
mod mount_support;

use std::time::{Duration, Instant};

use common::Repo;
use mount_support::{Mounted, detach, is_mounted, mount_cmd, repo_and_dir, skip};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_mount_of_one_repository_is_refused() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let m = Mounted::start(&repo, &dir, &[]);
    let other = repo.dir.path().join("mnt2");
    std::fs::create_dir(&other).unwrap();
    let out = mount_cmd(&repo, &other, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("already mounted") && err.contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(!is_mounted(&other));
    assert!(m.stop().success());
}

#[test]
fn bad_mountpoints_get_clear_errors() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let missing = repo.dir.path().join("nope");
    let out = mount_cmd(&repo, &missing, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("does not exist"));
    let full = repo.dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let out = mount_cmd(&repo, &full, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not empty"));
    // Already mounted (by something else: a tmpfs).
    let busy = repo.dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    let t = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "none"])
        .arg(&busy)
        .status()
        .unwrap();
    if t.success() {
        let out = mount_cmd(&repo, &busy, &[]).output().unwrap();
        detach(&busy);
        assert_eq!(out.status.code(), Some(7), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("already a mountpoint"));
    }
    // None of these took the repository: a mount works now.
    let m = Mounted::start(&repo, &dir, &[]);
    assert!(m.stop().success());
}

#[test]
fn a_missing_repository_is_explained_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_datamesh"))
        .arg("--repo")
        .arg(dir.path().join("no-repo"))
        .arg("mount")
        .arg(dir.path().join("mnt"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr_of(&out).contains("datamesh init"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        !dir.path().join("no-repo").exists(),
        "nothing created without asking"
    );
}

#[test]
fn daemon_returns_once_mounted_and_unmount_waits_for_the_commit() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let t0 = Instant::now();
    let out = mount_cmd(&repo, &dir, &["--daemon"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(is_mounted(&dir), "mounted when --daemon returns");
    let data = common::random(3_000_000, 9);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let out = repo.run(&["unmount", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!is_mounted(&dir));
    // The mount process has committed and released the repository: a direct command
    // (no control socket any more) sees the file.
    assert!(!repo.path().join("control.sock").exists());
    assert_eq!(repo.run(&["get", "f.bin", "-"]).stdout, data);
    assert!(t0.elapsed() < Duration::from_secs(60));
    // A daemon that cannot mount reports why, with its exit code.
    let out = mount_cmd(&repo, &repo.dir.path().join("nope"), &["--daemon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    // Unmounting something not mounted is an error.
    let out = repo.run(&["unmount", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn unmount_of_a_busy_mount_is_refused_unless_lazy() {
    if skip() {
        return;
    }
    let (repo, dir) = repo_and_dir();
    let mut m = Mounted::start(&repo, &dir, &[]);
    let open = std::fs::File::create(dir.join("held")).unwrap();
    let out = repo.run(&["unmount", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("busy"));
    assert!(is_mounted(&dir));
    drop(open);
    let out = repo.run(&["unmount", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        m.wait(60).success(),
        "the mount exits by itself after an unmount"
    );
    let _ = Repo::new; // keep the helper linked
}
