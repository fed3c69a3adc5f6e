//! `init` and `key export | import | passwd`.

use std::path::PathBuf;

use anyhow::Context as _;

use super::CliContext;
use super::args::{InitArgs, KeyCommand};
use crate::config::Config;
use crate::crypto::keystore::{self, KdfParams};
use crate::crypto::passphrase::{PassphraseSource, Purpose};
use crate::engine::blocking;
use crate::error::{Error, ErrorKind};
use crate::repo::{RepoPaths, Repository};

/// The environment variable for a new passphrase (`key passwd`, `key export`).
const NEW_PASSWORD_ENV: &str = "DATAMESH_NEW_PASSWORD";
/// The environment variable for a backup's passphrase (`key import`).
const BACKUP_PASSWORD_ENV: &str = "DATAMESH_BACKUP_PASSWORD";

pub async fn init(ctx: &CliContext, args: InitArgs) -> anyhow::Result<()> {
    let paths = ctx.paths()?;
    let kdf = KdfParams {
        m_cost_kib: args.kdf_memory_mib.saturating_mul(1024),
        t_cost: args.kdf_iterations,
        p_cost: 1,
    };
    kdf.check().map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("--kdf-memory-mib/--kdf-iterations: {e}"),
        )
    })?;
    let mut config = Config::default();
    if let Some(k) = args.data_shards {
        config.storage.data_shards = k;
    }
    if let Some(m) = args.parity_shards {
        config.storage.parity_shards = m;
    }
    config.validate()?;
    let repo = create(ctx, paths, config, kdf).await?;
    let keys = repo.keys().expect("init unlocks the keys");
    ctx.note(format!(
        "Created a datamesh repository at {}\n  key fingerprint {}\n  erasure coding {}+{} (any {} of {} shards may be lost)\nBack up the keys now: `datamesh key export FILE` (without them the data cannot be read).\nNext: `datamesh put FILE` or `datamesh mount ~/mesh`.",
        repo.paths().root().display(),
        keys.fingerprint().short(),
        repo.config().storage.data_shards,
        repo.config().storage.parity_shards,
        repo.config().storage.parity_shards,
        repo.config().storage.data_shards + repo.config().storage.parity_shards,
    ));
    Ok(())
}

/// Creates a repository, asking for a new passphrase.
pub(crate) async fn create(
    ctx: &CliContext,
    paths: RepoPaths,
    config: Config,
    kdf: KdfParams,
) -> anyhow::Result<Repository> {
    if paths.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already holds a datamesh repository; use it, or choose another directory with --repo",
                paths.root().display()
            ),
        )
        .into());
    }
    let pass = ctx
        .passphrase(
            Purpose::Create,
            format!("the new repository {}", paths.root().display()),
        )
        .await?;
    Ok(blocking(move || Repository::init(paths, config, &pass, kdf)).await?)
}

fn source(env: &str, file: Option<PathBuf>) -> PassphraseSource {
    PassphraseSource {
        env_var: env.to_owned(),
        password_file: file,
    }
}

pub async fn key(ctx: &CliContext, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Export {
            file,
            force,
            new_password_file,
        } => {
            let (repo, _engine) = ctx.open_engine().await?;
            let keys = repo
                .keys()
                .ok_or_else(|| Error::new(ErrorKind::Internal, "the keystore is not unlocked"))?
                .clone();
            let params = keystore::inspect(&repo.paths().keystore())?.params;
            let src = source(NEW_PASSWORD_ENV, new_password_file);
            let what = format!("the backup {}", file.display());
            let pass = blocking(move || Ok(src.resolve(Purpose::Create, &what)?)).await?;
            let dest = file.clone();
            blocking(move || Ok(keystore::export(&keys, &dest, &pass, params, force)?)).await?;
            ctx.note(format!(
                "Wrote a sealed backup of the keys to {} (open it with the passphrase you just gave).",
                file.display()
            ));
        }
        KeyCommand::Import {
            file,
            force,
            backup_password_file,
        } => {
            let paths = ctx.paths()?;
            if !paths.config().exists() || !paths.catalog().exists() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no datamesh repository at {} to import keys into: restore its catalog.db and config.toml there first, or run `datamesh init` for a new one",
                        paths.root().display()
                    ),
                )
                .into());
            }
            let src = source(BACKUP_PASSWORD_ENV, backup_password_file);
            let what = format!("the backup {}", file.display());
            let backup_pass = blocking(move || Ok(src.resolve(Purpose::Open, &what)?)).await?;
            let has_keystore = paths.keystore().exists();
            let purpose = if has_keystore {
                Purpose::Open
            } else {
                Purpose::Create
            };
            let pass = ctx
                .passphrase(
                    purpose,
                    format!("the keystore {}", paths.keystore().display()),
                )
                .await?;
            let ks = paths.keystore();
            let keys = blocking(move || {
                Ok(keystore::import(
                    &file,
                    &backup_pass,
                    &ks,
                    &pass,
                    KdfParams::DEFAULT,
                    force,
                )?)
            })
            .await?;
            ctx.note(format!(
                "Imported keys {} into {}",
                keys.fingerprint().short(),
                paths.keystore().display()
            ));
        }
        KeyCommand::Passwd { new_password_file } => {
            let paths = ctx.paths()?;
            let ks = paths.keystore();
            if !ks.exists() {
                blocking(move || Repository::open(paths).map(|_| ())).await?;
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no keystore at {}: restore it with `datamesh key import BACKUP`",
                        ks.display()
                    ),
                )
                .into());
            }
            let old = ctx
                .passphrase(Purpose::Open, format!("the keystore {}", ks.display()))
                .await?;
            let src = source(NEW_PASSWORD_ENV, new_password_file);
            let new =
                blocking(move || Ok(src.resolve(Purpose::Create, "the new passphrase")?)).await?;
            let path = ks.clone();
            blocking(move || {
                let params = keystore::inspect(&path)?.params;
                Ok(keystore::change_passphrase(&path, &old, &new, params)?)
            })
            .await
            .with_context(|| format!("changing the passphrase of {}", ks.display()))?;
            ctx.note("Passphrase changed; the keys and all data are unchanged.");
        }
    }
    Ok(())
}
