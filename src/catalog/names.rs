//! Validation of names, paths, symlink targets, tags and extended attributes.
//!
//! The namespace follows POSIX file-system rules so that the FUSE mount maps onto it
//! without translation:
//!
//! * A name is 1 to [`NAME_MAX`] arbitrary bytes except `/` and NUL, and is neither `.`
//!   nor `..` (those are the mount's business, never stored). Names need not be UTF-8;
//!   they are shown lossily in messages and listings.
//! * A path (what the CLI's `--name docs/report.pdf` names) is `/`-separated names
//!   relative to the root, at most [`PATH_MAX`] bytes. A leading `/`, repeated `/` and `.`
//!   components are accepted and ignored; `..` is refused (a mesh path names one place,
//!   never relative to a current directory).
//! * Tags are short words for filtering listings: 1 to [`TAG_MAX`] bytes of UTF-8 without
//!   whitespace, control characters or commas (the CLI separates tags with commas).
//! * Extended attribute names are 1 to [`XATTR_NAME_MAX`] bytes without NUL; values are at
//!   most [`XATTR_VALUE_MAX`] bytes (Linux's limits).

use super::CatalogError;

/// Longest name, in bytes (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest path, in bytes (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest symbolic link target, in bytes.
pub const SYMLINK_MAX: usize = 4096;
/// Longest tag, in bytes.
pub const TAG_MAX: usize = 128;
/// Longest extended attribute name, in bytes (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest extended attribute value, in bytes (Linux `XATTR_SIZE_MAX`).
pub const XATTR_VALUE_MAX: usize = 65536;

/// How much of an over-long path error messages show.
const SHOWN_PREFIX: usize = 80;

/// A name or path as text for messages and listings (invalid UTF-8 replaced).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks that `name` may be stored as a directory entry.
pub fn check_name(name: &[u8]) -> Result<(), CatalogError> {
    let invalid = |reason| CatalogError::InvalidName {
        name: lossy(name),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("a name cannot be empty"));
    }
    if name == b"." || name == b".." {
        return Err(invalid("`.` and `..` are reserved"));
    }
    if name.contains(&b'/') {
        return Err(invalid("a name cannot contain `/`"));
    }
    if name.contains(&0) {
        return Err(invalid("a name cannot contain a NUL byte"));
    }
    if name.len() > NAME_MAX {
        return Err(CatalogError::NameTooLong {
            name: lossy(name),
            len: name.len(),
        });
    }
    Ok(())
}

/// The error for a path of `len` bytes that is over [`PATH_MAX`].
pub(crate) fn path_too_long(path: &[u8], len: usize) -> CatalogError {
    let shown = &path[..path.len().min(SHOWN_PREFIX)];
    CatalogError::PathTooLong {
        path: format!("{}…", lossy(shown)),
        len,
    }
}

/// Splits a mesh path into its names (see the module docs); the root is no names.
pub fn split_path(path: &[u8]) -> Result<Vec<&[u8]>, CatalogError> {
    if path.len() > PATH_MAX {
        return Err(path_too_long(path, path.len()));
    }
    let mut names = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => {
                return Err(CatalogError::InvalidName {
                    name: lossy(path),
                    reason: "`..` is not allowed in mesh paths; name the place from the root",
                });
            }
            name => {
                check_name(name)?;
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// Checks a symbolic link target: 1 to [`SYMLINK_MAX`] bytes without NUL.
pub fn check_symlink_target(target: &[u8]) -> Result<(), CatalogError> {
    if target.is_empty() || target.contains(&0) {
        return Err(CatalogError::InvalidName {
            name: lossy(target),
            reason: "a symbolic link target must be non-empty and contain no NUL byte",
        });
    }
    if target.len() > SYMLINK_MAX {
        return Err(path_too_long(target, target.len()));
    }
    Ok(())
}

/// Checks a tag (see the module docs).
pub fn check_tag(tag: &str) -> Result<(), CatalogError> {
    let invalid = |reason| CatalogError::InvalidTag {
        tag: tag.to_owned(),
        reason,
    };
    if tag.is_empty() {
        return Err(invalid("a tag cannot be empty"));
    }
    if tag.len() > TAG_MAX {
        return Err(invalid("a tag is at most 128 bytes"));
    }
    if tag
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(invalid(
            "a tag cannot contain whitespace, control characters or commas",
        ));
    }
    Ok(())
}

/// Checks an extended attribute name and value (see the module docs).
pub fn check_xattr(name: &[u8], value: Option<&[u8]>) -> Result<(), CatalogError> {
    if name.is_empty() || name.contains(&0) {
        return Err(CatalogError::InvalidName {
            name: lossy(name),
            reason: "an extended attribute name must be non-empty and contain no NUL byte",
        });
    }
    if name.len() > XATTR_NAME_MAX {
        return Err(CatalogError::NameTooLong {
            name: lossy(name),
            len: name.len(),
        });
    }
    if let Some(value) = value
        && value.len() > XATTR_VALUE_MAX
    {
        return Err(CatalogError::TooLarge {
            what: "extended attribute value",
            len: value.len(),
            max: XATTR_VALUE_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_posix_rules() {
        assert!(check_name(b"report.pdf").is_ok());
        assert!(check_name(b"\xff\xfe odd bytes \x01").is_ok());
        assert!(check_name(&[b'a'; 255]).is_ok());
        assert!(matches!(
            check_name(&[b'a'; 256]),
            Err(CatalogError::NameTooLong { len: 256, .. })
        ));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(
                matches!(check_name(bad), Err(CatalogError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        // Dots are fine when they are not the whole name.
        assert!(check_name(b"...").is_ok());
        assert!(check_name(b".hidden").is_ok());
    }

    #[test]
    fn invalid_names_are_shown_lossily() {
        let err = check_name(b"\xffa/b").unwrap_err();
        assert!(err.to_string().contains("\u{fffd}a/b"), "{err}");
    }

    #[test]
    fn paths_split_and_normalise() {
        assert_eq!(split_path(b"").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(split_path(b"/").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(
            split_path(b"/docs//./report.pdf").unwrap(),
            vec![&b"docs"[..], b"report.pdf"]
        );
        assert!(matches!(
            split_path(b"docs/../x"),
            Err(CatalogError::InvalidName { .. })
        ));
        let long = vec![b'a'; 4097];
        assert!(matches!(
            split_path(&long),
            Err(CatalogError::PathTooLong { len: 4097, .. })
        ));
        // 4096 bytes made of valid names is accepted.
        let mut ok = Vec::new();
        while ok.len() + 101 <= 4096 {
            ok.extend_from_slice(&[b'x'; 100]);
            ok.push(b'/');
        }
        ok.resize(4096, b'y');
        assert_eq!(ok.len(), 4096);
        assert!(split_path(&ok).is_ok());
    }

    #[test]
    fn tags_and_xattrs() {
        assert!(check_tag("work").is_ok());
        assert!(check_tag("projet:été-2024").is_ok());
        for bad in ["", "a b", "a,b", "tab\t", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_xattr(b"user.mime", Some(b"text/plain")).is_ok());
        assert!(check_xattr(b"", None).is_err());
        assert!(matches!(
            check_xattr(b"user.x", Some(&vec![0; XATTR_VALUE_MAX + 1])),
            Err(CatalogError::TooLarge { .. })
        ));
        assert!(check_symlink_target(b"../a").is_ok());
        assert!(check_symlink_target(b"").is_err());
        assert!(check_symlink_target(b"a\0").is_err());
    }

    proptest! {
        /// Every accepted path round-trips: joining its names and splitting again gives
        /// the same names, and no name is empty, `.`, `..` or contains `/` or NUL.
        #[test]
        fn split_path_yields_valid_names(path in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(names) = split_path(&path) {
                for n in &names {
                    prop_assert!(check_name(n).is_ok());
                }
                let joined = names.join(&b'/');
                prop_assert_eq!(split_path(&joined).unwrap(), names);
            }
        }
    }
}
