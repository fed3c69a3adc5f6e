//! The storage node's side of the shard protocol: answering put, get, has, delete,
//! stat and probe from the node's persistent [`LocalStore`].
//!
//! # Rules
//!
//! * **Put** stores the bytes only if BLAKE3 of them equals the claimed id (hashed on
//!   the blocking pool, never on a reactor thread), and only within the capacity limit.
//!   It answers "stored" only after the shard is fsync'd (LocalStore's guarantee). The
//!   peer that first stored a shard is recorded as its owner in a small sidecar file
//!   (`<shard>.owner`, the owner's peer id bytes) next to it.
//! * **Delete** is honoured only for the owner; anyone else is told "forbidden". A
//!   shard whose sidecar is missing or damaged cannot be deleted through the protocol
//!   (the safe direction: it costs space, never data); the operator can remove it.
//! * **Get**, **has** and **stat** answer anyone: shards are ciphertext or parity of it.
//! * Every failure is an error status, never a dropped stream and never a panic.
//!
//! # Test-only fault
//!
//! With `corrupt_replies` the node flips a byte in every shard it returns. It exists so
//! that integration tests can prove readers detect and route around a lying peer; the
//! CLI enables it only behind a hidden flag *and* an environment variable.

use std::path::PathBuf;

use bytes::Bytes;
use libp2p::PeerId;

use super::wire::{NodeStats, Request, Response, Status};
use crate::ids::ShardId;
use crate::store::local::LocalStore;
use crate::store::{Holder, Shard, ShardStore, StoreError};

/// What the node must do in the DHT after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Announce this node as a provider of the shard.
    Provide(ShardId),
    /// Stop announcing it.
    Unprovide(ShardId),
}

/// A storage node's request handler. Cheap to clone.
#[derive(Clone)]
pub struct ShardServer {
    store: LocalStore,
    capacity: Option<u64>,
    corrupt_replies: bool,
}

impl ShardServer {
    /// A handler over `store`, which enforces `capacity` itself (opened with it).
    pub fn new(store: LocalStore, capacity: Option<u64>, corrupt_replies: bool) -> Self {
        ShardServer {
            store,
            capacity,
            corrupt_replies,
        }
    }

    /// The store.
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    /// Answers one request from `peer`.
    pub async fn handle(&self, peer: PeerId, request: Request) -> (Response, Effect) {
        match request {
            Request::Put { id, bytes } => self.put(peer, id, bytes).await,
            Request::Get(id) => (self.get(id).await, Effect::None),
            Request::Has(id) => match self.store.has(&id, &Holder::local()).await {
                Ok(yes) => (Response::Has(yes), Effect::None),
                Err(e) => (internal(&e), Effect::None),
            },
            Request::Delete(id) => self.delete(peer, id).await,
            Request::Stat => (self.stat().await, Effect::None),
            Request::Probe(bytes) => (Response::ProbeReceived(bytes.len() as u64), Effect::None),
            // The node's event loop answers announcements from its DHT table before
            // requests reach the server; a server on its own has no table to keep them.
            Request::Announce(_) => (
                Response::Error(
                    Status::Malformed,
                    "announcements are taken by the mesh node, not the shard server".into(),
                ),
                Effect::None,
            ),
        }
    }

    async fn put(&self, peer: PeerId, id: ShardId, bytes: Bytes) -> (Response, Effect) {
        let check = bytes.clone();
        let matches = tokio::task::spawn_blocking(move || ShardId::of(&check) == id)
            .await
            .unwrap_or(false);
        if !matches {
            return (
                Response::Error(
                    Status::BadShard,
                    "the bytes do not hash to the shard id; nothing was stored".into(),
                ),
                Effect::None,
            );
        }
        match self.store.put_one(Shard { id, bytes }).await {
            Ok(()) => {}
            Err(StoreError::NoSpace { where_ }) => {
                return (
                    Response::Error(Status::NoSpace, format!("this node is full: {where_}")),
                    Effect::None,
                );
            }
            Err(e) => return (internal(&e), Effect::None),
        }
        let sidecar = self.owner_path(&id);
        let owner = peer.to_bytes();
        // Not fsync'd: losing it in a crash leaves an undeletable shard, never a lost one.
        let recorded = tokio::task::spawn_blocking(move || {
            if sidecar.exists() {
                return Ok(());
            }
            std::fs::write(&sidecar, owner)
        })
        .await;
        if !matches!(recorded, Ok(Ok(()))) {
            tracing::warn!(shard = %id.short(), "could not record the owner of a stored shard");
        }
        (Response::Stored, Effect::Provide(id))
    }

    async fn get(&self, id: ShardId) -> Response {
        match self.store.get(&id, &Holder::local()).await {
            Ok(bytes) if self.corrupt_replies => {
                let mut v = bytes.to_vec();
                if let Some(b) = v.get_mut(bytes.len() / 2) {
                    *b ^= 0x5A;
                } else {
                    v.push(0);
                }
                Response::Shard(Bytes::from(v))
            }
            Ok(bytes) => Response::Shard(bytes),
            Err(StoreError::NotFound(_)) => {
                Response::Error(Status::NotFound, "this node does not hold the shard".into())
            }
            Err(e) => internal(&e),
        }
    }

    async fn delete(&self, peer: PeerId, id: ShardId) -> (Response, Effect) {
        let sidecar = self.owner_path(&id);
        let shard_path = self.store.shard_path(&id);
        let owner = tokio::task::spawn_blocking(move || {
            if !shard_path.exists() {
                return Ok(None);
            }
            std::fs::read(&sidecar).map(Some)
        })
        .await;
        match owner {
            Ok(Ok(None)) => return (Response::Deleted, Effect::Unprovide(id)),
            Ok(Ok(Some(owner))) if PeerId::from_bytes(&owner).ok() == Some(peer) => {}
            Ok(Ok(Some(_))) | Ok(Err(_)) => {
                return (
                    Response::Error(
                        Status::Forbidden,
                        "only the peer that stored a shard may delete it".into(),
                    ),
                    Effect::None,
                );
            }
            Err(_) => {
                return (
                    Response::Error(Status::Internal, "the delete task failed".into()),
                    Effect::None,
                );
            }
        }
        if let Err(e) = self.store.delete(&id, &Holder::local()).await {
            return (internal(&e), Effect::None);
        }
        let sidecar = self.owner_path(&id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(sidecar)).await;
        (Response::Deleted, Effect::Unprovide(id))
    }

    async fn stat(&self) -> Response {
        match self.store.stats().await {
            Ok(s) => Response::Stats(NodeStats {
                shards: s.shards,
                bytes: s.bytes,
                available: s.available,
                capacity: self.capacity,
            }),
            Err(e) => internal(&e),
        }
    }

    fn owner_path(&self, id: &ShardId) -> PathBuf {
        let mut p = self.store.shard_path(id).into_os_string();
        p.push(".owner");
        PathBuf::from(p)
    }
}

fn internal(e: &StoreError) -> Response {
    // The detail helps the remote user tell a disk failure from a network one; paths
    // are this node's business, so only the error's kind and text go out.
    Response::Error(
        Status::Internal,
        format!("storage failure on the holder: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(capacity: Option<u64>) -> (tempfile::TempDir, ShardServer) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open_with_capacity(dir.path().join("s"), capacity).unwrap();
        (dir, ShardServer::new(store, capacity, false))
    }

    fn put(bytes: &'static [u8]) -> Request {
        Request::Put {
            id: ShardId::of(bytes),
            bytes: Bytes::from_static(bytes),
        }
    }

    #[tokio::test]
    async fn stores_verified_shards_and_serves_them() {
        let (_d, s) = server(None);
        let me = PeerId::random();
        let id = ShardId::of(b"hello");
        assert_eq!(
            s.handle(me, put(b"hello")).await,
            (Response::Stored, Effect::Provide(id))
        );
        assert_eq!(
            s.handle(me, Request::Get(id)).await.0,
            Response::Shard(Bytes::from_static(b"hello"))
        );
        assert_eq!(s.handle(me, Request::Has(id)).await.0, Response::Has(true));
        let Response::Stats(st) = s.handle(me, Request::Stat).await.0 else {
            panic!("not stats")
        };
        assert_eq!((st.shards, st.bytes), (1, 5));
    }

    #[tokio::test]
    async fn refuses_bytes_that_do_not_match_the_id() {
        let (_d, s) = server(None);
        let id = ShardId::of(b"claimed");
        let req = Request::Put {
            id,
            bytes: Bytes::from_static(b"other"),
        };
        let (resp, effect) = s.handle(PeerId::random(), req).await;
        assert!(
            matches!(resp, Response::Error(Status::BadShard, _)),
            "{resp:?}"
        );
        assert_eq!(effect, Effect::None);
        assert!(!s.store().has(&id, &Holder::local()).await.unwrap());
    }

    #[tokio::test]
    async fn enforces_the_capacity() {
        let (_d, s) = server(Some(8));
        let me = PeerId::random();
        assert_eq!(s.handle(me, put(b"12345")).await.0, Response::Stored);
        let resp = s.handle(me, put(b"67890")).await.0;
        assert!(
            matches!(resp, Response::Error(Status::NoSpace, _)),
            "{resp:?}"
        );
        let Response::Stats(st) = s.handle(me, Request::Stat).await.0 else {
            panic!("not stats")
        };
        assert_eq!(st.capacity, Some(8));
        assert_eq!(st.available, 3);
    }

    #[tokio::test]
    async fn only_the_owner_deletes() {
        let (_d, s) = server(None);
        let (owner, other) = (PeerId::random(), PeerId::random());
        let id = ShardId::of(b"mine");
        s.handle(owner, put(b"mine")).await;
        // A re-put by someone else does not steal ownership.
        s.handle(other, put(b"mine")).await;
        let resp = s.handle(other, Request::Delete(id)).await.0;
        assert!(
            matches!(resp, Response::Error(Status::Forbidden, _)),
            "{resp:?}"
        );
        assert_eq!(
            s.handle(owner, Request::Has(id)).await.0,
            Response::Has(true)
        );
        assert_eq!(
            s.handle(owner, Request::Delete(id)).await,
            (Response::Deleted, Effect::Unprovide(id))
        );
        assert_eq!(
            s.handle(owner, Request::Has(id)).await.0,
            Response::Has(false)
        );
        assert!(!s.owner_path(&id).exists(), "sidecar removed");
        // Deleting what is not there is fine, for anyone.
        assert_eq!(
            s.handle(other, Request::Delete(id)).await.0,
            Response::Deleted
        );
        let resp = s.handle(owner, Request::Get(id)).await.0;
        assert!(matches!(resp, Response::Error(Status::NotFound, _)));
    }

    #[tokio::test]
    async fn the_corrupting_fault_changes_served_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let s = ShardServer::new(store, None, true);
        let me = PeerId::random();
        s.handle(me, put(b"payload")).await;
        let Response::Shard(got) = s.handle(me, Request::Get(ShardId::of(b"payload"))).await.0
        else {
            panic!("no shard")
        };
        assert_ne!(&got[..], b"payload");
        assert_eq!(got.len(), 7);
    }
}
