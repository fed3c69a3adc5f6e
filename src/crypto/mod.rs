//! Cryptography: the owner's keys, the keystore that holds them, and chunk sealing.
//!
//! * [`keys`]: what an owner holds (master secret and its two subkeys, the ECIES owner
//!   keypair, the libp2p node key), and sealing messages to an owner.
//! * [`keystore`]: the passphrase-sealed file those keys rest in, with create, open,
//!   change-passphrase, export and import.
//! * [`passphrase`]: the passphrase type and where the CLI gets one from.
//! * [`chunk`]: `ChunkId`s, sealing chunks and opening them into [`VerifiedChunk`]s.
//!
//! `docs/design/crypto.md` is the threat model: who sees what, what is derived from
//! what, and what is not protected.
//!
//! Every secret lives in a type that zeroizes on drop and prints as `<redacted>`.

pub mod chunk;
pub mod keys;
pub mod keystore;
pub mod passphrase;
mod secure_file;

pub use chunk::{ChunkError, ChunkKeys, PlainChunk, VerifiedChunk, chunk_id};
pub use keys::{
    KeyFingerprint, Keys, KeysError, OwnerKeypair, OwnerPublicKey, open_sealed, seal_to,
};
pub use keystore::{KdfParams, KeystoreError, KeystoreInfo};
pub use passphrase::{Passphrase, PassphraseError, PassphraseSource, Purpose};

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine moves keys and chunks across threads (the blocking pool, the cache);
    /// a field that is not `Send + Sync` would break it far from here.
    #[test]
    fn key_and_chunk_types_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Keys>();
        send_sync::<ChunkKeys>();
        send_sync::<PlainChunk>();
        send_sync::<VerifiedChunk>();
        send_sync::<Passphrase>();
        send_sync::<KeystoreError>();
        send_sync::<ChunkError>();
    }
}
