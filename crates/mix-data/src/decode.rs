//! Decodes image files to 8-bit RGB, converting other colour types and rejecting broken files.

use std::fs;
use std::path::Path;

use image::{ImageFormat, RgbImage};

use crate::{Error, Result};

/// Formats this crate decodes (the `image` features enabled in the workspace).
const SUPPORTED: &[ImageFormat] = &[
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
    ImageFormat::WebP,
];

/// Reads and decodes the image at `path` to 8-bit RGB; see [`decode_rgb_bytes`].
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb_bytes(&bytes, path)
}

/// Decodes an encoded image to 8-bit RGB, like PIL's `Image.open(f).convert('RGB')` in fastai's
/// `PILImage.create`.
///
/// The format is recognised from the content, not the extension (a PNG named `.jpg` decodes).
/// Grayscale is replicated to three channels, palette images are expanded, alpha is dropped
/// (not composited, as PIL does), CMYK JPEGs are converted by the decoder, 16-bit samples are
/// rounded to 8 bits, and animated GIFs give their first frame. EXIF orientation is not applied
/// (PIL and fastai do not apply it either).
///
/// Errors ([`Error::Decode`], naming `path`): empty or unrecognised data (for example a text
/// file named `.jpg`), unsupported formats, truncated JPEGs (no end-of-image marker after the
/// scan data: the JPEG decoder would otherwise fill the missing part with grey), and anything
/// the decoders reject. Never panics on any input (fuzzed, see `crates/mix-data/fuzz`).
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let format = image::guess_format(bytes).map_err(|_| err(describe_unknown(bytes)))?;
    if !SUPPORTED.contains(&format) {
        return Err(err(format!(
            "found a {format:?} image, which is not supported"
        )));
    }
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(err)?;
    }
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| err(format!("the {format:?} decoder failed: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(err(format!(
            "found a {}x{} image, expected at least 1x1",
            img.width(),
            img.height()
        )));
    }
    Ok(img.into_rgb8())
}

/// Says what the bytes of an unrecognised file look like, for the error message.
fn describe_unknown(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".to_owned();
    }
    let head = &bytes[..bytes.len().min(16)];
    if head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        format!(
            "found text ({:?}...) rather than a known image format",
            String::from_utf8_lossy(head)
        )
    } else {
        format!("found an unknown format starting with bytes {head:02x?}")
    }
}

/// Checks that a JPEG has an end-of-image marker after its first scan.
///
/// The JPEG decoder runs in lenient mode (like libjpeg under PIL, it accepts minor corruption),
/// and in that mode it pads a truncated scan with grey instead of failing; PIL raises "image file
/// is truncated" instead. Walking the marker segments up to the first start-of-scan skips
/// embedded EXIF thumbnails, whose own end-of-image markers must not count.
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut i = 2; // after SOI
    loop {
        // libjpeg skips stray bytes before a marker with a warning; so do we.
        while i < bytes.len() && bytes[i] != 0xFF {
            i += 1;
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err("the file is truncated: it ends before the image data".to_owned());
        };
        i += 1;
        match marker {
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD8 => {}
            0xD9 => {
                return Err("the file ends (end-of-image marker) before any image data".to_owned())
            }
            0xDA => break,
            _ => {
                let len = match bytes.get(i..i + 2) {
                    Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                    _ => return Err("the file is truncated inside its headers".to_owned()),
                };
                if len < 2 {
                    return Err(format!(
                        "found a marker segment of length {len}, expected at least 2"
                    ));
                }
                i += len;
            }
        }
    }
    let scan = bytes.get(i..).unwrap_or_default();
    // Searching from the end finds the marker at once in a complete file.
    if scan.windows(2).rev().any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err("the file is truncated: no end-of-image marker after the image data".to_owned())
    }
}
