//! Canvas checks and the atomic PNG write shared by the grid and the plot.

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

/// Writes `img` as a PNG at `path` with [`mix_io::write_atomic_with`]: the destination is either the
/// old file or the complete new one, never a partial write, with an ordinary file's permissions.
pub(crate) fn write_png_atomic(path: &Path, img: &RgbImage) -> Result<()> {
    let mut encode_error = None;
    let written = mix_io::write_atomic_with(path, |out| {
        PngEncoder::new(out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                ExtendedColorType::Rgb8,
            )
            .map_err(|e| {
                let io = std::io::Error::other(e.to_string());
                encode_error = Some(e);
                io
            })
    });
    match (written, encode_error) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(source)) => Err(Error::Encode {
            path: path.to_path_buf(),
            source,
        }),
        (Err(e), None) => Err(Error::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }),
    }
}
