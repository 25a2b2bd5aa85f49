//! Download, verify, extract and cache datasets and single files: fastai's `untar_data` in Rust,
//! plus pretrained weights.
//!
//! [`untar_data`] is the entry point for datasets: give it a [`Source`] (a known [`Dataset`] such
//! as Oxford-IIIT Pet, or any `.tgz` URL) and a [`FetchConfig`], get back the folder holding the
//! extracted dataset. [`fetch_file`] is the one for single files such as model weights: give it a
//! [`RemoteFile`] (a known [`KnownFile`], or any URL with its SHA-256), get back the path of the
//! verified file in `<cache>/models/`. Both share one download path: `.part` files, HTTP `Range`
//! resume, retries of transient failures, a stall timeout, a lock per archive or file, and checks
//! against the sizes and checksums we carry before anything is renamed into place. Extraction
//! refuses entries that would land outside the destination, and archives that would expand past
//! [`ExtractLimits`] or the free disk space ([`extract_tgz`]); each extracted dataset carries a
//! record of its source, and a folder from another source is never passed off as this one.
//!
//! mix-fetch knows nothing about images: it moves bytes and folders.

mod config;
mod download;
mod error;
mod extract;
mod file;
mod source;
mod untar;
mod verify;

pub use config::{FetchConfig, Retries, Timeouts, CACHE_ENV, FASTAI_HOME_ENV};
pub use error::{Error, Result};
pub use extract::{extract_tgz, extract_tgz_with, ExtractLimits, FREE_SPACE_RESERVE};
pub use file::{fetch_file, file_path, KnownFile, RemoteFile};
pub use source::{Checksum, Dataset, RemoteArchive, Source, FASTAI_PREFIX_BYTES};
pub use untar::{dataset_paths, untar_data, DatasetPaths};
pub use verify::sha256_file;
