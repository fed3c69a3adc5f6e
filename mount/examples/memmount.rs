//! Mounts an empty in-memory filesystem until SIGINT/SIGTERM, then unmounts cleanly.
//! For trying the mount by hand and for benchmarks of the FUSE layer alone:
//!
//!     cargo run --release -p datamesh-mount --example memmount -- MOUNTPOINT STAGING_DIR
//!
//! Environment: MEMMOUNT_FETCH_LATENCY_MS / MEMMOUNT_COMMIT_LATENCY_MS add latency,
//! MEMMOUNT_NO_WRITEBACK=1 disables the kernel writeback cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datamesh_mount::memory::MemoryBackend;
use datamesh_mount::{MountOptions, mount};

fn env_ms(name: &str) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(mnt), Some(stage)) = (args.next(), args.next()) else {
        eprintln!("usage: memmount MOUNTPOINT STAGING_DIR");
        std::process::exit(2);
    };
    let (mnt, stage) = (PathBuf::from(mnt), PathBuf::from(stage));
    let mem = Arc::new(MemoryBackend::new());
    mem.set_fetch_latency(env_ms("MEMMOUNT_FETCH_LATENCY_MS"));
    mem.set_commit_latency(env_ms("MEMMOUNT_COMMIT_LATENCY_MS"));
    let opts = MountOptions {
        writeback_cache: std::env::var_os("MEMMOUNT_NO_WRITEBACK").is_none(),
        ..MountOptions::default()
    };
    let handle = mount(mem.clone(), mem, &mnt, &stage, opts).await?;
    eprintln!(
        "mounted at {} (recovery: {:?})",
        handle.mountpoint().display(),
        handle.recovery()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("unmounting");
    match handle.unmount().await {
        Ok(()) => Ok(()),
        Err(datamesh_mount::MountError::Busy(p)) => {
            eprintln!("{} is busy; detach it with umount -l", p.display());
            std::process::exit(1);
        }
        Err(e) => Err(e.into()),
    }
}
