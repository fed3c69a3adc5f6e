//! The client's side of the control socket: forward a command to the repository's
//! owner and relay its output (see the module docs of `crate::control`).

use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::net::UnixStream;

use super::{Forwarded, PROTOCOL, Request, frame};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::RepoPaths;

/// What happened to a forwarded command.
pub enum Outcome {
    /// No process owns the repository: run the command directly.
    NoOwner,
    /// The owner ran it; this is its exit code.
    Exited(u8),
}

/// Sends `command` to the owner of the repository at `paths`, if one runs.
pub fn forward(paths: &RepoPaths, command: Forwarded, quiet: bool) -> Result<Outcome> {
    let path = paths.control_socket();
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::ConnectionRefused) => {
            return Ok(Outcome::NoOwner);
        }
        Err(e) => return Err(Error::from(e).context(format!("cannot reach {}", path.display()))),
    };
    let stdin = matches!(&command, Forwarded::Put(a) if a.path.as_os_str() == "-");
    let request = Request {
        protocol: PROTOCOL,
        command,
        quiet,
        stdin,
    };
    let body = serde_json::to_vec(&request).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("encoding the control request: {e}"),
        )
    })?;
    if body.len() > frame::MAX_PAYLOAD {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the command is too large to send to the running mount",
        ));
    }
    frame::write(&mut stream, frame::REQUEST, &body)?;
    if stdin {
        let mut w = stream.try_clone()?;
        std::thread::spawn(move || {
            let mut input = std::io::stdin();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if frame::write(&mut w, frame::STDIN, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = frame::write(&mut w, frame::STDIN_EOF, &[]);
        });
    }
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        match frame::read(&mut stream)? {
            Some((frame::STDOUT, data)) => stdout.write_all(&data)?,
            Some((frame::STDERR, data)) => stderr.write_all(&data)?,
            Some((frame::EXIT, code)) => {
                stdout.flush()?;
                return Ok(Outcome::Exited(code.first().copied().unwrap_or(1)));
            }
            Some((tag, _)) => {
                return Err(Error::new(
                    ErrorKind::Network,
                    format!("the running mount sent an unknown control frame ({tag})"),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Io,
                    "the process owning the repository closed the connection before the command finished (did the mount stop?)",
                ));
            }
        }
    }
}
