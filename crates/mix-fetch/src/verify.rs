//! Size and checksum checks of an archive on disk.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};

use crate::error::{io_err, Result};
use crate::source::{Checksum, RemoteArchive, FASTAI_PREFIX_BYTES};

/// A failed check: what was checked, expected and found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub what: &'static str,
    pub expected: String,
    pub found: String,
}

/// Checks `path` against the size and checksum in `remote` (each only when known). The size is
/// checked first because it is free, as in fastdownload's `path_stats` comparison.
pub(crate) fn check(path: &Path, remote: &RemoteArchive) -> Result<Option<Mismatch>> {
    let len = path
        .metadata()
        .map_err(io_err("read the size of", path))?
        .len();
    if let Some(size) = remote.size {
        if len != size {
            return Ok(Some(Mismatch {
                what: "size",
                expected: format!("{size} bytes"),
                found: format!("{len} bytes"),
            }));
        }
    }
    let Some(checksum) = &remote.checksum else {
        return Ok(None);
    };
    let limit = match checksum {
        Checksum::Md5Prefix(_) => FASTAI_PREFIX_BYTES,
        Checksum::Md5(_) => u64::MAX,
    };
    let found = md5_hex(path, limit)?;
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

/// Lower-case hex md5 of the first `limit` bytes of `path` (all of it when shorter).
pub(crate) fn md5_hex(path: &Path, limit: u64) -> Result<String> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut reader = file.take(limit);
    let mut hasher = Md5::new();
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
