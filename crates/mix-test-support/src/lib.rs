//! What the workspace's tests share: a loopback HTTP server, archive makers, a sandbox to run one of our
//! binaries in, the torch Python, the bundled sample dataset and the libtorch link check.
//!
//! A dev-dependency only (`publish = false`). What one crate's tests alone use stays in that crate's
//! `tests/common`.

pub mod archive;
pub mod http;
mod link;
mod python;
mod sandbox;

use std::path::PathBuf;

pub use link::assert_links_libtorch;
pub use python::{fastai_python, torch_python};
pub use sandbox::{Run, Sandbox};

/// The classes of the bundled sample dataset (`data/sample`), in vocab order.
pub const SAMPLE_CLASSES: [&str; 6] = ["astronaut", "cat", "coffee", "galaxy", "retina", "rocket"];

/// The bundled sample dataset's images (`data/sample/images` in the repository).
pub fn sample_images() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/images")
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
