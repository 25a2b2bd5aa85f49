//! Single files such as pretrained model weights: fetched with the archives' download code (`.part`
//! file, `Range`/`If-Range` resume, retries, stall timeout, speed limit and deadline, a lock per
//! file) into `<cache>/models/`, checked against their SHA-256, never extracted.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use crate::config::FetchConfig;
use crate::download::{download, Job, Kind};
use crate::error::{io_err, Error, Result};
use crate::source::{is_plain_file_name, url_file_name, url_key, Checksum};
use crate::untar::{lock, remove_file};
use crate::verify;

/// A single remote file (model weights) and what we know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// An http:// or https:// URL. Redirects are followed (Hugging Face answers `resolve/` URLs
    /// with one).
    pub url: String,
    /// The name of the file in the cache, `<cache>/models/<file_name>`: one plain path component.
    pub file_name: String,
    /// The expected SHA-256 as 64 lower-case hex characters; `None` checks nothing.
    pub sha256: Option<String>,
    /// The exact size in bytes, when known; a download growing past it stops early.
    pub size: Option<u64>,
}

impl RemoteFile {
    /// A file from its URL, with its SHA-256 when known (64 hex characters, either case).
    ///
    /// The cache name is `<first 12 hex of the SHA-256 of the url>-<last path segment>`: weights
    /// are often all called `model.safetensors`, and two URLs must not share a cache file. Fails
    /// with [`Error::BadUrl`] when the URL is not http(s) or has no plain last segment, and with
    /// [`Error::BadChecksum`] when `sha256` is not a SHA-256.
    pub fn from_url(url: &str, sha256: Option<&str>) -> Result<RemoteFile> {
        let segment = url_file_name(url)?;
        if !is_plain_file_name(segment) {
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: "expected the url to end in a plain file name such as model.safetensors"
                    .to_string(),
            });
        }
        Ok(RemoteFile {
            url: url.to_string(),
            file_name: format!("{}-{segment}", url_key(url)),
            sha256: sha256.map(parse_sha256).transpose()?,
            size: None,
        })
    }
}

/// `value` as 64 lower-case hex characters, or [`Error::BadChecksum`] saying what is wrong.
fn parse_sha256(value: &str) -> Result<String> {
    let bad = |reason: String| Error::BadChecksum {
        value: value.to_string(),
        reason,
    };
    if let Some(c) = value.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(bad(format!("it contains {c:?}")));
    }
    if value.len() != 64 {
        return Err(bad(format!("it has {} characters", value.len())));
    }
    Ok(value.to_ascii_lowercase())
}

/// Files whose URL and SHA-256 we carry (like [`crate::Dataset`] for archives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KnownFile {
    /// torchvision's ImageNet ResNet18 weights (`IMAGENET1K_V1`, `resnet18-f37072fd.pth`) as
    /// timm publishes them on Hugging Face in safetensors form (`resnet18.tv_in1k`), with
    /// torchvision's parameter names.
    Resnet18TvIn1k,
}

/// One row of the known-files table.
struct KnownRow {
    file: KnownFile,
    name: &'static str,
    url: &'static str,
    sha256: &'static str,
    file_name: &'static str,
}

/// The table. URLs name a fixed commit, so the bytes behind them cannot change under the digest.
const KNOWN_FILES: [KnownRow; 1] = [KnownRow {
    file: KnownFile::Resnet18TvIn1k,
    name: "resnet18.tv_in1k",
    url: "https://huggingface.co/timm/resnet18.tv_in1k/resolve/\
          a987fd6b60f845221bfff84b6f0191273ba56ead/model.safetensors",
    sha256: "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81",
    file_name: "resnet18.tv_in1k.safetensors",
}];

impl KnownFile {
    /// Every known file, in table order.
    pub const ALL: [KnownFile; 1] = [KnownFile::Resnet18TvIn1k];

    fn row(self) -> &'static KnownRow {
        // The table lists every variant once (checked by a unit test), so the search always
        // succeeds; falling back to the first row keeps this function total without a panic.
        KNOWN_FILES
            .iter()
            .find(|k| k.file == self)
            .unwrap_or(&KNOWN_FILES[0])
    }

    /// The short name used on command lines: timm's model name (`resnet18.tv_in1k`).
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The known file with this short name.
    pub fn from_name(name: &str) -> Option<KnownFile> {
        KNOWN_FILES.iter().find(|k| k.name == name).map(|k| k.file)
    }

    /// Its URL, cache name (`<name>.safetensors`) and SHA-256; the size is not recorded.
    pub fn remote(self) -> RemoteFile {
        let row = self.row();
        RemoteFile {
            url: row.url.to_string(),
            file_name: row.file_name.to_string(),
            sha256: Some(row.sha256.to_string()),
            size: None,
        }
    }
}

impl fmt::Display for KnownFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where `remote` is cached: `<cache_dir>/models/<file_name>` (no disk or network access). A file
/// put there by hand is checked and used by [`fetch_file`].
pub fn file_path(remote: &RemoteFile, cfg: &FetchConfig) -> PathBuf {
    cfg.cache_dir.join("models").join(&remote.file_name)
}

/// Returns the path of the verified cached file, downloading it first if needed.
///
/// A file already at [`file_path`] (downloaded earlier, or put there by hand) whose size and
/// SHA-256 match (each when known) is used without any request. Otherwise, holding a lock on
/// `<cache>/models/<file_name>.lock`, the file is downloaded to `<file_name>.part` (resuming what
/// an earlier run left, with `If-Range` so that a file changed on the server since is fetched
/// anew rather than spliced; `<file_name>.part.meta` records which version the bytes are of),
/// checked, and renamed into place; a cached file that fails the check is removed first. Other threads and processes asking for the same file wait for the lock and then
/// find it in place.
///
/// Errors: [`Error::FileUnreachable`] when the server cannot be reached after
/// `cfg.retries.max_attempts` attempts (its message names the path to put the file at by hand),
/// [`Error::FileHttpStatus`] for a 404 or 403, [`Error::Mismatch`] when the download has the
/// wrong size or SHA-256 (nothing is kept), [`Error::BadUrl`] for a `file_name` that is not one
/// plain path component, [`Error::BadChecksum`] for a `sha256` that is not 64 hex characters.
pub fn fetch_file(remote: &RemoteFile, cfg: &FetchConfig) -> Result<PathBuf> {
    if !is_plain_file_name(&remote.file_name) {
        return Err(Error::BadUrl {
            url: remote.url.clone(),
            reason: format!(
                "expected a plain cache file name such as model.safetensors, found {:?}",
                remote.file_name
            ),
        });
    }
    let checksum = match &remote.sha256 {
        Some(hex) => Some(Checksum::Sha256(parse_sha256(hex)?)),
        None => None,
    };
    let path = file_path(remote, cfg);
    // A file in place is complete (it got there by a rename, or by hand), so it can be checked
    // without the lock; this also lets a read-only cache with the file in it work.
    if path.is_file() && verify::check(&path, remote.size, checksum.as_ref())?.is_none() {
        return Ok(path);
    }
    let dir = cfg.cache_dir.join("models");
    fs::create_dir_all(&dir).map_err(io_err("create the folder", &dir))?;
    let _lock = lock(
        &dir.join(format!("{}.lock", remote.file_name)),
        &remote.file_name,
        cfg,
    )?;
    // Whoever held the lock before us may have finished the job; or a bad file waits there.
    let mut rejected = None;
    if path.is_file() {
        match verify::check(&path, remote.size, checksum.as_ref())? {
            None => return Ok(path),
            Some(m) => {
                remove_file(&path)?;
                rejected = Some(m);
            }
        }
    }
    let job = Job {
        url: &remote.url,
        dest: &path,
        size: remote.size,
        checksum: checksum.as_ref(),
        kind: Kind::File,
    };
    match download(&job, cfg) {
        Ok(()) => Ok(path),
        Err(Error::FileUnreachable {
            url,
            path,
            attempts,
            mut reason,
            checked,
        }) => {
            // Someone working offline who put a wrong file there needs to hear why it is gone.
            if let Some(m) = rejected {
                reason.push_str(&format!(
                    "; the file that was there had the wrong {} (expected {}, found {}) and was removed",
                    m.what, m.expected, m.found
                ));
            }
            Err(Error::FileUnreachable {
                url,
                path,
                attempts,
                reason,
                checked,
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const SHA: &str = "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81";

    #[test]
    fn from_url_names_the_file_after_the_url_and_its_last_segment() {
        let a =
            RemoteFile::from_url("https://h/a/model.safetensors?download=1#x", Some(SHA)).unwrap();
        assert_eq!(a.url, "https://h/a/model.safetensors?download=1#x");
        assert_eq!(a.sha256.as_deref(), Some(SHA));
        assert_eq!(a.size, None);
        let (prefix, rest) = a.file_name.split_once('-').unwrap();
        assert_eq!(rest, "model.safetensors");
        assert_eq!(prefix.len(), 12);
        assert!(prefix.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(prefix, &hex::encode(Sha256::digest(a.url.as_bytes()))[..12]);
        // Another URL with the same last segment gets another cache file; the same URL the same.
        let b = RemoteFile::from_url("http://h/b/model.safetensors", None).unwrap();
        assert_ne!(a.file_name, b.file_name);
        assert!(b.file_name.ends_with("-model.safetensors"));
        assert_eq!(
            RemoteFile::from_url("http://h/b/model.safetensors", None).unwrap(),
            b
        );
    }

    #[test]
    fn from_url_refuses_other_schemes_and_urls_without_a_file_name() {
        for bad in [
            "ftp://h/model.safetensors",
            "file:///tmp/model.safetensors",
            "model.safetensors",
            "https://h/",
            "https://h",
            "https://h/a/?x=1",
            "https://h/.hidden",
            "https://h/model%2Fx",
        ] {
            let err = RemoteFile::from_url(bad, None).unwrap_err();
            assert!(matches!(err, Error::BadUrl { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn from_url_checks_the_sha256() {
        let upper = SHA.to_ascii_uppercase();
        let r = RemoteFile::from_url("https://h/m.safetensors", Some(&upper)).unwrap();
        assert_eq!(r.sha256.as_deref(), Some(SHA), "lower-cased");
        let short = &SHA[..63];
        let long = format!("{SHA}0");
        let letter = format!("{}g", &SHA[..63]);
        let spaced = format!(" {}", &SHA[1..]);
        for (bad, why) in [
            (short, "63 characters"),
            (long.as_str(), "65 characters"),
            ("", "0 characters"),
            (letter.as_str(), "'g'"),
            (spaced.as_str(), "' '"),
        ] {
            let err = RemoteFile::from_url("https://h/m.safetensors", Some(bad)).unwrap_err();
            assert!(
                matches!(&err, Error::BadChecksum { value, .. } if value == bad),
                "{bad}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(why) && msg.contains("64 hexadecimal characters"),
                "{msg}"
            );
        }
    }

    #[test]
    fn known_files_are_pinned_and_named_after_themselves() {
        for f in KnownFile::ALL {
            assert_eq!(
                KNOWN_FILES.iter().filter(|k| k.file == f).count(),
                1,
                "{f:?}"
            );
            assert_eq!(KnownFile::from_name(f.name()), Some(f));
            let r = f.remote();
            assert!(
                r.url.starts_with("https://huggingface.co/timm/"),
                "{}",
                r.url
            );
            assert!(r.url.contains("/resolve/"), "a fixed commit: {}", r.url);
            assert_eq!(r.file_name, format!("{}.safetensors", f.name()));
            let sha = r.sha256.as_deref().unwrap();
            assert_eq!(parse_sha256(sha).unwrap(), sha);
            assert!(is_plain_file_name(&r.file_name));
        }
        assert_eq!(KNOWN_FILES.len(), KnownFile::ALL.len());
        let r = KnownFile::Resnet18TvIn1k.remote();
        assert_eq!(
            r.url,
            "https://huggingface.co/timm/resnet18.tv_in1k/resolve/\
             a987fd6b60f845221bfff84b6f0191273ba56ead/model.safetensors"
        );
        assert_eq!(r.sha256.as_deref(), Some(SHA));
        assert_eq!(KnownFile::Resnet18TvIn1k.to_string(), "resnet18.tv_in1k");
    }

    #[test]
    fn file_path_is_under_models() {
        let cfg = FetchConfig::in_dir("/cache");
        let r = KnownFile::Resnet18TvIn1k.remote();
        assert_eq!(
            file_path(&r, &cfg),
            PathBuf::from("/cache/models/resnet18.tv_in1k.safetensors")
        );
    }
}
