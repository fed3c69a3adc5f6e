//! The repository: one directory holding everything of one owner on this machine.
//!
//! # Layout
//!
//! ```text
//! DIR/config.toml     settings, every default written and commented (config.rs)
//! DIR/keystore        keys sealed under the passphrase (crypto/keystore.rs)
//! DIR/catalog.db      the namespace, versions, chunks, placement (catalog/), + -wal/-shm
//! DIR/shards/         the local shard store (store/local.rs): the embedded default
//! DIR/node-shards/    shards this machine holds for the mesh (`datamesh service`)
//! DIR/staging/        files being written through the mount, not yet committed
//! DIR/control.sock    the running mount's control socket, while one runs
//! ```
//!
//! Where the directory is: `--repo DIR`, else `$DATAMESH_HOME`, else the platform data
//! directory (`$XDG_DATA_HOME/datamesh`, usually `~/.local/share/datamesh`).
//!
//! # Opening
//!
//! Metadata commands open the repository *without* keys (no passphrase, no Argon2
//! wait): the catalog holds names and sizes, which are plaintext on the owner's disk
//! anyway (docs/design/crypto.md). Commands that read or write content unlock the
//! keystore. `init` writes the keystore last, so an interrupted init is recognisable and
//! never mistaken for a repository with lost keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::crypto::chunk::ChunkKeys;
use crate::crypto::keys::Keys;
use crate::crypto::keystore::{self, KdfParams};
use crate::crypto::passphrase::Passphrase;
use crate::engine::{Engine, EngineSettings};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::store::DynStore;
use crate::store::local::LocalStore;

/// Paths inside a repository directory.
#[derive(Clone, Debug)]
pub struct RepoPaths {
    root: PathBuf,
}

impl RepoPaths {
    /// The repository at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RepoPaths { root: root.into() }
    }

    /// `--repo`, else `$DATAMESH_HOME` (clap reads it into the same flag), else the
    /// platform data directory.
    pub fn resolve(flag: Option<&Path>) -> Result<Self> {
        if let Some(p) = flag {
            return Ok(Self::new(p));
        }
        let dirs = directories::ProjectDirs::from("", "", "datamesh").ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "cannot find a home directory for the default repository: pass --repo DIR or set DATAMESH_HOME",
            )
        })?;
        Ok(Self::new(dirs.data_dir()))
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `keystore`.
    pub fn keystore(&self) -> PathBuf {
        self.root.join(keystore::KEYSTORE_FILE)
    }
    /// `catalog.db`.
    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.db")
    }
    /// The local shard store.
    pub fn shards(&self) -> PathBuf {
        self.root.join("shards")
    }
    /// Shards held for the mesh.
    pub fn node_shards(&self) -> PathBuf {
        self.root.join("node-shards")
    }
    /// The mount's staging area.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// The control socket of a running mount.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// Whether a repository (complete or interrupted) exists here.
    pub fn exists(&self) -> bool {
        self.config().exists() || self.catalog().exists() || self.keystore().exists()
    }

    fn missing_error(&self) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no datamesh repository at {}: create one with `datamesh init` (or point --repo / DATAMESH_HOME at an existing one)",
                self.root.display()
            ),
        )
    }
}

/// An open repository: config and catalog, and the keys when unlocked.
pub struct Repository {
    paths: RepoPaths,
    config: Config,
    catalog: Arc<Catalog>,
    keys: Option<Keys>,
}

impl Repository {
    /// Creates a repository at `paths` with `config` and a keystore sealed under
    /// `passphrase`. Refuses a directory that already holds one. Blocking.
    pub fn init(
        paths: RepoPaths,
        config: Config,
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<Self> {
        if paths.exists() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{} already holds a datamesh repository; use it, or choose another directory with --repo",
                    paths.root.display()
                ),
            ));
        }
        config.validate()?;
        std::fs::create_dir_all(&paths.root)
            .with_context(|| format!("creating {}", paths.root.display()))?;
        write_new(&paths.config(), config.to_commented_toml().as_bytes())?;
        let catalog = Catalog::create(paths.catalog())?;
        LocalStore::open(paths.shards())?;
        std::fs::create_dir_all(paths.staging())
            .with_context(|| format!("creating {}", paths.staging().display()))?;
        // Last: its presence marks a complete repository.
        let keys = keystore::create(&paths.keystore(), passphrase, kdf)?;
        Ok(Repository {
            paths,
            config,
            catalog: Arc::new(catalog),
            keys: Some(keys),
        })
    }

    /// Opens config and catalog, without keys. Blocking.
    pub fn open(paths: RepoPaths) -> Result<Self> {
        if !paths.exists() {
            return Err(paths.missing_error());
        }
        if !paths.config().exists() || !paths.catalog().exists() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the repository at {} is incomplete (config.toml or catalog.db is missing; was `datamesh init` interrupted?): remove the directory and run `datamesh init` again",
                    paths.root.display()
                ),
            ));
        }
        let config = Config::load(&paths.config())?;
        let catalog = Catalog::open(paths.catalog())?;
        Ok(Repository {
            paths,
            config,
            catalog: Arc::new(catalog),
            keys: None,
        })
    }

    /// Unlocks the keystore. Blocking (Argon2).
    pub fn unlock(&mut self, passphrase: &Passphrase) -> Result<()> {
        if !self.paths.keystore().exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the repository at {} has no keystore (was `datamesh init` interrupted, or the file lost?): restore it with `datamesh key import BACKUP`",
                    self.paths.root.display()
                ),
            ));
        }
        self.keys = Some(keystore::open(&self.paths.keystore(), passphrase)?);
        Ok(())
    }

    /// The paths.
    pub fn paths(&self) -> &RepoPaths {
        &self.paths
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
    /// The keys, when unlocked.
    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_ref()
    }

    /// The local shard store.
    pub fn local_store(&self) -> Result<LocalStore> {
        Ok(LocalStore::open(self.paths.shards())?)
    }

    /// An engine over `store`. Without keys, only metadata and garbage collection work;
    /// reading or writing content needs [`Repository::unlock`] first.
    pub fn engine(&self, store: DynStore) -> Result<Engine> {
        let keys = self.keys.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                "the keystore must be unlocked before content is read or written",
            )
        })?;
        let chunk_keys = ChunkKeys::new(keys);
        let seed = chunk_keys.chunker_seed();
        Ok(Engine::new(
            chunk_keys,
            seed,
            self.catalog.clone(),
            store,
            self.config.cache.memory.0,
            EngineSettings::from_config(&self.config)?,
        ))
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
