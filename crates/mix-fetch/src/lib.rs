//! Download, verify, extract and cache datasets: fastai's `untar_data` in Rust.
//!
//! [`untar_data`] is the entry point: give it a [`Source`] (a known [`Dataset`] such as Oxford-IIIT
//! Pet, or any `.tgz` URL) and a [`FetchConfig`], get back the folder holding the extracted
//! dataset. Downloads resume with HTTP `Range` requests, retry transient failures, and are checked
//! against fastai's sizes and checksums; extraction refuses entries that would land outside the
//! destination ([`extract_tgz`]).
//!
//! mix-fetch knows nothing about images: it moves bytes and folders.

mod config;
mod download;
mod error;
mod extract;
mod source;
mod untar;
mod verify;

pub use config::{FetchConfig, Retries, Timeouts, CACHE_ENV, FASTAI_HOME_ENV};
pub use error::{Error, Result};
pub use extract::extract_tgz;
pub use source::{Checksum, Dataset, RemoteArchive, Source, FASTAI_PREFIX_BYTES};
pub use untar::{dataset_paths, untar_data, DatasetPaths};
