//! What to fetch: the table of known datasets, arbitrary archive URLs, their expected size and
//! checksum, and the URL rules shared with single files.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How many leading bytes fastai's checksum covers (`fastdownload.core.path_stats` hashes
/// `f.read(2**20)`).
pub const FASTAI_PREFIX_BYTES: u64 = 1 << 20;

/// An expected digest of a downloaded file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// fastai's check: lower-case hex md5 of the first [`FASTAI_PREFIX_BYTES`] bytes of the file
    /// (or of the whole file when it is shorter). This is what `fastai/data/download_checks.py`
    /// stores.
    Md5Prefix(String),
    /// Lower-case hex md5 of the whole file.
    Md5(String),
    /// Lower-case hex SHA-256 of the whole file (what Hugging Face and timm publish for weights).
    Sha256(String),
}

impl Checksum {
    /// The name used in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Checksum::Md5Prefix(_) => "md5 of the first MiB",
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    /// The expected hex digest.
    pub fn hex(&self) -> &str {
        match self {
            Checksum::Md5Prefix(h) | Checksum::Md5(h) | Checksum::Sha256(h) => h,
        }
    }
}

/// A remote `.tgz` archive with what we know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteArchive {
    /// An http:// or https:// URL whose last path segment ends in `.tgz` or `.tar.gz`.
    pub url: String,
    /// The exact size in bytes, when known.
    pub size: Option<u64>,
    /// The expected checksum, when known.
    pub checksum: Option<Checksum>,
}

/// The datasets whose URL, size and checksum we carry (copied from fastai's `URLs` and
/// `fastai/data/download_checks.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// Oxford-IIIT Pet, 37 breeds of cats and dogs (fastai `URLs.PETS`).
    Pets,
    /// A tiny subset of MNIST as PNG files (fastai `URLs.MNIST_TINY`).
    MnistTiny,
    /// 3s and 7s from MNIST as PNG files (fastai `URLs.MNIST_SAMPLE`).
    MnistSample,
    /// Imagenette with the shortest side at 160 pixels (fastai `URLs.IMAGENETTE_160`).
    Imagenette160,
    /// Imagewoof with the shortest side at 160 pixels (fastai `URLs.IMAGEWOOF_160`).
    Imagewoof160,
}

/// One row of the known-datasets table.
struct Known {
    dataset: Dataset,
    name: &'static str,
    url: &'static str,
    size: u64,
    md5_prefix: &'static str,
}

/// The table; a unit test checks that every URL is on fastai's S3 image or sample bucket.
const KNOWN: [Known; 5] = [
    Known {
        dataset: Dataset::Pets,
        name: "pets",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz",
        size: 811_706_944,
        md5_prefix: "e4db5c768afd933bb91f5f594d7417a4",
    },
    Known {
        dataset: Dataset::MnistTiny,
        name: "mnist_tiny",
        url: "https://s3.amazonaws.com/fast-ai-sample/mnist_tiny.tgz",
        size: 342_207,
        md5_prefix: "56143e8f24db90d925d82a5a74141875",
    },
    Known {
        dataset: Dataset::MnistSample,
        name: "mnist_sample",
        url: "https://s3.amazonaws.com/fast-ai-sample/mnist_sample.tgz",
        size: 3_214_948,
        md5_prefix: "2dbc7ec6f9259b583af0072c55816a88",
    },
    Known {
        dataset: Dataset::Imagenette160,
        name: "imagenette2-160",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
        size: 99_003_388,
        md5_prefix: "c475f8f7617a200ba35b9facc48443c3",
    },
    Known {
        dataset: Dataset::Imagewoof160,
        name: "imagewoof2-160",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-160.tgz",
        size: 92_612_825,
        md5_prefix: "3559b194123981a540b87132dbda412f",
    },
];

impl Dataset {
    /// Every known dataset, in table order.
    pub const ALL: [Dataset; 5] = [
        Dataset::Pets,
        Dataset::MnistTiny,
        Dataset::MnistSample,
        Dataset::Imagenette160,
        Dataset::Imagewoof160,
    ];

    fn row(self) -> &'static Known {
        // The table lists every variant once (checked by a unit test), so the search always
        // succeeds; falling back to the first row keeps this function total without a panic.
        KNOWN
            .iter()
            .find(|k| k.dataset == self)
            .unwrap_or(&KNOWN[0])
    }

    /// The short name used on command lines (`pets`, `mnist_tiny`, ...).
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The dataset with this short name.
    pub fn from_name(name: &str) -> Option<Dataset> {
        KNOWN.iter().find(|k| k.name == name).map(|k| k.dataset)
    }

    /// Its URL, size and fastai checksum.
    pub fn remote(self) -> RemoteArchive {
        let row = self.row();
        RemoteArchive {
            url: row.url.to_string(),
            size: Some(row.size),
            checksum: Some(Checksum::Md5Prefix(row.md5_prefix.to_string())),
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`crate::untar_data`] fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A dataset from the known table, with its size and checksum.
    Known(Dataset),
    /// Any URL. When it is the URL of a known dataset, that dataset's size and checksum apply (as
    /// in fastai, whose checks are keyed by URL); otherwise nothing is checked beyond the archive
    /// itself.
    Url(String),
    /// Any URL with the size and checksum you expect.
    Checked(RemoteArchive),
}

impl Source {
    /// The archive to fetch, with the checks that apply.
    pub fn remote(&self) -> RemoteArchive {
        match self {
            Source::Known(d) => d.remote(),
            Source::Url(url) => match KNOWN.iter().find(|k| k.url == url) {
                Some(k) => k.dataset.remote(),
                None => RemoteArchive {
                    url: url.clone(),
                    size: None,
                    checksum: None,
                },
            },
            Source::Checked(remote) => remote.clone(),
        }
    }
}

/// Whether `url` is the URL of a dataset in the known table; those keep fastai's cache layout.
pub(crate) fn is_known_url(url: &str) -> bool {
    KNOWN.iter().any(|k| k.url == url)
}

/// The first 12 hex characters of the SHA-256 of `url`: the prefix that keeps two URLs ending in
/// the same file name apart in the cache (single files, and archives outside the known table).
pub(crate) fn url_key(url: &str) -> String {
    let mut hex = hex::encode(Sha256::digest(url.as_bytes()));
    hex.truncate(12);
    hex
}

/// The last path segment of an http(s) URL (query and fragment cut off); empty when the URL ends
/// in `/` or has no path. Fails with [`Error::BadUrl`] for any other scheme.
pub(crate) fn url_file_name(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| Error::BadUrl {
            url: url.to_string(),
            reason: "expected an http:// or https:// url".to_string(),
        })?;
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    Ok(match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => "",
    })
}

/// Whether `name` can be used as a file name in the cache: one plain, visible path component.
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '%'])
        && !name.chars().any(char::is_control)
}

/// The local names derived from an archive URL, as fastdownload derives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArchiveName {
    /// The last path segment: `oxford-iiit-pet.tgz`.
    pub file: String,
    /// The folder name under `data/`: `oxford-iiit-pet` (fastdownload: `remove_suffix(arch.stem,
    /// '.tar')`).
    pub stem: String,
}

impl ArchiveName {
    pub(crate) fn from_url(url: &str) -> Result<ArchiveName> {
        let bad = |reason: &str| Error::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let file = url_file_name(url)?;
        let stem = file
            .strip_suffix(".tgz")
            .or_else(|| file.strip_suffix(".tar.gz"))
            .ok_or_else(|| {
                bad("expected the url to end in a file name ending in .tgz or .tar.gz")
            })?;
        // The names become file names in our cache: keep them to one plain, visible path component.
        if stem.is_empty() || stem.starts_with('.') || file.contains(['\\', '%', '\0']) {
            return Err(bad("expected a plain archive file name such as data.tgz"));
        }
        Ok(ArchiveName {
            file: file.to_string(),
            stem: stem.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3_IMAGE: &str = "https://s3.amazonaws.com/fast-ai-imageclas/";
    const S3_SAMPLE: &str = "https://s3.amazonaws.com/fast-ai-sample/";

    #[test]
    fn table_lists_every_dataset_once_under_fastai_urls() {
        for d in Dataset::ALL {
            assert_eq!(KNOWN.iter().filter(|k| k.dataset == d).count(), 1, "{d:?}");
            assert_eq!(Dataset::from_name(d.name()), Some(d));
            let url = d.remote().url;
            assert!(
                url.starts_with(S3_IMAGE) || url.starts_with(S3_SAMPLE),
                "{url}"
            );
        }
        assert_eq!(KNOWN.len(), Dataset::ALL.len());
    }

    #[test]
    fn names_follow_fastdownload() {
        let n =
            ArchiveName::from_url("https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz")
                .unwrap();
        assert_eq!(
            (n.file.as_str(), n.stem.as_str()),
            ("oxford-iiit-pet.tgz", "oxford-iiit-pet")
        );
        let n = ArchiveName::from_url("http://127.0.0.1:8/a/b/x.y.tar.gz?sig=1#f").unwrap();
        assert_eq!((n.file.as_str(), n.stem.as_str()), ("x.y.tar.gz", "x.y"));
        for bad in [
            "ftp://h/x.tgz",
            "https://h/x.zip",
            "https://h/",
            "https://h/.tgz",
            "https://h/..tgz",
            "x.tgz",
        ] {
            assert!(
                matches!(ArchiveName::from_url(bad), Err(Error::BadUrl { .. })),
                "{bad}"
            );
        }
    }
}
