//! Large inputs: a 10 GiB sparse file goes in and out in bounded memory and time, stored
//! as the few chunks it really contains, and comes back sparse.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use common::Repo;

#[test]
fn a_10_gib_sparse_file_round_trips() {
    let repo = Repo::new();
    let path = repo.work().join("disk.img");
    let size: u64 = 10 << 30;
    let marks: [(u64, &[u8]); 3] = [
        (0, b"boot sector"),
        (5_000_000_000, b"data in the middle"),
        (size - 4, b"end!"),
    ];
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        for (at, data) in marks {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(data).unwrap();
        }
    }
    let out = repo.ok(&["put", path.to_str().unwrap(), "--json"]);
    let put: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(put["size"], size);
    assert!(
        put["new_bytes"].as_u64().unwrap() < 32 << 20,
        "zeros must dedup: {put}"
    );
    assert!(repo.stats()["stored_bytes"].as_u64().unwrap() < 48 << 20);
    std::fs::remove_file(&path).unwrap();

    let back = repo.work().join("back.img");
    repo.ok(&["get", "disk.img", back.to_str().unwrap()]);
    let meta = std::fs::metadata(&back).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < 64 << 20,
        "the output should be sparse, {} blocks",
        meta.blocks()
    );
    let mut f = std::fs::File::open(&back).unwrap();
    for (at, data) in marks {
        let mut got = vec![0u8; data.len()];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut got).unwrap();
        assert_eq!(got, data, "at {at}");
    }
    // a zero region between the marks
    let mut zeros = vec![1u8; 1 << 20];
    f.seek(SeekFrom::Start(7_000_000_000)).unwrap();
    f.read_exact(&mut zeros).unwrap();
    assert!(zeros.iter().all(|&b| b == 0));
}
