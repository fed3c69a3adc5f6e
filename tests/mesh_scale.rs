//! A larger in-process mesh on libp2p's memory transport, grown in steps to 104
//! storage nodes: at every size, each shard of a stripe lands on a distinct peer, the
//! one placement's rule picks from *all* storage peers of the mesh (the client knows
//! only part of them and must find the rest through the DHT), and every shard's
//! provider record is found from any node.

mod mesh_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datamesh::mesh::placement;
use datamesh::mesh::{MeshClient, MeshStore, Role};
use datamesh::store::{Shard, ShardStore};
use libp2p::PeerId;
use mesh_support::*;

const STRIPE: usize = 6;

/// What placement's rule gives for `ids` when it knows every storage peer.
fn ideal(ids: &[datamesh::ids::ShardId], all: &[PeerId]) -> Vec<PeerId> {
    placement::assign(ids, all)
}

async fn check_size(step: usize, store: &MeshStore, storage: &[MeshClient]) -> (usize, usize) {
    let all: Vec<PeerId> = storage.iter().map(|n| n.peer_id()).collect();
    let mut exact = 0;
    let mut total = 0;
    for stripe in 0..4u8 {
        let shards: Vec<Shard> = (0..STRIPE)
            .map(|i| Shard::new(Bytes::from(vec![step as u8, stripe, i as u8, 7])))
            .collect();
        let holders = store.put_shards(&shards, &[]).await.unwrap();
        let got: Vec<PeerId> = holders
            .iter()
            .map(|h| h.as_str().parse().unwrap())
            .collect();
        assert_eq!(
            got.iter().collect::<HashSet<_>>().len(),
            STRIPE,
            "distinct holders at size {}",
            storage.len()
        );
        let ids: Vec<_> = shards.iter().map(|s| s.id).collect();
        let want = ideal(&ids, &all);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            total += 1;
            if g == w {
                exact += 1;
            } else {
                // Never far off: the holder is among the closest peers to the shard.
                let rank = placement::closest(&all, &ids[i])
                    .iter()
                    .position(|p| p == g)
                    .unwrap();
                assert!(
                    rank < STRIPE + 4,
                    "shard {i} went to the peer ranked {rank} at size {}",
                    storage.len()
                );
            }
        }
        // Providers are found from several nodes of the mesh, not just the client.
        for (j, s) in shards.iter().enumerate() {
            let asker = &storage[(j * 37 + stripe as usize * 11) % storage.len()];
            let found = wait_providers(asker, s.id).await;
            assert!(
                found.contains(&got[j]),
                "provider of shard {j} not found from {} at size {}",
                asker.peer_id(),
                storage.len()
            );
            let back = store.get(&s.id, &holders[j]).await.unwrap();
            assert_eq!(back, s.bytes);
        }
    }
    (exact, total)
}

/// Provider records are announced asynchronously after the put; give them a moment.
async fn wait_providers(node: &MeshClient, id: datamesh::ids::ShardId) -> Vec<PeerId> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = node.providers(id).await.unwrap_or_default();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_and_lookups_stay_correct_as_the_mesh_grows() {
    let started = Instant::now();
    let boot = memory_node(Role::Bootstrap, None).await;
    let boot_entry = entry_of(&boot).await;
    let root = tempfile::tempdir().unwrap();
    let mut storage: Vec<MeshClient> = Vec::new();
    let mut report = Vec::new();
    for size in [12usize, 40, 104] {
        let t = Instant::now();
        while storage.len() < size {
            let dir = root.path().join(format!("n{}", storage.len()));
            let n = memory_storage(&dir).await;
            join(&n, &boot_entry).await;
            storage.push(n);
        }
        eprintln!("grew to {size} in {:?}", t.elapsed());
        let t = Instant::now();
        // A fresh client each time: it knows only what joining taught it.
        let client = memory_node(Role::Client, None).await;
        join(&client, &boot_entry).await;
        client
            .wait_for_storage_peers(size.min(10), Duration::from_secs(10))
            .await
            .unwrap();
        let store = MeshStore::new(client.clone());
        let known = client.storage_peers().await.unwrap().len();
        let (exact, total) = check_size(size, &store, &storage).await;
        report.push(format!(
            "size {size}: client knew {known} storage peers; {exact}/{total} shards on the ideal peer"
        ));
        eprintln!("checked {size} in {:?}", t.elapsed());
        client.shutdown().await;
    }
    eprintln!("{}", report.join("\n"));
    eprintln!("took {:?}", started.elapsed());
}
