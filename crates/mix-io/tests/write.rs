//! write_atomic's promises: whole files, no leftovers, old file kept on failure, ordinary permissions.

#[test]
fn writes_and_replaces_whole_files_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.json");
    mix_io::write_atomic(&path, b"first").unwrap();
    mix_io::write_atomic(&path, b"second, longer").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only the file itself is left: {names:?}");
}

#[test]
fn a_failing_writer_keeps_the_old_file_and_removes_the_temporary_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    mix_io::write_atomic(&path, b"old").unwrap();
    let err = mix_io::write_atomic_with(&path, |w| {
        w.write_all(b"half")?;
        Err(std::io::Error::other("encoder failed"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
    assert!(err.to_string().contains("curves.png"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_missing_folder_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-folder").join("x.csv");
    let err = mix_io::write_atomic(&path, b"x").unwrap_err();
    assert!(err.to_string().contains("x.csv"), "{err}");
    assert!(!path.exists());
}

#[cfg(unix)]
#[test]
fn new_files_get_ordinary_permissions_not_owner_only_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    mix_io::write_atomic(&path, b"epoch\n").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    // 0666 less the umask: whatever the umask, others' read bit follows the group's and is not
    // cleared the way a temporary file's 0600 would clear it (umask 077 is the only exception).
    let umask_077 = mode == 0o600;
    assert!(mode & 0o044 != 0 || umask_077, "mode {mode:o}");
    assert_eq!(mode & 0o111, 0, "never executable: {mode:o}");
}

#[test]
fn concurrent_writers_never_leave_a_mixed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    std::thread::scope(|s| {
        for b in 0..4u8 {
            let path = &path;
            s.spawn(move || {
                for _ in 0..20 {
                    mix_io::write_atomic(path, &vec![b; 64 * 1024]).unwrap();
                }
            });
        }
    });
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 64 * 1024);
    assert!(bytes.iter().all(|&x| x == bytes[0]));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
