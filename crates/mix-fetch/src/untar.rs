//! fastai's `untar_data`: find a dataset in the cache (ours or fastai's), or download, verify and
//! extract it, one process at a time.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::config::FetchConfig;
use crate::download::{download, Job};
use crate::error::{io_err, Error, Result};
use crate::extract::{temp_dir_in, unpack_tgz};
use crate::source::{ArchiveName, RemoteArchive, Source};
use crate::verify;

/// Where a dataset lives in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetPaths {
    /// The downloaded archive: `<cache>/archive/<file name>`. An archive put here by hand is
    /// checked and used.
    pub archive: PathBuf,
    /// The extracted dataset: `<cache>/data/<file name without .tgz>`.
    pub data: PathBuf,
}

/// The cache paths of `source` under `cfg`, without touching the disk or the network.
pub fn dataset_paths(source: &Source, cfg: &FetchConfig) -> Result<DatasetPaths> {
    let name = ArchiveName::from_url(&source.remote().url)?;
    Ok(DatasetPaths {
        archive: cfg.cache_dir.join("archive").join(&name.file),
        data: cfg.cache_dir.join("data").join(&name.stem),
    })
}

/// Returns the folder holding the extracted dataset, downloading and extracting it first if needed
/// (fastai's `untar_data`).
///
/// In order, the first that exists wins: `<cache>/data/<stem>`; fastai's
/// `<fastai_dir>/data/<stem>`; then, holding a lock on `<cache>/archive/<file>.lock`, an archive at
/// `<cache>/archive/<file>` that passes the size and checksum checks, fastai's
/// `<fastai_dir>/archive/<file>` that passes them, or a fresh download. The archive is extracted
/// into a temporary folder in `<cache>/data/`; when the archive holds a single top-level folder,
/// that folder becomes `<cache>/data/<stem>` (for Oxford-IIIT Pet: the folder holding `images/` and
/// `annotations/`), otherwise the temporary folder itself does, as fastcore's `untar_dir` does.
///
/// A cached archive that fails its checks or cannot be decompressed is removed and fetched again
/// once. Other processes and threads asking for the same dataset wait for the lock and then find it
/// extracted.
pub fn untar_data(source: &Source, cfg: &FetchConfig) -> Result<PathBuf> {
    let remote = source.remote();
    let name = ArchiveName::from_url(&remote.url)?;
    let paths = dataset_paths(source, cfg)?;
    if paths.data.is_dir() {
        return Ok(paths.data);
    }
    if let Some(fastai) = &cfg.fastai_dir {
        let theirs = fastai.join("data").join(&name.stem);
        if theirs.is_dir() {
            return Ok(theirs);
        }
    }
    let archive_dir = cfg.cache_dir.join("archive");
    let data_dir = cfg.cache_dir.join("data");
    for dir in [&archive_dir, &data_dir] {
        fs::create_dir_all(dir).map_err(io_err("create the folder", dir))?;
    }
    let _lock = lock(
        &archive_dir.join(format!("{}.lock", name.file)),
        &name.file,
        cfg,
    )?;
    // Whoever held the lock before us may have finished the job.
    if paths.data.is_dir() {
        return Ok(paths.data);
    }
    remove_stale_extractions(&data_dir, &name.stem)?;

    let (archive, fresh) = find_or_download(&remote, &paths.archive, &name, cfg)?;
    match extract_into_place(&archive, &paths.data, &data_dir, &name.stem) {
        Err(Error::Corrupt { .. }) if !fresh => {
            // An archive from an earlier run (or put there by hand) that passed the size and
            // checksum checks but does not decompress: fastai's checksum covers only the first MiB,
            // so this is how damage further in shows up. Fetch it again, once.
            if archive == paths.archive {
                remove_file(&paths.archive)?;
            }
            download(&Job::archive(&remote, &paths.archive), cfg)?;
            extract_fresh(&paths.archive, &paths.data, &data_dir, &name.stem)?;
        }
        Err(Error::Corrupt { path, reason }) => {
            remove_file(&path)?;
            return Err(corrupt_download(path, reason, &remote));
        }
        other => other?,
    }
    Ok(paths.data)
}

fn extract_fresh(archive: &Path, data: &Path, data_dir: &Path, stem: &str) -> Result<()> {
    match extract_into_place(archive, data, data_dir, stem) {
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
    name: &ArchiveName,
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
    if let Some(fastai) = &cfg.fastai_dir {
        let theirs = fastai.join("archive").join(&name.file);
        if theirs.is_file()
            && verify::check(&theirs, remote.size, remote.checksum.as_ref())?.is_none()
        {
            return Ok((theirs, false));
        }
    }
    download(&Job::archive(remote, ours), cfg)?;
    Ok((ours.to_path_buf(), true))
}

/// Unpacks `archive` into a temporary folder in `data_dir`, then renames the dataset root to
/// `data`.
fn extract_into_place(archive: &Path, data: &Path, data_dir: &Path, stem: &str) -> Result<()> {
    let tmp = temp_dir_in(data_dir, stem)?;
    unpack_tgz(archive, tmp.path())?;
    let top = single_top_folder(tmp.path())?;
    match top {
        Some(inner) => {
            fs::rename(&inner, data).map_err(io_err(format!("rename {} to", inner.display()), data))
        }
        None => {
            let kept = tmp.keep();
            fs::rename(&kept, data).map_err(|e| {
                let _ = fs::remove_dir_all(&kept);
                io_err(format!("rename {} to", kept.display()), data)(e)
            })
        }
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

/// Extraction happens only under the lock we hold, so any temporary folder left for this dataset is
/// from a killed run.
fn remove_stale_extractions(data_dir: &Path, stem: &str) -> Result<()> {
    let prefix = format!(".{stem}.extract-");
    for entry in fs::read_dir(data_dir).map_err(io_err("list", data_dir))? {
        let entry = entry.map_err(io_err("list", data_dir))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_err("remove the stale folder", &path))?;
        }
    }
    Ok(())
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
