//! The keystore: the owner's [`Keys`] sealed under a passphrase in one small file.
//!
//! # Format (version 1)
//!
//! All integers little-endian.
//!
//! ```text
//! offset len  field
//!      0   8  magic "DMESHKEY"
//!      8   1  format version = 1
//!      9   1  KDF id = 1 (Argon2id, version 0x13)
//!     10   4  Argon2 m_cost, KiB
//!     14   4  Argon2 t_cost (passes)
//!     18   4  Argon2 p_cost (lanes)
//!     22  16  salt (random, fresh on every write)
//!     38  12  AES-GCM nonce (random, fresh on every write)
//!     50  32  key fingerprint (BLAKE3 of the compressed owner public key)
//!     82   4  body length (ciphertext + tag)
//!     86   …  body: AES-256-GCM(key, nonce, aad = bytes 0..86, secrets)
//! ```
//!
//! The key is `Argon2id(passphrase, salt, m_cost, t_cost, p_cost)`, 32 bytes. The whole
//! header is the associated data, so no header byte can be altered without failing the
//! tag. The tag is also what checks the passphrase: there is no password hash to attack
//! offline apart from the keystore itself, and each guess costs a full Argon2 run.
//! `secrets` is [`Keys::encode_secrets`]' own versioned layout.
//!
//! The fingerprint is stored in clear so that `import` can tell whether an existing
//! keystore holds the same keys without knowing its passphrase, and tools can show whose
//! keystore a file is. It reveals only what the owner public key reveals.
//! The body length makes truncation detectable as damage (rather than looking like a
//! wrong passphrase).
//!
//! # Defaults and limits
//!
//! [`KdfParams::DEFAULT`] is m = 64 MiB, t = 3, p = 1: one derivation takes a few
//! hundred milliseconds on a laptop core, paid once per process start, while every
//! passphrase guess costs an attacker the same 64 MiB for as long. 64 MiB fits the
//! smallest machines a mesh node runs on (a 1 GiB single-board computer). p = 1 because
//! the derivation runs on one thread here: more lanes would not make it faster for us.
//!
//! Callers may choose cheaper parameters (tests use [`KdfParams::MINIMUM`]), never below
//! m = 8 MiB. The same bounds apply to parameters read from a file *before* any memory
//! is allocated: m in 8 MiB ..= 4 GiB, t in 1 ..= 100, p in 1 ..= 16. A hostile header
//! therefore cannot make `open` allocate or spin without bound.
//!
//! # Operations
//!
//! [`create`], [`open`], [`change_passphrase`] (same keys, new passphrase: no data
//! changes), [`export`] (a sealed backup in the same format), [`import`] (a backup
//! re-sealed under the repository passphrase), [`inspect`] (the header, no passphrase).
//! Every write is atomic and leaves a file of mode 0600 (see `secure_file`).

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::crypto::keys::{KeyFingerprint, Keys, KeysError};
use crate::crypto::passphrase::Passphrase;
use crate::crypto::secure_file::{self, Replace};
use crate::error::{Error, ErrorKind};

/// The file name of the keystore inside a repository.
pub const KEYSTORE_FILE: &str = "keystore";

const MAGIC: [u8; 8] = *b"DMESHKEY";
const FORMAT_VERSION: u8 = 1;
const KDF_ARGON2ID: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 86;
/// The largest body accepted; version-1 secrets are far smaller.
const MAX_BODY_LEN: usize = 64 * 1024;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (see the module docs for why).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// The cheapest parameters accepted: 8 MiB, 1 pass, 1 lane. For tests.
    pub const MINIMUM: KdfParams = KdfParams {
        m_cost_kib: Self::MIN_M_COST_KIB,
        t_cost: 1,
        p_cost: 1,
    };
    /// Lower bound on memory, KiB (8 MiB).
    pub const MIN_M_COST_KIB: u32 = 8 * 1024;
    /// Upper bound on memory, KiB (4 GiB).
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Upper bound on passes.
    pub const MAX_T_COST: u32 = 100;
    /// Upper bound on lanes.
    pub const MAX_P_COST: u32 = 16;

    /// Checks the bounds; returns what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(Self::MIN_M_COST_KIB..=Self::MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return Err(format!(
                "Argon2 memory cost {} KiB is outside {}..={} KiB (8 MiB to 4 GiB)",
                self.m_cost_kib,
                Self::MIN_M_COST_KIB,
                Self::MAX_M_COST_KIB
            ));
        }
        if !(1..=Self::MAX_T_COST).contains(&self.t_cost) {
            return Err(format!(
                "Argon2 time cost {} is outside 1..={}",
                self.t_cost,
                Self::MAX_T_COST
            ));
        }
        if !(1..=Self::MAX_P_COST).contains(&self.p_cost) {
            return Err(format!(
                "Argon2 parallelism {} is outside 1..={}",
                self.p_cost,
                Self::MAX_P_COST
            ));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Errors of the keystore.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// No keystore at the path.
    #[error(
        "no keystore at {0}: create a repository with `datamesh init`, or restore a keystore backup with `datamesh key import`"
    )]
    Missing(PathBuf),
    /// The passphrase did not open the keystore.
    #[error(
        "wrong passphrase for {0}: check DATAMESH_PASSWORD / --password-file (if the passphrase is right, the file is damaged: restore it with `datamesh key import`)"
    )]
    WrongPassphrase(PathBuf),
    /// The file is not a keystore, or is truncated or altered.
    #[error("keystore {path} is damaged ({reason}); restore it with `datamesh key import`")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, for the curious.
        reason: String,
    },
    /// Written by a newer datamesh.
    #[error(
        "keystore {path} was written by a newer datamesh ({what}); upgrade datamesh to open it"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Which version.
        what: String,
    },
    /// The target exists and may not be replaced.
    #[error(
        "{0} already exists; refusing to overwrite it (choose another path, or remove it first if it is not needed)"
    )]
    Exists(PathBuf),
    /// Importing would replace a keystore holding other keys.
    #[error(
        "keystore {path} holds different keys (fingerprint {existing}) than the backup (fingerprint {incoming}); replacing it would lose access to everything stored with the current keys, so pass --force only if that is what you want"
    )]
    DifferentKeys {
        /// The repository keystore.
        path: PathBuf,
        /// Its fingerprint.
        existing: String,
        /// The backup's fingerprint.
        incoming: String,
    },
    /// Importing over a keystore whose keys cannot be identified.
    #[error(
        "keystore {path} exists but is unreadable ({reason}), so datamesh cannot tell whether it holds the same keys as the backup; pass --force to replace it"
    )]
    UnknownExisting {
        /// The repository keystore.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// Parameters given by the caller are out of bounds.
    #[error("{0}; choose Argon2 parameters within the limits")]
    BadParams(String),
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key derivation or the cipher failed on inputs that passed our checks: a bug.
    #[error("internal error in the keystore: {0}")]
    Internal(String),
}

impl KeystoreError {
    /// The crate error kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeystoreError::Missing(_) => ErrorKind::NotFound,
            KeystoreError::WrongPassphrase(_) => ErrorKind::WrongPassphrase,
            KeystoreError::Damaged { .. } => ErrorKind::Corrupt,
            KeystoreError::Newer { .. } => ErrorKind::Unsupported,
            KeystoreError::Exists(_)
            | KeystoreError::DifferentKeys { .. }
            | KeystoreError::UnknownExisting { .. } => ErrorKind::AlreadyExists,
            KeystoreError::BadParams(_) => ErrorKind::InvalidInput,
            KeystoreError::Io { source, .. } => ErrorKind::of_io(source),
            KeystoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    fn damaged(path: &Path, reason: impl Into<String>) -> Self {
        KeystoreError::Damaged {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeystoreError::Exists(path.to_owned()),
            _ => KeystoreError::Io {
                op,
                path: path.to_owned(),
                source,
            },
        }
    }
}

impl From<KeystoreError> for Error {
    fn from(err: KeystoreError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

/// What a keystore's header says, readable without the passphrase.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeystoreInfo {
    /// Argon2 parameters of the file.
    pub params: KdfParams,
    /// Fingerprint of the keys inside.
    pub fingerprint: KeyFingerprint,
}

impl fmt::Debug for KeystoreInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoreInfo")
            .field("params", &self.params)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// A parsed, bounds-checked header.
struct Header {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    fingerprint: KeyFingerprint,
    body_len: usize,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8] = FORMAT_VERSION;
        out[9] = KDF_ARGON2ID;
        out[10..14].copy_from_slice(&self.params.m_cost_kib.to_le_bytes());
        out[14..18].copy_from_slice(&self.params.t_cost.to_le_bytes());
        out[18..22].copy_from_slice(&self.params.p_cost.to_le_bytes());
        out[22..38].copy_from_slice(&self.salt);
        out[38..50].copy_from_slice(&self.nonce);
        out[50..82].copy_from_slice(&self.fingerprint.0);
        // Bounded by MAX_BODY_LEN, so it fits.
        out[82..86].copy_from_slice(&(self.body_len as u32).to_le_bytes());
        out
    }

    /// Parses and checks the header of a whole file (`file` is everything read), so
    /// that nothing after this point depends on unchecked values.
    fn parse(path: &Path, file: &[u8]) -> Result<Header, KeystoreError> {
        let damaged = |reason: &str| KeystoreError::damaged(path, reason);
        if file.len() < MAGIC.len() || file[..MAGIC.len()] != MAGIC {
            return Err(damaged("not a datamesh keystore: bad magic"));
        }
        match file.get(8) {
            None => return Err(damaged("truncated header")),
            Some(&FORMAT_VERSION) => {}
            Some(&v) if v > FORMAT_VERSION => {
                return Err(KeystoreError::Newer {
                    path: path.to_owned(),
                    what: format!("format version {v}"),
                });
            }
            Some(_) => return Err(damaged("unknown format version")),
        }
        if file.len() < HEADER_LEN {
            return Err(damaged("truncated header"));
        }
        if file[9] != KDF_ARGON2ID {
            return Err(damaged("unknown key-derivation function"));
        }
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&file[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let params = KdfParams {
            m_cost_kib: u32_at(10),
            t_cost: u32_at(14),
            p_cost: u32_at(18),
        };
        params.check().map_err(|reason| damaged(&reason))?;
        let body_len = u32_at(82) as usize;
        if !(TAG_LEN..=MAX_BODY_LEN).contains(&body_len) {
            return Err(damaged("impossible body length"));
        }
        if file.len() != HEADER_LEN + body_len {
            return Err(damaged(if file.len() < HEADER_LEN + body_len {
                "truncated"
            } else {
                "trailing bytes after the sealed keys"
            }));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&file[22..38]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&file[38..50]);
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&file[50..82]);
        Ok(Header {
            params,
            salt,
            nonce,
            fingerprint: KeyFingerprint(fingerprint),
            body_len,
        })
    }
}

/// Argon2id of the passphrase: the keystore's AES-256-GCM key.
fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let argon_params =
        argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
            .map_err(|e| KeystoreError::Internal(format!("Argon2: {e}")))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut key[..])
        .map_err(|e| KeystoreError::Internal(format!("Argon2: {e}")))?;
    Ok(key)
}

/// The complete keystore file for `keys` under `passphrase`, with fresh salt and nonce.
fn seal_keys(
    keys: &Keys,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<Vec<u8>, KeystoreError> {
    seal_secrets(
        keys.encode_secrets(),
        keys.fingerprint(),
        passphrase,
        params,
    )
}

/// The keystore file sealing the serialized `secrets` (see [`seal_keys`]).
fn seal_secrets(
    mut secrets: Zeroizing<Vec<u8>>,
    fingerprint: KeyFingerprint,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<Vec<u8>, KeystoreError> {
    params.check().map_err(KeystoreError::BadParams)?;
    if secrets.len() + TAG_LEN > MAX_BODY_LEN {
        return Err(KeystoreError::Internal(
            "the serialized keys exceed the keystore body limit".to_owned(),
        ));
    }
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let header = Header {
        params,
        salt,
        nonce,
        fingerprint,
        body_len: secrets.len() + TAG_LEN,
    }
    .encode();
    let key = derive_key(passphrase, &salt, &params)?;
    // Encrypting in place turns the secrets buffer into ciphertext; it is still wiped
    // on drop, which costs nothing and keeps the code simple.
    let tag = Aes256Gcm::new(GenericArray::from_slice(&key[..]))
        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &header, &mut secrets[..])
        .map_err(|_| KeystoreError::Internal("AES-GCM refused to seal the keys".to_owned()))?;
    let mut file = Vec::with_capacity(HEADER_LEN + secrets.len() + TAG_LEN);
    file.extend_from_slice(&header);
    file.extend_from_slice(&secrets);
    file.extend_from_slice(&tag);
    Ok(file)
}

/// Opens the keystore bytes `file` (read from `path`, named in errors).
fn unseal_keys(path: &Path, file: &[u8], passphrase: &Passphrase) -> Result<Keys, KeystoreError> {
    let header = Header::parse(path, file)?;
    let key = derive_key(passphrase, &header.salt, &header.params)?;
    let secrets_len = header.body_len - TAG_LEN;
    let mut secrets = Zeroizing::new(file[HEADER_LEN..HEADER_LEN + secrets_len].to_vec());
    Aes256Gcm::new(GenericArray::from_slice(&key[..]))
        .decrypt_in_place_detached(
            GenericArray::from_slice(&header.nonce),
            &file[..HEADER_LEN],
            &mut secrets[..],
            GenericArray::from_slice(&file[HEADER_LEN + secrets_len..]),
        )
        .map_err(|_| KeystoreError::WrongPassphrase(path.to_owned()))?;
    let keys = Keys::decode_secrets(&secrets).map_err(|e| match e {
        KeysError::NewerSecretsLayout(v) => KeystoreError::Newer {
            path: path.to_owned(),
            what: format!("secrets layout version {v}"),
        },
        other => KeystoreError::damaged(path, other.to_string()),
    })?;
    if keys.fingerprint() != header.fingerprint {
        return Err(KeystoreError::damaged(
            path,
            "the fingerprint in the header does not match the keys",
        ));
    }
    Ok(keys)
}

/// Reads a keystore file, bounded in size.
fn read(path: &Path) -> Result<Vec<u8>, KeystoreError> {
    match secure_file::read_bounded(path, HEADER_LEN + MAX_BODY_LEN) {
        Ok((bytes, false)) => Ok(bytes),
        Ok((_, true)) => Err(KeystoreError::damaged(path, "far too large for a keystore")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(KeystoreError::Missing(path.to_owned()))
        }
        Err(e) => Err(KeystoreError::io("read", path, e)),
    }
}

fn write(path: &Path, file: &[u8], replace: Replace) -> Result<(), KeystoreError> {
    secure_file::write_atomic(path, file, replace).map_err(|e| KeystoreError::io("write", path, e))
}

/// Creates a keystore at `path` holding fresh [`Keys`]; refuses to replace any file.
pub fn create(
    path: &Path,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<Keys, KeystoreError> {
    let keys = Keys::generate();
    let file = seal_keys(&keys, passphrase, params)?;
    write(path, &file, Replace::Never)?;
    Ok(keys)
}

/// Opens the keystore at `path`.
pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Keys, KeystoreError> {
    let file = read(path)?;
    unseal_keys(path, &file, passphrase)
}

/// The header of the keystore at `path`, without the passphrase.
pub fn inspect(path: &Path) -> Result<KeystoreInfo, KeystoreError> {
    let file = read(path)?;
    let header = Header::parse(path, &file)?;
    Ok(KeystoreInfo {
        params: header.params,
        fingerprint: header.fingerprint,
    })
}

/// Re-seals the keystore at `path` under `new` (with `params` and a fresh salt and
/// nonce). The keys are unchanged, so nothing stored needs rewriting. Atomic: the file
/// holds the old or the new sealing, never neither.
pub fn change_passphrase(
    path: &Path,
    old: &Passphrase,
    new: &Passphrase,
    params: KdfParams,
) -> Result<(), KeystoreError> {
    let keys = open(path, old)?;
    let file = seal_keys(&keys, new, params)?;
    write(path, &file, Replace::Always)
}

/// Writes a sealed backup of `keys` to `dest` under `passphrase`: the keystore format
/// with its own salt and nonce. Refuses to replace an existing file unless `overwrite`.
pub fn export(
    keys: &Keys,
    dest: &Path,
    passphrase: &Passphrase,
    params: KdfParams,
    overwrite: bool,
) -> Result<(), KeystoreError> {
    let file = seal_keys(keys, passphrase, params)?;
    let replace = if overwrite {
        Replace::Always
    } else {
        Replace::Never
    };
    write(dest, &file, replace)
}

/// Opens the backup at `backup` with `backup_passphrase` and writes its keys to the
/// keystore at `path`, sealed under `passphrase`. An existing keystore is replaced when
/// it holds the same keys (same fingerprint; this is how a damaged keystore is
/// restored); one with different or unidentifiable keys only when `force`.
pub fn import(
    backup: &Path,
    backup_passphrase: &Passphrase,
    path: &Path,
    passphrase: &Passphrase,
    params: KdfParams,
    force: bool,
) -> Result<Keys, KeystoreError> {
    let keys = open(backup, backup_passphrase)?;
    let replace = match inspect(path) {
        Err(KeystoreError::Missing(_)) => Replace::Never,
        Ok(info) if info.fingerprint == keys.fingerprint() => Replace::Always,
        _ if force => Replace::Always,
        Ok(info) => {
            return Err(KeystoreError::DifferentKeys {
                path: path.to_owned(),
                existing: info.fingerprint.to_string(),
                incoming: keys.fingerprint().to_string(),
            });
        }
        Err(e) => {
            let reason = match e {
                KeystoreError::Damaged { reason, .. } => reason,
                KeystoreError::Newer { what, .. } => format!("written by a newer datamesh, {what}"),
                other => other.to_string(),
            };
            return Err(KeystoreError::UnknownExisting {
                path: path.to_owned(),
                reason,
            });
        }
    };
    let file = seal_keys(&keys, passphrase, params)?;
    write(path, &file, replace)?;
    Ok(keys)
}

#[cfg(test)]
#[path = "keystore_tests.rs"]
mod tests;
