//! fastai's `untar_data`: find a dataset in the cache (ours or fastai's), or download, verify and
//! extract it, one process at a time, recording where each extracted folder came from.
//!
//! The cache is keyed by source, not only by file name. The known datasets keep fastai's layout,
//! `<cache>/data/<stem>` and `<cache>/archive/<file>`, so that fastai's cache and ours can stand in
//! for each other. Any other URL is keyed by the first 12 hex characters of its SHA-256, as single
//! files are: `<cache>/data/<stem>-<key>` and `<cache>/archive/<key>-<file>`, so two URLs ending in
//! the same file name each get their own folder, and fastai's cache is not consulted for them.
//!
//! Beside each extracted folder we keep `<cache>/provenance/<folder name>.source.json`, which
//! records the URL, the size and checksum it was checked against, the archive's size and the time
//! of extraction. A folder is used only for a source with the same URL whose every known check
//! equals the recorded one; otherwise [`Error::CacheConflict`] says which source filled it, and
//! nothing is deleted. So an archive downloaded from any URL ending in `/oxford-iiit-pet.tgz`
//! can no longer pass for the known Oxford-IIIT Pet, and a [`Source::Checked`] with a known URL
//! but other checks cannot take the known folder either. The record lives outside `data/` so
//! that the folder listing and the dataset itself stay exactly as fastai lays them out.
//!
//! Folders extracted by older versions have no record (for URLs outside the known table they sit
//! under the old, unkeyed name and are no longer looked at). One is adopted (a record marked
//! `adopted` is written) when the source has nothing to check, or when a cached archive of the
//! same name (ours or fastai's) passes the source's size and checksum checks, since older versions extracted
//! the folder from that archive; otherwise it is refused with [`Error::CacheConflict`]. Folders in
//! fastai's own `data/` are used as before: fastai keeps no record to compare with.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use crate::config::FetchConfig;
use crate::download::{download, Job};
use crate::error::{io_err, Error, Result};
use crate::extract::{remove_stale_temp_dirs, temp_dir_in, unpack_tgz, ExtractLimits};
use crate::source::{is_known_url, url_key, ArchiveName, Checksum, RemoteArchive, Source};
use crate::verify;

/// Where a dataset lives in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetPaths {
    /// The downloaded archive: `<cache>/archive/<file name>` for a known dataset,
    /// `<cache>/archive/<key>-<file name>` for any other URL, where `<key>` is the first 12 hex
    /// characters of the SHA-256 of the URL. An archive put here by hand is checked and used.
    pub archive: PathBuf,
    /// The extracted dataset: `<cache>/data/<file name without .tgz>` for a known dataset,
    /// `<cache>/data/<file name without .tgz>-<key>` for any other URL.
    pub data: PathBuf,
    /// Where `data` came from (see the module documentation):
    /// `<cache>/provenance/<folder name of data>.source.json`.
    pub provenance: PathBuf,
}

/// The cache paths of `source` under `cfg`, without touching the disk or the network.
pub fn dataset_paths(source: &Source, cfg: &FetchConfig) -> Result<DatasetPaths> {
    let names = CacheNames::of(&source.remote().url)?;
    Ok(names.paths(cfg))
}

/// The names a source's files take in the cache (see the module documentation).
struct CacheNames {
    /// The archive's file name under `archive/`; its lock and `.part` file are named after it.
    file: String,
    /// The folder name under `data/`, also the name of the provenance record.
    stem: String,
    /// fastai's names for the archive, for a known dataset only: fastai's cache is keyed by file
    /// name alone, so for any other URL a folder or archive there may come from another source.
    fastai: Option<ArchiveName>,
}

impl CacheNames {
    fn of(url: &str) -> Result<CacheNames> {
        let name = ArchiveName::from_url(url)?;
        Ok(if is_known_url(url) {
            CacheNames {
                file: name.file.clone(),
                stem: name.stem.clone(),
                fastai: Some(name),
            }
        } else {
            let key = url_key(url);
            CacheNames {
                file: format!("{key}-{}", name.file),
                stem: format!("{}-{key}", name.stem),
                fastai: None,
            }
        })
    }

    fn paths(&self, cfg: &FetchConfig) -> DatasetPaths {
        DatasetPaths {
            archive: cfg.cache_dir.join("archive").join(&self.file),
            data: cfg.cache_dir.join("data").join(&self.stem),
            provenance: cfg
                .cache_dir
                .join("provenance")
                .join(format!("{}.source.json", self.stem)),
        }
    }

    /// fastai's `<fastai_dir>/<sub>/<name>` for a known dataset when `cfg` names a fastai cache.
    fn fastai_path(
        &self,
        cfg: &FetchConfig,
        sub: &str,
        name: fn(&ArchiveName) -> &str,
    ) -> Option<PathBuf> {
        let fastai = cfg.fastai_dir.as_ref()?;
        self.fastai.as_ref().map(|n| fastai.join(sub).join(name(n)))
    }
}

/// Returns the folder holding the extracted dataset, downloading and extracting it first if needed
/// (fastai's `untar_data`).
///
/// The cache paths are those of [`dataset_paths`]: keyed by the URL unless `source` is a known
/// dataset. In order, the first that exists wins: the `data` folder when its provenance record
/// matches `source` (see the module documentation; a folder from another source is an
/// [`Error::CacheConflict`]); for a known dataset, fastai's `<fastai_dir>/data/<stem>`; then,
/// holding a lock on `<archive>.lock`, an archive at `archive` that passes the size and checksum
/// checks, for a known dataset fastai's `<fastai_dir>/archive/<file>` that passes them, or a fresh
/// download. The archive is extracted into a temporary folder in `<cache>/data/`; when the archive
/// holds a single top-level folder, that folder becomes `data` (for Oxford-IIIT Pet: the folder
/// holding `images/` and `annotations/`), otherwise the temporary folder itself does, as
/// fastcore's `untar_dir` does.
/// Symlinks are checked against the folder that becomes the dataset, and the expansion against
/// [`FetchConfig::extract`] and the free disk space.
///
/// A cached archive that fails its checks or cannot be decompressed is removed and fetched again
/// once. Other processes and threads asking for the same dataset wait for the lock and then find it
/// extracted.
pub fn untar_data(source: &Source, cfg: &FetchConfig) -> Result<PathBuf> {
    let remote = source.remote();
    let names = CacheNames::of(&remote.url)?;
    let paths = names.paths(cfg);
    match cached(&paths, &remote)? {
        Some(Cached::Usable) => return Ok(paths.data),
        Some(Cached::Conflict(reason)) => return Err(conflict(&paths, &remote, reason)),
        // Adopting writes a record: decided under the lock below.
        Some(Cached::Legacy) => {}
        None => {
            if let Some(theirs) = names.fastai_path(cfg, "data", |n| &n.stem) {
                if theirs.is_dir() {
                    return Ok(theirs);
                }
            }
        }
    }
    let archive_dir = cfg.cache_dir.join("archive");
    let data_dir = cfg.cache_dir.join("data");
    for dir in [&archive_dir, &data_dir] {
        fs::create_dir_all(dir).map_err(io_err("create the folder", dir))?;
    }
    let _lock = lock(
        &archive_dir.join(format!("{}.lock", names.file)),
        &names.file,
        cfg,
    )?;
    // Whoever held the lock before us may have finished the job.
    match cached(&paths, &remote)? {
        Some(Cached::Usable) => return Ok(paths.data),
        Some(Cached::Conflict(reason)) => return Err(conflict(&paths, &remote, reason)),
        Some(Cached::Legacy) => {
            adopt_legacy(&paths, &remote, &names, cfg)?;
            return Ok(paths.data);
        }
        None => {}
    }
    remove_stale_temp_dirs(&data_dir, &names.stem)?;

    let place = Place {
        paths: &paths,
        data_dir: &data_dir,
        stem: &names.stem,
        remote: &remote,
        limits: &cfg.extract,
    };
    let (archive, fresh) = find_or_download(&remote, &paths.archive, &names, cfg)?;
    match extract_into_place(&archive, &place) {
        Err(Error::Corrupt { .. }) if !fresh => {
            // An archive from an earlier run (or put there by hand) that passed the size and
            // checksum checks but does not decompress: fastai's checksum covers only the first MiB,
            // so this is how damage further in shows up. Fetch it again, once.
            if archive == paths.archive {
                remove_file(&paths.archive)?;
            }
            download(&Job::archive(&remote, &paths.archive), cfg)?;
            extract_fresh(&paths.archive, &place)?;
        }
        Err(Error::Corrupt { path, reason }) => {
            remove_file(&path)?;
            return Err(corrupt_download(path, reason, &remote));
        }
        other => other?,
    }
    Ok(paths.data)
}

fn extract_fresh(archive: &Path, place: &Place<'_>) -> Result<()> {
    match extract_into_place(archive, place) {
        Err(Error::Corrupt { path, reason }) => {
            remove_file(&path)?;
            Err(Error::Corrupt {
                path,
                reason: format!("{reason}; the downloaded file was removed"),
            })
        }
        other => other,
    }
}

fn corrupt_download(path: PathBuf, reason: String, remote: &RemoteArchive) -> Error {
    Error::Corrupt {
        path,
        reason: format!(
            "{reason}; the file just downloaded from {} was removed",
            remote.url
        ),
    }
}

/// The archive to extract and whether it was downloaded just now.
fn find_or_download(
    remote: &RemoteArchive,
    ours: &Path,
    names: &CacheNames,
    cfg: &FetchConfig,
) -> Result<(PathBuf, bool)> {
    if ours.is_file() {
        if verify::check(ours, remote.size, remote.checksum.as_ref())?.is_none() {
            return Ok((ours.to_path_buf(), false));
        }
        // fastdownload prints "Downloading a new version of this dataset..." here and downloads
        // again.
        remove_file(ours)?;
    }
    if let Some(theirs) = names.fastai_path(cfg, "archive", |n| &n.file) {
        if theirs.is_file()
            && verify::check(&theirs, remote.size, remote.checksum.as_ref())?.is_none()
        {
            return Ok((theirs, false));
        }
    }
    download(&Job::archive(remote, ours), cfg)?;
    Ok((ours.to_path_buf(), true))
}

/// Where and how [`extract_into_place`] puts an archive's contents.
struct Place<'a> {
    paths: &'a DatasetPaths,
    data_dir: &'a Path,
    stem: &'a str,
    remote: &'a RemoteArchive,
    limits: &'a ExtractLimits,
}

/// Unpacks `archive` into a temporary folder in `data_dir`, records its provenance, then renames
/// the dataset root to `data`.
fn extract_into_place(archive: &Path, place: &Place<'_>) -> Result<()> {
    let data = place.paths.data.as_path();
    let tmp = temp_dir_in(place.data_dir, place.stem)?;
    let unpacked = unpack_tgz(archive, tmp.path(), place.limits)?;
    let top = single_top_folder(tmp.path())?;
    if let Some(inner) = &top {
        let rel = inner.strip_prefix(tmp.path()).unwrap_or(inner);
        unpacked.check_links_below(rel)?;
    }
    // The record goes first: a folder under `data/` then always has one, and a record whose
    // folder never arrived is simply overwritten by the next extraction.
    let archive_bytes = fs::metadata(archive).map(|m| m.len()).ok();
    write_provenance(
        &place.paths.provenance,
        &Provenance::new(place.remote, archive_bytes, false),
    )?;
    match top {
        Some(inner) => {
            fs::rename(&inner, data).map_err(io_err(format!("rename {} to", inner.display()), data))
        }
        None => tmp.persist(data),
    }
}

/// The only entry of `dir` when there is exactly one and it is a real folder.
fn single_top_folder(dir: &Path) -> Result<Option<PathBuf>> {
    let mut entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let first = match entries.next() {
        Some(e) => e.map_err(io_err("list", dir))?,
        None => return Ok(None),
    };
    if entries.next().is_some() {
        return Ok(None);
    }
    let is_dir = first
        .file_type()
        .map_err(io_err("inspect", first.path()))?
        .is_dir();
    Ok(is_dir.then(|| first.path()))
}

/// What the cache holds for a source.
enum Cached {
    /// A folder whose record matches the source.
    Usable,
    /// A folder without a record, from an older version or put there by hand.
    Legacy,
    /// A folder that is not known to come from this source, and why.
    Conflict(String),
}

/// The state of `paths.data` for `remote`; `None` when there is no folder.
fn cached(paths: &DatasetPaths, remote: &RemoteArchive) -> Result<Option<Cached>> {
    if !paths.data.is_dir() {
        return Ok(None);
    }
    let record = &paths.provenance;
    let bytes = match fs::read(record) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Cached::Legacy)),
        Err(e) => {
            return Ok(Some(Cached::Conflict(format!(
                "its provenance record {} cannot be read ({e})",
                record.display()
            ))))
        }
    };
    Ok(Some(match serde_json::from_slice::<Provenance>(&bytes) {
        Ok(found) => match found.mismatch(remote) {
            None => Cached::Usable,
            Some(reason) => Cached::Conflict(format!("{reason} (see {})", record.display())),
        },
        Err(e) => Cached::Conflict(format!(
            "its provenance record {} is not valid ({e})",
            record.display()
        )),
    }))
}

fn conflict(paths: &DatasetPaths, remote: &RemoteArchive, reason: String) -> Error {
    Error::CacheConflict {
        data: paths.data.clone(),
        url: remote.url.clone(),
        reason,
    }
}

/// Decides about a folder without a record (see the module documentation): writes an `adopted`
/// record, or fails with [`Error::CacheConflict`].
fn adopt_legacy(
    paths: &DatasetPaths,
    remote: &RemoteArchive,
    names: &CacheNames,
    cfg: &FetchConfig,
) -> Result<()> {
    let mut candidates = vec![paths.archive.clone()];
    candidates.extend(names.fastai_path(cfg, "archive", |n| &n.file));
    let unchecked = remote.size.is_none() && remote.checksum.is_none();
    let mut vouching = None;
    for archive in candidates.iter().filter(|a| a.is_file()) {
        if unchecked || verify::check(archive, remote.size, remote.checksum.as_ref())?.is_none() {
            vouching = Some(archive);
            break;
        }
    }
    if vouching.is_none() && !unchecked {
        return Err(conflict(
            paths,
            remote,
            format!(
                "it has no provenance record (it was extracted by an older version of mix-fetch \
                 or put there by hand) and no cached archive passes the checks of {} to vouch for \
                 it (looked for {})",
                remote.url,
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ));
    }
    let archive_bytes = vouching.and_then(|a| fs::metadata(a).ok()).map(|m| m.len());
    write_provenance(
        &paths.provenance,
        &Provenance::new(remote, archive_bytes, true),
    )
}

/// The record kept beside an extracted dataset.
#[derive(Debug, Serialize, Deserialize)]
struct Provenance {
    /// The URL the archive was fetched from (or, for a hand-placed archive, asked for).
    url: String,
    /// The size the archive was checked against, when one was known.
    size: Option<u64>,
    /// fastai's md5 of the first MiB the archive was checked against, when known.
    md5_prefix: Option<String>,
    /// The md5 of the whole archive it was checked against, when known.
    md5: Option<String>,
    /// The SHA-256 of the whole archive it was checked against, when known.
    sha256: Option<String>,
    /// The size of the archive extracted, when known.
    archive_bytes: Option<u64>,
    /// When the record was written, in seconds since 1970.
    extracted_at: u64,
    /// Whether the folder was there before the record (extracted by an older version).
    adopted: bool,
    /// The version of mix-fetch that wrote the record.
    written_by: String,
}

impl Provenance {
    fn new(remote: &RemoteArchive, archive_bytes: Option<u64>, adopted: bool) -> Provenance {
        let hex = |want: fn(&Checksum) -> bool| {
            remote
                .checksum
                .as_ref()
                .filter(|c| want(c))
                .map(|c| c.hex().to_ascii_lowercase())
        };
        Provenance {
            url: remote.url.clone(),
            size: remote.size,
            md5_prefix: hex(|c| matches!(c, Checksum::Md5Prefix(_))),
            md5: hex(|c| matches!(c, Checksum::Md5(_))),
            sha256: hex(|c| matches!(c, Checksum::Sha256(_))),
            archive_bytes,
            extracted_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            adopted,
            written_by: format!("mix-fetch {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Why the folder this record describes is not what `remote` asks for; `None` when it is: the
    /// same URL, and every check `remote` carries recorded with the same value.
    fn mismatch(&self, remote: &RemoteArchive) -> Option<String> {
        if self.url != remote.url {
            return Some(format!("it was extracted from {}", self.url));
        }
        if let Some(size) = remote.size {
            if self.size != Some(size) {
                return Some(format!(
                    "it was extracted from an archive checked against {}, expected a size of \
                     {size} bytes",
                    self.size
                        .map_or("no size".to_string(), |s| format!("a size of {s} bytes"))
                ));
            }
        }
        if let Some(checksum) = &remote.checksum {
            let recorded = match checksum {
                Checksum::Md5Prefix(_) => &self.md5_prefix,
                Checksum::Md5(_) => &self.md5,
                Checksum::Sha256(_) => &self.sha256,
            };
            if !recorded
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(checksum.hex()))
            {
                return Some(format!(
                    "it was extracted from an archive checked against {} {}, expected {}",
                    checksum.kind(),
                    recorded.as_deref().unwrap_or("(none)"),
                    checksum.hex()
                ));
            }
        }
        None
    }
}

/// Writes `record` to `path` through a temporary file and a rename, so that a reader never sees
/// half a record.
fn write_provenance(path: &Path, record: &Provenance) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create the folder", dir))?;
    let json = serde_json::to_vec_pretty(record).map_err(|e| {
        io_err("encode the provenance record", path)(io::Error::other(e.to_string()))
    })?;
    mix_io::write_atomic(path, &json).map_err(|e| io_err(e.action, e.path)(e.source))
}

/// Removes `path`; one that is already gone is fine.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// An exclusive advisory lock (flock on unix) held until the file is dropped. Each call opens its
/// own file description, so two threads of one process exclude each other as two processes do.
/// `what` names the archive or file in the message shown while waiting.
pub(crate) fn lock(path: &Path, what: &str, cfg: &FetchConfig) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open the lock file", path))?;
    let locked = FileExt::try_lock_exclusive(&file).map_err(io_err("lock", path))?;
    if !locked {
        if cfg.progress {
            eprintln!(
                "waiting for another process fetching {what} (lock file {})",
                path.display()
            );
        }
        FileExt::lock_exclusive(&file).map_err(io_err("lock", path))?;
    }
    Ok(file)
}
