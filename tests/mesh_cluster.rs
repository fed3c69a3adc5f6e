//! Real processes on 127.0.0.1: `datamesh bootstrap` and six `datamesh service` nodes,
//! with a client `MeshStore` in the test. Stripes are real 4+2 Reed-Solomon stripes
//! (`datamesh::stripe`), so "readable" means decoded back to the exact bytes.

mod mesh_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datamesh::mesh::MeshStore;
use datamesh::store::{Holder, Shard, ShardStore};
use datamesh::stripe::{self, Expect, Layout};
use mesh_support::cluster::Cluster;

/// One stored stripe: the sealed bytes it encodes and where each shard went.
struct Stored {
    sealed: Vec<u8>,
    shards: Vec<Shard>,
    holders: Vec<Holder>,
}

fn layout() -> Layout {
    Layout::new(4, 2).unwrap()
}

fn sealed(i: usize) -> Vec<u8> {
    // Distinct, incompressible-looking content per stripe.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
    (0..40_000 + i * 1_111)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn put_stripes(store: &MeshStore, n: usize) -> Vec<Stored> {
    let mut out = Vec::new();
    for i in 0..n {
        let sealed = sealed(i);
        let shards = stripe::encode(&sealed, layout(), [i as u8; 8]).unwrap();
        let holders = store.put_shards(&shards, &[]).await.unwrap();
        out.push(Stored {
            sealed,
            shards,
            holders,
        });
    }
    out
}

/// Fetches every shard of `s` at once and decodes; the error says how many came back.
async fn read_stripe(store: &MeshStore, s: &Stored) -> Result<Vec<u8>, String> {
    let gets = s
        .shards
        .iter()
        .zip(&s.holders)
        .map(|(sh, h)| store.get(&sh.id, h));
    let got: Vec<Option<Bytes>> = futures::future::join_all(gets)
        .await
        .into_iter()
        .zip(&s.shards)
        .map(|(r, sh)| match r {
            // The store must never hand out bytes that are not the shard.
            Ok(b) => {
                assert_eq!(
                    datamesh::ids::ShardId::of(&b),
                    sh.id,
                    "wrong bytes returned"
                );
                Some(b)
            }
            Err(_) => None,
        })
        .collect();
    let present = got.iter().filter(|g| g.is_some()).count();
    let expect = Expect {
        layout: layout(),
        sealed_len: s.sealed.len() as u32,
    };
    stripe::decode(&got, expect, &[])
        .map(|d| d.sealed)
        .map_err(|e| format!("{present} shards came back: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_spread_over_six_machines_survive_two_losses_and_fail_cleanly_beyond() {
    let mut cluster = Cluster::start(6);
    let store = cluster.client(6).await;
    assert_eq!(store.distinct_holders().await, 6);
    let stored = put_stripes(&store, 6).await;
    let storage_ids: HashSet<String> = cluster.storage.iter().map(|n| n.peer_id.clone()).collect();
    for s in &stored {
        let distinct: HashSet<String> = s.holders.iter().map(|h| h.to_string()).collect();
        assert_eq!(distinct.len(), 6, "six distinct holders: {:?}", s.holders);
        assert!(
            distinct.is_subset(&storage_ids),
            "holders are the storage nodes"
        );
        assert_eq!(read_stripe(&store, s).await.unwrap(), s.sealed);
    }

    // Any two of the six may die: kill the holders of shards 0 and 5 of the first
    // stripe, which hold a shard of every stripe (six holders, six shards each).
    let a = cluster.index_of(stored[0].holders[0].as_str());
    let b = cluster.index_of(stored[0].holders[5].as_str());
    cluster.storage[a].kill();
    cluster.storage[b].kill();
    let started = Instant::now();
    for s in &stored {
        assert_eq!(read_stripe(&store, s).await.unwrap(), s.sealed);
    }
    let two_down = started.elapsed();
    assert!(
        two_down < Duration::from_secs(30),
        "reads took {two_down:?}"
    );

    // A third loss is one too many: a clean error, quickly, never wrong bytes.
    let c = (0..6).find(|i| *i != a && *i != b).unwrap();
    cluster.storage[c].kill();
    let started = Instant::now();
    for s in &stored {
        let err = read_stripe(&store, s).await.unwrap_err();
        assert!(err.starts_with("3 shards came back"), "{err}");
    }
    let three_down = started.elapsed();
    assert!(
        three_down < Duration::from_secs(30),
        "failing reads took {three_down:?}"
    );
    eprintln!(
        "reads of 6 stripes: {two_down:?} with 2 nodes down, {three_down:?} to fail with 3 down"
    );

    // New writes go to the three survivors only, spread evenly.
    let s = stripe::encode(&sealed(99), layout(), [9; 8]).unwrap();
    let holders = store.put_shards(&s, &[]).await.unwrap();
    let mut survivors = storage_ids.clone();
    for i in [a, b, c] {
        survivors.remove(&cluster.storage[i].peer_id);
    }
    for h in &holders {
        assert!(survivors.contains(h.as_str()), "{h} is down");
    }
    for p in &survivors {
        assert_eq!(
            holders.iter().filter(|h| h.as_str() == p).count(),
            2,
            "two shards each"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_nodes_rejoin_with_their_shards() {
    let mut cluster = Cluster::start(6);
    let store = cluster.client(6).await;
    let stored = put_stripes(&store, 3).await;
    // Stop three holders: every stripe is unreadable.
    let victims: Vec<usize> = stored[0].holders[..3]
        .iter()
        .map(|h| cluster.index_of(h.as_str()))
        .collect();
    for &v in &victims {
        let status = cluster.storage[v].terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "SIGTERM stops a service cleanly: {}",
            cluster.storage[v].stderr()
        );
    }
    for s in &stored {
        assert!(read_stripe(&store, s).await.is_err());
    }
    // Back on the same repositories (same identity, same shards): everything reads
    // again from the holders the placement recorded. Node ports change on restart, so
    // the client must find the new addresses through the DHT.
    for &v in &victims {
        cluster.restart(v);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ok = 0;
    while Instant::now() < deadline {
        ok = 0;
        for s in &stored {
            if read_stripe(&store, s).await.is_ok_and(|b| b == s.sealed) {
                ok += 1;
            }
        }
        if ok == stored.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(ok, stored.len(), "all stripes read back after the restart");
    // And a fresh client, knowing only the bootstrap node, reads them too.
    let fresh = cluster.client(6).await;
    for s in &stored {
        assert_eq!(read_stripe(&fresh, s).await.unwrap(), s.sealed);
    }
}
