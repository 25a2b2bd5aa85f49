//! `--dataset pets|sample|URL|DIR` turned into a folder of labelled image files, with one clear
//! error for each way that can fail; every command (xtask's download, preview and train, the
//! mix-train binary) resolves datasets here, so they all accept exactly the same values.

use std::path::{Path, PathBuf};

use mix_fetch::{Dataset, FetchConfig, Source};

use crate::error::usage;
use crate::{Error, Result};

/// The seed notebook's labelling pattern: the file name up to its last `_<digits>`
/// (`great_pyrenees_173.jpg` -> `great_pyrenees`).
pub const SEED_PATTERN: &str = r"([^/]+)_\d+.*$";

/// How many failed download attempts in a row are accepted before giving up (mix-fetch's default
/// when unset); `1` fails at once when offline.
pub const ATTEMPTS_ENV: &str = "MIX_FETCH_ATTEMPTS";

/// Help text for `--dataset`.
pub const DATASET_HELP: &str = "pets (Oxford-IIIT Pet, downloaded once), sample (the photo set \
    bundled in data/sample, offline), a .tgz URL, or a folder of images named <label>_<n>.jpg";

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetArg {
    /// A dataset of mix-fetch's table (`pets`, `mnist_tiny`, ...), downloaded and cached.
    Known(Dataset),
    /// The small photo set bundled in `data/sample/images`.
    Sample,
    /// A `.tgz` archive at this URL, downloaded and cached.
    Url(String),
    /// A folder on disk (searched recursively).
    Dir(PathBuf),
}

impl DatasetArg {
    /// Reads a `--dataset` value: a known name first, then a URL, else a folder (write `./pets` for
    /// a folder called `pets`).
    pub fn parse(value: &str) -> DatasetArg {
        if value == "sample" {
            DatasetArg::Sample
        } else if let Some(known) = Dataset::from_name(value) {
            DatasetArg::Known(known)
        } else if value.starts_with("http://") || value.starts_with("https://") {
            DatasetArg::Url(value.to_string())
        } else {
            DatasetArg::Dir(PathBuf::from(value))
        }
    }

    /// What mix-fetch downloads for this dataset, if anything.
    pub fn source(&self) -> Option<Source> {
        match self {
            DatasetArg::Known(d) => Some(Source::Known(*d)),
            DatasetArg::Url(url) => Some(Source::Url(url.clone())),
            DatasetArg::Sample | DatasetArg::Dir(_) => None,
        }
    }

    /// Whether this is the bundled sample (which gets smaller default sizes).
    pub fn is_sample(&self) -> bool {
        matches!(self, DatasetArg::Sample)
    }
}

/// mix-fetch's configuration from the environment, with [`ATTEMPTS_ENV`] applied.
pub fn fetch_config() -> Result<FetchConfig> {
    let mut cfg = FetchConfig::from_env()?;
    if let Some(raw) = std::env::var_os(ATTEMPTS_ENV) {
        let raw = raw.to_string_lossy();
        cfg.retries.max_attempts = match raw.trim().parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => usage!("{ATTEMPTS_ENV}={raw}: expected a whole number of attempts, at least 1"),
        };
    }
    Ok(cfg)
}

/// Downloads (once) and extracts `source`, returning the extracted folder.
pub fn fetch(source: &Source) -> Result<PathBuf> {
    let cfg = fetch_config()?;
    Ok(mix_fetch::untar_data(source, &cfg)?)
}

/// The folder of images for `arg`: `images/` of a downloaded archive when it has one (as the seed's
/// `path/'images'`), the archive's root otherwise, the sample's folder ([`crate::sample::folder`]),
/// or the folder given.
pub fn images_folder(arg: &DatasetArg) -> Result<PathBuf> {
    match arg {
        DatasetArg::Sample => crate::sample::folder(&fetch_config()?.cache_dir),
        DatasetArg::Dir(dir) => {
            if !dir.is_dir() {
                usage!(
                    "--dataset {}: no such folder; expected pets, sample, a .tgz URL or a folder of \
                     images",
                    dir.display()
                );
            }
            Ok(dir.clone())
        }
        DatasetArg::Known(_) | DatasetArg::Url(_) => {
            let source = arg.source().expect("known datasets and URLs have a source");
            let data = fetch(&source)?;
            let images = data.join("images");
            Ok(if images.is_dir() { images } else { data })
        }
    }
}

/// The image files under `folder` (recursively, sorted), failing when there are none.
pub fn image_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let files = mix_data::get_image_files(folder).map_err(|source| Error::Data {
        context: format!("cannot list the images in {}", folder.display()),
        source: Box::new(source),
    })?;
    if files.is_empty() {
        usage!(
            "found no images in {}: expected image files (.jpg, .png, ...; subfolders are searched \
             too) named <label>_<n>.jpg",
            folder.display()
        );
    }
    Ok(files)
}

/// Fails with one message when `pattern` labels none of `files` (a wrong folder or a wrong
/// pattern); a pattern that labels some but not all is left to mix-data, whose error names the
/// first file it cannot label.
pub fn check_pattern(files: &[PathBuf], pattern: &str, folder: &Path) -> Result<()> {
    let labeller = mix_data::RegexLabeller::new(pattern).map_err(|source| Error::Data {
        context: format!("--pattern {pattern}"),
        source: Box::new(source),
    })?;
    if files.iter().all(|f| labeller.label(f).is_err()) {
        let first = files
            .first()
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        usage!(
            "the label pattern `{pattern}` labels none of the {} images in {} (the first is \
             `{first}`): expected file names whose capture group 1 is the label, like \
             `beagle_12.jpg` for the default pattern; rename the files or pass --pattern",
            files.len(),
            folder.display()
        );
    }
    Ok(())
}

/// The labelled image files of `arg`: downloaded if needed, listed, and checked against `pattern`.
pub fn labelled_files(arg: &DatasetArg, pattern: &str) -> Result<(PathBuf, Vec<PathBuf>)> {
    let folder = images_folder(arg)?;
    let files = image_files(&folder)?;
    check_pattern(&files, pattern, &folder)?;
    Ok((folder, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_values_are_read_in_order_name_url_folder() {
        assert_eq!(DatasetArg::parse("sample"), DatasetArg::Sample);
        assert_eq!(DatasetArg::parse("pets"), DatasetArg::Known(Dataset::Pets));
        assert_eq!(
            DatasetArg::parse("http://x/y.tgz"),
            DatasetArg::Url("http://x/y.tgz".into())
        );
        assert_eq!(
            DatasetArg::parse("./pets"),
            DatasetArg::Dir(PathBuf::from("./pets"))
        );
    }

    #[test]
    fn a_pattern_that_labels_nothing_is_refused_but_a_partial_one_is_left_to_mix_data() {
        let files = vec![PathBuf::from("a/photo.jpg"), PathBuf::from("a/cat_1.jpg")];
        assert!(check_pattern(&files, SEED_PATTERN, Path::new("a")).is_ok());
        let err = check_pattern(&files[..1], SEED_PATTERN, Path::new("a"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels none of the 1 images"), "{err}");
        assert!(err.contains("photo.jpg"), "{err}");
    }
}
