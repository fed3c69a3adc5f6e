//! What every command gets: the global flags, where its output goes, and how to open the
//! repository the way the command needs it.
//!
//! # Direct and attached
//!
//! A command runs either *directly* (no process owns the repository: it opens the
//! catalog itself and writes to this process's stdout/stderr) or *attached* (a `datamesh
//! mount` or `service` owns the repository: the command was sent over the control socket
//! and runs inside that process, against its already open repository and engine, with its
//! output streamed back to the client — see `crate::control`). Commands do not know which:
//! they get the repository, the engine and their output streams from here, and report
//! namespace changes through [`CliContext::changed`] so an attached mount can drop what
//! the kernel cached about them.

use std::io::{IsTerminal, Read, Write};
use std::sync::{Arc, Mutex};

use crate::crypto::passphrase::{Passphrase, PassphraseSource, Purpose};
use crate::engine::{Engine, blocking};
use crate::error::{Error, ErrorKind, Result};
use crate::mesh::MeshStore;
use crate::repo::{RepoPaths, Repository};
use crate::store::DynStore;
use crate::store::routed::RoutedStore;

use super::args::Global;

/// A writer shared between tasks (stdout, stderr, or a control-socket stream).
#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedWriter {
    /// Wraps a writer.
    pub fn new(w: impl Write + Send + 'static) -> Self {
        SharedWriter(Arc::new(Mutex::new(Box::new(w))))
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// What a namespace change touched, for the owner of an attached mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The attributes or content of this inode changed.
    Inode(u64),
    /// This entry of this directory was added, removed or replaced.
    Entry(u64, Vec<u8>),
    /// The entry at this mesh path (and every directory on the way to it) may have been
    /// added, removed or replaced: the owner resolves the parents itself.
    Path(Vec<u8>),
}

/// What the process owning the repository offers to commands run inside it.
#[async_trait::async_trait]
pub trait Owner: Send + Sync {
    /// Returns once everything written so far (through the mount) is durable.
    async fn settle(&self) -> Result<()>;
    /// The shard store that process uses.
    fn store(&self) -> DynStore;
    /// Its engine (its keys are unlocked).
    fn engine(&self) -> Engine;
    /// Commands changed these; drop any cached view of them.
    fn changed(&self, changes: &[Change]);
}

/// The repository owner a command is attached to.
#[derive(Clone)]
pub struct Attached {
    /// The open repository.
    pub repo: Arc<Repository>,
    /// Its owner.
    pub owner: Arc<dyn Owner>,
}

/// Shared state of one CLI invocation.
pub struct CliContext {
    /// The global flags.
    pub global: Global,
    out: SharedWriter,
    err: SharedWriter,
    stdin: Mutex<Option<Box<dyn Read + Send>>>,
    tty: bool,
    attached: Option<Attached>,
    /// The store, once opened: joining the mesh happens once per invocation.
    store: tokio::sync::OnceCell<DynStore>,
}

impl CliContext {
    /// A context for a command run directly in this process.
    pub fn new(global: Global) -> Self {
        CliContext {
            global,
            out: SharedWriter::new(std::io::stdout()),
            err: SharedWriter::new(std::io::stderr()),
            stdin: Mutex::new(Some(Box::new(std::io::stdin()))),
            tty: std::io::stderr().is_terminal(),
            attached: None,
            store: tokio::sync::OnceCell::new(),
        }
    }

    /// A context for a command run inside the repository's owner on behalf of a client.
    pub fn attached(
        global: Global,
        out: SharedWriter,
        err: SharedWriter,
        stdin: Box<dyn Read + Send>,
        attached: Attached,
    ) -> Self {
        CliContext {
            global,
            out,
            err,
            stdin: Mutex::new(Some(stdin)),
            tty: false,
            attached: Some(attached),
            store: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether the command runs inside the repository's owner.
    pub fn is_attached(&self) -> bool {
        self.attached.is_some()
    }

    /// Standard output of the command.
    pub fn out(&self) -> SharedWriter {
        self.out.clone()
    }

    /// Standard error of the command.
    pub fn err(&self) -> SharedWriter {
        self.err.clone()
    }

    /// Standard input of the command; it can be taken once.
    pub fn take_stdin(&self) -> Result<Box<dyn Read + Send>> {
        self.stdin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "standard input was already consumed"))
    }

    /// Where the repository is.
    pub fn paths(&self) -> Result<RepoPaths> {
        match &self.attached {
            Some(a) => Ok(a.repo.paths().clone()),
            None => RepoPaths::resolve(self.global.repo.as_deref()),
        }
    }

    /// Where the repository passphrase comes from.
    pub fn passphrase_source(&self) -> PassphraseSource {
        PassphraseSource::repository(self.global.password_file.clone())
    }

    /// Gets the repository passphrase (a blocking prompt runs off the reactor).
    pub async fn passphrase(&self, purpose: Purpose, what: String) -> Result<Passphrase> {
        let source = self.passphrase_source();
        blocking(move || Ok(source.resolve(purpose, &what)?)).await
    }

    /// The repository for metadata only: no passphrase needed.
    pub async fn open_metadata(&self) -> Result<Arc<Repository>> {
        if let Some(a) = &self.attached {
            return Ok(a.repo.clone());
        }
        let paths = self.paths()?;
        Ok(Arc::new(blocking(move || Repository::open(paths)).await?))
    }

    /// The repository with its keystore unlocked, and an engine over the store this
    /// invocation uses. Stale uploads of dead processes are reaped first.
    pub async fn open_engine(&self) -> Result<(Arc<Repository>, Engine)> {
        if let Some(a) = &self.attached {
            return Ok((a.repo.clone(), a.owner.engine()));
        }
        let mut repo = blocking({
            let paths = self.paths()?;
            move || Repository::open(paths)
        })
        .await?;
        let what = format!("the keystore {}", repo.paths().keystore().display());
        let pass = self.passphrase(Purpose::Open, what).await?;
        repo = blocking(move || {
            repo.unlock(&pass)?;
            Ok(repo)
        })
        .await?;
        let store = self.store(&repo).await?;
        let engine = repo.engine(store)?;
        engine.recover().await?;
        Ok((Arc::new(repo), engine))
    }

    /// The shard store this invocation uses: the owner's when attached; else, when a
    /// bootstrap peer is configured (`--bootstrap` or `mesh.bootstrap`), the mesh joined
    /// as this owner's client (routed so that shards stored locally before joining keep
    /// reading); else the repository's local store (the embedded default). Opened once
    /// per invocation.
    pub async fn store(&self, repo: &Repository) -> Result<DynStore> {
        if let Some(a) = &self.attached {
            return Ok(a.owner.store());
        }
        self.store
            .get_or_try_init(|| self.open_store(repo))
            .await
            .cloned()
    }

    /// Whether [`CliContext::store`] joins the mesh (directly, not attached).
    pub fn joins_mesh(&self, repo: &Repository) -> bool {
        self.attached.is_none()
            && !repo
                .config()
                .mesh
                .bootstrap_with(&self.global.bootstrap)
                .is_empty()
    }

    async fn open_store(&self, repo: &Repository) -> Result<DynStore> {
        let local: DynStore = Arc::new(repo.local_store()?);
        let entries = repo.config().mesh.bootstrap_with(&self.global.bootstrap);
        if entries.is_empty() {
            return Ok(local);
        }
        // Unlocked: the owner's stable client identity, so its deletes are honoured.
        // Metadata-only commands (stats, check) may read with a throwaway identity.
        let keypair = match repo.keys() {
            Some(keys) => keys.client_keypair(),
            None => libp2p::identity::Keypair::generate_ed25519(),
        };
        let mut mesh = repo.config().mesh.clone();
        mesh.bootstrap = entries;
        let joined = MeshStore::connect(keypair, &mesh, &[]).await?;
        tracing::debug!(peer = %joined.client().peer_id(), "joined the mesh");
        Ok(Arc::new(RoutedStore::new(local, Arc::new(joined))))
    }

    /// Waits until the owner has made everything written so far durable; without an
    /// owner nothing is pending.
    pub async fn settle(&self) -> Result<bool> {
        match &self.attached {
            Some(a) => a.owner.settle().await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Reports namespace changes to an attached owner (nothing to do when direct).
    pub fn changed(&self, changes: &[Change]) {
        if let Some(a) = &self.attached {
            a.owner.changed(changes);
        }
    }

    /// Whether to draw progress bars: stderr is a terminal and `--quiet` is off.
    pub fn progress(&self) -> bool {
        !self.global.quiet && self.tty
    }

    /// Prints a note for people (stderr), unless `--quiet`.
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.global.quiet {
            let _ = writeln!(self.err(), "{}", text.as_ref());
        }
    }

    /// Prints an error line (stderr), even with `--quiet`.
    pub fn error(&self, text: impl AsRef<str>) {
        let _ = writeln!(self.err(), "datamesh: {}", text.as_ref());
    }
}

/// `writeln!` to a command's standard output.
#[macro_export]
macro_rules! outln {
    ($ctx:expr) => {{ use std::io::Write as _; writeln!($ctx.out())?; }};
    ($ctx:expr, $($arg:tt)*) => {{ use std::io::Write as _; writeln!($ctx.out(), $($arg)*)?; }};
}
