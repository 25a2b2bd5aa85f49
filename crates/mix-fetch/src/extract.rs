//! Safe extraction of `.tgz` archives: nothing is written outside the destination, and a
//! half-extracted folder never takes the destination's name.
//!
//! The rules, checked before anything of an entry is written:
//! - entry names must be relative and free of `..` (absolute names and `..` are refused, not
//!   rewritten);
//! - no entry may be written through a symlink or over a directory, so every path we write is a
//!   real directory chain below the root;
//! - a symlink's target must be relative, of the form `../../a/b` (every `..` first), and climb no
//!   higher than the root; with the previous rule this keeps every link inside the root however
//!   links chain;
//! - a hard link must name an earlier, non-directory entry by a safe name, reached without
//!   symlinks;
//! - only regular files, directories, symlinks and hard links are extracted; devices, fifos and GNU
//!   sparse files are refused (no dataset needs them, and a sparse entry can claim terabytes of
//!   zeros);
//! - the whole gzip stream is read to its end so that its CRC-32 and length check run even when the
//!   tar end-of-archive marker comes earlier; a failure there is reported as [`Error::Corrupt`].

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::error::{io_err, Error, Result};

/// Extracts the gzip-compressed tar `archive` into the new folder `dest`.
///
/// `dest` must not exist; its parent must. The archive is unpacked into a hidden temporary folder
/// next to `dest` that is renamed to `dest` only once every entry is written, so a killed or failed
/// extraction never leaves a folder that looks complete. Unsafe entries (see the module
/// documentation) fail the whole extraction with [`Error::UnsafeEntry`] naming the entry; an
/// unreadable archive fails with [`Error::Corrupt`]. On any error nothing is left behind.
pub fn extract_tgz(archive: &Path, dest: &Path) -> Result<()> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::DestinationExists(dest.to_path_buf()));
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = temp_dir_in(parent, &name)?;
    unpack_tgz(archive, tmp.path())?;
    let kept = tmp.keep();
    fs::rename(&kept, dest).map_err(|e| {
        // Leave nothing behind on failure; the rename error is the one worth reporting.
        let _ = fs::remove_dir_all(&kept);
        io_err(format!("rename {} to", kept.display()), dest)(e)
    })
}

/// A hidden temporary folder `.{name}.extract-XXXXXX` in `parent`, removed when dropped.
pub(crate) fn temp_dir_in(parent: &Path, name: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}.extract-"))
        .tempdir_in(parent)
        .map_err(io_err("create a temporary folder in", parent))
}

/// Unpacks the gzip-compressed tar `archive` into the existing folder `root`, following the
/// module's rules. On error `root` may hold part of the archive (all of it inside `root`); callers
/// pass a temporary folder.
pub(crate) fn unpack_tgz(archive: &Path, root: &Path) -> Result<()> {
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let corrupt = |e: io::Error| Error::Corrupt {
        path: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let mut tar = tar::Archive::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)));
    let mut unpacker = Unpacker {
        archive,
        root,
        real_dirs: HashSet::new(),
        buf: vec![0; 1 << 16],
    };
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        unpacker.unpack(&mut entry)?;
    }
    // tar stops at its end-of-archive marker; read the rest so that gzip's CRC and length are
    // checked.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(corrupt)?;
    Ok(())
}

/// What an entry is, once its type and name are understood.
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
    Skip,
}

struct Unpacker<'a> {
    archive: &'a Path,
    root: &'a Path,
    /// Relative paths already known to be real directories (not symlinks) below the root.
    /// Directories are never removed or replaced during extraction, so the knowledge stays true.
    real_dirs: HashSet<PathBuf>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn unpack<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let archive = self.archive;
        let refuse = |reason: String| Error::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: raw_name.clone(),
            reason,
        };
        let kind = match entry.header().entry_type() {
            t if t.is_dir() => Kind::Dir,
            // Old (v7) archives mark directories with a regular type and a trailing slash.
            t if (t.is_file() || t.is_contiguous()) && raw_name.ends_with('/') => Kind::Dir,
            t if t.is_file() || t.is_contiguous() => Kind::File,
            t if t.is_symlink() => Kind::Symlink,
            t if t.is_hard_link() => Kind::HardLink,
            t if t.is_pax_global_extensions() => Kind::Skip,
            t => {
                return Err(refuse(format!(
                    "entry type {} is not extracted",
                    describe_type(t)
                )))
            }
        };
        if matches!(kind, Kind::Skip) {
            return Ok(());
        }
        let path = entry.path().map_err(|e| self.corrupt(e))?;
        let rel = safe_relative(&path).map_err(|r| refuse(r.to_string()))?;
        if rel.as_os_str().is_empty() {
            // `./` names the root itself, which exists already.
            return match kind {
                Kind::Dir => Ok(()),
                _ => Err(refuse(
                    "a file or link cannot take the place of the destination folder".into(),
                )),
            };
        }
        self.make_parent_dirs(&rel)
            .map_err(|e| e.into_error(refuse))?;
        let dst = self.root.join(&rel);
        match kind {
            Kind::Dir => {
                match fs::symlink_metadata(&dst) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(refuse(
                            "a directory cannot replace an earlier file or link".into(),
                        ))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        fs::create_dir(&dst).map_err(io_err("create the folder", &dst))?
                    }
                    Err(e) => return Err(io_err("inspect", &dst)(e)),
                }
                self.real_dirs.insert(rel);
            }
            Kind::File => {
                self.clear_for_non_dir(&dst)
                    .map_err(|e| e.into_error(refuse))?;
                let header = entry.header();
                let mode = header.mode().map_err(|e| self.corrupt(e))?;
                let mtime = header.mtime().ok();
                self.write_file(entry, &dst, mode, mtime)?;
            }
            Kind::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(e))?
                    .ok_or_else(|| refuse("a symlink without a target".into()))?;
                check_symlink_target(&rel, &target).map_err(refuse)?;
                self.clear_for_non_dir(&dst)
                    .map_err(|e| e.into_error(refuse))?;
                make_symlink(&target, &dst)?;
            }
            Kind::HardLink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(e))?
                    .ok_or_else(|| refuse("a hard link without a target".into()))?;
                let src_rel = safe_relative(&target)
                    .map_err(|r| refuse(format!("hard link to {}: {r}", target.display())))?;
                if src_rel.as_os_str().is_empty() || src_rel == rel {
                    return Err(refuse(format!(
                        "hard link to {} links to itself or the root",
                        target.display()
                    )));
                }
                self.check_link_source(&src_rel)
                    .map_err(|e| e.into_error(refuse))?;
                self.clear_for_non_dir(&dst)
                    .map_err(|e| e.into_error(refuse))?;
                let src = self.root.join(&src_rel);
                fs::hard_link(&src, &dst)
                    .map_err(io_err(format!("hard-link {} to", src.display()), &dst))?;
            }
            Kind::Skip => {}
        }
        Ok(())
    }

    fn corrupt(&self, e: io::Error) -> Error {
        Error::Corrupt {
            path: self.archive.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// Creates the missing ancestors of `rel` below the root, refusing to pass through anything
    /// that is not a real directory.
    fn make_parent_dirs(&mut self, rel: &Path) -> std::result::Result<(), Refusal> {
        let mut prefix = PathBuf::new();
        let parents: Vec<_> = rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for c in parents {
            prefix.push(c);
            if self.real_dirs.contains(&prefix) {
                continue;
            }
            let dir = self.root.join(&prefix);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => return Err(Refusal::Unsafe(through(&prefix, &m))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&dir)
                    .map_err(|e| Refusal::Io(io_err("create the folder", &dir)(e)))?,
                Err(e) => return Err(Refusal::Io(io_err("inspect", &dir)(e))),
            }
            self.real_dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Removes an earlier file or link at `dst` (a later entry wins, as in tar), refusing to
    /// replace a folder.
    fn clear_for_non_dir(&self, dst: &Path) -> std::result::Result<(), Refusal> {
        match fs::symlink_metadata(dst) {
            Ok(m) if m.is_dir() => Err(Refusal::Unsafe(
                "a file or link cannot replace an earlier directory".into(),
            )),
            Ok(_) => {
                fs::remove_file(dst).map_err(|e| Refusal::Io(io_err("remove the earlier", dst)(e)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Refusal::Io(io_err("inspect", dst)(e))),
        }
    }

    /// A hard link's source must be an earlier non-directory entry reached through real directories
    /// only.
    fn check_link_source(&self, src_rel: &Path) -> std::result::Result<(), Refusal> {
        let mut prefix = PathBuf::new();
        for c in src_rel.components() {
            prefix.push(c);
            let here = self.root.join(&prefix);
            let meta = match fs::symlink_metadata(&here) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Refusal::Unsafe(format!(
                        "hard link to {}, which is not an earlier entry of the archive",
                        src_rel.display()
                    )))
                }
                Err(e) => return Err(Refusal::Io(io_err("inspect", &here)(e))),
            };
            let last = prefix.as_path() == src_rel;
            if last && meta.is_dir() {
                return Err(Refusal::Unsafe(format!(
                    "hard link to the directory {}",
                    src_rel.display()
                )));
            }
            if !last && !meta.is_dir() {
                return Err(Refusal::Unsafe(format!(
                    "hard link target {}",
                    through(&prefix, &meta)
                )));
            }
        }
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut R,
        dst: &Path,
        mode: u32,
        mtime: Option<u64>,
    ) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dst)
            .map_err(io_err("create", dst))?;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.corrupt(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(io_err("write", dst))?;
        }
        set_file_mode(&file, dst, mode)?;
        if let Some(secs) = mtime {
            // Timestamps are a courtesy: a value the platform cannot store is not worth failing
            // for.
            if let Some(t) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
                let _ = file.set_modified(t);
            }
        }
        Ok(())
    }
}

/// Why a step refused: an unsafe entry (turned into [`Error::UnsafeEntry`] by the caller) or an I/O
/// failure.
enum Refusal {
    Unsafe(String),
    Io(Error),
}

impl Refusal {
    fn into_error(self, refuse: impl FnOnce(String) -> Error) -> Error {
        match self {
            Refusal::Unsafe(reason) => refuse(reason),
            Refusal::Io(e) => e,
        }
    }
}

fn through(prefix: &Path, meta: &fs::Metadata) -> String {
    let what = if meta.file_type().is_symlink() {
        "symlink"
    } else {
        "file"
    };
    format!(
        "goes through the {what} {}, which is not a real directory",
        prefix.display()
    )
}

/// The entry name as a relative path without `.` components, or why it is refused.
fn safe_relative(path: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err("absolute paths are not extracted")
            }
            Component::ParentDir => return Err("paths containing `..` are not extracted"),
            Component::CurDir => {}
            Component::Normal(s) => out.push(s),
        }
    }
    Ok(out)
}

/// A symlink at `rel` may point to `target` only if the target is relative, puts every `..` first,
/// and climbs no higher than the root.
fn check_symlink_target(rel: &Path, target: &Path) -> std::result::Result<(), String> {
    let outside = || {
        format!(
            "symlink to {} points outside the destination",
            target.display()
        )
    };
    if target.as_os_str().is_empty() {
        return Err("a symlink with an empty target".into());
    }
    // Depth of the folder holding the link, below the root.
    let depth = rel.components().count().saturating_sub(1);
    let mut ups = 0usize;
    let mut seen_name = false;
    for c in target.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Err(outside()),
            Component::CurDir => {}
            Component::ParentDir if seen_name => {
                return Err(format!(
                    "symlink to {} has `..` after a name, which cannot be checked without following links",
                    target.display()
                ))
            }
            Component::ParentDir => ups += 1,
            Component::Normal(_) => seen_name = true,
        }
    }
    if ups > depth {
        return Err(outside());
    }
    Ok(())
}

fn describe_type(t: EntryType) -> String {
    match t {
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "fifo".into(),
        EntryType::GNUSparse => "GNU sparse file".into(),
        other => format!("{:?} ({:?})", other, other.as_byte() as char),
    }
}

#[cfg(unix)]
fn make_symlink(target: &Path, dst: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, dst).map_err(io_err(
        format!("create a symlink to {} at", target.display()),
        dst,
    ))
}

#[cfg(not(unix))]
fn make_symlink(target: &Path, dst: &Path) -> Result<()> {
    Err(io_err(
        format!("create a symlink to {} at", target.display()),
        dst,
    )(io::Error::new(
        io::ErrorKind::Unsupported,
        "symlinks in archives are only extracted on unix",
    )))
}

/// Normalises permissions like git: executable entries get 0o755, everything else 0o644.
#[cfg(unix)]
fn set_file_mode(file: &File, dst: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let perm = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(perm))
        .map_err(io_err("set permissions of", dst))
}

#[cfg(not(unix))]
fn set_file_mode(_file: &File, _dst: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names() {
        assert_eq!(
            safe_relative(Path::new("./a//b/./c")).unwrap(),
            Path::new("a/b/c")
        );
        assert_eq!(safe_relative(Path::new("./")).unwrap(), Path::new(""));
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert!(safe_relative(Path::new("a/../b")).is_err());
    }

    #[test]
    fn symlink_targets() {
        let ok = |rel: &str, t: &str| check_symlink_target(Path::new(rel), Path::new(t)).is_ok();
        assert!(ok("a/b/link", "../../x/y"));
        assert!(ok("a/link", ".."));
        assert!(ok("link", "x/./y"));
        assert!(ok("link", "."));
        assert!(!ok("link", ".."));
        assert!(!ok("a/link", "../.."));
        assert!(!ok("a/link", "/etc"));
        assert!(!ok("a/link", "x/../.."));
        assert!(!ok("a/b/link", "s/.."));
        assert!(!ok("link", ""));
    }
}
