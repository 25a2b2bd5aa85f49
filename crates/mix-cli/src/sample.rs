//! The bundled sample dataset wherever the binary runs: the repository's data/sample/images when it
//! is there, else the copy compiled into the binary, written once into the cache.

use std::path::{Path, PathBuf};

use crate::Result;

mod files {
    include!(concat!(env!("OUT_DIR"), "/sample_files.rs"));
}

/// The sample's files compiled into this binary: name and bytes.
pub fn embedded() -> &'static [(&'static str, &'static [u8])] {
    files::FILES
}

/// data/sample/images of the repository this crate was built from, when it is still there.
fn repository_folder() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/images");
    let complete = embedded().iter().all(|(name, _)| dir.join(name).is_file());
    complete.then(|| std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// The sample's image folder: the repository's when it is there (a clone), else
/// `<cache_dir>/sample/images`, written from the embedded copy the first time (an installed binary
/// run anywhere). A file that is missing or of the wrong size is written again.
pub fn folder(cache_dir: &Path) -> Result<PathBuf> {
    if let Some(dir) = repository_folder() {
        return Ok(dir);
    }
    unpack(cache_dir)
}

/// Writes the embedded sample into `<cache_dir>/sample/images` (files already there with the right
/// size are kept) and returns that folder.
pub fn unpack(cache_dir: &Path) -> Result<PathBuf> {
    let dir = cache_dir.join("sample").join("images");
    std::fs::create_dir_all(&dir).map_err(|source| mix_io::Error {
        action: "create the folder",
        path: dir.clone(),
        source,
    })?;
    for (name, bytes) in embedded() {
        let path = dir.join(name);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !same {
            mix_io::write_atomic(&path, bytes)?;
        }
    }
    Ok(dir)
}
