//! Chunk naming and sealing: plaintext chunk -> `ChunkId` and sealed bytes, and back.
//!
//! # Model
//!
//! * `ChunkId = BLAKE3-keyed(key = convergence secret, plaintext)`. Identical plaintext
//!   of one owner gets one id (dedup within the owner); without the secret the id says
//!   nothing about the plaintext, and another owner's ids are unrelated.
//! * `chunk key = BLAKE3-keyed(key = chunk encryption root, message = the 32 ChunkId bytes)`.
//! * Sealed format, version 1:
//!
//!   ```text
//!   [version = 1][flags = 0][AES-256-GCM ciphertext, plaintext length][16-byte tag]
//!   ```
//!
//!   The two header bytes are the AEAD's associated data, so neither can be changed
//!   without failing the tag. `flags` is reserved (compression); a reader refuses flags
//!   it does not know. The sealed length is always `plaintext length + 18`
//!   ([`sealed_len`]).
//! * The GCM nonce is fixed (all zero). This is safe because a GCM key may encrypt
//!   any number of messages *as long as no (key, nonce) pair is used for two different
//!   plaintexts*, and here each key encrypts only one plaintext: the key is a PRF of the
//!   ChunkId, and the ChunkId is a PRF of the plaintext, so two different plaintexts get
//!   the same key only through a BLAKE3 collision (probability about 2^-128 over all the
//!   chunks an owner will ever store). Sealing the same plaintext twice yields the same
//!   bytes, which leaks nothing new: equal ciphertexts already follow from equal ids.
//!   The argument needs the id handed to the cipher to be the plaintext's true id. That
//!   is why [`seal`] does not take an id from the caller: it takes a [`PlainChunk`],
//!   which only [`PlainChunk::new`] / [`PlainChunk::from_slice`] build, by hashing the
//!   bytes they hold. A bug elsewhere cannot pair a key with a second plaintext.
//! * [`open`] decrypts (the tag authenticates header and ciphertext), then recomputes
//!   the keyed hash of the plaintext and compares it to the expected id. Only then does
//!   it build a [`VerifiedChunk`], whose constructor is private to this module: any
//!   plaintext that reaches a cache or a reader has passed both checks. The hash check
//!   is not redundant with the tag: the tag proves the bytes were sealed under the key
//!   for this id, the hash proves they are the plaintext that id names.
//!
//! # Performance
//!
//! Sealing and opening work in place on one buffer. [`PlainChunk::from_slice`] allocates
//! the sealed buffer once with room for the header and tag, so [`seal`] neither copies
//! nor reallocates; [`open_vec`] decrypts in place and hands out a zero-copy slice of
//! the same allocation.
//!
//! # Defaults
//!
//! There is nothing to configure: version 1, no flags, AES-256-GCM.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use bytes::Bytes;
use zeroize::Zeroizing;

use crate::crypto::keys::{CHUNKER_SEED_CONTEXT, Keys, Secret32};
use crate::error::{Error, ErrorKind};
use crate::ids::ChunkId;

/// Version byte of the sealed format written here.
pub const SEALED_VERSION: u8 = 1;

/// Length of the sealed header (version and flags).
pub const SEALED_HEADER_LEN: usize = 2;

/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// Bytes a sealed chunk has beyond its plaintext.
pub const SEAL_OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;

/// The flags this version understands (none yet).
const KNOWN_FLAGS: u8 = 0;

/// The fixed GCM nonce; see the module docs for why it is safe.
const ZERO_NONCE: [u8; 12] = [0; 12];

/// The length of a sealed chunk whose plaintext is `plaintext_len` bytes.
pub const fn sealed_len(plaintext_len: usize) -> usize {
    plaintext_len + SEAL_OVERHEAD
}

/// The plaintext length of a sealed chunk of `sealed_len` bytes, if it can be one.
pub const fn plaintext_len(sealed_len: usize) -> Option<usize> {
    sealed_len.checked_sub(SEAL_OVERHEAD)
}

/// Errors of chunk sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// Decryption or the id check failed: the bytes are damaged, or belong to another
    /// chunk or another owner.
    #[error(
        "chunk {id} failed verification: its stored bytes are damaged or were sealed under other keys"
    )]
    Verification {
        /// The chunk that was asked for.
        id: ChunkId,
    },
    /// Too short to be a sealed chunk.
    #[error(
        "chunk {id} failed verification: {len} bytes is shorter than any sealed chunk ({SEAL_OVERHEAD} bytes)"
    )]
    Truncated {
        /// The chunk that was asked for.
        id: ChunkId,
        /// How many bytes there were.
        len: usize,
    },
    /// The sealed header names a version or flags this datamesh does not know.
    #[error(
        "chunk {id} was sealed by a newer datamesh (format version {version}, flags {flags:#04x}); upgrade datamesh to read it"
    )]
    Newer {
        /// The chunk that was asked for.
        id: ChunkId,
        /// The version byte found.
        version: u8,
        /// The flags byte found.
        flags: u8,
    },
    /// The plaintext exceeds what one AES-GCM message may hold (64 GiB): a chunker bug.
    #[error("chunk {id} is {len} bytes, more than one sealed chunk can hold")]
    TooLarge {
        /// The chunk's id.
        id: ChunkId,
        /// Its length.
        len: usize,
    },
}

impl ChunkError {
    /// The crate error kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ChunkError::Verification { .. } | ChunkError::Truncated { .. } => ErrorKind::Corrupt,
            ChunkError::Newer { .. } => ErrorKind::Unsupported,
            ChunkError::TooLarge { .. } => ErrorKind::Internal,
        }
    }
}

impl From<ChunkError> for Error {
    fn from(err: ChunkError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

/// The two chunk keys of one owner: the convergence secret and the encryption root.
#[derive(Clone)]
pub struct ChunkKeys {
    convergence: Secret32,
    root: Secret32,
}

impl ChunkKeys {
    /// The chunk keys derived from an owner's keys.
    pub fn new(keys: &Keys) -> Self {
        ChunkKeys {
            convergence: keys.convergence_secret(),
            root: keys.chunk_encryption_root(),
        }
    }

    /// The seed of the content-defined chunker's gear table: the first 8 bytes
    /// (little-endian) of `derive_key(CHUNKER_SEED_CONTEXT, convergence secret)`. Secret
    /// boundaries keep a storage node from recognising a known file by its chunk sizes.
    pub fn chunker_seed(&self) -> u64 {
        let derived = Zeroizing::new(blake3::derive_key(
            CHUNKER_SEED_CONTEXT,
            self.convergence.expose(),
        ));
        let mut first = [0u8; 8];
        first.copy_from_slice(&derived[..8]);
        u64::from_le_bytes(first)
    }

    /// The AES-256-GCM cipher for the chunk `id`.
    fn cipher(&self, id: &ChunkId) -> Aes256Gcm {
        let key = Zeroizing::new(*blake3::keyed_hash(self.root.expose(), id.as_bytes()).as_bytes());
        Aes256Gcm::new(GenericArray::from_slice(&key[..]))
    }
}

impl From<&Keys> for ChunkKeys {
    fn from(keys: &Keys) -> Self {
        ChunkKeys::new(keys)
    }
}

impl fmt::Debug for ChunkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkKeys(<redacted>)")
    }
}

/// The id of a chunk's plaintext under `keys`: the keyed BLAKE3 hash.
pub fn chunk_id(keys: &ChunkKeys, plaintext: &[u8]) -> ChunkId {
    ChunkId(*blake3::keyed_hash(keys.convergence.expose(), plaintext).as_bytes())
}

/// A plaintext chunk together with its true id: the only thing [`seal`] accepts.
///
/// The buffer is laid out as the sealed form will be (`offset` is 0 or
/// [`SEALED_HEADER_LEN`]), so sealing can work in place.
pub struct PlainChunk {
    id: ChunkId,
    buf: Vec<u8>,
    offset: usize,
}

impl PlainChunk {
    /// Names `data` under `keys`, taking the buffer. Sealing it shifts the bytes by two
    /// to make room for the header; use [`PlainChunk::from_slice`] to avoid that.
    pub fn new(keys: &ChunkKeys, data: Vec<u8>) -> Self {
        PlainChunk {
            id: chunk_id(keys, &data),
            buf: data,
            offset: 0,
        }
    }

    /// Names a copy of `data` under `keys`, copied into a buffer already sized for the
    /// sealed form: the one copy the write path needs.
    pub fn from_slice(keys: &ChunkKeys, data: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(sealed_len(data.len()));
        buf.extend_from_slice(&[SEALED_VERSION, KNOWN_FLAGS]);
        buf.extend_from_slice(data);
        PlainChunk {
            id: chunk_id(keys, data),
            buf,
            offset: SEALED_HEADER_LEN,
        }
    }

    /// The chunk's id.
    pub fn id(&self) -> &ChunkId {
        &self.id
    }

    /// The plaintext.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.offset..]
    }

    /// The plaintext length.
    pub fn len(&self) -> usize {
        self.buf.len() - self.offset
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for PlainChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainChunk")
            .field("id", &self.id)
            .field("len", &self.len())
            .finish()
    }
}

/// Seals a chunk in place: returns its sealed bytes (see the module docs for the
/// format). Deterministic: one owner's same plaintext always seals to the same bytes.
pub fn seal(keys: &ChunkKeys, chunk: PlainChunk) -> Result<Vec<u8>, ChunkError> {
    let PlainChunk {
        id,
        mut buf,
        offset,
    } = chunk;
    let len = buf.len() - offset;
    // AES-GCM can encrypt at most 2^36 - 32 bytes under one nonce.
    if len as u64 > (1u64 << 36) - 32 {
        return Err(ChunkError::TooLarge { id, len });
    }
    if offset == 0 {
        buf.reserve_exact(SEAL_OVERHEAD);
        buf.splice(0..0, [SEALED_VERSION, KNOWN_FLAGS]);
    }
    let (header, body) = buf.split_at_mut(SEALED_HEADER_LEN);
    let tag = keys
        .cipher(&id)
        .encrypt_in_place_detached(GenericArray::from_slice(&ZERO_NONCE), header, body)
        .map_err(|_| ChunkError::TooLarge { id, len })?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// A chunk's plaintext that has been decrypted and checked against its id. Only this
/// module can build one, so holding one proves the check happened. It comes from
/// [`open`] or [`open_vec`]:
///
/// ```
/// use datamesh::crypto::{ChunkKeys, Keys, PlainChunk, VerifiedChunk, chunk};
/// use datamesh::ids::ChunkId;
///
/// let keys = ChunkKeys::new(&Keys::generate());
/// let plain = PlainChunk::from_slice(&keys, b"hello");
/// let id: ChunkId = *plain.id();
/// let sealed = chunk::seal(&keys, plain).unwrap();
/// let verified: VerifiedChunk = chunk::open(&keys, &id, &sealed).unwrap();
/// let data: &bytes::Bytes = verified.data();
/// assert_eq!(&data[..], b"hello");
/// ```
///
/// and cannot be built any other way (the same names as above, plus a struct literal):
///
/// ```compile_fail,E0451
/// use datamesh::crypto::VerifiedChunk;
/// use datamesh::ids::ChunkId;
/// // Private fields: code outside `crypto::chunk` cannot forge a verified chunk.
/// let forged = VerifiedChunk { id: ChunkId([0; 32]), data: bytes::Bytes::new() };
/// ```
#[derive(Clone)]
pub struct VerifiedChunk {
    id: ChunkId,
    data: Bytes,
}

impl VerifiedChunk {
    /// The chunk's id.
    pub fn id(&self) -> &ChunkId {
        &self.id
    }

    /// The verified plaintext.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The verified plaintext, by value (cheap: `Bytes` is reference-counted).
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// The plaintext length.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for VerifiedChunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChunk")
            .field("id", &self.id)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Checks the header; returns the plaintext length.
fn check_header(id: &ChunkId, sealed: &[u8]) -> Result<usize, ChunkError> {
    let Some(len) = plaintext_len(sealed.len()) else {
        return Err(ChunkError::Truncated {
            id: *id,
            len: sealed.len(),
        });
    };
    let (version, flags) = (sealed[0], sealed[1]);
    if version > SEALED_VERSION || (version == SEALED_VERSION && flags & !KNOWN_FLAGS != 0) {
        return Err(ChunkError::Newer {
            id: *id,
            version,
            flags,
        });
    }
    if version != SEALED_VERSION {
        return Err(ChunkError::Verification { id: *id });
    }
    Ok(len)
}

/// Decrypts `body` in place and checks the result against `id`.
fn decrypt_and_verify(
    keys: &ChunkKeys,
    id: &ChunkId,
    header: &[u8],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), ChunkError> {
    keys.cipher(id)
        .decrypt_in_place_detached(
            GenericArray::from_slice(&ZERO_NONCE),
            header,
            body,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| ChunkError::Verification { id: *id })?;
    if chunk_id(keys, body) != *id {
        return Err(ChunkError::Verification { id: *id });
    }
    Ok(())
}

/// Opens sealed bytes that should hold the chunk `id`, copying them once.
pub fn open(keys: &ChunkKeys, id: &ChunkId, sealed: &[u8]) -> Result<VerifiedChunk, ChunkError> {
    let len = check_header(id, sealed)?;
    let body_end = SEALED_HEADER_LEN + len;
    let mut data = sealed[SEALED_HEADER_LEN..body_end].to_vec();
    decrypt_and_verify(
        keys,
        id,
        &sealed[..SEALED_HEADER_LEN],
        &mut data,
        &sealed[body_end..],
    )?;
    Ok(VerifiedChunk {
        id: *id,
        data: Bytes::from(data),
    })
}

/// Opens sealed bytes that should hold the chunk `id`, in place: no copy, the plaintext
/// is a slice of `sealed`'s allocation.
pub fn open_vec(
    keys: &ChunkKeys,
    id: &ChunkId,
    mut sealed: Vec<u8>,
) -> Result<VerifiedChunk, ChunkError> {
    let len = check_header(id, &sealed)?;
    let body_end = SEALED_HEADER_LEN + len;
    let (header, rest) = sealed.split_at_mut(SEALED_HEADER_LEN);
    let (body, tag) = rest.split_at_mut(len);
    decrypt_and_verify(keys, id, header, body, tag)?;
    Ok(VerifiedChunk {
        id: *id,
        data: Bytes::from(sealed).slice(SEALED_HEADER_LEN..body_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> ChunkKeys {
        ChunkKeys::new(&Keys::generate())
    }

    fn seal_bytes(keys: &ChunkKeys, data: &[u8]) -> (ChunkId, Vec<u8>) {
        let chunk = PlainChunk::from_slice(keys, data);
        let id = *chunk.id();
        (id, seal(keys, chunk).unwrap())
    }

    #[test]
    fn sealed_form_is_exactly_the_documented_construction() {
        let owner = Keys::generate();
        let keys = ChunkKeys::new(&owner);
        let data = b"the quick brown fox".to_vec();
        let (id, sealed) = seal_bytes(&keys, &data);

        // Recompute every step from the owner's master-derived subkeys.
        let conv = owner.convergence_secret();
        let root = owner.chunk_encryption_root();
        assert_eq!(id.0, *blake3::keyed_hash(conv.expose(), &data).as_bytes());
        let key = blake3::keyed_hash(root.expose(), &id.0);
        let cipher = Aes256Gcm::new(GenericArray::from_slice(key.as_bytes()));
        let mut expect = vec![1u8, 0];
        let ct = aes_gcm::aead::Aead::encrypt(
            &cipher,
            GenericArray::from_slice(&[0u8; 12]),
            aes_gcm::aead::Payload {
                msg: &data,
                aad: &[1, 0],
            },
        )
        .unwrap();
        expect.extend_from_slice(&ct);
        assert_eq!(sealed, expect);
        assert_eq!(sealed.len(), sealed_len(data.len()));
        assert_eq!(plaintext_len(sealed.len()), Some(data.len()));
    }

    #[test]
    fn chunker_seed_is_per_owner_and_follows_the_derivation() {
        let owner = Keys::generate();
        let keys = ChunkKeys::new(&owner);
        let derived = blake3::derive_key(
            "datamesh 2026-12 chunker seed v1",
            owner.convergence_secret().expose(),
        );
        let expect = u64::from_le_bytes(derived[..8].try_into().unwrap());
        assert_eq!(keys.chunker_seed(), expect);
        assert_eq!(ChunkKeys::new(&owner).chunker_seed(), expect);
        assert_ne!(ChunkKeys::new(&Keys::generate()).chunker_seed(), expect);
    }

    #[test]
    fn both_constructors_seal_identically_and_in_place() {
        let keys = keys();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = PlainChunk::new(&keys, data.clone());
        let b = PlainChunk::from_slice(&keys, &data);
        assert_eq!(a.id(), b.id());
        assert_eq!(a.data(), b.data());
        assert_eq!(b.len(), data.len());
        let b_ptr = b.buf.as_ptr();
        let sealed_b = seal(&keys, b).unwrap();
        // from_slice reserved room for the tag: sealing did not reallocate.
        assert_eq!(sealed_b.as_ptr(), b_ptr);
        assert_eq!(seal(&keys, a).unwrap(), sealed_b);
    }

    #[test]
    fn open_vec_returns_a_slice_of_the_same_allocation() {
        let keys = keys();
        let (id, sealed) = seal_bytes(&keys, &[9u8; 4096]);
        let start = sealed.as_ptr() as usize;
        let chunk = open_vec(&keys, &id, sealed).unwrap();
        assert_eq!(chunk.data().as_ptr() as usize, start + SEALED_HEADER_LEN);
        assert_eq!(&chunk.data()[..], &[9u8; 4096][..]);
    }

    #[test]
    fn empty_chunk_round_trips() {
        let keys = keys();
        let (id, sealed) = seal_bytes(&keys, b"");
        assert_eq!(sealed.len(), SEAL_OVERHEAD);
        let chunk = open(&keys, &id, &sealed).unwrap();
        assert!(chunk.is_empty());
        assert_eq!(chunk.id(), &id);
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let keys = keys();
        let (id, sealed) = seal_bytes(&keys, b"some chunk bytes");
        for cut in 0..sealed.len() {
            let err = open(&keys, &id, &sealed[..cut]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {cut}: {err}");
            let err = open_vec(&keys, &id, sealed[..cut].to_vec()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {cut}: {err}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(
            open(&keys, &id, &longer).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn header_from_a_newer_writer_is_unsupported() {
        let keys = keys();
        let (id, sealed) = seal_bytes(&keys, b"data");
        let mut newer = sealed.clone();
        newer[0] = 2;
        assert_eq!(
            open(&keys, &id, &newer).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        let mut flagged = sealed.clone();
        flagged[1] = 1;
        assert_eq!(
            open(&keys, &id, &flagged).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        let mut zero = sealed;
        zero[0] = 0;
        assert_eq!(
            open(&keys, &id, &zero).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn wrong_id_fails_and_the_message_names_the_chunk() {
        let keys = keys();
        let (_, sealed) = seal_bytes(&keys, b"first");
        let (other, _) = seal_bytes(&keys, b"second");
        let err = open(&keys, &other, &sealed).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains(&other.to_hex()));
        assert!(err.to_string().contains("failed verification"));
    }

    #[test]
    fn debug_never_shows_plaintext_or_keys() {
        let keys = keys();
        let chunk = PlainChunk::from_slice(&keys, b"secret-plaintext");
        let text = format!("{keys:?} {chunk:?}");
        assert!(!text.contains("secret-plaintext"));
        let id = *chunk.id();
        let sealed = seal(&keys, chunk).unwrap();
        let verified = open(&keys, &id, &sealed).unwrap();
        assert!(!format!("{verified:?}").contains("secret"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..8192)) {
            let keys = keys();
            let (id, sealed) = seal_bytes(&keys, &data);
            prop_assert_eq!(id, chunk_id(&keys, &data));
            prop_assert_eq!(sealed.len(), sealed_len(data.len()));
            let a = open(&keys, &id, &sealed).unwrap();
            prop_assert_eq!(&a.data()[..], &data[..]);
            prop_assert_eq!(a.id(), &id);
            let b = open_vec(&keys, &id, sealed).unwrap();
            prop_assert_eq!(&b.data()[..], &data[..]);
        }

        #[test]
        fn any_bit_flip_fails(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let keys = keys();
            let (id, mut sealed) = seal_bytes(&keys, &data);
            let at = at.index(sealed.len());
            sealed[at] ^= 1 << bit;
            let err = open(&keys, &id, &sealed).unwrap_err();
            if at >= SEALED_HEADER_LEN {
                prop_assert_eq!(err.kind(), ErrorKind::Corrupt);
            }
            prop_assert!(open_vec(&keys, &id, sealed).is_err());
        }

        #[test]
        fn dedup_is_per_owner(data in proptest::collection::vec(any::<u8>(), 1..2048)) {
            let alice = keys();
            let bob = keys();
            let (a1, s1) = seal_bytes(&alice, &data);
            let (a2, s2) = seal_bytes(&alice, &data);
            prop_assert_eq!(a1, a2);
            prop_assert_eq!(&s1, &s2);
            let (b1, sb) = seal_bytes(&bob, &data);
            prop_assert_ne!(a1, b1);
            prop_assert_ne!(&s1[SEALED_HEADER_LEN..], &sb[SEALED_HEADER_LEN..]);
            // Another owner's keys open neither under its own id nor under the real one.
            prop_assert_eq!(open(&bob, &a1, &s1).unwrap_err().kind(), ErrorKind::Corrupt);
            prop_assert_eq!(open(&bob, &b1, &s1).unwrap_err().kind(), ErrorKind::Corrupt);
        }
    }
}
