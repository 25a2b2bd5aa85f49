//! Durable file writes: after a crash or a full disk, a file is the old one or the whole new one.
//!
//! Every run folder file, picture, checkpoint and report of the workspace is written through
//! [`write_atomic`] (or [`write_atomic_with`] for a streaming writer, [`persist`] for a file another
//! library wrote by path): a temporary file in the same folder, synced, renamed over the
//! destination, then the folder synced so that the rename itself survives a power loss. The new file
//! gets the permissions an ordinary new file gets (0666 less the umask), not a temporary file's
//! owner-only ones.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong, with the file it happened to.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct Error {
    /// What was being done (`write`, `sync`, `rename into place`, ...).
    pub action: &'static str,
    /// The file or folder it was done to.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;

fn err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error {
        action,
        path,
        source,
    }
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A fresh name beside `path`, unique within this process and across processes (the pid).
pub fn temp_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    folder_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` durably: the old file or the whole new one, never a part of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for a writer that streams: `write` fills a buffered temporary file, which then
/// replaces `path`. An error from `write` leaves `path` untouched and removes the temporary file.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let tmp = temp_path_beside(path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(err("create a temporary file beside", path))?;
    let written = (|| {
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.flush()?;
        Ok(())
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err("write", path)(source));
    }
    persist(&tmp, path)
}

/// Makes the finished file `tmp` (in `path`'s folder) the file `path`: syncs it, renames it over
/// `path` and syncs the folder. On failure `tmp` is removed and `path` is left as it was.
pub fn persist(tmp: &Path, path: &Path) -> Result<()> {
    let done = File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(err("sync", tmp))
        .and_then(|()| std::fs::rename(tmp, path).map_err(err("rename into place", path)));
    if let Err(e) = done {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(folder_of(path))
}

/// Syncs folder `dir`, so that a rename or a new file in it survives a power loss (Unix only; a no-op
/// elsewhere, where folders cannot be opened).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(err("sync the folder", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
