//! Fuzzes `mix_fetch::extract_tgz`: whatever the bytes, it must not panic, must write nothing
//! outside the destination, must leave nothing behind on error, and every symlink it creates must
//! point inside.
//!
//! The first input byte picks the layer to fuzz: even means the rest is a raw `.tgz` (gzip layer
//! and all), odd means the rest is a tar stream that we gzip first, so the fuzzer can explore tar
//! headers without having to forge gzip CRCs.
#![no_main]

use std::fs;
use std::io::Write;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        gz.finish().unwrap()
    };
    let base = if Path::new("/dev/shm").is_dir() {
        Path::new("/dev/shm")
    } else {
        Path::new("/tmp")
    };
    let tmp = tempfile::tempdir_in(base).unwrap();
    let archive = tmp.path().join("a.tgz");
    fs::write(&archive, &bytes).unwrap();
    let boxed = tmp.path().join("box");
    fs::create_dir(&boxed).unwrap();
    let dest = boxed.join("dest");

    let result = mix_fetch::extract_tgz(&archive, &dest);

    let mut top: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["a.tgz", "box"],
        "something was written next to the destination"
    );
    assert_eq!(
        fs::read(&archive).unwrap(),
        bytes,
        "the archive was modified"
    );
    let inside: Vec<_> = fs::read_dir(&boxed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    match result {
        Ok(()) => {
            assert_eq!(inside, ["dest"]);
            check_links(&dest, &dest, 0);
        }
        Err(_) => assert!(inside.is_empty(), "left behind after an error: {inside:?}"),
    }
});

/// Every symlink below `root` resolves, by names, to a path inside `root`.
fn check_links(root: &Path, dir: &Path, depth: usize) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            let mut level = depth as isize;
            for c in target.components() {
                match c {
                    Component::ParentDir => level -= 1,
                    Component::Normal(_) => level += 1,
                    Component::CurDir => {}
                    Component::RootDir | Component::Prefix(_) => {
                        panic!("absolute link {path:?} -> {target:?}")
                    }
                }
                assert!(
                    level >= 0,
                    "link {path:?} -> {target:?} climbs out of {root:?}"
                );
            }
        } else if meta.is_dir() {
            check_links(root, &path, depth + 1);
        }
    }
}
