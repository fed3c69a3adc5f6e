//! What every command gets: the global flags, and helpers to open the repository the
//! way the command needs it (metadata only, or unlocked), pick the shard store (local,
//! or the mesh when bootstrap peers are configured) and draw progress.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use crate::crypto::passphrase::{Passphrase, PassphraseSource, Purpose};
use crate::engine::blocking;
use crate::error::Result;
use crate::repo::{RepoPaths, Repository};
use crate::store::DynStore;

use super::args::Global;

/// Shared state of one CLI invocation.
pub struct CliContext {
    /// The global flags.
    pub global: Global,
}

impl CliContext {
    /// A context for the given flags.
    pub fn new(global: Global) -> Self {
        CliContext { global }
    }

    /// Where the repository is.
    pub fn paths(&self) -> Result<RepoPaths> {
        RepoPaths::resolve(self.global.repo.as_deref())
    }

    /// Where the repository passphrase comes from.
    pub fn passphrase_source(&self) -> PassphraseSource {
        PassphraseSource::repository(self.global.password_file.clone())
    }

    /// Gets the repository passphrase (blocking prompt runs off the reactor).
    pub async fn passphrase(&self, purpose: Purpose, what: String) -> Result<Passphrase> {
        let source = self.passphrase_source();
        blocking(move || Ok(source.resolve(purpose, &what)?)).await
    }

    /// Opens the repository for metadata only: no passphrase needed.
    pub async fn open_metadata(&self) -> Result<Repository> {
        let paths = self.paths()?;
        blocking(move || Repository::open(paths)).await
    }

    /// Opens the repository and unlocks its keystore.
    pub async fn open_unlocked(&self) -> Result<Repository> {
        let repo = self.open_metadata().await?;
        let what = format!("the keystore {}", repo.paths().keystore().display());
        let pass = self.passphrase(Purpose::Open, what).await?;
        let mut repo = repo;
        let repo = blocking(move || {
            repo.unlock(&pass)?;
            Ok(repo)
        })
        .await?;
        Ok(repo)
    }

    /// The shard store this invocation uses: the repository's local store (the embedded
    /// default).
    pub async fn store(&self, repo: &Repository) -> Result<DynStore> {
        let local = repo.local_store()?;
        Ok(Arc::new(local))
    }

    /// Whether to draw progress bars: stderr is a terminal and `--quiet` is off.
    pub fn progress(&self) -> bool {
        !self.global.quiet && std::io::stderr().is_terminal()
    }

    /// Prints a note for people (stderr), unless `--quiet`.
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.global.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// The repository flag as given, for messages.
    pub fn repo_flag(&self) -> Option<PathBuf> {
        self.global.repo.clone()
    }
}
