//! The one error type of mix-fetch, with messages that say what to do next.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while fetching, verifying or extracting a dataset or a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached, or kept failing, after every allowed attempt.
    #[error(
        "could not download {url} after {attempts} attempt(s): {reason}; \
         to work offline put the archive by hand at {archive} (it is checked and extracted from there), \
         or pass --dataset <DIR> to use an already-extracted folder"
    )]
    Unreachable {
        /// The URL that was asked for.
        url: String,
        /// Where the archive would have been saved, and where it can be put by hand.
        archive: PathBuf,
        /// How many requests were made.
        attempts: u32,
        /// The last failure, in words.
        reason: String,
    },

    /// The server answered with a status that retrying will not fix (a 404, a 403).
    #[error(
        "the server answered {status} for {url}, expected 200 or 206: check the url, \
         or put the archive by hand at {archive}, or pass --dataset <DIR> to use an already-extracted folder"
    )]
    HttpStatus {
        /// The URL that was asked for.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Where the archive would have been saved.
        archive: PathBuf,
    },

    /// A single file ([`crate::fetch_file`]) could not be downloaded after every allowed attempt:
    /// the server could not be reached, or kept failing.
    #[error(
        "could not download {url} after {attempts} attempt(s): {reason}; \
         to work offline put the file by hand at {path} ({})",
        hand_placed_check(*.checked)
    )]
    FileUnreachable {
        /// The URL that was asked for.
        url: String,
        /// Where the file would have been saved, and where it can be put by hand.
        path: PathBuf,
        /// How many requests were made.
        attempts: u32,
        /// The last failure, in words.
        reason: String,
        /// Whether a file put there by hand is checked against a known SHA-256.
        checked: bool,
    },

    /// The server answered a single-file request with a status that retrying will not fix (a 404,
    /// a 403).
    #[error(
        "the server answered {status} for {url}, expected 200 or 206: check the url, \
         or put the file by hand at {path}"
    )]
    FileHttpStatus {
        /// The URL that was asked for.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Where the file would have been saved, and where it can be put by hand.
        path: PathBuf,
    },

    /// A SHA-256 given for a file is not 64 hexadecimal characters.
    #[error(
        "{value:?} is not a sha-256 digest ({reason}): expected 64 hexadecimal characters, \
         as printed by sha256sum"
    )]
    BadChecksum {
        /// The digest as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A downloaded (or hand-placed) archive or file does not have the expected size or checksum.
    #[error(
        "{path} has the wrong {what}: expected {expected}, found {found}; \
         the file was removed, run again to fetch it anew (if this repeats, the file at {url} changed)"
    )]
    Mismatch {
        /// The file that was checked (already removed).
        path: PathBuf,
        /// The URL the file came from.
        url: String,
        /// `"size"` or the checksum kind.
        what: &'static str,
        /// The expected value.
        expected: String,
        /// The value found.
        found: String,
    },

    /// An archive entry would land outside the destination, or is of a kind we refuse.
    #[error("refusing entry {entry:?} of {archive}: {reason}; nothing was extracted")]
    UnsafeEntry {
        /// The archive being extracted.
        archive: PathBuf,
        /// The entry's name as stored in the archive, cut to 80 characters when longer.
        entry: String,
        /// Why it was refused.
        reason: String,
    },

    /// The archive could not be read as gzip-compressed tar (truncated, bit-flipped, not an
    /// archive).
    #[error("{path} is not a readable .tgz archive: {reason}")]
    Corrupt {
        /// The archive.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },

    /// The URL cannot be used: not http(s), no file name, or (for [`crate::untar_data`]) not a
    /// `.tgz`/`.tar.gz` archive.
    #[error("cannot fetch {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The destination of [`crate::extract_tgz`] already exists.
    #[error(
        "{0} already exists, expected a path that does not exist yet: remove it or choose another"
    )]
    DestinationExists(PathBuf),

    /// An archive would unpack past [`crate::ExtractLimits`]: too many bytes, too many bytes per
    /// compressed byte (a decompression bomb), or too many entries.
    #[error(
        "refusing to extract {archive}: {reason}; nothing was extracted; if the archive is \
         genuine, raise the limit in FetchConfig::extract"
    )]
    TooLarge {
        /// The archive.
        archive: PathBuf,
        /// Which limit it passed.
        reason: String,
    },

    /// The disk would run out of space while extracting an archive.
    #[error(
        "not enough free space to extract {archive} into {dir}: entry {entry:?} needs {} free \
         ({} kept in reserve) and only {} is free, after {} already extracted; nothing was \
         extracted; free at least {} or set MIX_DATA_HOME to a folder on a larger disk",
        bytes(*.needed), bytes(crate::FREE_SPACE_RESERVE), bytes(*.available), bytes(*.written),
        bytes(.needed.saturating_sub(*.available))
    )]
    NoSpace {
        /// The archive.
        archive: PathBuf,
        /// The folder being extracted into.
        dir: PathBuf,
        /// The entry that did not fit, cut to 80 characters.
        entry: String,
        /// The free space the entry needs, reserve included, in bytes.
        needed: u64,
        /// The free space found, in bytes.
        available: u64,
        /// Bytes of the archive already extracted.
        written: u64,
    },

    /// Writing one entry of an archive failed (a name the file system refuses, a full disk).
    #[error("could not extract entry {entry:?} of {archive}: could not {action}: {source}")]
    EntryIo {
        /// The archive.
        archive: PathBuf,
        /// The entry, cut to 80 characters.
        entry: String,
        /// What was being done, with the path below the extraction folder.
        action: String,
        /// The underlying error.
        source: io::Error,
    },

    /// An extracted dataset in the cache is not known to come from the source asked for.
    #[error(
        "cannot use {data} for {url}: {reason}; remove {data} to fetch {url} again, or pass \
         --dataset {data} to use the folder as it is"
    )]
    CacheConflict {
        /// The extracted folder.
        data: PathBuf,
        /// The URL asked for.
        url: String,
        /// Why the folder is not used.
        reason: String,
    },

    /// No cache directory could be found for this user.
    #[error("found no user cache directory: set MIX_DATA_HOME to the folder that should hold archive/, data/ and models/")]
    NoCacheDir,

    /// A file-system operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done, as a verb phrase ("create", "rename to ... ").
        action: String,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Result with mix-fetch's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The end of [`Error::FileUnreachable`]'s message: what happens to a file put there by hand.
fn hand_placed_check(checked: bool) -> &'static str {
    if checked {
        "its SHA-256 is checked there"
    } else {
        "it is used from there unchecked, as no SHA-256 was given"
    }
}

/// A byte count for messages: `1.50 GiB (1610612736 bytes)`, or `512 bytes`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{value:.2} {u} ({n} bytes)"),
        None => format!("{n} bytes"),
    }
}

/// Builds an [`Error::Io`]; used as `.map_err(io_err("create", &path))`.
pub(crate) fn io_err(
    action: impl Into<String>,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let (action, path) = (action.into(), path.into());
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
