//! Every CLI command on the embedded default, as a user runs it.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

use common::{Repo, random, same};

#[test]
fn init_writes_a_complete_repository_and_refuses_a_second_one() {
    let repo = Repo::new();
    let root = repo.path();
    for f in ["config.toml", "keystore", "catalog.db", "shards"] {
        assert!(root.join(f).exists(), "{f} missing");
    }
    let config = std::fs::read_to_string(root.join("config.toml")).unwrap();
    for key in [
        "data_shards = 4",
        "parity_shards = 2",
        "chunk_avg",
        "inline_max",
        "memory",
        "bootstrap",
    ] {
        assert!(config.contains(key), "config.toml lacks {key}:\n{config}");
    }
    let mode = std::fs::metadata(root.join("keystore"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let err = repo.fails(&["init", "--kdf-memory-mib", "8"], 10);
    assert!(err.contains("already holds a datamesh repository"), "{err}");
}

#[test]
fn default_kdf_is_64_mib() {
    let dir = tempfile::tempdir_in(common::scratch()).unwrap();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_datamesh"))
        .arg("--repo")
        .arg(dir.path().join("r"))
        .env("DATAMESH_PASSWORD", "p")
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success());
    let ks = std::fs::read(dir.path().join("r/keystore")).unwrap();
    let info = datamesh::crypto::keystore::inspect(&dir.path().join("r/keystore")).unwrap();
    assert_eq!(info.params.m_cost_kib, 65536, "{} byte keystore", ks.len());
}

#[test]
fn put_get_round_trips_every_size_class() {
    let repo = Repo::new();
    // empty, one byte, inline-sized, just over inline, several chunks
    for (i, len) in [0usize, 1, 3000, 20_000, 3_500_000].into_iter().enumerate() {
        let data = random(len, i as u64);
        let src = repo.file(&format!("in{i}"), &data);
        let name = format!("sizes/f{i}");
        repo.ok(&["put", src.to_str().unwrap(), "--name", &name]);
        let out = repo.work().join(format!("out{i}"));
        repo.ok(&["get", &name, out.to_str().unwrap()]);
        assert!(same(&out, &data), "size {len} differs");
    }
    // the inline file costs no shard file, the 20 KB one costs 6
    let stats = repo.stats();
    assert!(stats["inline_chunks"].as_u64().unwrap() >= 2, "{stats}");
}

#[test]
fn get_to_stdout_and_put_from_stdin() {
    let repo = Repo::new();
    let data = random(700_000, 9);
    let out = repo
        .cmd()
        .args(["put", "-", "--name", "piped.bin"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = repo.cmd().args(["get", "piped.bin", "-"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
    let err = repo.fails(&["put", "-"], 11);
    assert!(err.contains("--name"), "{err}");
}

#[test]
fn mode_and_mtime_survive_a_round_trip() {
    let repo = Repo::new();
    let src = repo.file("script.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    repo.ok(&["put", src.to_str().unwrap()]);
    let out = repo.work().join("back.sh");
    repo.ok(&["get", "script.sh", out.to_str().unwrap()]);
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o750);
    assert_eq!(m.modified().unwrap(), mtime);
}

#[test]
fn get_refuses_to_overwrite_without_force() {
    let repo = Repo::new();
    let src = repo.file("a", b"new content");
    repo.ok(&["put", src.to_str().unwrap()]);
    let out = repo.file("existing", b"keep me");
    let err = repo.fails(&["get", "a", out.to_str().unwrap()], 10);
    assert!(err.contains("--force"), "{err}");
    assert!(same(&out, b"keep me"));
    repo.ok(&["get", "a", out.to_str().unwrap(), "--force"]);
    assert!(same(&out, b"new content"));
}

#[test]
fn versions_are_kept_and_retrievable_and_prune_frees_them() {
    let repo = Repo::new();
    let v1 = random(300_000, 1);
    let v2 = random(300_000, 2);
    let src = repo.file("doc", &v1);
    repo.ok(&["put", src.to_str().unwrap(), "--name", "doc.bin"]);
    std::fs::write(&src, &v2).unwrap();
    let out = repo.ok(&["put", src.to_str().unwrap(), "--name", "doc.bin"]);
    assert!(out.contains("version 2"), "{out}");
    let versions: serde_json::Value =
        serde_json::from_str(&repo.ok(&["versions", "doc.bin", "--json"])).unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let text = repo.ok(&["versions", "doc.bin"]);
    assert!(text.contains("2 (current)"), "{text}");
    let old = repo.work().join("old");
    repo.ok(&["get", "doc.bin", old.to_str().unwrap(), "--version", "1"]);
    assert!(same(&old, &v1));
    let cur = repo.work().join("cur");
    repo.ok(&["get", "doc.bin", cur.to_str().unwrap()]);
    assert!(same(&cur, &v2));
    let err = repo.fails(&["get", "doc.bin", "-", "--version", "7"], 3);
    assert!(err.contains("no version 7"), "{err}");

    let before = repo.shard_files().len();
    assert_eq!(before, 12);
    let out = repo.ok(&["prune", "--keep-last", "1"]);
    assert!(out.contains("pruned 1 versions"), "{out}");
    assert_eq!(
        repo.shard_files().len(),
        6,
        "old version's shards must be deleted"
    );
    repo.fails(&["get", "doc.bin", "-", "--version", "1"], 3);
    repo.fails(&["prune", "--keep-last", "0"], 11);
}

#[test]
fn identical_content_is_stored_once_and_duplicate_copies_nothing() {
    let repo = Repo::new();
    let data = random(2_000_000, 5);
    let src = repo.file("big", &data);
    repo.ok(&["put", src.to_str().unwrap(), "--name", "a"]);
    let shards = repo.shard_files().len();
    let out = repo.ok(&["put", src.to_str().unwrap(), "--name", "b", "--json"]);
    let put: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(put["new_chunks"], 0, "{put}");
    repo.ok(&["duplicate", "a", "dir/c"]);
    assert_eq!(repo.shard_files().len(), shards);
    let stats = repo.stats();
    assert_eq!(stats["logical_bytes"], 6_000_000);
    assert_eq!(stats["chunk_bytes"], 2_000_000);
    assert!(
        (stats["dedup_ratio"].as_f64().unwrap() - 3.0).abs() < 1e-9,
        "{stats}"
    );
    let out = repo.work().join("c");
    repo.ok(&["get", "dir/c", out.to_str().unwrap()]);
    assert!(same(&out, &data));
    // removing two of three names keeps the shards; the last frees them
    repo.ok(&["rm", "a", "b"]);
    assert_eq!(repo.shard_files().len(), shards);
    repo.ok(&["rm", "dir/c"]);
    assert_eq!(repo.shard_files().len(), 0);
    assert_eq!(repo.stats()["stored_bytes"], 0);
}

#[test]
fn list_info_search_recent_and_tags() {
    let repo = Repo::new();
    let a = repo.file("report.pdf", b"%PDF-1.4 fake");
    let b = repo.file("main.rs", b"fn main() {}");
    repo.ok(&[
        "put",
        a.to_str().unwrap(),
        "--name",
        "docs/report.pdf",
        "--tags",
        "work,2026",
    ]);
    repo.ok(&[
        "put",
        b.to_str().unwrap(),
        "--name",
        "src/main.rs",
        "--tags",
        "code",
    ]);

    let plain = repo.ok(&["list"]);
    assert!(
        plain.contains("docs/report.pdf")
            && plain.contains("src/main.rs")
            && plain.contains("docs/"),
        "{plain}"
    );
    let long = repo.ok(&["list", "--long"]);
    assert!(
        long.contains("-rw-r--r--") && long.contains("2026,work"),
        "{long}"
    );
    let tagged: serde_json::Value =
        serde_json::from_str(&repo.ok(&["list", "--tags", "work", "--json"])).unwrap();
    let paths: Vec<&str> = tagged
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["docs/report.pdf"]);
    let none: serde_json::Value =
        serde_json::from_str(&repo.ok(&["list", "--tags", "work,code", "--json"])).unwrap();
    assert!(none.as_array().unwrap().is_empty());
    let under: serde_json::Value =
        serde_json::from_str(&repo.ok(&["list", "src", "--json"])).unwrap();
    assert!(
        under
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["path"].as_str().unwrap().starts_with("src"))
    );

    let info = repo.ok(&["info", "docs/report.pdf"]);
    assert!(
        info.contains("size:      13") && info.contains("tags:      2026,work"),
        "{info}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&repo.ok(&["info", "docs/report.pdf", "--json"])).unwrap();
    let key = format!("#{}", info["attr"]["ino"]);
    let by_key = repo.cmd().args(["get", &key, "-"]).output().unwrap();
    assert_eq!(by_key.stdout, b"%PDF-1.4 fake");

    let found: serde_json::Value =
        serde_json::from_str(&repo.ok(&["search", "REPORT", "--json"])).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let found: serde_json::Value =
        serde_json::from_str(&repo.ok(&["search", r"\.rs$", "--regex", "--json"])).unwrap();
    assert_eq!(found[0]["path"], "src/main.rs");
    let found: serde_json::Value =
        serde_json::from_str(&repo.ok(&["search", "", "--file-type", "pdf", "--json"])).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let dirs: serde_json::Value =
        serde_json::from_str(&repo.ok(&["search", "", "--file-type", "dir", "--json"])).unwrap();
    assert_eq!(dirs.as_array().unwrap().len(), 2);
    repo.fails(&["search", "(", "--regex"], 11);

    let recent: serde_json::Value =
        serde_json::from_str(&repo.ok(&["recent", "--limit", "1", "--json"])).unwrap();
    assert_eq!(recent[0]["path"], "src/main.rs");
    let future: serde_json::Value =
        serde_json::from_str(&repo.ok(&["recent", "--since", "2099-01-01", "--json"])).unwrap();
    assert!(future.as_array().unwrap().is_empty());
    let hour: serde_json::Value =
        serde_json::from_str(&repo.ok(&["recent", "--since", "1h", "--json"])).unwrap();
    assert_eq!(hour.as_array().unwrap().len(), 2);
    repo.fails(&["recent", "--since", "someday"], 11);

    let out = repo.ok(&["tag", "src/main.rs", "--add", "rust", "--remove", "code"]);
    assert_eq!(out.trim(), "src/main.rs: rust");
}

#[test]
fn rename_moves_and_refuses_to_clobber() {
    let repo = Repo::new();
    let a = repo.file("a", b"aaa");
    let b = repo.file("b", b"bbb");
    repo.ok(&["put", a.to_str().unwrap()]);
    repo.ok(&["put", b.to_str().unwrap()]);
    repo.ok(&["rename", "a", "new/dir/a2"]);
    repo.fails(&["get", "a", "-"], 3);
    let out = repo
        .cmd()
        .args(["get", "new/dir/a2", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"aaa");
    let err = repo.fails(&["rename", "b", "new/dir/a2"], 10);
    assert!(err.contains("--force"), "{err}");
    repo.ok(&["rename", "b", "new/dir/a2", "--force"]);
    let out = repo
        .cmd()
        .args(["get", "new/dir/a2", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"bbb");
    repo.fails(&["rename", "missing", "x"], 3);
}

#[test]
fn rm_of_directories_needs_recursive() {
    let repo = Repo::new();
    let a = repo.file("a", b"aaa");
    repo.ok(&["put", a.to_str().unwrap(), "--name", "d/e/a"]);
    let err = repo.fails(&["rm", "d"], 1);
    assert!(err.contains("-r"), "{err}");
    repo.ok(&["rm", "-r", "d"]);
    assert_eq!(repo.ok(&["list"]), "");
    // one missing name among several: the others are removed, the exit code says not found
    repo.ok(&["put", a.to_str().unwrap(), "--name", "x"]);
    repo.fails(&["rm", "nope", "x"], 3);
    assert_eq!(repo.ok(&["list"]), "");
}

#[test]
fn put_recursive_stores_a_tree() {
    let repo = Repo::new();
    let root = repo.work().join("tree");
    let mut expect = Vec::new();
    for i in 0..30 {
        let rel = format!("d{}/sub{}/f{i}.txt", i % 3, i % 2);
        let data = random(100 + i * 977, i as u64);
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        expect.push((rel, data));
    }
    std::os::unix::fs::symlink("d0", root.join("link")).unwrap();
    repo.fails(&["put", root.to_str().unwrap()], 11);
    let out = repo.ok(&[
        "put",
        "-r",
        root.to_str().unwrap(),
        "--name",
        "backup",
        "--tags",
        "snap",
    ]);
    assert!(out.contains("30 files"), "{out}");
    for (rel, data) in &expect {
        let got = repo
            .cmd()
            .args(["get", &format!("backup/{rel}"), "-"])
            .output()
            .unwrap();
        assert_eq!(&got.stdout, data, "{rel}");
    }
    let tagged: serde_json::Value =
        serde_json::from_str(&repo.ok(&["list", "--tags", "snap", "--json"])).unwrap();
    assert_eq!(tagged.as_array().unwrap().len(), 30);

    // a second tree put skips what did not change
    std::fs::write(root.join(&expect[0].0), b"changed").unwrap();
    expect[0].1 = b"changed".to_vec();
    let again = repo.ok(&["put", "-r", root.to_str().unwrap(), "--name", "backup"]);
    assert!(
        again.contains("stored backup (1 files, 29 unchanged"),
        "{again}"
    );

    // and back out as a tree
    let restored = repo.work().join("restored");
    repo.fails(&["get", "backup", restored.to_str().unwrap()], 11);
    repo.ok(&["get", "-r", "backup", restored.to_str().unwrap()]);
    for (rel, data) in &expect {
        assert!(same(&restored.join(rel), data), "{rel}");
    }
    let err = repo.fails(&["get", "-r", "backup", restored.to_str().unwrap()], 10);
    assert!(err.contains("exists"), "{err}");
}

#[test]
fn odd_names_and_long_paths() {
    let repo = Repo::new();
    let src = repo.file("x", b"odd");
    // not UTF-8, spaces, newline, unicode
    let odd = std::ffi::OsStr::from_bytes(b"we\xffird name\nwith \xe2\x9c\x93");
    let out = repo
        .cmd()
        .arg("put")
        .arg(&src)
        .arg("--name")
        .arg(odd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = repo.cmd().arg("get").arg(odd).arg("-").output().unwrap();
    assert_eq!(got.stdout, b"odd");

    let long = "n".repeat(255);
    repo.ok(&["put", src.to_str().unwrap(), "--name", &long]);
    let err = repo.fails(
        &["put", src.to_str().unwrap(), "--name", &"n".repeat(256)],
        11,
    );
    assert!(
        err.contains("255") || err.to_lowercase().contains("long"),
        "{err}"
    );
    let deep = vec!["d".repeat(200); 20].join("/");
    repo.ok(&["put", src.to_str().unwrap(), "--name", &deep]);
    let too_deep = vec!["d".repeat(200); 21].join("/");
    repo.fails(&["put", src.to_str().unwrap(), "--name", &too_deep], 11);
    repo.fails(&["put", src.to_str().unwrap(), "--name", "a/../b"], 11);
}

#[test]
fn key_export_passwd_import() {
    let repo = Repo::new();
    let src = repo.file("secret", b"the crown jewels");
    repo.ok(&["put", src.to_str().unwrap()]);
    let backup = repo.work().join("keys.backup");
    let out = repo
        .cmd()
        .args(["key", "export", backup.to_str().unwrap()])
        .env("DATAMESH_NEW_PASSWORD", "backup pass")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = repo
        .cmd()
        .args(["key", "export", backup.to_str().unwrap()])
        .env("DATAMESH_NEW_PASSWORD", "backup pass")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(10), "export must not overwrite");

    let out = repo
        .cmd()
        .args(["key", "passwd"])
        .env("DATAMESH_NEW_PASSWORD", "new pass")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.fails(&["get", "secret", "-"], 4);
    let got = repo
        .cmd()
        .args(["get", "secret", "-"])
        .env("DATAMESH_PASSWORD", "new pass")
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"the crown jewels");

    // lose the keystore: reads fail with directions, import restores them
    std::fs::remove_file(repo.path().join("keystore")).unwrap();
    let err = repo.fails(&["get", "secret", "-"], 3);
    assert!(err.contains("key import"), "{err}");
    let out = repo
        .cmd()
        .args(["key", "import", backup.to_str().unwrap()])
        .env("DATAMESH_BACKUP_PASSWORD", "backup pass")
        .env("DATAMESH_PASSWORD", "restored pass")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = repo
        .cmd()
        .args(["get", "secret", "-"])
        .env("DATAMESH_PASSWORD", "restored pass")
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"the crown jewels");
    // a wrong backup passphrase
    let out = repo
        .cmd()
        .args(["key", "import", backup.to_str().unwrap()])
        .env("DATAMESH_BACKUP_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn metadata_commands_need_no_passphrase() {
    let repo = Repo::new();
    let src = repo.file("a", b"a");
    repo.ok(&["put", src.to_str().unwrap()]);
    for args in [
        &["list"][..],
        &["info", "a"],
        &["stats"],
        &["versions", "a"],
        &["recent"],
        &["search", "a"],
    ] {
        let out = repo
            .cmd()
            .args(args)
            .env_remove("DATAMESH_PASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = repo
        .cmd()
        .args(["get", "a", "-"])
        .env_remove("DATAMESH_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATAMESH_PASSWORD"));
}

#[test]
fn password_file_is_read() {
    let repo = Repo::new();
    let pw = repo.file("pw", format!("{}\n", common::PASS).as_bytes());
    let src = repo.file("a", b"x");
    let out = repo
        .cmd()
        .env_remove("DATAMESH_PASSWORD")
        .args([
            "--password-file",
            pw.to_str().unwrap(),
            "put",
            src.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
