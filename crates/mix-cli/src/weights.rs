//! `--pretrained imagenet|none|PATH|URL` turned into a verified `.safetensors` file on disk, with one
//! clear error for each way that can fail and never a silent fallback to random weights.
//!
//! xtask resolves (and downloads) the weights here before building anything that links libtorch,
//! and the mix-train binary resolves them here again and finds them cached.

use std::path::{Path, PathBuf};

use mix_fetch::{KnownFile, RemoteFile};
use serde::{Deserialize, Serialize};

use crate::dataset::fetch_config;
use crate::error::usage;
use crate::{Error, Result};

/// Where the starting weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PretrainedArg {
    /// torchvision's ImageNet ResNet18 (`IMAGENET1K_V1`, fastai's default), downloaded once and
    /// checked against its pinned SHA-256.
    ImageNet,
    /// Train from scratch.
    None,
    /// torchvision-format ResNet18 weights in a local `.safetensors` file.
    Path(PathBuf),
    /// The same at an http(s) URL, downloaded once into the cache.
    Url(String),
}

impl PretrainedArg {
    /// Reads a `--pretrained` value: `imagenet`, `none`, a URL, else a file that must exist.
    pub fn parse(value: &str) -> Result<PretrainedArg> {
        Ok(match value {
            "imagenet" => PretrainedArg::ImageNet,
            "none" => PretrainedArg::None,
            v if v.starts_with("http://") || v.starts_with("https://") => {
                PretrainedArg::Url(v.to_string())
            }
            v => {
                let path = PathBuf::from(v);
                if !path.is_file() {
                    usage!(
                        "--pretrained {v}: no such file; expected imagenet, none, a URL, or \
                         torchvision ResNet18 weights as a .safetensors file"
                    );
                }
                PretrainedArg::Path(path)
            }
        })
    }
}

/// The weights a run started from, as config.json records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// What `--pretrained` named: `imagenet`, the URL, or the file given.
    pub source: String,
    /// The file that was loaded.
    pub file: PathBuf,
    /// Its SHA-256 (lower-case hex).
    pub sha256: String,
}

impl Weights {
    /// The console's words for them: `ImageNet`, or the file's name.
    pub fn describe(&self) -> String {
        if self.source == "imagenet" {
            "ImageNet".to_string()
        } else {
            self.file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.source.clone())
        }
    }
}

/// Checks a `--pretrained-sha256` value: 64 hexadecimal digits.
pub fn check_sha256(hex: &str) -> Result<()> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        usage!(
            "--pretrained-sha256 {hex}: expected 64 hexadecimal digits (a SHA-256), found {} characters",
            hex.len()
        );
    }
    Ok(())
}

/// The file for `arg`: downloaded (once, then cached) and verified for `imagenet` and URLs, checked
/// to exist and hashed for a path, `None` for `none`. Fails, saying what to do, when the weights
/// cannot be had.
pub fn resolve(arg: &PretrainedArg, sha256: Option<&str>) -> Result<Option<Weights>> {
    let fetch = |remote: RemoteFile, source: String| -> Result<Weights> {
        let cfg = fetch_config()?;
        // mix-fetch's message names the URL and the path to put the file at by hand.
        let file = mix_fetch::fetch_file(&remote, &cfg).map_err(|source| Error::Fetch {
            context: "cannot get the pretrained weights (or pass --pretrained none to train from \
                      scratch)"
                .into(),
            source: Box::new(source),
        })?;
        let sha256 = match &remote.sha256 {
            Some(h) => h.clone(),
            None => mix_fetch::sha256_file(&file)?,
        };
        Ok(Weights {
            source,
            file,
            sha256,
        })
    };
    match arg {
        PretrainedArg::None => Ok(None),
        PretrainedArg::ImageNet => Ok(Some(fetch(
            KnownFile::Resnet18TvIn1k.remote(),
            "imagenet".to_string(),
        )?)),
        PretrainedArg::Url(url) => {
            let remote = RemoteFile::from_url(url, sha256).map_err(|source| Error::Fetch {
                context: format!("--pretrained {url}"),
                source: Box::new(source),
            })?;
            Ok(Some(fetch(remote, url.clone())?))
        }
        PretrainedArg::Path(path) => Ok(Some(Weights {
            source: path.display().to_string(),
            file: absolute(path),
            sha256: mix_fetch::sha256_file(path).map_err(|source| Error::Fetch {
                context: format!("--pretrained {}", path.display()),
                source: Box::new(source),
            })?,
        })),
    }
}

/// `path` made absolute when it exists (as given otherwise), for records that outlive the folder.
pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
