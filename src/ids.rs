//! Content identifiers.
//!
//! Two kinds of 32-byte identifiers name everything datamesh stores:
//!
//! * [`ChunkId`]: BLAKE3 *keyed* hash of a chunk's plaintext under the owner's
//!   convergence secret. Identical plaintext of one owner gets one id (dedup), but the
//!   id reveals nothing to anyone without the secret: no plaintext hash leaks.
//! * [`ShardId`]: plain BLAKE3 hash of a shard's bytes (header included). Public, so any
//!   holder can be asked to prove it holds the bytes, and any reader can check what a
//!   holder returned before using it.
//!
//! Both print and parse as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

/// Error parsing an identifier from text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid identifier (expected 64 hex digits): {0:?}")]
pub struct ParseIdError(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Builds an id from a byte slice that must be exactly 32 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(bytes).ok().map(Self)
            }

            /// Lowercase hex, 64 digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 bytes as hex: enough to tell ids apart in logs and tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..8])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
                Ok(Self(out))
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 hash of a chunk's plaintext (see the module docs).
    ChunkId
);
id_type!(
    /// BLAKE3 hash of a shard's complete bytes (see the module docs).
    ShardId
);

impl ShardId {
    /// The id of the given shard bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ShardId::of(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ShardId>().unwrap(), id);
        assert_eq!(id.short(), &text[..16]);
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert!("zz".parse::<ChunkId>().is_err());
        assert!("00".repeat(31).parse::<ChunkId>().is_err());
        assert!(ChunkId::from_slice(&[0; 31]).is_none());
    }
}
