//! Tests of the keystore format and operations (a child module of `keystore`).

use std::os::unix::fs::PermissionsExt;

use proptest::prelude::*;

use super::*;

const LOW: KdfParams = KdfParams::MINIMUM;

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned(), "test").unwrap()
}

fn secrets(keys: &Keys) -> Vec<u8> {
    keys.encode_secrets().to_vec()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A fresh repository directory with a keystore under "pw".
fn repo() -> (tempfile::TempDir, PathBuf, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEYSTORE_FILE);
    let keys = create(&path, &pass("pw"), LOW).unwrap();
    (dir, path, keys)
}

fn kind(r: Result<Keys, KeystoreError>) -> ErrorKind {
    r.expect_err("must not open").kind()
}

#[test]
fn create_then_open_gives_the_same_keys() {
    let (_dir, path, keys) = repo();
    let back = open(&path, &pass("pw")).unwrap();
    assert_eq!(secrets(&keys), secrets(&back));
    assert_eq!(mode(&path), 0o600);
    let info = inspect(&path).unwrap();
    assert_eq!(info.params, LOW);
    assert_eq!(info.fingerprint, keys.fingerprint());
}

#[test]
fn the_file_contains_no_secret_in_clear() {
    let (_dir, path, keys) = repo();
    let file = std::fs::read(&path).unwrap();
    let s = secrets(&keys);
    for secret in [&s[1..33], &s[33..65], &s[65..97]] {
        assert!(!file.windows(32).any(|w| w == secret));
    }
    assert_eq!(file.len(), HEADER_LEN + s.len() + TAG_LEN);
}

#[test]
fn create_refuses_to_overwrite() {
    let (_dir, path, _) = repo();
    let before = std::fs::read(&path).unwrap();
    let err = create(&path, &pass("other"), LOW).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn wrong_passphrase_is_its_own_error() {
    let (_dir, path, _) = repo();
    let err = open(&path, &pass("pW")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongPassphrase);
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("wrong passphrase for {}", path.display())));
    assert!(msg.contains("DATAMESH_PASSWORD / --password-file"));
}

#[test]
fn missing_keystore_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEYSTORE_FILE);
    let err = open(&path, &pass("pw")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("datamesh key import"));
    assert_eq!(inspect(&path).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn every_truncation_and_any_extension_is_damage() {
    let (_dir, path, _) = repo();
    let file = std::fs::read(&path).unwrap();
    for cut in 0..file.len() {
        std::fs::write(&path, &file[..cut]).unwrap();
        let err = open(&path, &pass("pw")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {cut}: {err}");
        assert!(err.to_string().contains("is damaged"), "{err}");
        assert!(err.to_string().contains("datamesh key import"), "{err}");
    }
    let mut longer = file.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert_eq!(kind(open(&path, &pass("pw"))), ErrorKind::Corrupt);
}

#[test]
fn garbage_and_huge_files_are_damage() {
    let (_dir, path, _) = repo();
    std::fs::write(&path, b"this is not a keystore, just some text\n").unwrap();
    assert_eq!(kind(open(&path, &pass("pw"))), ErrorKind::Corrupt);
    // A sparse 1 GiB file: refused after reading a bounded prefix.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(1 << 30).unwrap();
    let err = open(&path, &pass("pw")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("too large"));
}

/// Flips the low bit of every byte in turn. Structural header fields must read as
/// damage; everything the AEAD covers must fail the tag; nothing may open.
#[test]
fn a_flipped_bit_anywhere_never_opens() {
    let (_dir, path, _) = repo();
    let file = std::fs::read(&path).unwrap();
    for at in 0..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let k = kind(open(&path, &pass("pw")));
        match at {
            // magic, version, KDF id, body length
            0..=9 | 82..=85 => assert_eq!(k, ErrorKind::Corrupt, "byte {at}"),
            // Argon2 parameters: out of bounds, or in bounds with the wrong key
            10..=21 => assert!(
                matches!(k, ErrorKind::Corrupt | ErrorKind::WrongPassphrase),
                "byte {at}: {k:?}"
            ),
            // salt, nonce, fingerprint, ciphertext, tag: all authenticated
            _ => assert_eq!(k, ErrorKind::WrongPassphrase, "byte {at}"),
        }
    }
}

#[test]
fn newer_format_version_is_unsupported() {
    let (_dir, path, _) = repo();
    let mut file = std::fs::read(&path).unwrap();
    file[8] = FORMAT_VERSION + 1;
    std::fs::write(&path, &file).unwrap();
    let err = open(&path, &pass("pw")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("upgrade datamesh"));
}

#[test]
fn newer_or_malformed_secrets_layout_inside_a_valid_seal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEYSTORE_FILE);
    let keys = Keys::generate();
    let mut newer = keys.encode_secrets();
    newer[0] = 2;
    let file = seal_secrets(newer, keys.fingerprint(), &pass("pw"), LOW).unwrap();
    assert_eq!(
        kind(unseal_keys(&path, &file, &pass("pw"))),
        ErrorKind::Unsupported
    );
    let short = Zeroizing::new(vec![1u8; 10]);
    let file = seal_secrets(short, keys.fingerprint(), &pass("pw"), LOW).unwrap();
    assert_eq!(
        kind(unseal_keys(&path, &file, &pass("pw"))),
        ErrorKind::Corrupt
    );
    // Right secrets, wrong fingerprint in the (authenticated) header.
    let other = Keys::generate().fingerprint();
    let file = seal_secrets(keys.encode_secrets(), other, &pass("pw"), LOW).unwrap();
    assert_eq!(
        kind(unseal_keys(&path, &file, &pass("pw"))),
        ErrorKind::Corrupt
    );
}

/// Writes `file` with the Argon2 parameters replaced.
fn with_params(file: &[u8], m: u32, t: u32, p: u32) -> Vec<u8> {
    let mut out = file.to_vec();
    out[10..14].copy_from_slice(&m.to_le_bytes());
    out[14..18].copy_from_slice(&t.to_le_bytes());
    out[18..22].copy_from_slice(&p.to_le_bytes());
    out
}

#[test]
fn hostile_kdf_parameters_in_a_header_are_refused_before_any_work() {
    let (_dir, path, _) = repo();
    let file = std::fs::read(&path).unwrap();
    let hostile = [
        (u32::MAX, 1, 1),
        (KdfParams::MAX_M_COST_KIB + 1, 1, 1),
        (KdfParams::MIN_M_COST_KIB - 1, 1, 1),
        (8192, 0, 1),
        (8192, KdfParams::MAX_T_COST + 1, 1),
        (8192, u32::MAX, 1),
        (8192, 1, 0),
        (8192, 1, KdfParams::MAX_P_COST + 1),
        (u32::MAX, u32::MAX, u32::MAX),
    ];
    for (m, t, p) in hostile {
        std::fs::write(&path, with_params(&file, m, t, p)).unwrap();
        let started = std::time::Instant::now();
        // Corrupt (not WrongPassphrase) proves the KDF never ran: every Argon2 run on
        // this file ends at the tag check.
        let err = open(&path, &pass("pw")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "({m}, {t}, {p}): {err}");
        assert!(err.to_string().contains("Argon2"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(inspect(&path).unwrap_err().kind(), ErrorKind::Corrupt);
    }
}

#[test]
fn parameter_bounds() {
    assert!(KdfParams::DEFAULT.check().is_ok());
    assert_eq!(
        KdfParams::default(),
        KdfParams {
            m_cost_kib: 65536,
            t_cost: 3,
            p_cost: 1
        }
    );
    assert!(KdfParams::MINIMUM.check().is_ok());
    let top = KdfParams {
        m_cost_kib: KdfParams::MAX_M_COST_KIB,
        t_cost: KdfParams::MAX_T_COST,
        p_cost: KdfParams::MAX_P_COST,
    };
    assert!(top.check().is_ok());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEYSTORE_FILE);
    let weak = KdfParams {
        m_cost_kib: KdfParams::MIN_M_COST_KIB - 1,
        ..LOW
    };
    let err = create(&path, &pass("pw"), weak).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!path.exists());
}

#[test]
fn change_passphrase_keeps_the_keys_and_reseals() {
    let (_dir, path, keys) = repo();
    let before = std::fs::read(&path).unwrap();
    let err = change_passphrase(&path, &pass("nope"), &pass("new"), LOW).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongPassphrase);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let stronger = KdfParams {
        m_cost_kib: 16 * 1024,
        ..LOW
    };
    change_passphrase(&path, &pass("pw"), &pass("new"), stronger).unwrap();
    let after = std::fs::read(&path).unwrap();
    assert_ne!(before[22..38], after[22..38], "fresh salt");
    assert_ne!(before[38..50], after[38..50], "fresh nonce");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(inspect(&path).unwrap().params, stronger);
    assert_eq!(kind(open(&path, &pass("pw"))), ErrorKind::WrongPassphrase);
    assert_eq!(secrets(&open(&path, &pass("new")).unwrap()), secrets(&keys));
}

#[test]
fn export_then_import_into_an_empty_repository() {
    let (dir, path, keys) = repo();
    let backup = dir.path().join("backup.key");
    export(&keys, &backup, &pass("backup-pw"), LOW, false).unwrap();
    assert_eq!(mode(&backup), 0o600);
    assert_eq!(
        secrets(&open(&backup, &pass("backup-pw")).unwrap()),
        secrets(&keys)
    );
    // Same format, but its own salt: the backup is not a copy of the keystore.
    assert_ne!(
        std::fs::read(&backup).unwrap()[22..38],
        std::fs::read(&path).unwrap()[22..38]
    );

    let other = tempfile::tempdir().unwrap();
    let new_path = other.path().join(KEYSTORE_FILE);
    let got = import(
        &backup,
        &pass("backup-pw"),
        &new_path,
        &pass("repo"),
        LOW,
        false,
    )
    .unwrap();
    assert_eq!(secrets(&got), secrets(&keys));
    assert_eq!(
        secrets(&open(&new_path, &pass("repo")).unwrap()),
        secrets(&keys)
    );
    assert_eq!(mode(&new_path), 0o600);
}

#[test]
fn export_refuses_to_overwrite_unless_asked() {
    let (dir, _path, keys) = repo();
    let backup = dir.path().join("backup.key");
    std::fs::write(&backup, b"precious").unwrap();
    let err = export(&keys, &backup, &pass("b"), LOW, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&backup).unwrap(), b"precious");
    export(&keys, &backup, &pass("b"), LOW, true).unwrap();
    assert_eq!(secrets(&open(&backup, &pass("b")).unwrap()), secrets(&keys));
}

#[test]
fn import_replaces_a_keystore_with_the_same_keys() {
    let (dir, path, keys) = repo();
    let backup = dir.path().join("backup.key");
    export(&keys, &backup, &pass("b"), LOW, false).unwrap();
    // Same keys under another passphrase: import re-seals under the new one.
    import(&backup, &pass("b"), &path, &pass("fresh"), LOW, false).unwrap();
    assert_eq!(
        secrets(&open(&path, &pass("fresh")).unwrap()),
        secrets(&keys)
    );

    // A damaged body with an intact header: restored without --force.
    let mut file = std::fs::read(&path).unwrap();
    let last = file.len() - 1;
    file[last] ^= 0xff;
    std::fs::write(&path, &file).unwrap();
    import(&backup, &pass("b"), &path, &pass("pw"), LOW, false).unwrap();
    assert_eq!(secrets(&open(&path, &pass("pw")).unwrap()), secrets(&keys));
}

#[test]
fn import_refuses_different_keys_unless_forced() {
    let (dir, path, keys) = repo();
    let stranger = Keys::generate();
    let backup = dir.path().join("stranger.key");
    export(&stranger, &backup, &pass("b"), LOW, false).unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = import(&backup, &pass("b"), &path, &pass("pw"), LOW, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(matches!(err, KeystoreError::DifferentKeys { .. }));
    assert!(err.to_string().contains(&keys.fingerprint().to_string()));
    assert!(
        err.to_string()
            .contains(&stranger.fingerprint().to_string())
    );
    assert!(err.to_string().contains("--force"));
    assert_eq!(std::fs::read(&path).unwrap(), before);

    import(&backup, &pass("b"), &path, &pass("pw"), LOW, true).unwrap();
    assert_eq!(
        secrets(&open(&path, &pass("pw")).unwrap()),
        secrets(&stranger)
    );
}

#[test]
fn import_over_an_unidentifiable_keystore_needs_force() {
    let (dir, path, keys) = repo();
    let backup = dir.path().join("backup.key");
    export(&keys, &backup, &pass("b"), LOW, false).unwrap();
    std::fs::write(&path, b"DMESH").unwrap();
    let err = import(&backup, &pass("b"), &path, &pass("pw"), LOW, false).unwrap_err();
    assert!(
        matches!(err, KeystoreError::UnknownExisting { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"DMESH");
    import(&backup, &pass("b"), &path, &pass("pw"), LOW, true).unwrap();
    assert_eq!(secrets(&open(&path, &pass("pw")).unwrap()), secrets(&keys));
}

#[test]
fn import_with_the_wrong_backup_passphrase_names_the_backup() {
    let (dir, path, keys) = repo();
    let backup = dir.path().join("backup.key");
    export(&keys, &backup, &pass("b"), LOW, false).unwrap();
    let err = import(&backup, &pass("x"), &path, &pass("pw"), LOW, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongPassphrase);
    assert!(err.to_string().contains(&backup.display().to_string()));
}

#[test]
fn no_temporary_files_are_left_behind() {
    let (dir, path, keys) = repo();
    change_passphrase(&path, &pass("pw"), &pass("pw2"), LOW).unwrap();
    let _ = create(&path, &pass("x"), LOW);
    export(&keys, &dir.path().join("b"), &pass("b"), LOW, false).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn any_passphrase_round_trips_and_no_other_opens(
        pw in "\\PC{1,40}",
        other in "\\PC{1,40}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYSTORE_FILE);
        let keys = create(&path, &pass(&pw), LOW).unwrap();
        prop_assert_eq!(secrets(&open(&path, &pass(&pw)).unwrap()), secrets(&keys));
        if other != pw {
            prop_assert_eq!(kind(open(&path, &pass(&other))), ErrorKind::WrongPassphrase);
        }
    }

    #[test]
    fn a_random_bit_flip_never_opens(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let keys = Keys::generate();
        let file = seal_keys(&keys, &pass("pw"), LOW).unwrap();
        let mut bad = file.clone();
        let at = at.index(bad.len());
        bad[at] ^= 1 << bit;
        let path = Path::new("keystore");
        // Flips in the memory cost may ask for up to 4 GiB legitimately; skip running
        // those (the bounds are tested above) to keep the test fast.
        let m = u32::from_le_bytes(bad[10..14].try_into().unwrap());
        prop_assume!(m <= 64 * 1024 || !(10..14).contains(&at));
        prop_assert!(unseal_keys(path, &bad, &pass("pw")).is_err());
    }
}
