//! Canvas checks and the atomic PNG write shared by the grid and the plot.

use std::io::{BufWriter, Write};
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use crate::{Error, Result};

/// The largest picture, in pixels, that mix-viz will allocate (2^28, about 0.8 GB of RGB).
pub const MAX_PIXELS: u64 = 1 << 28;

/// A white canvas of the given size, or [`Error::TooLarge`] when it would exceed [`MAX_PIXELS`].
pub(crate) fn white_canvas(width: u64, height: u64) -> Result<RgbImage> {
    let too_large = Error::TooLarge {
        width,
        height,
        max: MAX_PIXELS,
    };
    if width.checked_mul(height).map_or(true, |n| n > MAX_PIXELS) {
        return Err(too_large);
    }
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(too_large);
    };
    Ok(RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255])))
}

/// Writes `img` as a PNG at `path` through a temporary file in the same folder and a rename, so
/// the destination is either the old file or the complete new one, never a partial write.
pub(crate) fn write_png_atomic(path: &Path, img: &RgbImage) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mix-viz-")
        .suffix(".png.tmp")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    let tmp_path = tmp.path().to_path_buf();
    {
        let mut out = BufWriter::new(tmp.as_file_mut());
        PngEncoder::new(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .map_err(|source| Error::Encode {
                path: path.to_path_buf(),
                source,
            })?;
        out.flush().map_err(io("write", &tmp_path))?;
    }
    // Temporary files are created owner-only; a picture is meant to be looked at, so give it the
    // permissions an ordinary new file would have.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(0o644);
        tmp.as_file()
            .set_permissions(perms)
            .map_err(io("set permissions on", tmp.path()))?;
    }
    // On disk before the rename, and the rename itself on disk after it: a power loss leaves the old
    // picture or the new one, never an empty file.
    tmp.as_file().sync_all().map_err(io("sync", tmp.path()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        action: "rename the finished png to",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    Ok(())
}
