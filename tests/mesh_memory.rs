//! A small in-process mesh on the memory transport: placement, retrieval, fallback
//! through the DHT, refusal of bad shards and capacity, all through `MeshStore`.

mod mesh_support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use datamesh::ids::ShardId;
use datamesh::mesh::{MeshStore, Role};
use datamesh::store::{Shard, ShardStore, StoreError};
use mesh_support::*;

fn shards(n: usize, tag: u8) -> Vec<Shard> {
    (0..n)
        .map(|i| Shard::new(Bytes::from(vec![tag ^ i as u8; 1000 + i * 37])))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_storage_nodes_take_one_shard_each_and_serve_them_back() {
    let boot = memory_node(Role::Bootstrap, None).await;
    let boot_entry = entry_of(&boot).await;
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut storage = Vec::new();
    for d in &dirs {
        let n = memory_storage(d.path()).await;
        join(&n, &boot_entry).await;
        storage.push(n);
    }
    let client = memory_node(Role::Client, None).await;
    join(&client, &boot_entry).await;
    let known = client
        .wait_for_storage_peers(6, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(known, 6);
    let store = MeshStore::new(client.clone());
    assert_eq!(store.distinct_holders().await, 6);

    let batch = shards(6, 1);
    let holders = store.put_shards(&batch, &[]).await.unwrap();
    let distinct: HashSet<_> = holders.iter().collect();
    assert_eq!(distinct.len(), 6, "one shard per peer: {holders:?}");
    let storage_ids: HashSet<String> = storage.iter().map(|n| n.peer_id().to_string()).collect();
    assert!(holders.iter().all(|h| storage_ids.contains(h.as_str())));

    for (s, h) in batch.iter().zip(&holders) {
        assert_eq!(store.get(&s.id, h).await.unwrap(), s.bytes);
        assert!(store.has(&s.id, h).await.unwrap());
    }
    // Asked at the wrong holder, the shard is found through the DHT.
    let wrong = holders[1].clone();
    assert_eq!(
        store.get(&batch[0].id, &wrong).await.unwrap(),
        batch[0].bytes
    );
    // Stats add up over all six.
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.holders, 6);
    assert_eq!(stats.shards, 6);
    assert_eq!(
        stats.bytes,
        batch.iter().map(|s| s.bytes.len() as u64).sum::<u64>()
    );

    // Delete removes it; a missing shard is NotFound, not a hang.
    store.delete(&batch[2].id, &holders[2]).await.unwrap();
    assert!(!store.has(&batch[2].id, &holders[2]).await.unwrap());
    let started = std::time::Instant::now();
    let err = store.get(&batch[2].id, &holders[2]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));

    // A storage node refuses a shard whose bytes do not match the id.
    let forged = Shard {
        id: ShardId::of(b"something else"),
        bytes: Bytes::from_static(b"forged"),
    };
    let err = store.put_shards(&[forged], &[]).await.unwrap_err();
    assert!(format!("{err}").contains("do not hash"), "{err}");
    // Our own bad bytes are not held against the peers that refused them.
    assert_eq!(store.distinct_holders().await, 6);
}
