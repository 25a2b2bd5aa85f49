//! Lists image files under a folder the way fastai's `get_image_files` does, in sorted order.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// File extensions (lower case, without the dot) that count as images.
///
/// fastai uses `mimetypes.types_map` entries whose type starts with `image/`; this is that set
/// for CPython 3.11 plus `webp` (registered from CPython 3.13 on). Some of these (svg, heic, ico,
/// ...) are listed but not decodable here, as in fastai; [`crate::decode_rgb`] reports them.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "avif", "bmp", "gif", "heic", "heif", "ico", "ief", "jpe", "jpeg", "jpg", "pbm", "pgm", "png",
    "pnm", "ppm", "ras", "rgb", "svg", "tif", "tiff", "webp", "xbm", "xpm", "xwd",
];

/// Whether fastai's `get_image_files` would keep this file, judging by its name alone.
///
/// Hidden files (name starting with `.`) are left out. The extension is what follows the last
/// `.`, compared case-insensitively; like fastai's `f.split(".")[-1]`, a name with no dot is its
/// own extension (a file named `png` counts).
pub fn is_image_file(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let name = name.to_string_lossy();
    if name.starts_with('.') {
        return false;
    }
    let ext = name.rsplit('.').next().unwrap_or_default().to_lowercase();
    IMAGE_EXTENSIONS.contains(&ext.as_str())
}

/// All image files under `dir`, recursively, sorted by path.
///
/// Follows fastai's `get_image_files(path)`: recursive, symlinks followed, hidden folders and
/// hidden files skipped, extension test of [`is_image_file`]. Unlike fastai (whose `os.walk`
/// order depends on the file system) the result is sorted, so a seeded split is reproducible
/// everywhere; a folder that cannot be read is an error rather than silently skipped; a
/// symlink that leads back to a folder being walked (a cycle, on which `os.walk` would loop) is
/// not followed. A folder reached through two links is listed under both paths, as in fastai.
///
/// The listing never leaves `dir`: a symlink it would follow (to a visible folder, or with an
/// image file name) whose target resolves outside `dir` is an [`Error::Io`] naming the link and
/// its target, since an extracted archive could otherwise lead the loader into other datasets or
/// system files; list the target folder itself, or copy the files in. A dangling symlink, or one
/// in a loop of symlinks (which resolves to nothing), is skipped as `os.walk` skips it.
pub fn get_image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let root = fs::canonicalize(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    walk(dir, &root, &mut out, &mut Vec::new())?;
    out.sort();
    Ok(out)
}

fn walk(
    dir: &Path,
    root: &Path,
    out: &mut Vec<PathBuf>,
    ancestors: &mut Vec<PathBuf>,
) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let canonical = fs::canonicalize(dir).map_err(io)?;
    if ancestors.contains(&canonical) {
        return Ok(());
    }
    ancestors.push(canonical);
    walk_entries(dir, root, out, ancestors)?;
    ancestors.pop();
    Ok(())
}

fn walk_entries(
    dir: &Path,
    root: &Path,
    out: &mut Vec<PathBuf>,
    ancestors: &mut Vec<PathBuf>,
) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_link = entry.file_type().map_err(io)?.is_symlink();
        if is_link {
            // Where the link leads, every link on the way resolved; a dangling link or a loop of
            // links resolves to nothing and is skipped as os.walk skips it.
            let Ok(target) = fs::canonicalize(&path) else {
                continue;
            };
            // Only a link the listing would use matters: a hidden folder or a file that is not an
            // image is left out wherever it points.
            let used = if target.is_dir() {
                !hidden
            } else {
                is_image_file(&path)
            };
            if used && !target.starts_with(root) {
                return Err(Error::Io {
                    path,
                    source: std::io::Error::other(format!(
                        "it is a symlink to {}, outside the folder being listed ({}); expected \
                         every link to stay inside it: list {} itself, or copy the files in",
                        target.display(),
                        root.display(),
                        target.display()
                    )),
                });
            }
        }
        // `metadata` follows symlinks, like os.walk(followlinks=True); a link that vanished since
        // is skipped as os.walk skips it.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !hidden {
                walk(&path, root, out, ancestors)?;
            }
        } else if is_image_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}
