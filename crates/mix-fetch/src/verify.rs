//! Size and checksum checks of a downloaded file on disk (an archive or a single file).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::error::{io_err, Result};
use crate::source::{Checksum, FASTAI_PREFIX_BYTES};

/// A failed check: what was checked, expected and found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub what: &'static str,
    pub expected: String,
    pub found: String,
}

/// Checks `path` against `size` and `checksum` (each only when known). The size is checked first
/// because it is free, as in fastdownload's `path_stats` comparison.
pub(crate) fn check(
    path: &Path,
    size: Option<u64>,
    checksum: Option<&Checksum>,
) -> Result<Option<Mismatch>> {
    let len = path
        .metadata()
        .map_err(io_err("read the size of", path))?
        .len();
    if let Some(size) = size {
        if len != size {
            return Ok(Some(Mismatch {
                what: "size",
                expected: format!("{size} bytes"),
                found: format!("{len} bytes"),
            }));
        }
    }
    let Some(checksum) = checksum else {
        return Ok(None);
    };
    let found = match checksum {
        Checksum::Md5Prefix(_) => digest_hex::<Md5>(path, FASTAI_PREFIX_BYTES)?,
        Checksum::Md5(_) => digest_hex::<Md5>(path, u64::MAX)?,
        Checksum::Sha256(_) => digest_hex::<Sha256>(path, u64::MAX)?,
    };
    if found.eq_ignore_ascii_case(checksum.hex()) {
        Ok(None)
    } else {
        Ok(Some(Mismatch {
            what: checksum.kind(),
            expected: checksum.hex().to_string(),
            found,
        }))
    }
}

/// Lower-case hex digest of the first `limit` bytes of `path` (all of it when shorter).
/// Lower-case hex SHA-256 of the whole file at `path` (to record which weights a run used).
pub fn sha256_file(path: &Path) -> Result<String> {
    digest_hex::<Sha256>(path, u64::MAX)
}

fn digest_hex<D: Digest>(path: &Path, limit: u64) -> Result<String> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut reader = file.take(limit);
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
