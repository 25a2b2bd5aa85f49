//! Safe extraction of `.tgz` archives: nothing is written outside the destination, a
//! half-extracted folder never takes the destination's name, and no archive unpacks past the
//! configured limits or the free disk space.
//!
//! The rules, checked before anything of an entry is written:
//! - entry names must be relative and free of `..` (absolute names and `..` are refused, not
//!   rewritten);
//! - no entry may be written through a symlink or over a directory, so every path we write is a
//!   real directory chain below the root;
//! - a symlink's target must be relative, of the form `../../a/b` (every `..` first), and climb no
//!   higher than the root; with the previous rule this keeps every link inside the root however
//!   links chain. When only part of the extracted tree becomes the dataset (the single top folder,
//!   see [`Unpacked::check_links_below`]), the links are checked again against that part;
//! - a hard link must name an earlier regular file (not a directory, not a symlink, whose target
//!   would be read from the link's new place) by a safe name, reached without symlinks;
//! - only regular files, directories, symlinks and hard links are extracted; devices, fifos and GNU
//!   sparse files are refused (no dataset needs them, and a sparse entry can claim terabytes of
//!   zeros);
//! - a later entry of the same name replaces an earlier file or link (as in tar), but a file never
//!   replaces a directory nor a directory a file;
//! - the whole gzip stream is read to its end so that its CRC-32 and length checks run even when
//!   the tar end-of-archive marker comes earlier; zero bytes after the last gzip member are
//!   accepted (tape padding, which tar, gzip and Python accept too), anything else there is
//!   reported as [`Error::Corrupt`];
//! - the archive may not unpack to more than [`ExtractLimits`] allow (total bytes, bytes per
//!   compressed byte, entries: [`Error::TooLarge`]), nor to more than the free disk space
//!   ([`Error::NoSpace`]).
//!
//! Entry names in messages are cut to 80 characters, and every message names the archive.
//!
//! Extraction happens in a hidden folder `.{name}.extract-XXXXXX` next to the destination, locked
//! (flock on the folder) for as long as its process lives; a later extraction to the same
//! destination removes such folders whose lock is free, that is whose process was killed.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use flate2::bufread::GzDecoder;
use tar::EntryType;

use crate::error::{io_err, Error, Result};

/// How far an archive may expand before extraction is refused ([`Error::TooLarge`]). The defaults
/// fit every dataset fastai lists with room to spare; raise them (in
/// [`crate::FetchConfig::extract`], or by calling [`extract_tgz_with`]) for a larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractLimits {
    /// The most bytes the decompressed tar stream may hold, headers and padding included: 64 GiB
    /// by default.
    pub max_unpacked_bytes: u64,
    /// The most decompressed bytes per compressed byte, checked once more than
    /// [`ExtractLimits::ratio_grace_bytes`] have been decompressed: 100 by default. Images barely
    /// compress and even a tar of many tiny files stays near 20; deflate can reach about 1000 on
    /// zeros, which is what a decompression bomb is made of.
    pub max_ratio: u64,
    /// How many decompressed bytes are allowed before [`ExtractLimits::max_ratio`] applies: 1 GiB
    /// by default, so that small archives of very compressible files are never refused.
    pub ratio_grace_bytes: u64,
    /// The most entries (files, folders, links) an archive may hold: 10 million by default
    /// (ImageNet's training set has 1.3 million files).
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_unpacked_bytes: 64 << 30,
            max_ratio: 100,
            ratio_grace_bytes: 1 << 30,
            max_entries: 10_000_000,
        }
    }
}

/// Free space left untouched on the destination's disk, so that extraction never fills it to the
/// last byte (the file system needs room for folders and metadata too).
pub const FREE_SPACE_RESERVE: u64 = 16 << 20;

/// File sizes are rounded up to this when counting disk space, the usual file-system block.
const BLOCK: u64 = 4096;

/// The longest entry name shown in a message, in characters.
const SHOWN_NAME_CHARS: usize = 80;

/// Extracts the gzip-compressed tar `archive` into the new folder `dest`, with the default
/// [`ExtractLimits`].
///
/// `dest` must not exist; its parent must. The archive is unpacked into a hidden temporary folder
/// next to `dest` that is renamed to `dest` only once every entry is written, so a killed or failed
/// extraction never leaves a folder that looks complete; temporary folders left by killed earlier
/// extractions to `dest` are removed first. Unsafe entries (see the module documentation) fail the
/// whole extraction with [`Error::UnsafeEntry`] naming the entry; an unreadable archive fails with
/// [`Error::Corrupt`]; one that expands too far with [`Error::TooLarge`] or [`Error::NoSpace`]. On
/// any error nothing is left behind.
pub fn extract_tgz(archive: &Path, dest: &Path) -> Result<()> {
    extract_tgz_with(archive, dest, &ExtractLimits::default())
}

/// [`extract_tgz`] with the given limits.
pub fn extract_tgz_with(archive: &Path, dest: &Path, limits: &ExtractLimits) -> Result<()> {
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
    remove_stale_temp_dirs(parent, &name)?;
    let tmp = temp_dir_in(parent, &name)?;
    unpack_tgz(archive, tmp.path(), limits)?;
    tmp.persist(dest)
}

/// A hidden temporary folder `.{name}.extract-XXXXXX`, removed when dropped, and locked while it
/// lives so that [`remove_stale_temp_dirs`] can tell it from the folder of a killed process.
pub(crate) struct ExtractDir {
    dir: tempfile::TempDir,
    // Held for the folder's whole life: the flock goes away with this process, however it ends.
    _lock: DirLock,
}

impl ExtractDir {
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renames the folder to `dest`, still locked, so that no cleaner takes it for a stale one
    /// meanwhile. On failure the folder is removed.
    pub(crate) fn persist(self, dest: &Path) -> Result<()> {
        let ExtractDir { dir, _lock: lock } = self;
        let kept = dir.keep();
        let renamed = fs::rename(&kept, dest).map_err(|e| {
            // Leave nothing behind on failure; the rename error is the one worth reporting.
            let _ = fs::remove_dir_all(&kept);
            io_err(format!("rename {} to", kept.display()), dest)(e)
        });
        drop(lock);
        renamed
    }
}

/// A new locked temporary folder `.{name}.extract-XXXXXX` in `parent`.
pub(crate) fn temp_dir_in(parent: &Path, name: &str) -> Result<ExtractDir> {
    // A cleaner may find and lock the new folder before we do (it then removes it): take another.
    for _ in 0..8 {
        let dir = tempfile::Builder::new()
            .prefix(&temp_prefix(name))
            .tempdir_in(parent)
            .map_err(io_err("create a temporary folder in", parent))?;
        if let Some(lock) = try_lock_dir(dir.path()).map_err(io_err("lock", dir.path()))? {
            return Ok(ExtractDir { dir, _lock: lock });
        }
    }
    Err(io_err("create a temporary folder in", parent)(
        io::Error::other(
            "each new folder was removed by another process before it could be locked",
        ),
    ))
}

fn temp_prefix(name: &str) -> String {
    format!(".{name}.extract-")
}

/// Removes the temporary folders that extractions to `parent/name` killed before they finished
/// left behind, and leaves those of extractions still running (whose folder is locked) alone.
#[cfg(unix)]
pub(crate) fn remove_stale_temp_dirs(parent: &Path, name: &str) -> Result<()> {
    let prefix = temp_prefix(name);
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        // A missing parent holds nothing stale; the caller reports it when it writes there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list", parent)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("list", parent))?;
        // Only real folders are ours (opening a fifo of that name would block).
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        let lock = match try_lock_dir(&path) {
            Ok(lock) => lock,
            // Removed meanwhile by another cleaner.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("lock", &path)(e)),
        };
        if let Some(lock) = lock {
            // Its process is gone: the lock was free. Remove it while holding the lock, so that no
            // process can mistake it for its own new folder.
            match fs::remove_dir_all(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove the stale folder", &path)(e))
                }
                _ => {}
            }
            drop(lock);
        }
    }
    Ok(())
}

/// Without flock on folders a live extraction cannot be told from a dead one, so nothing is
/// removed.
#[cfg(not(unix))]
pub(crate) fn remove_stale_temp_dirs(_parent: &Path, _name: &str) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
type DirLock = File;
#[cfg(not(unix))]
type DirLock = ();

/// An exclusive flock on the folder `dir` itself, or `None` when another process holds it or the
/// folder was replaced while we locked it.
#[cfg(unix)]
fn try_lock_dir(dir: &Path) -> io::Result<Option<DirLock>> {
    use fs4::fs_std::FileExt;
    use std::os::unix::fs::MetadataExt;
    let file = File::open(dir)?;
    if !file.metadata()?.is_dir() {
        // Not a folder of ours, whatever its name.
        return Ok(None);
    }
    if !FileExt::try_lock_exclusive(&file)? {
        return Ok(None);
    }
    // A cleaner may have removed the folder between our open and our lock; then the lock is on a
    // deleted folder and worth nothing.
    let held = file.metadata()?;
    Ok(match fs::symlink_metadata(dir) {
        Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => Some(file),
        _ => None,
    })
}

#[cfg(not(unix))]
fn try_lock_dir(_dir: &Path) -> io::Result<Option<DirLock>> {
    Ok(Some(()))
}

/// What [`unpack_tgz`] extracted, for the checks that depend on which folder becomes the dataset.
pub(crate) struct Unpacked {
    archive: PathBuf,
    /// Every symlink written, by relative path: its name in the archive and its target.
    symlinks: BTreeMap<PathBuf, (String, PathBuf)>,
}

impl Unpacked {
    /// Checks every symlink below the relative folder `top` against `top` itself, for when `top`
    /// (the archive's single top folder) becomes the dataset root: a link such as
    /// `top/images/up -> ../..` stays inside the extraction folder but would point at the cache's
    /// other datasets once `top` is renamed into place.
    pub(crate) fn check_links_below(&self, top: &Path) -> Result<()> {
        for (rel, (name, target)) in &self.symlinks {
            let Ok(inner) = rel.strip_prefix(top) else {
                continue;
            };
            check_symlink_target(inner, target).map_err(|reason| Error::UnsafeEntry {
                archive: self.archive.clone(),
                entry: short_name(name),
                reason: format!(
                    "{reason} once the archive's single top folder {} becomes the dataset folder",
                    short_name(&top.to_string_lossy())
                ),
            })?;
        }
        Ok(())
    }
}

/// Unpacks the gzip-compressed tar `archive` into the existing folder `root`, following the
/// module's rules. On error `root` may hold part of the archive (all of it inside `root`); callers
/// pass a temporary folder.
pub(crate) fn unpack_tgz(archive: &Path, root: &Path, limits: &ExtractLimits) -> Result<Unpacked> {
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let gauge = Rc::new(Gauge::default());
    let compressed = BufReader::with_capacity(
        1 << 16,
        CountIn {
            inner: file,
            gauge: gauge.clone(),
        },
    );
    let stream = Meter {
        inner: GzMembers {
            decoder: Some(GzDecoder::new(compressed)),
        },
        gauge: gauge.clone(),
        limits: *limits,
    };
    let mut tar = tar::Archive::new(stream);
    let mut unpacker = Unpacker {
        archive,
        root,
        limits,
        gauge,
        real_dirs: HashSet::new(),
        symlinks: BTreeMap::new(),
        entries: 0,
        space_left: 0,
        written: 0,
        buf: vec![0; 1 << 16],
    };
    for entry in tar.entries().map_err(|e| unpacker.corrupt(e))? {
        let mut entry = entry.map_err(|e| unpacker.corrupt(e))?;
        unpacker.unpack(&mut entry)?;
    }
    // tar stops at its end-of-archive marker; read the rest so that gzip's CRC and length are
    // checked, and so that nothing but zero padding follows the last member.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| unpacker.corrupt(e))?;
    Ok(Unpacked {
        archive: archive.to_path_buf(),
        symlinks: unpacker.symlinks,
    })
}

/// Bytes read from the archive and bytes decompressed, shared by the readers that count them and
/// the unpacker; `tripped` holds the reason when a limit stopped the stream, so that the error
/// the tar reader passes on is reported as [`Error::TooLarge`] rather than as corruption.
#[derive(Default)]
struct Gauge {
    compressed: Cell<u64>,
    unpacked: Cell<u64>,
    tripped: RefCell<Option<String>>,
}

/// Counts the compressed bytes read from the archive file.
struct CountIn {
    inner: File,
    gauge: Rc<Gauge>,
}

impl Read for CountIn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let c = &self.gauge.compressed;
        c.set(c.get() + n as u64);
        Ok(n)
    }
}

/// Decompresses gzip members one after the other, like `gzip -d`, and then accepts zero bytes to
/// the end of the file but nothing else.
struct GzMembers<R: BufRead> {
    /// `None` once the input is exhausted.
    decoder: Option<GzDecoder<R>>,
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // The member ended and its CRC and length were checked: see what follows it.
            let Some(decoder) = self.decoder.take() else {
                return Ok(0);
            };
            let mut inner = decoder.into_inner();
            if next_is_member(&mut inner)? {
                self.decoder = Some(GzDecoder::new(inner));
            }
        }
    }
}

/// Whether another gzip member follows; `false` at the end of the input, after zero padding. Any
/// other byte is an error.
fn next_is_member(r: &mut impl BufRead) -> io::Result<bool> {
    match r.fill_buf()?.first() {
        None => return Ok(false),
        // The decoder checks the rest of the magic number and the header.
        Some(0x1f) => return Ok(true),
        Some(_) => {}
    }
    let mut offset = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        if let Some(i) = buf.iter().position(|&b| b != 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "found the byte 0x{:02x} {} bytes after the end of the gzip data, expected \
                     only zero padding or another gzip member there",
                    buf[i],
                    offset + i as u64
                ),
            ));
        }
        let n = buf.len();
        offset += n as u64;
        r.consume(n);
    }
}

/// Counts the decompressed bytes and stops the stream when they pass [`ExtractLimits`].
struct Meter<R> {
    inner: R,
    gauge: Rc<Gauge>,
    limits: ExtractLimits,
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let unpacked = self.gauge.unpacked.get() + n as u64;
        self.gauge.unpacked.set(unpacked);
        let compressed = self.gauge.compressed.get();
        let l = &self.limits;
        let reason = if unpacked > l.max_unpacked_bytes {
            Some(format!(
                "it unpacks to more than {} (ExtractLimits::max_unpacked_bytes)",
                crate::error::bytes(l.max_unpacked_bytes)
            ))
        } else if unpacked > l.ratio_grace_bytes && unpacked / l.max_ratio.max(1) > compressed {
            Some(format!(
                "it unpacks to more than {} times its compressed size ({} from {} so far), as a \
                 decompression bomb does (ExtractLimits::max_ratio)",
                l.max_ratio,
                crate::error::bytes(unpacked),
                crate::error::bytes(compressed)
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => {
                let err = io::Error::other(reason.clone());
                *self.gauge.tripped.borrow_mut() = Some(reason);
                Err(err)
            }
            None => Ok(n),
        }
    }
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
    limits: &'a ExtractLimits,
    gauge: Rc<Gauge>,
    /// Relative paths already known to be real directories (not symlinks) below the root.
    /// Directories are never removed or replaced during extraction, so the knowledge stays true.
    real_dirs: HashSet<PathBuf>,
    /// The symlinks written so far, for [`Unpacked::check_links_below`].
    symlinks: BTreeMap<PathBuf, (String, PathBuf)>,
    /// Entries seen so far, of every type.
    entries: u64,
    /// Disk space known to be free for us beyond what we have written, in bytes; asked again from
    /// the file system only when an entry needs more, so that tiny entries cost no system call.
    space_left: u64,
    /// Bytes of file data written so far.
    written: u64,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn unpack<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let shown = short_name(&raw_name);
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.too_large(format!(
                "it holds more than {} entries (ExtractLimits::max_entries)",
                self.limits.max_entries
            )));
        }
        self.unpack_entry(entry, &raw_name, &shown)
            .map_err(|e| match e {
                // Name the archive and the entry (shortened) rather than the long path below the
                // temporary folder.
                Error::Io {
                    action,
                    path,
                    source,
                } => Error::EntryIo {
                    archive: self.archive.to_path_buf(),
                    entry: shown.clone(),
                    action: format!(
                        "{action} {}",
                        short_name(
                            &path
                                .strip_prefix(self.root)
                                .unwrap_or(&path)
                                .to_string_lossy()
                        )
                    ),
                    source,
                },
                other => other,
            })
    }

    fn unpack_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw_name: &str,
        shown: &str,
    ) -> Result<()> {
        let archive = self.archive;
        let refuse = |reason: String| Error::UnsafeEntry {
            archive: archive.to_path_buf(),
            entry: shown.to_string(),
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
            // Folders are never removed or replaced, so one seen before needs no system call.
            Kind::Dir if self.real_dirs.contains(&rel) => {}
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
                let size = entry.size();
                if size > self.limits.max_unpacked_bytes {
                    return Err(self.too_large(format!(
                        "its entry {shown:?} claims {}, more than the {} allowed for the whole \
                         archive (ExtractLimits::max_unpacked_bytes)",
                        crate::error::bytes(size),
                        crate::error::bytes(self.limits.max_unpacked_bytes)
                    )));
                }
                self.reserve_space(size, shown)?;
                self.clear_for_non_dir(&dst)
                    .map_err(|e| e.into_error(refuse))?;
                self.symlinks.remove(&rel);
                let header = entry.header();
                let mode = header.mode().map_err(|e| self.corrupt(e))?;
                let mtime = header.mtime().ok();
                self.write_file(entry, &dst, mode, mtime)?;
                self.written += size;
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
                self.symlinks
                    .insert(rel, (raw_name.to_string(), target.into_owned()));
            }
            Kind::HardLink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(e))?
                    .ok_or_else(|| refuse("a hard link without a target".into()))?;
                let shown_target = short_name(&target.to_string_lossy());
                let src_rel = safe_relative(&target)
                    .map_err(|r| refuse(format!("hard link to {shown_target}: {r}")))?;
                if src_rel.as_os_str().is_empty() || src_rel == rel {
                    return Err(refuse(format!(
                        "hard link to {shown_target} links to itself or the root"
                    )));
                }
                self.check_link_source(&src_rel)
                    .map_err(|e| e.into_error(refuse))?;
                self.clear_for_non_dir(&dst)
                    .map_err(|e| e.into_error(refuse))?;
                self.symlinks.remove(&rel);
                let src = self.root.join(&src_rel);
                fs::hard_link(&src, &dst)
                    .map_err(io_err(format!("hard-link {shown_target} to"), &dst))?;
            }
            Kind::Skip => {}
        }
        Ok(())
    }

    /// Reports a decompression or tar error, or the limit that stopped the stream.
    fn corrupt(&self, e: io::Error) -> Error {
        match self.gauge.tripped.borrow_mut().take() {
            Some(reason) => self.too_large(reason),
            None => Error::Corrupt {
                path: self.archive.to_path_buf(),
                reason: e.to_string(),
            },
        }
    }

    fn too_large(&self, reason: String) -> Error {
        Error::TooLarge {
            archive: self.archive.to_path_buf(),
            reason,
        }
    }

    /// Makes sure `size` more bytes fit on the disk, keeping [`FREE_SPACE_RESERVE`] free.
    fn reserve_space(&mut self, size: u64, shown: &str) -> Result<()> {
        let need = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        if need <= self.space_left {
            self.space_left -= need;
            return Ok(());
        }
        let free = fs4::available_space(self.root)
            .map_err(io_err("read the free space of the disk holding", self.root))?;
        let usable = free.saturating_sub(FREE_SPACE_RESERVE);
        if need > usable {
            return Err(Error::NoSpace {
                archive: self.archive.to_path_buf(),
                dir: self.root.parent().unwrap_or(self.root).to_path_buf(),
                entry: shown.to_string(),
                needed: need.saturating_add(FREE_SPACE_RESERVE),
                available: free,
                written: self.written,
            });
        }
        self.space_left = usable - need;
        Ok(())
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

    /// A hard link's source must be an earlier regular file reached through real directories
    /// only.
    fn check_link_source(&self, src_rel: &Path) -> std::result::Result<(), Refusal> {
        let shown = || short_name(&src_rel.to_string_lossy());
        let mut prefix = PathBuf::new();
        for c in src_rel.components() {
            prefix.push(c);
            let here = self.root.join(&prefix);
            let meta = match fs::symlink_metadata(&here) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Refusal::Unsafe(format!(
                        "hard link to {}, which is not an earlier entry of the archive",
                        shown()
                    )))
                }
                Err(e) => return Err(Refusal::Io(io_err("inspect", &here)(e))),
            };
            let last = prefix.as_path() == src_rel;
            if last && meta.is_dir() {
                return Err(Refusal::Unsafe(format!(
                    "hard link to the directory {}",
                    shown()
                )));
            }
            if last && meta.file_type().is_symlink() {
                // The new name would be a symlink whose target is read from the new place, where
                // it may climb out of the destination.
                return Err(Refusal::Unsafe(format!(
                    "hard link to the symlink {}, expected a hard link to a regular file",
                    shown()
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
        short_name(&prefix.to_string_lossy())
    )
}

/// `name` cut to its first 80 characters, with its length, when longer: entry names come from the
/// archive and may run to thousands of characters.
pub(crate) fn short_name(name: &str) -> String {
    let count = name.chars().count();
    if count <= SHOWN_NAME_CHARS {
        return name.to_string();
    }
    let head: String = name.chars().take(SHOWN_NAME_CHARS).collect();
    format!("{head}… ({count} characters)")
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
    let shown = short_name(&target.to_string_lossy());
    let outside = || format!("symlink to {shown} points outside the destination");
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
                    "symlink to {shown} has `..` after a name, which cannot be checked without \
                     following links"
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

    #[test]
    fn long_names_are_cut_in_messages() {
        assert_eq!(short_name("a/b"), "a/b");
        let exact = "x".repeat(80);
        assert_eq!(short_name(&exact), exact);
        let long = format!("{}é", "y".repeat(5000));
        assert_eq!(
            short_name(&long),
            format!("{}… (5001 characters)", "y".repeat(80))
        );
    }
}
