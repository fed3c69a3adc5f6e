//! Passphrases: the secret type, and where the CLI gets one from.
//!
//! # Model
//!
//! A [`Passphrase`] is a non-empty string that zeroizes on drop and never prints. The
//! CLI builds a [`PassphraseSource`] from its flags and calls
//! [`PassphraseSource::resolve`], which tries, in this order:
//!
//! 1. the environment variable (`DATAMESH_PASSWORD` for the repository passphrase),
//!    used as-is;
//! 2. `--password-file PATH`: the file's first line, without its line ending;
//! 3. an interactive prompt on the terminal (`rpassword`), asked twice when a new
//!    passphrase is being chosen ([`Purpose::Create`]), so a typo cannot lock the owner
//!    out.
//!
//! If none is available (no variable, no file, stdin is not a terminal) it fails with a
//! message naming all three ways. An empty passphrase is refused wherever it comes from:
//! it would make the keystore's Argon2 work the only protection.
//!
//! The environment wins over the file so that a service manager's setting cannot be
//! silently overridden by a stale flag in a script; both are for unattended use.

use std::ffi::OsString;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind};

/// The environment variable holding the repository passphrase.
pub const PASSWORD_ENV: &str = "DATAMESH_PASSWORD";

/// Errors getting a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// An empty passphrase was given.
    #[error("the passphrase from {0} is empty; choose a non-empty passphrase")]
    Empty(String),
    /// The variable holds bytes that are not UTF-8.
    #[error("{0} is not valid UTF-8; set it to a plain text passphrase")]
    NotUtf8(String),
    /// The password file could not be read.
    #[error(
        "cannot read the password file {path}: {source}; check the path given to --password-file"
    )]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nowhere to get a passphrase from.
    #[error("no passphrase: set {0}, pass --password-file, or run in a terminal")]
    NoSource(String),
    /// The two entries at the prompt differ.
    #[error("the two passphrases do not match; run the command again")]
    Mismatch,
    /// The terminal prompt failed.
    #[error("cannot read a passphrase from the terminal: {0}")]
    Prompt(#[source] std::io::Error),
}

impl PassphraseError {
    /// The crate error kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PassphraseError::Empty(_)
            | PassphraseError::NotUtf8(_)
            | PassphraseError::NoSource(_)
            | PassphraseError::Mismatch => ErrorKind::InvalidInput,
            PassphraseError::FileUnreadable { source, .. } => ErrorKind::of_io(source),
            PassphraseError::Prompt(_) => ErrorKind::Io,
        }
    }
}

impl From<PassphraseError> for Error {
    fn from(err: PassphraseError) -> Self {
        Error::wrap(err.kind(), err)
    }
}

/// A non-empty passphrase; zeroized on drop, never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps `text`; `origin` names where it came from, for the error message.
    pub fn new(text: String, origin: &str) -> Result<Self, PassphraseError> {
        let text = Zeroizing::new(text);
        if text.is_empty() {
            return Err(PassphraseError::Empty(origin.to_owned()));
        }
        Ok(Passphrase(text))
    }

    /// The passphrase bytes, for the key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Whether a passphrase opens something existing or is being chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Opening an existing keystore: ask once.
    Open,
    /// Choosing a new passphrase: ask twice at a prompt.
    Create,
}

/// Where to look for a passphrase; the CLI builds one from its flags.
#[derive(Clone, Debug)]
pub struct PassphraseSource {
    /// The environment variable to read first.
    pub env_var: String,
    /// `--password-file`, if given.
    pub password_file: Option<PathBuf>,
}

impl PassphraseSource {
    /// The repository passphrase: `DATAMESH_PASSWORD`, then `password_file`, then the
    /// terminal.
    pub fn repository(password_file: Option<PathBuf>) -> Self {
        PassphraseSource {
            env_var: PASSWORD_ENV.to_owned(),
            password_file,
        }
    }

    /// Finds the passphrase. `what` names it at the prompt (e.g. "keystore
    /// ~/.datamesh/keystore").
    pub fn resolve(&self, purpose: Purpose, what: &str) -> Result<Passphrase, PassphraseError> {
        let env = std::env::var_os(&self.env_var);
        let tty = std::io::stdin().is_terminal();
        self.resolve_with(env, tty, purpose, what, |prompt| {
            rpassword::prompt_password(prompt)
        })
    }

    /// [`PassphraseSource::resolve`] with its inputs made explicit: the variable's
    /// value, whether a terminal is available, and the prompt function.
    fn resolve_with(
        &self,
        env: Option<OsString>,
        tty: bool,
        purpose: Purpose,
        what: &str,
        mut prompt: impl FnMut(&str) -> std::io::Result<String>,
    ) -> Result<Passphrase, PassphraseError> {
        if let Some(value) = env {
            let value = value.into_string().map_err(|raw| {
                // Wipe the raw bytes we could not use.
                drop(Zeroizing::new(raw.into_encoded_bytes()));
                PassphraseError::NotUtf8(self.env_var.clone())
            })?;
            return Passphrase::new(value, &self.env_var);
        }
        if let Some(path) = &self.password_file {
            return read_password_file(path);
        }
        if !tty {
            return Err(PassphraseError::NoSource(self.env_var.clone()));
        }
        let first = Zeroizing::new(
            prompt(&format!("Passphrase for {what}: ")).map_err(PassphraseError::Prompt)?,
        );
        if first.is_empty() {
            return Err(PassphraseError::Empty("the terminal".to_owned()));
        }
        if purpose == Purpose::Create {
            let second =
                Zeroizing::new(prompt("Repeat the passphrase: ").map_err(PassphraseError::Prompt)?);
            if *second != *first {
                return Err(PassphraseError::Mismatch);
            }
        }
        Passphrase::new(String::clone(&first), "the terminal")
    }
}

/// The first line of `path`, without its `\n` or `\r\n`.
fn read_password_file(path: &Path) -> Result<Passphrase, PassphraseError> {
    let text =
        Zeroizing::new(
            std::fs::read(path).map_err(|source| PassphraseError::FileUnreadable {
                path: path.to_owned(),
                source,
            })?,
        );
    let line = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let origin = format!("the password file {}", path.display());
    let line = std::str::from_utf8(line).map_err(|_| PassphraseError::NotUtf8(origin.clone()))?;
    Passphrase::new(line.to_owned(), &origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn no_prompt(_: &str) -> std::io::Result<String> {
        panic!("must not prompt")
    }

    fn source(file: Option<PathBuf>) -> PassphraseSource {
        PassphraseSource::repository(file)
    }

    #[test]
    fn env_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let p = source(Some(file))
            .resolve_with(
                Some("from-env".into()),
                true,
                Purpose::Create,
                "x",
                no_prompt,
            )
            .unwrap();
        assert_eq!(p.as_bytes(), b"from-env");
    }

    #[test]
    fn empty_env_is_refused() {
        let err = source(None)
            .resolve_with(Some("".into()), true, Purpose::Open, "x", no_prompt)
            .unwrap_err();
        assert!(matches!(err, PassphraseError::Empty(_)));
        assert!(err.to_string().contains(PASSWORD_ENV));
    }

    #[test]
    fn file_gives_its_first_line_without_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        for (content, expect) in [
            ("pass word\n", "pass word"),
            ("pass word\r\nsecond line\n", "pass word"),
            ("no newline", "no newline"),
            ("  spaces kept  \n", "  spaces kept  "),
        ] {
            std::fs::write(&file, content).unwrap();
            let p = source(Some(file.clone()))
                .resolve_with(None, false, Purpose::Open, "x", no_prompt)
                .unwrap();
            assert_eq!(p.as_bytes(), expect.as_bytes(), "{content:?}");
        }
        for empty in ["", "\n", "\r\nsecond"] {
            std::fs::write(&file, empty).unwrap();
            let err = source(Some(file.clone()))
                .resolve_with(None, false, Purpose::Open, "x", no_prompt)
                .unwrap_err();
            assert!(matches!(err, PassphraseError::Empty(_)), "{empty:?}");
        }
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let err = source(Some("/nonexistent/datamesh-pw".into()))
            .resolve_with(None, true, Purpose::Open, "x", no_prompt)
            .unwrap_err();
        assert!(matches!(err, PassphraseError::FileUnreadable { .. }));
        assert!(err.to_string().contains("/nonexistent/datamesh-pw"));
        assert!(err.to_string().contains("--password-file"));
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn nothing_available_without_a_terminal() {
        let err = source(None)
            .resolve_with(None, false, Purpose::Open, "x", no_prompt)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no passphrase: set DATAMESH_PASSWORD, pass --password-file, or run in a terminal"
        );
    }

    #[test]
    fn prompt_asks_once_to_open_and_twice_to_create() {
        let asked = RefCell::new(Vec::new());
        let answer = |p: &str| {
            asked.borrow_mut().push(p.to_owned());
            Ok("hunter2".to_owned())
        };
        let p = source(None)
            .resolve_with(None, true, Purpose::Open, "keystore k", answer)
            .unwrap();
        assert_eq!(p.as_bytes(), b"hunter2");
        assert_eq!(asked.borrow().len(), 1);
        assert!(asked.borrow()[0].contains("keystore k"));
        asked.borrow_mut().clear();
        source(None)
            .resolve_with(None, true, Purpose::Create, "k", answer)
            .unwrap();
        assert_eq!(asked.borrow().len(), 2);
    }

    #[test]
    fn prompt_refuses_mismatch_and_empty() {
        let mut answers = vec!["two".to_owned(), "one".to_owned()];
        let err = source(None)
            .resolve_with(None, true, Purpose::Create, "k", |_| {
                Ok(answers.pop().unwrap())
            })
            .unwrap_err();
        assert!(matches!(err, PassphraseError::Mismatch));
        let err = source(None)
            .resolve_with(None, true, Purpose::Open, "k", |_| Ok(String::new()))
            .unwrap_err();
        assert!(matches!(err, PassphraseError::Empty(_)));
    }

    #[test]
    fn debug_is_redacted() {
        let p = Passphrase::new("correct horse".into(), "test").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
