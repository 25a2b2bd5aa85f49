//! Decodes image files to 8-bit RGB, converting other colour types and rejecting broken files.
//!
//! Hostile files are refused before they cost memory: the first bytes are checked against the
//! supported formats before the rest is read, the file size is checked before reading
//! ([`DecodeLimits::max_file_bytes`]), and the pixel count the header declares is checked
//! before any pixel buffer is allocated ([`DecodeLimits::max_pixels`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};

use image::{
    ColorType, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage,
};

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

/// Bytes read before anything else to recognise the format: enough for every signature `image`
/// knows (WebP's `RIFF....WEBP` is the longest of the supported ones, 12 bytes).
const SNIFF_BYTES: usize = 32;

/// Default of [`DecodeLimits::max_file_bytes`]: 64 MiB, about eight times the largest photo of
/// common datasets (Oxford-IIIT Pet's largest file is under 1 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// Default of [`DecodeLimits::max_pixels`]: 64 Mpx (2^26 pixels, for example 8192 x 8192), which
/// takes 192 MiB as 8-bit RGB.
pub const DEFAULT_MAX_PIXELS: u64 = 64 << 20;

/// Largest accepted [`DecodeLimits::max_file_bytes`]: 4 GiB.
const MAX_FILE_BYTES_LIMIT: u64 = 4 << 30;

/// Largest accepted [`DecodeLimits::max_pixels`]: 1 Gpx (2^30 pixels, 3 GiB as 8-bit RGB).
const MAX_PIXELS_LIMIT: u64 = 1 << 30;

/// Bytes a decoder may hold for one pixel before the conversion to RGB: 16 for RGBA `f32`
/// (TIFF), the widest colour type `image` decodes to.
const MAX_DECODER_BYTES_PER_PIXEL: u64 = 16;

/// How large a file and an image may be; larger ones are refused with [`Error::Decode`] before
/// they are read or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest file read, in bytes (default [`DEFAULT_MAX_FILE_BYTES`], at most 4 GiB). Checked
    /// against the file's size before its body is read, so a huge (or sparse) file costs nothing.
    pub max_file_bytes: u64,
    /// Largest image decoded, in pixels (width times height; default [`DEFAULT_MAX_PIXELS`], at
    /// most 2^30). Checked against the dimensions in the header before any pixel buffer exists,
    /// so a small file declaring 100000 x 100000 pixels costs nothing either.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl DecodeLimits {
    /// Checks that both limits are at least 1 and at most their documented maximum.
    pub fn validate(&self) -> Result<()> {
        check_range("max_file_bytes", self.max_file_bytes, MAX_FILE_BYTES_LIMIT)?;
        check_range("max_pixels", self.max_pixels, MAX_PIXELS_LIMIT)
    }

    /// The same limits for the `image` decoders: no side longer than the pixel limit (a
    /// one-pixel-high strip may use it all) and no allocation above the widest colour type.
    fn image_limits(&self) -> image::Limits {
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(side);
        limits.max_image_height = Some(side);
        limits.max_alloc = Some(
            self.max_pixels
                .saturating_mul(MAX_DECODER_BYTES_PER_PIXEL)
                .saturating_add(self.max_file_bytes),
        );
        limits
    }
}

fn check_range(name: &str, value: u64, max: u64) -> Result<()> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "DecodeLimits::{name} is {value}, expected 1..={max}"
        )))
    }
}

/// A budget of bytes of decoded pixels shared by the threads of one loader pool: each decode
/// takes what its image needs (the decoder's buffer plus the RGB copy) before allocating it and
/// gives it back when the item is finished, so `threads x image size` never exceeds the budget.
///
/// An image larger than the whole budget waits until nothing else is in flight and then runs
/// alone, so the peak is at most the larger of the budget and one image.
///
/// A thread holds at most one permit, and runs no rayon work while holding it: a worker waiting
/// in [`acquire`](Self::acquire) cannot run stolen jobs, so a permit holder that waited on rayon
/// jobs queued behind it could deadlock.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    capacity: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl MemoryBudget {
    /// A budget of `capacity` bytes (at least 1).
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits until `bytes` (at most the whole budget) are free and takes them.
    pub(crate) fn acquire(&self, bytes: u64) -> Permit<'_> {
        let bytes = bytes.min(self.capacity);
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used + bytes > self.capacity {
            used = self
                .freed
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += bytes;
        Permit {
            budget: self,
            bytes,
        }
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        *used -= bytes;
        self.freed.notify_all();
    }

    /// Bytes taken now.
    #[cfg(test)]
    fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes taken from a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Permit<'_> {
    /// Gives back all but `bytes` (the decoder's buffer is gone once the image is RGB).
    fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Reads and decodes the image at `path` to 8-bit RGB with the default [`DecodeLimits`]; see
/// [`decode_rgb_with`].
pub fn decode_rgb(path: &Path) -> Result<RgbImage> {
    decode_rgb_with(path, &DecodeLimits::default())
}

/// Reads and decodes the image at `path` to 8-bit RGB, refusing files and images beyond
/// `limits`; see [`decode_rgb_bytes`] for the conversions.
///
/// The file is not read whole up front: its first bytes are checked for a supported format and
/// its size against [`DecodeLimits::max_file_bytes`] first, then non-JPEG formats are decoded
/// through a buffered reader. JPEGs are read whole (within the size limit), because the JPEG
/// decoder does so anyway and the truncation check needs the end of the file.
///
/// Errors: [`Error::Io`] when the file cannot be opened or read (missing, deleted since it was
/// listed, a symlink loop, no permission), [`Error::Decode`] for everything else (not a regular
/// file, unknown format, too large, truncated, corrupt); both name `path`.
pub fn decode_rgb_with(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    limits.validate()?;
    decode_file(path, limits, None).map(|(img, _)| img)
}

/// Decodes `path` within `limits`, taking the pixels' memory from `budget` when there is one; the
/// returned permit holds the decoded image's share until it is dropped.
pub(crate) fn decode_file<'b>(
    path: &Path,
    limits: &DecodeLimits,
    budget: Option<&'b MemoryBudget>,
) -> Result<(RgbImage, Option<Permit<'b>>)> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "a special file (FIFO, socket or device)"
        };
        return Err(err(format!("found {kind}, expected a regular file")));
    }
    let mut head = [0u8; SNIFF_BYTES];
    let n = read_up_to(&mut file, &mut head).map_err(io)?;
    let format = sniff(&head[..n]).map_err(err)?;
    check_file_size(meta.len(), limits).map_err(err)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if format == ImageFormat::Jpeg {
        // Within the size limit (checked above); `take` keeps it so if the file grows meanwhile.
        let cap = usize::try_from(meta.len()).unwrap_or(0);
        let mut bytes = Vec::with_capacity(cap);
        file.take(limits.max_file_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        check_file_size(bytes.len() as u64, limits).map_err(err)?;
        check_jpeg_complete(&bytes).map_err(err)?;
        decode_reader(Cursor::new(&bytes[..]), format, limits, budget).map_err(err)
    } else {
        decode_reader(BufReader::new(file), format, limits, budget).map_err(err)
    }
}

/// Decodes an encoded image to 8-bit RGB with the default [`DecodeLimits`]; see
/// [`decode_rgb_bytes_with`].
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    decode_rgb_bytes_with(bytes, path, &DecodeLimits::default())
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
/// file named `.jpg`), unsupported formats, more bytes than [`DecodeLimits::max_file_bytes`], a
/// header declaring more pixels than [`DecodeLimits::max_pixels`] (refused before any pixel
/// buffer is allocated), truncated JPEGs (no end-of-image marker after the scan data: the JPEG
/// decoder would otherwise fill the missing part with grey), and anything the decoders reject.
/// Never panics on any input (fuzzed, see `crates/mix-data/fuzz`).
pub fn decode_rgb_bytes_with(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    limits.validate()?;
    let err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    let format = sniff(bytes).map_err(err)?;
    check_file_size(bytes.len() as u64, limits).map_err(err)?;
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(err)?;
    }
    decode_reader(Cursor::new(bytes), format, limits, None)
        .map(|(img, _)| img)
        .map_err(err)
}

/// Reads into `buf` until it is full or the reader ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The supported format the first bytes of a file announce.
fn sniff(head: &[u8]) -> std::result::Result<ImageFormat, String> {
    let format = image::guess_format(head).map_err(|_| describe_unknown(head))?;
    if SUPPORTED.contains(&format) {
        Ok(format)
    } else {
        Err(format!("found a {format:?} image, which is not supported"))
    }
}

fn check_file_size(len: u64, limits: &DecodeLimits) -> std::result::Result<(), String> {
    if len > limits.max_file_bytes {
        Err(format!(
            "the file is {len} bytes, more than the limit of {} bytes \
             (DecodeLimits::max_file_bytes); it was not read",
            limits.max_file_bytes
        ))
    } else {
        Ok(())
    }
}

/// Decodes from `reader` once the header's dimensions pass the pixel limit; the pixels' memory is
/// taken from `budget` (when given) before it is allocated.
fn decode_reader<'b, R: BufRead + Seek>(
    reader: R,
    format: ImageFormat,
    limits: &DecodeLimits,
    budget: Option<&'b MemoryBudget>,
) -> std::result::Result<(RgbImage, Option<Permit<'b>>), String> {
    let failed = |e: ImageError| match e {
        ImageError::Limits(e) => format!(
            "the {format:?} decoder refused the image as larger than the limit of {} pixels \
             (DecodeLimits::max_pixels): {e}",
            limits.max_pixels
        ),
        e => format!("the {format:?} decoder failed: {e}"),
    };
    let mut reader = ImageReader::with_format(reader, format);
    reader.limits(limits.image_limits());
    let decoder = reader.into_decoder().map_err(failed)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("found a {w}x{h} image, expected at least 1x1"));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(format!(
            "the header declares {w}x{h} = {pixels} pixels, more than the limit of {} \
             (DecodeLimits::max_pixels); it was not decoded",
            limits.max_pixels
        ));
    }
    let rgb_bytes = pixels * 3;
    let cost = if decoder.color_type() == ColorType::Rgb8 {
        rgb_bytes
    } else {
        decoder.total_bytes().saturating_add(rgb_bytes)
    };
    let mut permit = budget.map(|b| b.acquire(cost));
    let img = DynamicImage::from_decoder(decoder)
        .map_err(failed)?
        .into_rgb8();
    if let Some(p) = permit.as_mut() {
        p.shrink_to(rgb_bytes);
    }
    Ok((img, permit))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn budget_never_lets_more_than_its_capacity_in_flight() {
        let budget = Arc::new(MemoryBudget::new(100));
        let in_flight = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (budget, in_flight, peak) = (
                    Arc::clone(&budget),
                    Arc::clone(&in_flight),
                    Arc::clone(&peak),
                );
                std::thread::spawn(move || {
                    for k in 0..200u64 {
                        // Sizes 20..=60, so at most a few fit at once.
                        let bytes = 20 + (t * 7 + k * 13) % 41;
                        let permit = budget.acquire(bytes);
                        let now = in_flight.fetch_add(bytes, Ordering::SeqCst) + bytes;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        in_flight.fetch_sub(bytes, Ordering::SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 100, "peak {peak} bytes in flight, budget 100");
        assert!(peak > 60, "peak {peak}: several permits should overlap");
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn oversized_request_runs_alone_and_shrinking_gives_bytes_back() {
        let budget = MemoryBudget::new(100);
        {
            let mut big = budget.acquire(1_000);
            assert_eq!(budget.used(), 100);
            big.shrink_to(30);
            assert_eq!(budget.used(), 30);
            let small = budget.acquire(70);
            assert_eq!(budget.used(), 100);
            drop(small);
        }
        assert_eq!(budget.used(), 0);
    }
}
