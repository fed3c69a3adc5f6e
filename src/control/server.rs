//! The owner's side of the control socket (see the module docs of `crate::control`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::{PROTOCOL, Request, frame};
use crate::cli::args::Global;
use crate::cli::context::{Attached, CliContext, SharedWriter};
use crate::error::{Error, ErrorKind, Result};

/// A running control server; dropping it stops accepting and removes the socket.
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlServer {
    /// Serves `attached`'s repository at `REPO/control.sock`. Fails with
    /// [`ErrorKind::Busy`] if another live process serves it.
    pub async fn start(attached: Attached) -> Result<ControlServer> {
        let path = attached.repo.paths().control_socket();
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "another datamesh process serves {} already (a mount or service of this repository is running): stop it first",
                        path.display()
                    ),
                ));
            }
            // Nobody answers: left by a process that died.
            std::fs::remove_file(&path).map_err(|e| {
                Error::from(e).context(format!("removing the stale {}", path.display()))
            })?;
        }
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| Error::from(e).context(format!("cannot listen on {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("control socket accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let attached = attached.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_one(stream, attached).await {
                        tracing::warn!("control request failed: {e}");
                    }
                });
            }
        });
        Ok(ControlServer { path, task })
    }
}

/// The uid of the process at the other end of a Unix socket.
fn peer_uid(fd: i32) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the kernel fills
    // at most `len` bytes of `cred`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Writes everything as frames of one tag on a shared stream.
struct FrameWriter {
    stream: Arc<Mutex<UnixStream>>,
    tag: u8,
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        frame::write_all(&mut *s, self.tag, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The client's stdin, arriving in frames from a reader thread.
struct ChannelReader {
    rx: Receiver<Option<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Some(data)) => {
                    self.buf = data;
                    self.pos = 0;
                }
                Ok(None) => self.done = true,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the client went away before the end of its input",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn pump_stdin(mut stream: UnixStream, tx: SyncSender<Option<Vec<u8>>>) {
    loop {
        match frame::read(&mut stream) {
            Ok(Some((frame::STDIN, data))) => {
                if tx.send(Some(data)).is_err() {
                    return;
                }
            }
            Ok(Some((frame::STDIN_EOF, _))) => {
                let _ = tx.send(None);
                return;
            }
            // Anything else, or a broken stream: the reader sees an early end.
            _ => return,
        }
    }
}

async fn serve_one(stream: tokio::net::UnixStream, attached: Attached) -> Result<()> {
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    let me = {
        // SAFETY: geteuid takes no arguments and cannot fail.
        unsafe { libc::geteuid() }
    };
    let uid = peer_uid(stream.as_raw_fd())?;
    if uid != me && uid != 0 {
        return Err(Error::new(
            ErrorKind::NotPermitted,
            format!("control request from uid {uid} refused"),
        ));
    }
    let mut reader = stream.try_clone()?;
    let (reader, request) = tokio::task::spawn_blocking(move || {
        let got = frame::read(&mut reader);
        (reader, got)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, format!("control task failed: {e}")))?;
    let shared = Arc::new(Mutex::new(stream));
    let send_exit = |code: u8| {
        let shared = shared.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                frame::write(&mut *s, frame::EXIT, &[code])
            })
            .await;
        }
    };
    let err_writer = SharedWriter::new(FrameWriter {
        stream: shared.clone(),
        tag: frame::STDERR,
    });
    let request: Request = match request {
        Ok(Some((frame::REQUEST, body))) => match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(
                    err_writer.clone(),
                    "datamesh: malformed control request: {e}"
                );
                send_exit(1).await;
                return Ok(());
            }
        },
        _ => return Ok(()),
    };
    if request.protocol != PROTOCOL {
        let _ = writeln!(
            err_writer.clone(),
            "datamesh: the running mount speaks control protocol {PROTOCOL}, this command {}: use the same datamesh version for both",
            request.protocol
        );
        send_exit(8).await;
        return Ok(());
    }
    let stdin: Box<dyn Read + Send> = if request.stdin {
        let (tx, rx) = sync_channel(8);
        std::thread::spawn(move || pump_stdin(reader, tx));
        Box::new(ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        })
    } else {
        Box::new(std::io::empty())
    };
    let global = Global {
        repo: None,
        password_file: None,
        bootstrap: Vec::new(),
        verbose: 0,
        quiet: request.quiet,
    };
    let out = SharedWriter::new(FrameWriter {
        stream: shared.clone(),
        tag: frame::STDOUT,
    });
    let ctx = CliContext::attached(global, out, err_writer, stdin, attached);
    let result = crate::cli::run_forwarded(request.command, &ctx).await;
    let code = crate::cli::finish(&ctx, result);
    send_exit(code).await;
    Ok(())
}
