//! Stripes: one sealed chunk erasure-coded into `k + m` shards.
//!
//! # Format (version 1)
//!
//! A sealed chunk of `L` bytes is cut into `k` data payloads of `S = ceil(L / k)` bytes
//! (the last one zero-padded) and Reed-Solomon coded into `m` parity payloads of the
//! same size. Every shard is a self-describing header followed by its payload:
//!
//! ```text
//! offset size field
//!      0    4 magic "DMSH"
//!      4    1 format version (1)
//!      5    1 codec (1 = Reed-Solomon over GF(2^8), reed-solomon-erasure 6 matrix)
//!      6    1 k, data shards (1..=32)
//!      7    1 m, parity shards (0..=32), k + m <= 64
//!      8    1 index of this shard in the stripe (0..k+m)
//!      9    3 reserved, zero
//!     12    4 L, length of the sealed chunk, little endian
//!     16    4 S, payload length, little endian
//!     20    8 upload salt: random per upload, the same in every shard of a stripe
//!     28    S payload
//! ```
//!
//! `ShardId = BLAKE3(all bytes)`. The salt makes two uploads of the same chunk produce
//! different ShardIds, so a shard id is referenced by exactly one upload and garbage
//! collection can never delete a shard that a concurrent upload is about to reference
//! (see docs/design/catalog.md). Holders learn k, m, index, lengths and the salt: nothing
//! about the plaintext (the payload is AES-GCM ciphertext or parity of it).
//!
//! # Decoding
//!
//! [`decode`] takes whatever shards the reader obtained (each already checked against its
//! ShardId by the caller) and rebuilds the sealed chunk from any `k` of them, checking
//! that every header agrees with the catalog's record of the stripe. A header that
//! disagrees makes that shard count as missing, never as data.

use bytes::{BufMut, Bytes, BytesMut};
use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{Error, ErrorKind};
use crate::store::Shard;

/// Shard magic bytes.
pub const MAGIC: &[u8; 4] = b"DMSH";
/// Current shard format version.
pub const VERSION: u8 = 1;
/// Codec id of Reed-Solomon over GF(2^8).
pub const CODEC_RS8: u8 = 1;
/// Length of the shard header.
pub const HEADER_LEN: usize = 28;
/// Largest supported `k` and `m`.
pub const MAX_SHARDS_EACH: u8 = 32;
/// Largest sealed chunk accepted (the chunker's maximum is far below; this bounds what a
/// hostile header can make a reader allocate).
pub const MAX_SEALED_LEN: u32 = 64 << 20;

/// Erasure-coding parameters of a stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// Data shards.
    pub k: u8,
    /// Parity shards.
    pub m: u8,
}

impl Layout {
    /// Validates `k` and `m`.
    pub fn new(k: u8, m: u8) -> Result<Self, StripeError> {
        if k == 0 || k > MAX_SHARDS_EACH || m > MAX_SHARDS_EACH {
            return Err(StripeError::BadLayout { k, m });
        }
        Ok(Layout { k, m })
    }

    /// `k + m`.
    pub fn total(&self) -> usize {
        self.k as usize + self.m as usize
    }

    /// Payload length of each shard for a sealed chunk of `sealed_len` bytes.
    pub fn payload_len(&self, sealed_len: usize) -> usize {
        sealed_len.div_ceil(self.k as usize).max(1)
    }

    /// Total bytes stored for a sealed chunk of `sealed_len` bytes.
    pub fn stored_len(&self, sealed_len: usize) -> u64 {
        ((HEADER_LEN + self.payload_len(sealed_len)) * self.total()) as u64
    }
}

/// A parsed shard header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Codec id.
    pub codec: u8,
    /// Layout.
    pub layout: Layout,
    /// Position in the stripe.
    pub index: u8,
    /// Length of the sealed chunk.
    pub sealed_len: u32,
    /// Payload length.
    pub payload_len: u32,
    /// Upload salt.
    pub salt: [u8; 8],
}

/// Errors of stripe coding.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Unusable erasure parameters.
    #[error(
        "unsupported erasure layout k={k} m={m}: k must be 1..=32 and m 0..=32 (set storage.data_shards / storage.parity_shards in config.toml)"
    )]
    BadLayout {
        /// Data shards.
        k: u8,
        /// Parity shards.
        m: u8,
    },
    /// A shard's header could not be parsed.
    #[error("shard header is damaged: {0}")]
    BadHeader(&'static str),
    /// A shard from a newer datamesh.
    #[error("shard format version {0} is newer than this datamesh understands: upgrade datamesh")]
    NewerVersion(u8),
    /// Fewer intact shards than needed.
    #[error("only {have} of the {need} shards needed are intact ({total} were stored)")]
    TooFew {
        /// Intact shards available.
        have: usize,
        /// Shards needed (k).
        need: usize,
        /// k + m.
        total: usize,
    },
    /// The sealed chunk is larger than the format allows.
    #[error("sealed chunk of {0} bytes exceeds the 64 MiB stripe limit")]
    TooLarge(usize),
    /// Reed-Solomon failed (cannot happen with validated inputs).
    #[error("erasure codec failed: {0:?}")]
    Codec(reed_solomon_erasure::Error),
}

impl From<StripeError> for Error {
    fn from(err: StripeError) -> Self {
        let kind = match &err {
            StripeError::BadLayout { .. } | StripeError::TooLarge(_) => ErrorKind::InvalidInput,
            StripeError::BadHeader(_) => ErrorKind::Corrupt,
            StripeError::NewerVersion(_) => ErrorKind::Unsupported,
            StripeError::TooFew { .. } => ErrorKind::Unavailable,
            StripeError::Codec(_) => ErrorKind::Internal,
        };
        Error::wrap(kind, err)
    }
}

impl Header {
    /// Parses the header at the start of `shard`, checking that the payload length it
    /// states is exactly what follows.
    pub fn parse(shard: &[u8]) -> Result<Header, StripeError> {
        if shard.len() < HEADER_LEN {
            return Err(StripeError::BadHeader("shorter than a header"));
        }
        if &shard[0..4] != MAGIC {
            return Err(StripeError::BadHeader("bad magic"));
        }
        if shard[4] != VERSION {
            return Err(if shard[4] > VERSION {
                StripeError::NewerVersion(shard[4])
            } else {
                StripeError::BadHeader("unknown version")
            });
        }
        let codec = shard[5];
        if codec != CODEC_RS8 {
            return Err(StripeError::BadHeader("unknown codec"));
        }
        let layout =
            Layout::new(shard[6], shard[7]).map_err(|_| StripeError::BadHeader("bad k or m"))?;
        let index = shard[8];
        if index as usize >= layout.total() {
            return Err(StripeError::BadHeader("index out of range"));
        }
        if shard[9..12] != [0, 0, 0] {
            return Err(StripeError::BadHeader("reserved bytes set"));
        }
        let sealed_len = u32::from_le_bytes(shard[12..16].try_into().expect("4 bytes"));
        let payload_len = u32::from_le_bytes(shard[16..20].try_into().expect("4 bytes"));
        let salt: [u8; 8] = shard[20..28].try_into().expect("8 bytes");
        if sealed_len > MAX_SEALED_LEN {
            return Err(StripeError::BadHeader("sealed length too large"));
        }
        if payload_len as usize != layout.payload_len(sealed_len as usize) {
            return Err(StripeError::BadHeader("payload length inconsistent"));
        }
        if shard.len() - HEADER_LEN != payload_len as usize {
            return Err(StripeError::BadHeader("payload truncated or padded"));
        }
        Ok(Header {
            codec,
            layout,
            index,
            sealed_len,
            payload_len,
            salt,
        })
    }

    fn write(&self, out: &mut BytesMut) {
        out.put_slice(MAGIC);
        out.put_u8(VERSION);
        out.put_u8(self.codec);
        out.put_u8(self.layout.k);
        out.put_u8(self.layout.m);
        out.put_u8(self.index);
        out.put_slice(&[0, 0, 0]);
        out.put_u32_le(self.sealed_len);
        out.put_u32_le(self.payload_len);
        out.put_slice(&self.salt);
    }
}

/// Encodes a sealed chunk into `k + m` shards (in index order) under `salt`.
pub fn encode(sealed: &[u8], layout: Layout, salt: [u8; 8]) -> Result<Vec<Shard>, StripeError> {
    if sealed.len() > MAX_SEALED_LEN as usize {
        return Err(StripeError::TooLarge(sealed.len()));
    }
    let k = layout.k as usize;
    let size = layout.payload_len(sealed.len());
    let mut payloads: Vec<Vec<u8>> = (0..layout.total())
        .map(|i| {
            let start = (i * size).min(sealed.len());
            let end = ((i + 1) * size).min(sealed.len());
            let mut p = Vec::with_capacity(size);
            if i < k {
                p.extend_from_slice(&sealed[start..end]);
            }
            p.resize(size, 0);
            p
        })
        .collect();
    if layout.m > 0 {
        let rs = ReedSolomon::new(k, layout.m as usize).map_err(StripeError::Codec)?;
        rs.encode(&mut payloads).map_err(StripeError::Codec)?;
    }
    let mut shards = Vec::with_capacity(layout.total());
    for (index, payload) in payloads.into_iter().enumerate() {
        let header = Header {
            codec: CODEC_RS8,
            layout,
            index: index as u8,
            sealed_len: sealed.len() as u32,
            payload_len: size as u32,
            salt,
        };
        let mut buf = BytesMut::with_capacity(HEADER_LEN + size);
        header.write(&mut buf);
        buf.put_slice(&payload);
        shards.push(Shard::new(buf.freeze()));
    }
    Ok(shards)
}

/// The result of decoding: the sealed chunk, plus any shards that were missing or
/// unusable, rebuilt (for repair on read).
pub struct Decoded {
    /// The sealed chunk bytes.
    pub sealed: Vec<u8>,
    /// Rebuilt shards for the indices in `missing` of [`decode`]'s input, in index order.
    pub rebuilt: Vec<(usize, Shard)>,
}

/// What the reader knows about the stripe from the catalog.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Layout recorded in the catalog.
    pub layout: Layout,
    /// Sealed length recorded in the catalog.
    pub sealed_len: u32,
}

/// Rebuilds the sealed chunk from `shards[i]` = the verified bytes of shard `i`, or
/// `None` if it was not fetched, missing or failed verification. Also returns the shards
/// whose indices are in `rebuild` re-encoded (identical bytes to the originals, so their
/// ShardIds are unchanged), for repair.
pub fn decode(
    shards: &[Option<Bytes>],
    expect: Expect,
    rebuild: &[usize],
) -> Result<Decoded, StripeError> {
    let layout = expect.layout;
    let total = layout.total();
    let k = layout.k as usize;
    if shards.len() != total {
        return Err(StripeError::BadHeader(
            "shard count does not match the layout",
        ));
    }
    let size = layout.payload_len(expect.sealed_len as usize);
    let mut salt = None;
    let mut payloads: Vec<Option<Vec<u8>>> = Vec::with_capacity(total);
    for (i, shard) in shards.iter().enumerate() {
        let usable = shard.as_ref().and_then(|bytes| {
            let h = Header::parse(bytes).ok()?;
            let consistent = h.layout == layout
                && h.index as usize == i
                && h.sealed_len == expect.sealed_len
                && salt.is_none_or(|s| s == h.salt);
            if !consistent {
                return None;
            }
            salt = Some(h.salt);
            Some(bytes[HEADER_LEN..].to_vec())
        });
        payloads.push(usable);
    }
    let have = payloads.iter().filter(|p| p.is_some()).count();
    if have < k {
        return Err(StripeError::TooFew {
            have,
            need: k,
            total,
        });
    }
    let missing: Vec<usize> = (0..total).filter(|&i| payloads[i].is_none()).collect();
    let rebuild: Vec<usize> = missing
        .iter()
        .copied()
        .filter(|i| rebuild.contains(i))
        .collect();
    let rebuild_missing = !rebuild.is_empty();
    if !missing.is_empty() {
        // have >= k and something is missing, so m >= 1 here.
        let rs = ReedSolomon::new(k, layout.m as usize).map_err(StripeError::Codec)?;
        if rebuild_missing {
            rs.reconstruct(&mut payloads).map_err(StripeError::Codec)?;
        } else {
            rs.reconstruct_data(&mut payloads)
                .map_err(StripeError::Codec)?;
        }
    }
    let mut sealed = Vec::with_capacity(k * size);
    for p in payloads.iter().take(k) {
        sealed.extend_from_slice(p.as_deref().expect("reconstructed"));
    }
    sealed.truncate(expect.sealed_len as usize);
    let mut rebuilt = Vec::new();
    if rebuild_missing {
        let salt = salt.expect("at least k shards were usable");
        for i in rebuild {
            let header = Header {
                codec: CODEC_RS8,
                layout,
                index: i as u8,
                sealed_len: expect.sealed_len,
                payload_len: size as u32,
                salt,
            };
            let mut buf = BytesMut::with_capacity(HEADER_LEN + size);
            header.write(&mut buf);
            buf.put_slice(payloads[i].as_deref().expect("reconstructed"));
            rebuilt.push((i, Shard::new(buf.freeze())));
        }
    }
    Ok(Decoded { sealed, rebuilt })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout() -> Layout {
        Layout::new(4, 2).unwrap()
    }

    #[test]
    fn header_round_trip_and_sizes() {
        let sealed = vec![7u8; 1000];
        let shards = encode(&sealed, layout(), [9; 8]).unwrap();
        assert_eq!(shards.len(), 6);
        for (i, s) in shards.iter().enumerate() {
            let h = Header::parse(&s.bytes).unwrap();
            assert_eq!(h.index as usize, i);
            assert_eq!(h.payload_len, 250);
            assert_eq!(h.salt, [9; 8]);
            assert_eq!(s.bytes.len(), HEADER_LEN + 250);
        }
        assert_eq!(layout().stored_len(1000), 6 * (HEADER_LEN as u64 + 250));
    }

    #[test]
    fn salt_changes_every_shard_id() {
        let sealed = vec![1u8; 100];
        let a = encode(&sealed, layout(), [1; 8]).unwrap();
        let b = encode(&sealed, layout(), [2; 8]).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_ne!(x.id, y.id);
        }
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let shard = encode(&[5u8; 64], layout(), [0; 8])
            .unwrap()
            .remove(0)
            .bytes;
        let mut bad = shard.to_vec();
        bad[4] = 9;
        assert!(matches!(
            Header::parse(&bad),
            Err(StripeError::NewerVersion(9))
        ));
        let mut bad = shard.to_vec();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Header::parse(&bad).is_err());
        let mut bad = shard.to_vec();
        bad.push(0);
        assert!(Header::parse(&bad).is_err());
        assert!(Header::parse(&shard[..10]).is_err());
        let mut bad = shard.to_vec();
        bad[8] = 6;
        assert!(Header::parse(&bad).is_err());
    }

    #[test]
    fn empty_chunk_encodes() {
        let shards = encode(&[], layout(), [0; 8]).unwrap();
        let got: Vec<_> = shards.iter().map(|s| Some(s.bytes.clone())).collect();
        let expect = Expect {
            layout: layout(),
            sealed_len: 0,
        };
        assert!(decode(&got, expect, &[]).unwrap().sealed.is_empty());
    }

    #[test]
    fn mixed_salts_do_not_combine() {
        // Shards from two different uploads of the same chunk must not be mixed: their
        // parity is over the same bytes, but a reader that mixes salts could be fed a
        // stale shard. Only the first salt seen is accepted.
        let sealed = vec![3u8; 400];
        let a = encode(&sealed, layout(), [1; 8]).unwrap();
        let b = encode(&sealed, layout(), [2; 8]).unwrap();
        let mut got: Vec<_> = a.iter().map(|s| Some(s.bytes.clone())).collect();
        got[1] = Some(b[1].bytes.clone());
        got[2] = Some(b[2].bytes.clone());
        got[3] = Some(b[3].bytes.clone());
        let expect = Expect {
            layout: layout(),
            sealed_len: 400,
        };
        assert!(matches!(
            decode(&got, expect, &[]),
            Err(StripeError::TooFew { have: 3, .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any <= m shards lost or corrupted: exact bytes back, and the rebuilt shards
        /// are identical to the originals (so repair keeps ShardIds).
        #[test]
        fn any_m_losses_recover(
            sealed in proptest::collection::vec(any::<u8>(), 0..5000),
            k in 1u8..6, m in 0u8..4,
            lost in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
            corrupt in any::<bool>(),
        ) {
            let layout = Layout::new(k, m).unwrap();
            let shards = encode(&sealed, layout, [7; 8]).unwrap();
            let mut got: Vec<Option<Bytes>> = shards.iter().map(|s| Some(s.bytes.clone())).collect();
            let mut gone = std::collections::BTreeSet::new();
            for idx in lost.iter().take(m as usize) {
                gone.insert(idx.index(layout.total()));
            }
            for &i in &gone {
                if corrupt {
                    let mut b = got[i].clone().unwrap().to_vec();
                    b[8] ^= 1; // wrong index: header disagrees
                    got[i] = Some(Bytes::from(b));
                } else {
                    got[i] = None;
                }
            }
            let expect = Expect { layout, sealed_len: sealed.len() as u32 };
            let all: Vec<usize> = (0..layout.total()).collect();
            let out = decode(&got, expect, &all).unwrap();
            prop_assert_eq!(&out.sealed, &sealed);
            prop_assert_eq!(out.rebuilt.len(), gone.len());
            for (i, shard) in out.rebuilt {
                prop_assert_eq!(shard.id, shards[i].id);
            }
        }

        /// More than m shards gone: a clean error, never wrong bytes.
        #[test]
        fn too_many_losses_fail_cleanly(
            sealed in proptest::collection::vec(any::<u8>(), 1..3000),
            k in 1u8..6, m in 0u8..4,
        ) {
            let layout = Layout::new(k, m).unwrap();
            let shards = encode(&sealed, layout, [7; 8]).unwrap();
            let mut got: Vec<Option<Bytes>> = shards.iter().map(|s| Some(s.bytes.clone())).collect();
            for slot in got.iter_mut().take(m as usize + 1) {
                *slot = None;
            }
            let expect = Expect { layout, sealed_len: sealed.len() as u32 };
            let is_too_few = matches!(decode(&got, expect, &[]), Err(StripeError::TooFew { .. }));
            prop_assert!(is_too_few);
        }

        /// Arbitrary bytes never panic the header parser.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Header::parse(&bytes);
        }
    }
}
