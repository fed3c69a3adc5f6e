//! Misbehaving and full peers, as real processes on 127.0.0.1: a storage node that
//! returns garbage (the test-only `--corrupt-replies`, allowed by
//! `DATAMESH_TEST_FAULTS=1`) is detected and routed around, and a node at its
//! `--capacity` refuses shards, which then go elsewhere.

mod mesh_support;

use std::time::Duration;

use bytes::Bytes;
use datamesh::ids::ShardId;
use datamesh::mesh::wire::{Request, Response};
use datamesh::store::{Shard, ShardStore, StoreError};
use datamesh::stripe::{self, Expect, Layout};
use mesh_support::cluster::{Cluster, Node, datamesh, init_repo, service_args};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_returning_garbage_is_detected_and_routed_around() {
    let mut cluster = Cluster::start(6);
    cluster.add_storage(&["--corrupt-replies"], &[("DATAMESH_TEST_FAULTS", "1")]);
    let liar = cluster.storage[6].peer_id.clone();
    let store = cluster.client(7).await;
    let layout = Layout::new(4, 2).unwrap();

    // With seven peers, six shards per stripe: the liar takes a shard of most stripes.
    let mut stripes = Vec::new();
    for i in 0..8u64 {
        let sealed = noise(i, 30_000);
        let shards = stripe::encode(&sealed, layout, [i as u8; 8]).unwrap();
        let holders = store.put_shards(&shards, &[]).await.unwrap();
        stripes.push((sealed, shards, holders));
    }
    let on_liar = stripes
        .iter()
        .filter(|(_, _, h)| h.iter().any(|h| h.as_str() == liar))
        .count();
    assert!(
        on_liar > 0,
        "the liar got no shard; the test proves nothing"
    );

    let mut caught = 0;
    for (sealed, shards, holders) in &stripes {
        let mut got = Vec::new();
        for (s, h) in shards.iter().zip(holders) {
            match store.get(&s.id, h).await {
                Ok(b) => {
                    assert_eq!(ShardId::of(&b), s.id, "never wrong bytes");
                    got.push(Some(b));
                }
                Err(e) => {
                    assert_eq!(h.as_str(), liar, "only the liar's shards fail: {e}");
                    assert!(format!("{e}").contains("do not match"), "{e}");
                    caught += 1;
                    got.push(None);
                }
            }
        }
        let expect = Expect {
            layout,
            sealed_len: sealed.len() as u32,
        };
        assert_eq!(&stripe::decode(&got, expect, &[]).unwrap().sealed, sealed);
    }
    assert_eq!(caught, on_liar, "every shard on the liar was caught");

    // Detected: the liar no longer counts as a usable holder and gets no new shards.
    let liar_peer = liar.parse().unwrap();
    assert!(
        store
            .health()
            .misbehaving(&liar_peer, std::time::Instant::now())
    );
    assert_eq!(store.distinct_holders().await, 6);
    for i in 0..4u64 {
        let shards = stripe::encode(&noise(100 + i, 20_000), layout, [7; 8]).unwrap();
        let holders = store.put_shards(&shards, &[]).await.unwrap();
        assert!(holders.iter().all(|h| h.as_str() != liar), "{holders:?}");
    }
}

#[test]
fn test_faults_are_refused_without_the_environment_switch() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    init_repo(&repo);
    let out = datamesh(&repo)
        .args([
            "service",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--timeout",
            "5",
        ])
        .arg("--corrupt-replies")
        .env_remove("DATAMESH_TEST_FAULTS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("test-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_and_shards_go_elsewhere() {
    let mut cluster = Cluster::start(1);
    cluster.add_storage(&["--capacity", "20KB"], &[]);
    let small = cluster.storage[1].peer_id.clone();
    let store = cluster.client(2).await;
    // 4 KB shards, two per call (one per peer while both have room).
    let mut on_small = 0u64;
    for i in 0..12u64 {
        let shards: Vec<Shard> = (0..2)
            .map(|j| Shard::new(Bytes::from(noise(i * 2 + j, 4_000))))
            .collect();
        let holders = store.put_shards(&shards, &[]).await.unwrap();
        on_small += holders.iter().filter(|h| h.as_str() == small).count() as u64;
    }
    assert!(
        on_small <= 5,
        "at most 20 KB of 4 KB shards on the small node: {on_small}"
    );
    assert!(
        on_small >= 4,
        "the small node was used until full: {on_small}"
    );
    // It reports what it holds, within its limit.
    let answer = store
        .client()
        .request(
            small.parse().unwrap(),
            Request::Stat,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let Response::Stats(st) = answer else {
        panic!("not stats: {answer:?}")
    };
    assert_eq!(st.capacity, Some(20_000));
    assert_eq!(st.shards, on_small);
    assert!(st.bytes <= 20_000);

    // With the big node gone, a put that only the full node could take fails cleanly.
    cluster.storage[0].kill();
    let shard = Shard::new(Bytes::from(noise(999, 8_000)));
    let err = store.put_shards(&[shard], &[]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NoSpace { .. } | StoreError::NoHolders(_)),
        "{err}"
    );
    let _ = (Node::start, service_args); // shared helpers used by other test files
}
