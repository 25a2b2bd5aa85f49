//! The safe extractor: good archives come out exactly, unsafe entries are refused by name and
//! nothing is written outside the destination.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use mix_fetch::{extract_tgz, Error};
use tar::EntryType;

/// Extracts `items` in a fresh sandbox, expecting a refusal naming `entry`; checks nothing changed
/// outside the destination and the destination does not exist.
fn assert_refused(items: &[Item], entry: &str) {
    let sb = Sandbox::new();
    let archive = sb.write_archive(&tgz(items));
    let before = sb.outside_box();
    let err = extract_tgz(&archive, &sb.dest()).expect_err("the archive should be refused");
    match &err {
        Error::UnsafeEntry { entry: e, .. } => assert_eq!(e, entry, "{err}"),
        other => panic!("expected UnsafeEntry for {entry}, got {other}"),
    }
    assert!(
        err.to_string().contains(entry),
        "the message names the entry: {err}"
    );
    assert_eq!(
        sb.outside_box(),
        before,
        "something changed outside the destination"
    );
    assert!(
        sb.box_names().is_empty(),
        "left behind: {:?}",
        sb.box_names()
    );
}

#[test]
fn extracts_files_dirs_and_inside_links_exactly() {
    let sb = Sandbox::new();
    let items = vec![
        dir("./"),
        dir("./top/"),
        file("./top/a.txt", b"alpha"),
        file("top/sub/b.bin", &noise(5000, 7)),
        symlink("top/sub/up", "../a.txt"),
        symlink("top/here", "."),
        hardlink("top/sub/a-again", "top/a.txt"),
        file("top/a.txt.dup", b"first"),
        file("top/a.txt.dup", b"second wins"),
    ];
    let archive = sb.write_archive(&tgz(&items));
    extract_tgz(&archive, &sb.dest()).unwrap();
    let snap = snapshot(&sb.dest());
    let expect: Vec<(&str, Node)> = vec![
        ("top", Node::Dir),
        ("top/a.txt", Node::File(b"alpha".to_vec())),
        ("top/a.txt.dup", Node::File(b"second wins".to_vec())),
        ("top/here", Node::Symlink(".".into())),
        ("top/sub", Node::Dir),
        ("top/sub/a-again", Node::File(b"alpha".to_vec())),
        ("top/sub/b.bin", Node::File(noise(5000, 7))),
        ("top/sub/up", Node::Symlink("../a.txt".into())),
    ];
    let expect: std::collections::BTreeMap<String, Node> = expect
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(snap, expect);
    assert_eq!(fs::read(sb.dest().join("top/sub/up")).unwrap(), b"alpha");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let a = fs::metadata(sb.dest().join("top/a.txt")).unwrap();
        let b = fs::metadata(sb.dest().join("top/sub/a-again")).unwrap();
        assert_eq!(a.ino(), b.ino(), "a hard link shares the inode");
    }
    assert_eq!(sb.box_names(), ["dest"], "no temporary folder is left");
}

#[test]
fn refuses_parent_dir_entries() {
    assert_refused(
        &[file("ok.txt", b"x"), file("../evil.txt", b"x")],
        "../evil.txt",
    );
    assert_refused(&[file("a/../../evil.txt", b"x")], "a/../../evil.txt");
    assert_refused(&[dir("../outside/newdir/")], "../outside/newdir/");
}

#[test]
fn refuses_absolute_entries() {
    let sb = Sandbox::new();
    // An absolute name pointing right into the sandbox's outside folder.
    let target = sb.root().join("outside/evil.txt");
    let name = target.to_str().unwrap().to_string();
    assert_refused(&[file(&name, b"x")], &name);
    assert!(!target.exists());
    assert_refused(&[file("/etc/evil", b"x")], "/etc/evil");
}

#[test]
fn refuses_escaping_symlinks() {
    assert_refused(&[symlink("link", "../outside")], "link");
    assert_refused(&[symlink("a/link", "../../outside/secret")], "a/link");
    assert_refused(&[symlink("link", "/etc")], "link");
    // `..` after a name cannot be judged without following links: `d/s` points at the root, so
    // `d/s/..` would be the sandbox.
    assert_refused(
        &[dir("d/"), symlink("d/s", ".."), symlink("y", "d/s/..")],
        "y",
    );
}

#[test]
fn refuses_writing_through_symlinks() {
    // The link itself points inside, but nothing is written through a link.
    assert_refused(
        &[dir("sub/"), symlink("s", "sub"), file("s/f.txt", b"x")],
        "s/f.txt",
    );
    assert_refused(&[symlink("here", "."), symlink("here/up", "..")], "here/up");
}

#[test]
fn refuses_escaping_hard_links() {
    assert_refused(&[hardlink("h", "../outside/secret")], "h");
    let sb = Sandbox::new();
    let secret = sb.root().join("outside/secret");
    assert_refused(&[hardlink("h", secret.to_str().unwrap())], "h");
    // A hard link through an inside symlink, or to something not extracted before it.
    assert_refused(
        &[
            dir("sub/"),
            file("sub/f", b"x"),
            symlink("s", "sub"),
            hardlink("h", "s/f"),
        ],
        "h",
    );
    assert_refused(&[hardlink("h", "missing")], "h");
}

#[test]
fn refuses_devices_and_fifos() {
    assert_refused(&[Item::Other("dev".into(), EntryType::Char)], "dev");
    assert_refused(&[Item::Other("fifo".into(), EntryType::Fifo)], "fifo");
}

#[test]
fn refuses_replacing_a_directory() {
    assert_refused(
        &[dir("d/"), file("d/x", b"1"), symlink("d", "elsewhere")],
        "d",
    );
}

#[test]
fn accepts_pax_global_headers_and_long_names() {
    // `git archive` starts with a pax global header; long names use GNU long-name entries.
    let sb = Sandbox::new();
    let long = format!("{}/{}.txt", "d".repeat(80), "n".repeat(90));
    let mut b = tar::Builder::new(Vec::new());
    let mut g = tar::Header::new_ustar();
    let pax = b"52 comment=0123456789012345678901234567890123456789\n";
    g.set_path("pax_global_header").unwrap();
    g.set_entry_type(EntryType::XGlobalHeader);
    g.set_size(pax.len() as u64);
    g.set_cksum();
    b.append(&g, &pax[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o755);
    b.append_data(&mut h, &long, &b"long"[..]).unwrap();
    let archive = sb.write_archive(&gzip(&b.into_inner().unwrap()));
    extract_tgz(&archive, &sb.dest()).unwrap();
    assert_eq!(fs::read(sb.dest().join(&long)).unwrap(), b"long");
    assert!(!sb.dest().join("pax_global_header").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(sb.dest().join(&long))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755, "the executable bit is kept");
    }
}

fn assert_corrupt(bytes: &[u8]) {
    let sb = Sandbox::new();
    let archive = sb.write_archive(bytes);
    match extract_tgz(&archive, &sb.dest()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, archive),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        sb.box_names().is_empty(),
        "left behind: {:?}",
        sb.box_names()
    );
}

#[test]
fn detects_corrupt_archives() {
    let (good, _) = pets_like();
    assert_corrupt(&good[..good.len() / 2]);
    assert_corrupt(&good[..good.len() - 3]);
    assert_corrupt(b"<html>not a tarball</html>");
    // A flipped bit in the CRC-32 of the gzip trailer: only reading to the very end notices.
    let mut crc = good.clone();
    let n = crc.len();
    crc[n - 8] ^= 1;
    assert_corrupt(&crc);
    // A flipped byte in the middle of the compressed data.
    let mut mid = good.clone();
    mid[n / 2] ^= 0xff;
    assert_corrupt(&mid);
}

#[test]
fn refuses_an_existing_destination() {
    let sb = Sandbox::new();
    let archive = sb.write_archive(&tgz(&[file("a", b"1")]));
    fs::create_dir(sb.dest()).unwrap();
    assert!(matches!(
        extract_tgz(&archive, &sb.dest()),
        Err(Error::DestinationExists(_))
    ));
}

#[test]
fn missing_archive_is_an_io_error_naming_it() {
    let sb = Sandbox::new();
    let missing = sb.root().join("nope.tgz");
    let err = extract_tgz(&missing, &sb.dest()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
    assert!(!Path::new(&sb.dest()).exists());
}
