//! The `datamesh` command line: parse, run one command on one tokio runtime, print the
//! outcome once, exit with a code scripts can trust.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | bad usage (unknown flag, missing argument) |
//! | 3 | not found (name, version, repository) |
//! | 4 | wrong passphrase, or no passphrase available |
//! | 5 | data unavailable or failed verification (too many shards lost or corrupt) |
//! | 6 | disk or capacity full |
//! | 7 | busy (another process holds the repository or a lock) |
//! | 8 | written by a newer datamesh |
//! | 9 | network failure |
//! | 10 | already exists |
//! | 11 | invalid input (bad name, bad config value) |
//!
//! Errors are printed once, to stderr, as `datamesh: <message>`; messages say what to do
//! next. With `--json` on a listing command, results go to stdout as JSON and errors stay
//! on stderr.

pub mod args;
pub mod context;
mod data_cmds;
mod get_cmd;
mod get_tree;
mod key_cmds;
pub mod mesh_args;
mod mesh_cmds;
mod mount_cmd;
mod names;
mod ns_cmds;
mod output;
mod query_cmds;

use std::process::ExitCode;

use clap::Parser;

pub use context::CliContext;

use crate::control::Forwarded;
use crate::error::{Error, ErrorKind};
use args::{Cli, Command};

/// Exit code for an error kind (see the module docs).
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => 3,
        ErrorKind::WrongPassphrase => 4,
        ErrorKind::Corrupt | ErrorKind::Unavailable => 5,
        ErrorKind::NoSpace => 6,
        ErrorKind::Busy => 7,
        ErrorKind::Unsupported => 8,
        ErrorKind::Network => 9,
        ErrorKind::AlreadyExists => 10,
        ErrorKind::InvalidInput => 11,
        ErrorKind::Io | ErrorKind::NotPermitted | ErrorKind::Internal => 1,
    }
}

/// Runs the program; `main` only calls this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose, cli.global.quiet);
    // A repository owned by a running mount gets the command through its control socket.
    if let Some(forwarded) = forwardable(&cli.command) {
        let outcome = crate::repo::RepoPaths::resolve(cli.global.repo.as_deref())
            .and_then(|paths| crate::control::client::forward(&paths, forwarded, cli.global.quiet));
        match outcome {
            Ok(crate::control::client::Outcome::Exited(code)) => return ExitCode::from(code),
            Ok(crate::control::client::Outcome::NoOwner) => {}
            Err(e) => {
                eprintln!("datamesh: {e}");
                return ExitCode::from(exit_code(e.kind()));
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("datamesh")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("datamesh: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ctx = CliContext::new(cli.global.clone());
    let result = runtime.block_on(dispatch(cli.command, &ctx));
    let code = finish(&ctx, result);
    // Do not wait for stray blocking tasks (e.g. a prompt) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    ExitCode::from(code)
}

/// Prints a command's error once (to the command's stderr) and returns its exit code.
pub fn finish(ctx: &CliContext, result: anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(err) => {
            if let Some(Reported(e)) = err.downcast_ref::<Reported>() {
                return exit_code(e.kind());
            }
            let kind = err
                .chain()
                .find_map(|e| e.downcast_ref::<Error>())
                .map(Error::kind)
                .unwrap_or(ErrorKind::Io);
            ctx.error(format!("{err:#}"));
            exit_code(kind)
        }
    }
}

/// The commands a running mount executes on a client's behalf, with paths made
/// absolute (the mount has its own working directory).
fn forwardable(command: &Command) -> Option<Forwarded> {
    use crate::control::absolute;
    Some(match command {
        Command::Put(a) => {
            let mut a = a.clone();
            a.path = absolute(&a.path);
            Forwarded::Put(a)
        }
        Command::Get(a) => {
            let mut a = a.clone();
            a.output = absolute(&a.output);
            Forwarded::Get(a)
        }
        Command::List(a) => Forwarded::List(a.clone()),
        Command::Info(a) => Forwarded::Info(a.clone()),
        Command::Stats(a) => Forwarded::Stats(a.clone()),
        Command::Rm(a) => Forwarded::Rm(a.clone()),
        Command::Rename(a) => Forwarded::Rename(a.clone()),
        Command::Duplicate(a) => Forwarded::Duplicate(a.clone()),
        Command::Search(a) => Forwarded::Search(a.clone()),
        Command::Recent(a) => Forwarded::Recent(a.clone()),
        Command::Versions(a) => Forwarded::Versions(a.clone()),
        Command::Prune(a) => Forwarded::Prune(a.clone()),
        Command::Tag(a) => Forwarded::Tag(a.clone()),
        Command::Check(a) => Forwarded::Check(a.clone()),
        Command::Sync => Forwarded::Sync,
        _ => return None,
    })
}

/// Runs a command that came over the control socket (or was forwardable and ran here).
pub async fn run_forwarded(command: Forwarded, ctx: &CliContext) -> anyhow::Result<()> {
    match command {
        Forwarded::Put(a) => data_cmds::put(ctx, a).await,
        Forwarded::Get(a) => get_cmd::get(ctx, a).await,
        Forwarded::Rm(a) => ns_cmds::rm(ctx, a).await,
        Forwarded::Rename(a) => ns_cmds::rename(ctx, a).await,
        Forwarded::Duplicate(a) => ns_cmds::duplicate(ctx, a).await,
        Forwarded::Prune(a) => ns_cmds::prune(ctx, a).await,
        Forwarded::Tag(a) => ns_cmds::tag(ctx, a).await,
        Forwarded::List(a) => query_cmds::list(ctx, a).await,
        Forwarded::Info(a) => query_cmds::info(ctx, a).await,
        Forwarded::Stats(a) => query_cmds::stats(ctx, a).await,
        Forwarded::Search(a) => query_cmds::search(ctx, a).await,
        Forwarded::Recent(a) => query_cmds::recent(ctx, a).await,
        Forwarded::Versions(a) => query_cmds::versions(ctx, a).await,
        Forwarded::Check(a) => query_cmds::check(ctx, a).await,
        Forwarded::Sync => {
            if !ctx.settle().await? {
                ctx.note("no mount is running on this repository: nothing is pending");
            }
            Ok(())
        }
    }
}

async fn dispatch(command: Command, ctx: &CliContext) -> anyhow::Result<()> {
    if let Some(f) = forwardable(&command) {
        return run_forwarded(f, ctx).await;
    }
    match command {
        Command::Init(a) => key_cmds::init(ctx, a).await,
        Command::Key(k) => key_cmds::key(ctx, k).await,
        Command::Mesh(m) => mesh_cmds::run(m, ctx).await,
        Command::Mount(a) => mount_cmd::mount(ctx, a).await,
        Command::Unmount(a) => mount_cmd::unmount(ctx, a).await,
        _ => unreachable!("every other command is forwardable"),
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // fuser warns when the mount it made is already gone (every `umount DIR`): not news.
    // Kademlia warns "Failed to trigger bootstrap: No known peers" on every periodic
    // bootstrap of a node that is alone, e.g. the first `datamesh bootstrap` of a
    // mesh: expected, so only shown from -v on.
    let quiet_deps = if verbose == 0 {
        ",fuser=error,libp2p_kad=error"
    } else {
        ",fuser=error"
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default}{quiet_deps}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// An error a command already printed (e.g. one of several names failed); the exit code
/// is all that is left to report.
#[derive(Debug)]
pub struct Reported(pub Error);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Reported {}
