//! Errors of the mesh, in its own terms, converting into the crate [`Error`] (for the
//! CLI) and into [`StoreError`] (for the engine, through `MeshStore`).

use libp2p::PeerId;

use super::wire::Status;
use crate::error::{Error, ErrorKind};
use crate::store::StoreError;

/// What went wrong in the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A multiaddr that does not parse or lacks what is needed.
    #[error(
        "invalid mesh address {addr:?}: {reason} (expected e.g. /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...; `datamesh bootstrap` and `datamesh service` print theirs)"
    )]
    BadAddress {
        /// The address as given.
        addr: String,
        /// Why it is unusable.
        reason: String,
    },
    /// Listening failed.
    #[error("cannot listen on {addr}: {reason} (is the port in use? choose another with --listen)")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The task that owns the node is gone (it stopped or crashed).
    #[error("the mesh node has stopped; run the command again")]
    NodeStopped,
    /// No bootstrap peer answered.
    #[error(
        "could not join the mesh through {tried}: {reason}. Check that `datamesh bootstrap` or `datamesh service` runs there and that the address, including /p2p/<peer id>, is the one it printed"
    )]
    JoinFailed {
        /// The addresses tried.
        tried: String,
        /// The last failure.
        reason: String,
    },
    /// A peer could not be reached or did not answer in time.
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// No known address of the peer accepted a connection (it is down, or moved).
    #[error("peer {peer} is unreachable: no known address of it accepted a connection")]
    CannotConnect {
        /// The peer.
        peer: PeerId,
    },
    /// A peer answered with an error status.
    #[error("peer {peer} refused the {request} request ({status:?}): {detail}")]
    Refused {
        /// The peer.
        peer: PeerId,
        /// What was asked.
        request: &'static str,
        /// The status it answered.
        status: Status,
        /// Its explanation.
        detail: String,
    },
    /// A peer answered with a response that does not fit the request.
    #[error("peer {peer} answered a {request} request with an unexpected {got} response")]
    Unexpected {
        /// The peer.
        peer: PeerId,
        /// What was asked.
        request: &'static str,
        /// What came back.
        got: &'static str,
    },
    /// Not enough storage peers to do what was asked.
    #[error(
        "{0}: start more storage nodes (`datamesh service --bootstrap ADDR`) or check that the bootstrap peer is reachable"
    )]
    NoStoragePeers(String),
    /// A DHT lookup did not finish in time.
    #[error("the mesh lookup for {0} timed out")]
    LookupTimeout(String),
    /// We were asked to store bytes that do not hash to their shard id (a bug of the
    /// caller: no peer will take them).
    #[error(
        "the bytes of shard {0} do not hash to its id; this is a bug in datamesh, please report it"
    )]
    BadShard(String),
    /// Setting up the transport or identity failed.
    #[error("cannot start the mesh node: {0}")]
    Setup(String),
}

impl MeshError {
    /// The crate error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MeshError::BadAddress { .. } => ErrorKind::InvalidInput,
            MeshError::Listen { .. } => ErrorKind::Io,
            MeshError::NodeStopped => ErrorKind::Internal,
            MeshError::JoinFailed { .. } => ErrorKind::Network,
            MeshError::Unreachable { .. } | MeshError::CannotConnect { .. } => ErrorKind::Network,
            MeshError::Refused { status, .. } => match status {
                Status::NotFound => ErrorKind::NotFound,
                Status::NoSpace => ErrorKind::NoSpace,
                Status::Busy => ErrorKind::Busy,
                Status::Forbidden => ErrorKind::NotPermitted,
                _ => ErrorKind::Network,
            },
            MeshError::Unexpected { .. } => ErrorKind::Network,
            MeshError::NoStoragePeers(_) => ErrorKind::Unavailable,
            MeshError::LookupTimeout(_) => ErrorKind::Network,
            MeshError::BadShard(_) => ErrorKind::Internal,
            MeshError::Setup(_) => ErrorKind::Internal,
        }
    }

    /// The status a peer answered, if this is a refusal.
    pub fn status(&self) -> Option<Status> {
        match self {
            MeshError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the peer itself failed (unreachable, timed out, spoke nonsense), as
    /// opposed to answering a well-formed "no". Failures open the peer's circuit
    /// breaker; refusals do not.
    pub fn is_peer_failure(&self) -> bool {
        match self {
            MeshError::Unreachable { .. }
            | MeshError::CannotConnect { .. }
            | MeshError::Unexpected { .. } => true,
            MeshError::Refused { status, .. } => {
                matches!(status, Status::Internal | Status::Malformed)
            }
            _ => false,
        }
    }
}

impl From<MeshError> for Error {
    fn from(err: MeshError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

impl From<MeshError> for StoreError {
    fn from(err: MeshError) -> Self {
        match err {
            MeshError::Unreachable { peer, reason } => StoreError::Unreachable {
                holder: peer.to_string(),
                reason,
            },
            MeshError::CannotConnect { peer } => StoreError::Unreachable {
                holder: peer.to_string(),
                reason: "no known address of it accepted a connection".into(),
            },
            MeshError::Refused {
                peer,
                status: Status::NoSpace,
                detail,
                ..
            } => StoreError::NoSpace {
                where_: format!("peer {peer} ({detail})"),
            },
            MeshError::Refused { peer, detail, .. } => StoreError::Rejected {
                holder: peer.to_string(),
                reason: detail,
            },
            MeshError::Unexpected { peer, request, got } => StoreError::Rejected {
                holder: peer.to_string(),
                reason: format!("answered a {request} request with an unexpected {got} response"),
            },
            MeshError::NoStoragePeers(what) => StoreError::NoHolders(what),
            other => StoreError::Unreachable {
                holder: "mesh".into(),
                reason: other.to_string(),
            },
        }
    }
}
