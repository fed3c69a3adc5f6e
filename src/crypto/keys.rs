//! The owner's keys: what a repository owner holds and everything derived from it.
//!
//! # Model
//!
//! An owner has three independent secrets, generated once by [`Keys::generate`] and kept
//! in the keystore (`crate::crypto::keystore`):
//!
//! * the **master secret**: 32 random bytes. Two subkeys are derived from it with BLAKE3
//!   `derive_key`, each under its own context string, so knowing one subkey tells nothing
//!   about the other or about the master:
//!   * the **convergence secret** ([`CONVERGENCE_CONTEXT`]): the key of the keyed BLAKE3
//!     that names chunks (`ChunkId`);
//!   * the **chunk encryption root** ([`CHUNK_ENCRYPTION_CONTEXT`]): the key from which
//!     every chunk's AES-256-GCM key is derived (see `crate::crypto::chunk`).
//!
//!   The chunker's 64-bit gear seed is in turn derived from the convergence secret
//!   ([`CHUNKER_SEED_CONTEXT`]), so chunk boundaries depend on a secret too.
//! * the **owner keypair** ([`OwnerKeypair`]): an ECIES keypair on secp256k1 (the
//!   `ecies` crate), used to seal things *to* the owner: catalog snapshots now, shared
//!   manifests and write-only backup keys later ([`seal_to`], [`open_sealed`]). Its
//!   public key names the owner; its BLAKE3 hash is the [`KeyFingerprint`].
//! * the **node key**: the 32-byte secret of an ed25519 keypair, the libp2p identity of
//!   this owner's mesh node ([`Keys::node_keypair`]). It is separate from the data keys on
//!   purpose: it is used online by the network stack, and losing it (or rotating it) must
//!   never touch data.
//!
//! # Invariants
//!
//! * Secrets live only in types that zeroize their bytes on drop, and no `Debug` output of
//!   this module prints a secret byte.
//! * The secrets' binary layout ([`Keys::encode_secrets`]) is versioned; decoding refuses
//!   unknown versions and wrong lengths instead of guessing.
//! * The ECIES crate has a process-global configuration (compressed or uncompressed
//!   ephemeral keys). datamesh always uses its defaults; changing it would make every
//!   sealed message unreadable, so nothing in the crate may call
//!   `ecies::config::update_config`.

use std::fmt;

use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, ErrorKind};

/// BLAKE3 `derive_key` context of the convergence secret (the ChunkId hash key).
pub const CONVERGENCE_CONTEXT: &str = "datamesh 2026-12 convergence v1";

/// BLAKE3 `derive_key` context of the chunk encryption root.
pub const CHUNK_ENCRYPTION_CONTEXT: &str = "datamesh 2026-12 chunk-encryption v1";

/// BLAKE3 `derive_key` context of the chunker's gear seed, derived from the convergence
/// secret (see `ChunkKeys::chunker_seed`).
pub const CHUNKER_SEED_CONTEXT: &str = "datamesh 2026-12 chunker seed v1";

/// BLAKE3 `derive_key` context of the mesh *client* identity, derived from the node
/// secret (see [`Keys::client_keypair`]).
pub const MESH_CLIENT_CONTEXT: &str = "datamesh 2026-12 mesh client v1";

/// Version byte of the secrets layout written by [`Keys::encode_secrets`].
const SECRETS_VERSION: u8 = 1;

/// Length of the version-1 secrets layout: version, master, ECIES secret, node secret.
const SECRETS_V1_LEN: usize = 1 + 32 + 32 + 32;

/// Errors of the key types.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The serialized secrets have a layout version this datamesh does not know.
    #[error(
        "the keys were written by a newer datamesh (secrets layout version {0}); upgrade datamesh to use them"
    )]
    NewerSecretsLayout(u8),
    /// The serialized secrets are malformed.
    #[error("the stored keys are malformed ({0}); restore them with `datamesh key import`")]
    MalformedSecrets(&'static str),
    /// Bytes that should be an owner public key are not one.
    #[error(
        "not a valid owner public key (expected a 33-byte compressed secp256k1 point); check that it was copied whole"
    )]
    BadPublicKey,
    /// A sealed message did not open.
    #[error(
        "the sealed message could not be opened: it was sealed to another owner's key, or it is damaged"
    )]
    SealedOpenFailed,
    /// Sealing failed inside the ECIES library (an invariant of ours did not hold).
    #[error("sealing a message failed unexpectedly: {0}")]
    SealFailed(String),
}

impl KeysError {
    /// The crate error kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeysError::NewerSecretsLayout(_) => ErrorKind::Unsupported,
            KeysError::MalformedSecrets(_) => ErrorKind::Corrupt,
            KeysError::BadPublicKey => ErrorKind::InvalidInput,
            KeysError::SealedOpenFailed => ErrorKind::Corrupt,
            KeysError::SealFailed(_) => ErrorKind::Internal,
        }
    }
}

impl From<KeysError> for Error {
    fn from(err: KeysError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

/// 32 secret bytes: zeroed on drop, never printed.
#[derive(Clone)]
pub(crate) struct Secret32([u8; 32]);

impl Secret32 {
    /// Wraps bytes (the caller zeroizes its own copy if it has one).
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Secret32(bytes)
    }

    /// Fresh random bytes from the operating system's CSPRNG.
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Secret32(bytes)
    }

    /// The secret bytes.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Secret32 {}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// Identifies an owner's keys without revealing them: BLAKE3 of the compressed owner
/// public key. Two keystores hold the same keys exactly when their fingerprints match.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(pub [u8; 32]);

impl KeyFingerprint {
    /// The first 8 bytes as hex, for messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({})", self.short())
    }
}

/// An owner's public key: what others (and the owner's other machines) seal to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OwnerPublicKey(ecies::PublicKey);

impl OwnerPublicKey {
    /// Length of the compressed encoding.
    pub const LEN: usize = 33;

    /// The compressed SEC1 encoding (33 bytes).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        self.0.serialize_compressed()
    }

    /// Parses a compressed SEC1 encoding; refuses anything that is not a curve point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeysError> {
        if bytes.len() != Self::LEN {
            return Err(KeysError::BadPublicKey);
        }
        ecies::PublicKey::parse_slice(bytes, None)
            .map(OwnerPublicKey)
            .map_err(|_| KeysError::BadPublicKey)
    }

    /// The fingerprint of this key.
    pub fn fingerprint(&self) -> KeyFingerprint {
        KeyFingerprint(*blake3::hash(&self.to_bytes()).as_bytes())
    }
}

impl fmt::Debug for OwnerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerPublicKey({})", hex::encode(self.to_bytes()))
    }
}

/// The owner's ECIES keypair. The secret half zeroizes on drop (k256 does it).
#[derive(Clone)]
pub struct OwnerKeypair {
    secret: ecies::SecretKey,
    public: OwnerPublicKey,
}

impl OwnerKeypair {
    /// A fresh random keypair.
    pub fn generate() -> Self {
        Self::from_secret(ecies::SecretKey::generate())
    }

    fn from_secret(secret: ecies::SecretKey) -> Self {
        let public = OwnerPublicKey(ecies::PublicKey::from_secret_key(&secret));
        OwnerKeypair { secret, public }
    }

    /// Parses the 32-byte secret scalar; refuses zero and values not below the order.
    fn from_secret_bytes(bytes: &[u8]) -> Result<Self, KeysError> {
        ecies::SecretKey::parse_slice(bytes)
            .map(Self::from_secret)
            .map_err(|_| KeysError::MalformedSecrets("the owner secret key is not a valid scalar"))
    }

    fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.serialize())
    }

    /// The public half.
    pub fn public(&self) -> OwnerPublicKey {
        self.public
    }
}

impl fmt::Debug for OwnerKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerKeypair")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Seals `msg` so that only the holder of `to`'s secret can read it (ECIES: an ephemeral
/// secp256k1 key agreement, HKDF, AES-256-GCM with a random 16-byte nonce). The output
/// is `msg.len() + 97` bytes: a 65-byte ephemeral public key, the nonce and the tag.
pub fn seal_to(to: &OwnerPublicKey, msg: &[u8]) -> Result<Vec<u8>, KeysError> {
    ecies::encrypt(&to.0.serialize(), msg).map_err(|e| KeysError::SealFailed(e.to_string()))
}

/// Opens a message sealed by [`seal_to`] to `keypair`'s public key. A message sealed to
/// another key, or altered in any byte, fails with [`KeysError::SealedOpenFailed`].
pub fn open_sealed(keypair: &OwnerKeypair, sealed: &[u8]) -> Result<Vec<u8>, KeysError> {
    let secret = keypair.secret_bytes();
    ecies::decrypt(&secret[..], sealed).map_err(|_| KeysError::SealedOpenFailed)
}

/// Everything secret an owner has. See the module docs.
#[derive(Clone)]
pub struct Keys {
    master: Secret32,
    owner: OwnerKeypair,
    node: Secret32,
}

impl Keys {
    /// Fresh keys: a random master secret, owner keypair and node key.
    pub fn generate() -> Self {
        let node = {
            let pair = libp2p::identity::Keypair::generate_ed25519();
            let pair = pair
                .try_into_ed25519()
                .expect("generate_ed25519 returns an ed25519 keypair");
            let secret = pair.secret();
            let bytes: &[u8] = secret.as_ref();
            let mut copy = [0u8; 32];
            copy.copy_from_slice(bytes);
            Secret32::new(copy)
        };
        Keys {
            master: Secret32::random(),
            owner: OwnerKeypair::generate(),
            node,
        }
    }

    /// The convergence secret: key of the keyed BLAKE3 that makes ChunkIds.
    pub(crate) fn convergence_secret(&self) -> Secret32 {
        Secret32::new(blake3::derive_key(
            CONVERGENCE_CONTEXT,
            self.master.expose(),
        ))
    }

    /// The chunk encryption root: every chunk key is derived from it and the ChunkId.
    pub(crate) fn chunk_encryption_root(&self) -> Secret32 {
        Secret32::new(blake3::derive_key(
            CHUNK_ENCRYPTION_CONTEXT,
            self.master.expose(),
        ))
    }

    /// The owner's ECIES keypair.
    pub fn owner(&self) -> &OwnerKeypair {
        &self.owner
    }

    /// The owner's public key.
    pub fn owner_public_key(&self) -> OwnerPublicKey {
        self.owner.public
    }

    /// The fingerprint of these keys (of the owner public key).
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.owner.public.fingerprint()
    }

    /// The libp2p identity of this owner's mesh node (ed25519).
    pub fn node_keypair(&self) -> libp2p::identity::Keypair {
        // `ed25519_from_bytes` zeroizes the buffer it is given; hand it a copy.
        let mut copy = Zeroizing::new(*self.node.expose());
        libp2p::identity::Keypair::ed25519_from_bytes(&mut copy[..])
            .expect("any 32 bytes are an ed25519 secret key")
    }

    /// The libp2p identity this owner's commands and mounts use when they join the mesh
    /// as clients (ed25519, derived from the node secret under [`MESH_CLIENT_CONTEXT`]).
    ///
    /// It is stable, so storage nodes recognise the owner of the shards it stored and
    /// honour its deletes (garbage collection); it differs from the node key, so a
    /// `datamesh service` of the same repository and its commands are distinct peers.
    pub fn client_keypair(&self) -> libp2p::identity::Keypair {
        let mut secret =
            Zeroizing::new(blake3::derive_key(MESH_CLIENT_CONTEXT, self.node.expose()));
        libp2p::identity::Keypair::ed25519_from_bytes(&mut secret[..])
            .expect("any 32 bytes are an ed25519 secret key")
    }

    /// The peer id of [`Keys::node_keypair`].
    pub fn node_peer_id(&self) -> libp2p::PeerId {
        self.node_keypair().public().to_peer_id()
    }

    /// The secrets in their versioned binary layout (version 1: the version byte, then
    /// the master secret, the ECIES secret scalar and the ed25519 node secret, 32 bytes
    /// each). Only the keystore writes this, and only inside its AEAD.
    pub(crate) fn encode_secrets(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SECRETS_V1_LEN));
        out.push(SECRETS_VERSION);
        out.extend_from_slice(self.master.expose());
        out.extend_from_slice(&self.owner.secret_bytes()[..]);
        out.extend_from_slice(self.node.expose());
        out
    }

    /// Parses [`Keys::encode_secrets`] output.
    pub(crate) fn decode_secrets(bytes: &[u8]) -> Result<Keys, KeysError> {
        match bytes.first() {
            None => return Err(KeysError::MalformedSecrets("no data")),
            Some(&SECRETS_VERSION) => {}
            Some(&v) if v > SECRETS_VERSION => return Err(KeysError::NewerSecretsLayout(v)),
            Some(_) => return Err(KeysError::MalformedSecrets("unknown layout version")),
        }
        if bytes.len() != SECRETS_V1_LEN {
            return Err(KeysError::MalformedSecrets("wrong length"));
        }
        let take = |at: usize| {
            let mut b = [0u8; 32];
            b.copy_from_slice(&bytes[at..at + 32]);
            Secret32::new(b)
        };
        let master = take(1);
        let owner = OwnerKeypair::from_secret_bytes(&bytes[33..65])?;
        let node = take(65);
        Ok(Keys {
            master,
            owner,
            node,
        })
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("fingerprint", &self.fingerprint())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_differ_and_subkeys_are_distinct() {
        let a = Keys::generate();
        let b = Keys::generate();
        assert_ne!(a.encode_secrets()[..], b.encode_secrets()[..]);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.node_peer_id(), b.node_peer_id());
        // The two subkeys must not coincide with each other or the master.
        let conv = a.convergence_secret();
        let root = a.chunk_encryption_root();
        assert_ne!(conv.expose(), root.expose());
        assert_ne!(conv.expose(), a.master.expose());
        assert_ne!(root.expose(), a.master.expose());
    }

    #[test]
    fn subkeys_follow_the_documented_derivation() {
        let keys = Keys::generate();
        let conv = blake3::derive_key("datamesh 2026-12 convergence v1", keys.master.expose());
        let root = blake3::derive_key("datamesh 2026-12 chunk-encryption v1", keys.master.expose());
        assert_eq!(keys.convergence_secret().expose(), &conv);
        assert_eq!(keys.chunk_encryption_root().expose(), &root);
    }

    #[test]
    fn secrets_round_trip_keeps_every_key() {
        let keys = Keys::generate();
        let back = Keys::decode_secrets(&keys.encode_secrets()).unwrap();
        assert_eq!(keys.encode_secrets()[..], back.encode_secrets()[..]);
        assert_eq!(keys.fingerprint(), back.fingerprint());
        assert_eq!(keys.node_peer_id(), back.node_peer_id());
        assert_eq!(
            keys.convergence_secret().expose(),
            back.convergence_secret().expose()
        );
    }

    #[test]
    fn decode_refuses_bad_layouts() {
        let good = Keys::generate().encode_secrets();
        let err = |b: &[u8]| Keys::decode_secrets(b).unwrap_err();
        assert!(matches!(err(&[]), KeysError::MalformedSecrets(_)));
        assert!(matches!(err(&good[..50]), KeysError::MalformedSecrets(_)));
        let mut long = good.to_vec();
        long.push(0);
        assert!(matches!(err(&long), KeysError::MalformedSecrets(_)));
        let mut newer = good.to_vec();
        newer[0] = 2;
        assert!(matches!(err(&newer), KeysError::NewerSecretsLayout(2)));
        assert_eq!(err(&newer).kind(), ErrorKind::Unsupported);
        let mut old = good.to_vec();
        old[0] = 0;
        assert!(matches!(err(&old), KeysError::MalformedSecrets(_)));
        // An all-zero ECIES scalar is not a key.
        let mut zero = good.to_vec();
        zero[33..65].fill(0);
        assert_eq!(err(&zero).kind(), ErrorKind::Corrupt);
        // Nor is one at or above the curve order.
        let mut high = good.to_vec();
        high[33..65].fill(0xff);
        assert_eq!(err(&high).kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn debug_output_is_redacted() {
        let keys = Keys::generate();
        let secrets = keys.encode_secrets();
        let text = format!("{keys:?} {:?} {:?}", keys.owner(), keys.master);
        assert!(text.contains("redacted"));
        // No 32-byte secret may appear in hex in the output.
        for part in [&secrets[1..33], &secrets[33..65], &secrets[65..97]] {
            assert!(!text.contains(&hex::encode(part)));
            assert!(!text.contains(&hex::encode(&part[..8])));
        }
    }

    #[test]
    fn node_keypair_is_stable_and_ed25519() {
        let keys = Keys::generate();
        let a = keys.node_keypair();
        let b = keys.node_keypair();
        assert_eq!(a.public(), b.public());
        assert_eq!(a.key_type(), libp2p::identity::KeyType::Ed25519);
        let sig = a.sign(b"hello").unwrap();
        assert!(b.public().verify(b"hello", &sig));
    }

    #[test]
    fn client_keypair_is_stable_and_not_the_node_key() {
        let keys = Keys::generate();
        let a = keys.client_keypair().public().to_peer_id();
        assert_eq!(a, keys.client_keypair().public().to_peer_id());
        assert_ne!(a, keys.node_peer_id());
        let other = Keys::generate();
        assert_ne!(a, other.client_keypair().public().to_peer_id());
    }

    #[test]
    fn public_key_bytes_round_trip_and_reject_garbage() {
        let keys = Keys::generate();
        let pk = keys.owner_public_key();
        assert_eq!(OwnerPublicKey::from_bytes(&pk.to_bytes()).unwrap(), pk);
        assert!(OwnerPublicKey::from_bytes(&[2; 32]).is_err());
        assert!(OwnerPublicKey::from_bytes(&[0; 33]).is_err());
        assert_eq!(pk.fingerprint(), keys.fingerprint());
        assert_eq!(
            keys.fingerprint().0,
            *blake3::hash(&pk.to_bytes()).as_bytes()
        );
    }

    #[test]
    fn sealed_message_opens_only_for_its_owner() {
        let alice = Keys::generate();
        let bob = Keys::generate();
        let sealed = seal_to(&alice.owner_public_key(), b"catalog snapshot").unwrap();
        assert_eq!(sealed.len(), b"catalog snapshot".len() + 97);
        assert!(!sealed.windows(b"catalog".len()).any(|w| w == b"catalog"));
        assert_eq!(
            open_sealed(alice.owner(), &sealed).unwrap(),
            b"catalog snapshot"
        );
        let err = open_sealed(bob.owner(), &sealed).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        // Too short to hold even the ephemeral key: an error, not a panic.
        assert!(open_sealed(alice.owner(), &sealed[..10]).is_err());
        assert!(open_sealed(alice.owner(), &[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn seal_to_round_trips_and_detects_tampering(
            msg in proptest::collection::vec(any::<u8>(), 0..2048),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let keys = Keys::generate();
            let sealed = seal_to(&keys.owner_public_key(), &msg).unwrap();
            prop_assert_eq!(open_sealed(keys.owner(), &sealed).unwrap(), msg);
            let mut bad = sealed.clone();
            let at = flip.index(bad.len());
            bad[at] ^= 1 << bit;
            prop_assert!(open_sealed(keys.owner(), &bad).is_err());
        }
    }
}
