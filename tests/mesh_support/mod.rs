//! Helpers shared by the mesh tests: in-process nodes on libp2p's memory transport.

#![allow(dead_code)] // each test binary uses its own subset

pub mod cluster;

use std::time::Duration;

use datamesh::mesh::{
    BootstrapEntry, MeshClient, NodeConfig, Role, ShardServer, TransportKind, start,
};
use datamesh::store::local::LocalStore;
use libp2p::identity::Keypair;

/// A node of `role` on the memory transport, listening on a fresh `/memory` port.
pub async fn memory_node(role: Role, server: Option<ShardServer>) -> MeshClient {
    let mut nc = NodeConfig::new(Keypair::generate_ed25519(), role);
    nc.transport = TransportKind::Memory;
    if role != Role::Client {
        nc.listen = vec!["/memory/0".parse().unwrap()];
    }
    nc.server = server;
    nc.peer_requests_per_sec = 0;
    start(nc).await.expect("node starts")
}

/// A storage node with its own store in `dir`.
pub async fn memory_storage(dir: &std::path::Path) -> MeshClient {
    let store = LocalStore::open(dir).unwrap();
    memory_node(Role::Storage, Some(ShardServer::new(store, None, false))).await
}

/// The first full address of `node`, as a bootstrap entry.
pub async fn entry_of(node: &MeshClient) -> BootstrapEntry {
    let info = node.info().await.unwrap();
    BootstrapEntry::new(info.addrs[0].to_string())
}

/// Joins `node` through `boot`, failing the test after 20 s.
pub async fn join(node: &MeshClient, boot: &BootstrapEntry) {
    node.join(std::slice::from_ref(boot), Duration::from_secs(20))
        .await
        .expect("joins");
}
