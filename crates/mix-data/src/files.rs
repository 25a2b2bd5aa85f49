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
pub fn get_image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out, &mut Vec::new())?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, ancestors: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let canonical = fs::canonicalize(dir).map_err(io)?;
    if ancestors.contains(&canonical) {
        return Ok(());
    }
    ancestors.push(canonical);
    walk_entries(dir, out, ancestors)?;
    ancestors.pop();
    Ok(())
}

fn walk_entries(dir: &Path, out: &mut Vec<PathBuf>, ancestors: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // `metadata` follows symlinks, like os.walk(followlinks=True); a dangling link is skipped
        // as os.walk skips it.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !hidden {
                walk(&path, out, ancestors)?;
            }
        } else if is_image_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}
