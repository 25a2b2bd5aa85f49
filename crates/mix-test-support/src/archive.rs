//! Archive makers: tar and gzip streams whose entries are written byte for byte, unsafe names included.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

/// One entry of a test archive. Names and link targets are written into the header byte for byte,
/// so unsafe names (`../x`, `/x`) reach the extractor unchanged.
#[derive(Clone, Debug)]
pub enum Item {
    /// A regular file.
    File(String, Vec<u8>),
    /// A directory.
    Dir(String),
    /// A symlink and its target.
    Symlink(String, String),
    /// A hard link and the earlier entry it links to.
    HardLink(String, String),
    /// Any other entry type, with no data.
    Other(String, EntryType),
}

impl Item {
    /// The entry's name as written in its header.
    pub fn name(&self) -> &str {
        match self {
            Item::File(n, _)
            | Item::Dir(n)
            | Item::Symlink(n, _)
            | Item::HardLink(n, _)
            | Item::Other(n, _) => n,
        }
    }
}

/// A regular file `name` holding `data`.
pub fn file(name: &str, data: &[u8]) -> Item {
    Item::File(name.into(), data.to_vec())
}

/// A directory `name`.
pub fn dir(name: &str) -> Item {
    Item::Dir(name.into())
}

/// A symlink `name` to `target`.
pub fn symlink(name: &str, target: &str) -> Item {
    Item::Symlink(name.into(), target.into())
}

/// A hard link `name` to the earlier entry `target`.
pub fn hardlink(name: &str, target: &str) -> Item {
    Item::HardLink(name.into(), target.into())
}

/// A raw GNU header with `name` copied verbatim (at most 100 bytes).
fn raw_header(name: &str, kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    let bytes = name.as_bytes();
    assert!(bytes.len() <= 100, "test names must fit the header: {name}");
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    h
}

/// A tar stream of `items` (uncompressed).
pub fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        match item {
            Item::File(name, data) => {
                let mut h = raw_header(name, EntryType::Regular, data.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, data.as_slice()).unwrap();
            }
            Item::Dir(name) => {
                let mut h = raw_header(name, EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Item::Symlink(name, target) | Item::HardLink(name, target) => {
                let kind = if matches!(item, Item::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                let mut h = raw_header(name, kind, 0, 0o777);
                h.set_link_name_literal(target.as_bytes()).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Item::Other(name, kind) => {
                let mut h = raw_header(name, *kind, 0, 0o644);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A gzip-compressed tar of `items`.
pub fn tgz(items: &[Item]) -> Vec<u8> {
    gzip(&tar_bytes(items))
}
