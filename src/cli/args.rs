//! Command-line syntax (clap derive). Only parsing lives here; each command's behaviour
//! lives in the module named for its group.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// datamesh: an encrypted, erasure-coded, self-healing storage mesh shown as a folder.
#[derive(Parser, Debug)]
#[command(name = "datamesh", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository directory [default: $DATAMESH_HOME, else the platform data directory,
    /// e.g. ~/.local/share/datamesh]
    #[arg(long, global = true, value_name = "DIR", env = "DATAMESH_HOME")]
    pub repo: Option<PathBuf>,

    /// Read the passphrase from the first line of FILE (else $DATAMESH_PASSWORD, else a
    /// terminal prompt)
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Join the mesh through this peer for the time the command runs (repeatable;
    /// adds to config `mesh.bootstrap`)
    #[arg(long, global = true, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,

    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No progress bars or notes, only results and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository: keys sealed under a passphrase, config, catalog, shard store
    Init(InitArgs),
    /// Store a file or directory (a new version if the name exists)
    Put(PutArgs),
    /// Retrieve a file (verified) to a path, or to standard output with `-`
    Get(GetArgs),
    /// List stored files and directories
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show everything known about one name: attributes, versions, chunks
    Info(InfoArgs),
    /// Logical vs stored bytes, dedup ratio, chunk and shard counts, health
    Stats(JsonArg),
    /// Remove a name; chunks no version references any more are freed
    Rm(RmArgs),
    /// Rename (move) a name
    #[command(alias = "mv")]
    Rename(RenameArgs),
    /// Copy a name without copying data (the copy shares the chunks)
    #[command(alias = "cp")]
    Duplicate(DuplicateArgs),
    /// Find names by substring or regular expression
    Search(SearchArgs),
    /// Most recently stored versions
    Recent(RecentArgs),
    /// Versions of one name
    Versions(VersionsArgs),
    /// Drop old versions, keeping the newest N of each file
    Prune(PruneArgs),
    /// Set or change tags on a name
    Tag(TagArgs),
    /// Verify the catalog and that every shard is present; --read-data also reads,
    /// verifies and repairs every chunk
    Check(CheckArgs),
    /// Wait until everything written through the running mount is durable
    Sync,
    /// Show the mesh as a folder (FUSE); in the foreground unless --daemon
    Mount(super::mount_cmd::MountArgs),
    /// Unmount a `datamesh mount`; returns once everything written is committed
    Unmount(super::mount_cmd::UnmountArgs),
    /// Keystore backup, restore and passphrase change
    #[command(subcommand)]
    Key(KeyCommand),
    /// The mesh commands (bootstrap, service, peers, ...), defined in mesh_args.rs
    #[command(flatten)]
    Mesh(super::mesh_args::MeshCommand),
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct JsonArg {
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Argon2id memory cost of the keystore key, in MiB (minimum 8; default 64)
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes (default 3)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_iterations: u32,
    /// Reed-Solomon data shards per chunk (k)
    #[arg(long, value_name = "K")]
    pub data_shards: Option<u8>,
    /// Reed-Solomon parity shards per chunk (m)
    #[arg(long, value_name = "M")]
    pub parity_shards: Option<u8>,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct PutArgs {
    /// File or directory to store (`-` for standard input, with --name)
    #[serde(with = "crate::control::serde_path")]
    pub path: PathBuf,
    /// Name in the repository [default: the file name; for -r, the directory name]
    #[arg(long, value_name = "PATH")]
    pub name: Option<OsString>,
    /// Comma-separated tags to set on every stored file
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Store a directory and everything under it
    #[arg(short, long)]
    pub recursive: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct GetArgs {
    /// Name (or chunk-list key shown by `info`) to retrieve
    pub name: OsString,
    /// Output file, or `-` for standard output
    #[serde(with = "crate::control::serde_path")]
    pub output: PathBuf,
    /// Version number to retrieve (see `versions`) [default: the current one]
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// Replace the output file if it exists
    #[arg(short, long)]
    pub force: bool,
    /// Retrieve a directory and everything under it into OUTPUT (a new directory)
    #[arg(short, long)]
    pub recursive: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ListArgs {
    /// Only names under this directory
    pub prefix: Option<OsString>,
    /// Only entries carrying all these tags (comma-separated)
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Size, mode, modification time, versions and tags too
    #[arg(short, long)]
    pub long: bool,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct InfoArgs {
    /// Name to describe
    pub name: OsString,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct RmArgs {
    /// Names to remove
    #[arg(required = true)]
    pub names: Vec<OsString>,
    /// Remove directories and everything under them
    #[arg(short, long)]
    pub recursive: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct RenameArgs {
    /// Current name
    pub old: OsString,
    /// New name (missing parent directories are created)
    pub new: OsString,
    /// Replace the target if it exists
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct DuplicateArgs {
    /// Source name (a file)
    pub src: OsString,
    /// New name
    pub dst: OsString,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct SearchArgs {
    /// Text to find in names (case-insensitive), or a regex with --regex
    pub query: String,
    /// Treat the query as a regular expression
    #[arg(long)]
    pub regex: bool,
    /// Only this kind (file, dir, symlink) or file extension (pdf, rs, …)
    #[arg(long, value_name = "T")]
    pub file_type: Option<String>,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct RecentArgs {
    /// At most this many versions
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
    /// Only versions stored at or after DATE (2026-12-01, 2026-12-01T10:00:00Z, or a
    /// duration ago like 2h, 3d)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct VersionsArgs {
    /// Name of a file
    pub name: OsString,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct PruneArgs {
    /// Versions to keep per file (the newest; at least 1)
    #[arg(long, value_name = "N")]
    pub keep_last: u64,
    /// Only this name [default: every file]
    pub name: Option<OsString>,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct CheckArgs {
    /// Read every shard, verify it, and rebuild the bad ones (needs the passphrase)
    #[arg(long)]
    pub read_data: bool,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct TagArgs {
    /// Name to tag
    pub name: OsString,
    /// Tags to add (comma-separated)
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Tags to remove (comma-separated)
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    pub remove: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Write a sealed backup of the keystore to FILE
    Export {
        /// Backup file to write
        file: PathBuf,
        /// Replace FILE if it exists
        #[arg(short, long)]
        force: bool,
        /// Passphrase for the backup, first line of FILE (else $DATAMESH_NEW_PASSWORD,
        /// else a terminal prompt)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Restore the keystore from a backup made by `key export`
    Import {
        /// Backup file to read
        file: PathBuf,
        /// Replace a keystore holding different keys (data sealed with those is lost)
        #[arg(long)]
        force: bool,
        /// The backup's passphrase, first line of FILE (else $DATAMESH_BACKUP_PASSWORD,
        /// else a terminal prompt)
        #[arg(long, value_name = "FILE")]
        backup_password_file: Option<PathBuf>,
    },
    /// Change the passphrase; the keys, and so all data, stay as they are
    Passwd {
        /// The new passphrase, first line of FILE (else $DATAMESH_NEW_PASSWORD, else a
        /// terminal prompt)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}
