//! The crate's one error type: every failure names the file, pattern or setting it is about.

use std::path::PathBuf;

/// Everything that can go wrong while listing, labelling, decoding or batching images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// A file is not a decodable image (unknown format, truncated, corrupt or too large).
    #[error(
        "cannot decode image {}: {reason}; expected a complete JPEG, PNG, GIF, BMP, TIFF or WebP \
         file; replace or delete the file, or use BadImagePolicy::Skip to leave it out",
        .path.display()
    )]
    Decode {
        /// The file.
        path: PathBuf,
        /// What was found instead of a valid image.
        reason: String,
    },

    /// The label pattern is not a usable regular expression.
    #[error("invalid label pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// The label pattern found nothing in a file name.
    #[error(
        "label pattern `{pattern}` does not match file name `{name}` (of {}); expected a match \
         whose capture group 1 is the label; fix the pattern or remove the file from the list",
        .path.display()
    )]
    NoMatch {
        /// The pattern.
        pattern: String,
        /// The file name it was searched in.
        name: String,
        /// The full path of the file.
        path: PathBuf,
    },

    /// A file name is not valid UTF-8, so it cannot be labelled without merging it with others.
    #[error(
        "file name of {} is not valid UTF-8; expected a UTF-8 name, because labels are text and a \
         lossy conversion would give names that differ only in invalid bytes the same label; \
         rename the file to UTF-8 or leave it out of the list",
        .path.display()
    )]
    NonUtf8Name {
        /// The file.
        path: PathBuf,
    },

    /// A validation item has a label that no training item has, so the vocab lacks it.
    #[error(
        "label {label:?} of {} appears only in the validation set; expected every label in the \
         training set (the vocab is built from training items, like fastai); add more files of \
         that class or change the seed",
        .path.display()
    )]
    UnknownLabel {
        /// The label.
        label: String,
        /// The validation file that carries it.
        path: PathBuf,
    },

    /// A configuration value or argument is out of range.
    #[error("invalid argument: {0}")]
    Config(String),

    /// The resizer refused its input (an internal invariant broke).
    #[error("resize failed: {0}")]
    Resize(String),

    /// Every item of a sharded training loader's part of the epoch is a bad image, so it cannot
    /// fill the fixed number of batches every rank runs.
    #[error(
        "every one of the {items} training items of shard rank {rank} of world {world} is a bad \
         image; expected at least one decodable item to fill the batches every rank must run; \
         replace or delete the files listed by DataLoader::skipped"
    )]
    NoGoodItems {
        /// The shard's rank.
        rank: usize,
        /// The number of ranks.
        world: usize,
        /// Entries in the shard's plan.
        items: usize,
    },

    /// A loader worker thread panicked; the epoch cannot be completed.
    #[error(
        "loader worker thread panicked; expected it to finish the epoch; this is a bug in mix-data"
    )]
    WorkerPanicked,
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
