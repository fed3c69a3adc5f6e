//! Turning command-line names into catalog paths and nodes.
//!
//! A name is a `/`-separated mesh path as raw bytes (`docs/report.pdf`; a leading `/` is
//! allowed). Where a command takes `<name|key>`, the key form `#N` names a file by the
//! inode number that `info` and `list --long` show; a node literally named `#N` wins.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::catalog::{Attr, Catalog, Ino};
use crate::error::{Error, ErrorKind, Result};

/// The bytes of a command-line name.
pub fn name_bytes(name: &OsStr) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// Splits a path into its parent directory's path and its last name.
pub fn split_last(path: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let trimmed: &[u8] = {
        let mut p = path;
        while let [rest @ .., b'/'] = p {
            p = rest;
        }
        p
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => Ok((trimmed[..i].to_vec(), trimmed[i + 1..].to_vec())),
        None if trimmed.is_empty() => Err(Error::new(
            ErrorKind::InvalidInput,
            "the root directory cannot be the target of this command",
        )),
        None => Ok((Vec::new(), trimmed.to_vec())),
    }
}

/// The node a `<name|key>` argument names.
pub fn resolve_key(c: &Catalog, name: &OsStr) -> Result<Attr> {
    let bytes = name.as_bytes();
    match c.resolve(bytes) {
        Ok(attr) => Ok(attr),
        Err(e) => {
            let err = Error::from(e);
            if err.kind() == ErrorKind::NotFound
                && let Some(n) = bytes
                    .strip_prefix(b"#")
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| d.parse::<u64>().ok())
            {
                return Ok(c.getattr(Ino(n))?);
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(
            split_last(b"a/b/c").unwrap(),
            (b"a/b".to_vec(), b"c".to_vec())
        );
        assert_eq!(split_last(b"c").unwrap(), (Vec::new(), b"c".to_vec()));
        assert_eq!(split_last(b"/a/").unwrap(), (Vec::new(), b"a".to_vec()));
        assert!(split_last(b"/").is_err());
    }
}
