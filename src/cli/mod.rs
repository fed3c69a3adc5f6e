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
mod context;
mod data_cmds;
mod key_cmds;
mod names;
mod ns_cmds;
mod output;
mod query_cmds;

use std::process::ExitCode;

use clap::Parser;

pub use context::CliContext;

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
    // Do not wait for stray blocking tasks (e.g. a prompt) on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(Reported(e)) = err.downcast_ref::<Reported>() {
                return ExitCode::from(exit_code(e.kind()));
            }
            let kind = err
                .chain()
                .find_map(|e| e.downcast_ref::<Error>())
                .map(Error::kind)
                .unwrap_or(ErrorKind::Io);
            eprintln!("datamesh: {err:#}");
            ExitCode::from(exit_code(kind))
        }
    }
}

/// An error a command already printed (e.g. one of several names failed); `main` only
/// turns it into the exit code.
#[derive(Debug)]
pub struct Reported(pub Error);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Reported {}

async fn dispatch(command: Command, ctx: &CliContext) -> anyhow::Result<()> {
    match command {
        Command::Init(a) => key_cmds::init(ctx, a).await,
        Command::Key(k) => key_cmds::key(ctx, k).await,
        Command::Put(a) => data_cmds::put(ctx, a).await,
        Command::Get(a) => data_cmds::get(ctx, a).await,
        Command::Rm(a) => ns_cmds::rm(ctx, a).await,
        Command::Rename(a) => ns_cmds::rename(ctx, a).await,
        Command::Duplicate(a) => ns_cmds::duplicate(ctx, a).await,
        Command::Prune(a) => ns_cmds::prune(ctx, a).await,
        Command::Tag(a) => ns_cmds::tag(ctx, a).await,
        Command::Check(a) => query_cmds::check(ctx, a).await,
        Command::List(a) => query_cmds::list(ctx, a).await,
        Command::Info(a) => query_cmds::info(ctx, a).await,
        Command::Stats(a) => query_cmds::stats(ctx, a).await,
        Command::Search(a) => query_cmds::search(ctx, a).await,
        Command::Recent(a) => query_cmds::recent(ctx, a).await,
        Command::Versions(a) => query_cmds::versions(ctx, a).await,
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
