//! fastai's `Resize(size, method='crop')`: the crop geometry and the SIMD bilinear resize.

use std::cell::RefCell;
use std::path::Path;

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use ndarray::{Array3, ArrayViewMut3};
use rand::Rng;

use crate::{decode_rgb, Error, Result};

/// Largest side of an item (the `size` of `Resize(size)`) this crate makes: 4096 pixels, 48 MiB
/// per item as RGB `u8`. Larger sizes are refused with [`Error::Config`] before anything is
/// allocated, so a typo such as `--resize 100000` (a 30 GB item) is an error, not an abort.
pub const MAX_ITEM_SIDE: usize = 4096;

/// Largest image [`resize_short_side`] makes, in pixels: an item of [`MAX_ITEM_SIDE`] four times
/// as long as wide, the most elongated image the loader's cache keeps (64 Mpx, 192 MiB).
const MAX_SHORT_SIDE_PIXELS: u64 = 4 * (MAX_ITEM_SIDE as u64) * (MAX_ITEM_SIDE as u64);

/// Checks that `size` is a usable item side: `1..=MAX_ITEM_SIDE`.
pub(crate) fn check_size(name: &str, size: usize) -> Result<()> {
    if (1..=MAX_ITEM_SIDE).contains(&size) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name} is {size}, expected 1..={MAX_ITEM_SIDE} pixels (MAX_ITEM_SIDE)"
        )))
    }
}

/// Where the crop sits inside the slack of the source image, as fractions in `[0, 1]`.
///
/// fastai's `Resize.before_call` sets `pcts = (0.5, 0.5)` on the validation set and
/// `(random.random(), random.random())` on the training set; `x` is the horizontal fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropPos {
    /// Fraction of the horizontal slack left of the crop.
    pub x: f64,
    /// Fraction of the vertical slack above the crop.
    pub y: f64,
}

impl CropPos {
    /// The centred crop used for validation.
    pub const CENTER: Self = Self { x: 0.5, y: 0.5 };

    /// A training crop position: two uniform draws from `[0, 1)`, x first, like fastai.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let x = rng.gen::<f64>();
        let y = rng.gen::<f64>();
        Self { x, y }
    }
}

/// A crop rectangle in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First column.
    pub left: u32,
    /// First row.
    pub top: u32,
    /// Number of columns.
    pub width: u32,
    /// Number of rows.
    pub height: u32,
}

/// The crop fastai's `Resize((dst_h, dst_w), method='crop')` takes from a `src_w x src_h`
/// image before resizing it to `dst_w x dst_h`.
///
/// Transcribes `Resize.encodes`: `m = w/dst_w if w/dst_w < h/dst_h else h/dst_h`,
/// `crop = (int(m*dst_w), int(m*dst_h))`, `tl = (int(pos.x*(w-crop_w)), int(pos.y*(h-crop_h)))`,
/// all in `f64` as in Python. The crop is the largest with the target's aspect ratio that fits.
/// Sizes are kept within `1..=src` and positions within the image, so degenerate inputs (a zero
/// dimension, a position outside `[0, 1]`) give a valid box instead of a panic.
pub fn crop_box(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, pos: CropPos) -> CropBox {
    let (w, h) = (f64::from(src_w), f64::from(src_h));
    let (rw, rh) = (w / f64::from(dst_w), h / f64::from(dst_h));
    let m = if rw < rh { rw } else { rh };
    // `as u32` truncates toward zero (saturating), like Python's int() on these values.
    let width = ((m * f64::from(dst_w)) as u32).max(1).min(src_w);
    let height = ((m * f64::from(dst_h)) as u32).max(1).min(src_h);
    let left = ((pos.x * f64::from(src_w - width)) as u32).min(src_w - width);
    let top = ((pos.y * f64::from(src_h - height)) as u32).min(src_h - height);
    CropBox {
        left,
        top,
        width,
        height,
    }
}

thread_local! {
    /// One resizer (and its scratch buffers) per thread, reused across images.
    static RESIZER: RefCell<(Resizer, Vec<u8>)> = RefCell::new((Resizer::new(), Vec::new()));
}

/// Bilinear resize options: Pillow's `BILINEAR` convolution, whose support widens with the
/// downscale factor (antialiasing), as `PIL.Image.resize` does.
fn bilinear() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
}

/// Resizes the `src_box` part of `src` to `dst_w x dst_h`, interleaved RGB, into `dst`.
fn resize_box(
    src: &RgbImage,
    src_box: CropBox,
    dst_w: u32,
    dst_h: u32,
    dst: &mut Vec<u8>,
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::Resize(e.to_string());
    let (w, h) = src.dimensions();
    let src_ref = ImageRef::new(w, h, src.as_raw(), PixelType::U8x3).map_err(|e| fail(&e))?;
    // A cropped *view* (not the resizer's crop option) so the filter sees only the crop's own
    // pixels, exactly like PIL's `img.crop(box).resize(...)` in fastai's `crop_pad`.
    let cropped = CroppedImage::new(
        &src_ref,
        src_box.left,
        src_box.top,
        src_box.width,
        src_box.height,
    )
    .map_err(|e| fail(&e))?;
    // The resizer writes every byte, so a reused buffer needs no clearing.
    let len = (dst_w as usize)
        .checked_mul(dst_h as usize)
        .and_then(|n| n.checked_mul(3))
        .ok_or_else(|| Error::Resize(format!("a {dst_w}x{dst_h} output does not fit in memory")))?;
    dst.resize(len, 0);
    let mut dst_img =
        Image::from_slice_u8(dst_w, dst_h, dst, PixelType::U8x3).map_err(|e| fail(&e))?;
    RESIZER.with(|r| {
        r.borrow_mut()
            .0
            .resize(&cropped, &mut dst_img, &bilinear())
            .map_err(|e| fail(&e))
    })
}

/// Copies an interleaved `size x size` RGB window starting at (`left`, `top`) of an image
/// `row_px` pixels wide into `out` as CHW.
fn window_to_chw(
    hwc: &[u8],
    row_px: usize,
    left: usize,
    top: usize,
    size: usize,
    mut out: ArrayViewMut3<'_, u8>,
) {
    if let Some(o) = out.as_slice_mut() {
        let (r, gb) = o.split_at_mut(size * size);
        let (g, b) = gb.split_at_mut(size * size);
        let planes = r
            .chunks_exact_mut(size)
            .zip(g.chunks_exact_mut(size))
            .zip(b.chunks_exact_mut(size));
        for (y, ((r, g), b)) in planes.enumerate() {
            let row = &hwc[((top + y) * row_px + left) * 3..][..size * 3];
            // Iterators without indices let the compiler drop every bounds check.
            for (((px, r), g), b) in row.chunks_exact(3).zip(r).zip(g).zip(b) {
                *r = px[0];
                *g = px[1];
                *b = px[2];
            }
        }
    } else {
        for y in 0..size {
            for x in 0..size {
                let p = ((top + y) * row_px + left + x) * 3;
                for c in 0..3 {
                    out[[c, y, x]] = hwc[p + c];
                }
            }
        }
    }
}

fn check_out(out: &ArrayViewMut3<'_, u8>, size: usize) -> Result<()> {
    check_size("size", size)?;
    if out.shape() != [3, size, size] {
        return Err(Error::Config(format!(
            "output must have shape [3, {size}, {size}], found {:?}",
            out.shape()
        )));
    }
    Ok(())
}

/// fastai's `Resize(size, method='crop')` on one image: [`crop_box`] at `pos`, then a bilinear
/// resize of the crop to `size x size`, written into `out` (shape `[3, size, size]`, CHW).
///
/// `size` must be in `1..=`[`MAX_ITEM_SIDE`] ([`Error::Config`] otherwise).
pub fn resize_crop_into(
    src: &RgbImage,
    size: usize,
    pos: CropPos,
    out: ArrayViewMut3<'_, u8>,
) -> Result<()> {
    check_out(&out, size)?;
    let s = size as u32;
    let b = crop_box(src.width(), src.height(), s, s, pos);
    RESIZER.with(|r| -> Result<()> {
        let mut buf = std::mem::take(&mut r.borrow_mut().1);
        let res = resize_box(src, b, s, s, &mut buf);
        if res.is_ok() {
            window_to_chw(&buf, size, 0, 0, size, out);
        }
        r.borrow_mut().1 = buf;
        res
    })
}

/// Allocating form of [`resize_crop_into`]: a `[3, size, size]` CHW array.
pub fn resize_crop(src: &RgbImage, size: usize, pos: CropPos) -> Result<Array3<u8>> {
    // Checked before the allocation, which an unbounded size would turn into an abort.
    check_size("size", size)?;
    let mut out = Array3::zeros((3, size, size));
    resize_crop_into(src, size, pos, out.view_mut())?;
    Ok(out)
}

/// Decodes `path` ([`decode_rgb`]) and applies `Resize(size, method='crop')` at `pos`
/// ([`resize_crop`]): one dataset item as fastai's `item_tfms` make it, CHW RGB `u8`.
pub fn load_item(path: &Path, size: usize, pos: CropPos) -> Result<Array3<u8>> {
    // Checked before decoding, so a bad size does not cost a decode.
    check_size("size", size)?;
    resize_crop(&decode_rgb(path)?, size, pos)
}

/// Resizes the whole image (bilinear, antialiased) so that its shorter side is `size` and its
/// longer side keeps the aspect ratio (rounded, at least `size`).
///
/// The loader caches training images at this scale and cuts the random `size x size` window
/// from it each epoch (see `LoaderConfig::cache_decoded`).
///
/// `size` must be in `1..=`[`MAX_ITEM_SIDE`], and the result at most 64 Mpx (a
/// [`MAX_ITEM_SIDE`] item four times as long as wide); [`Error::Config`] otherwise, before
/// anything is allocated.
pub fn resize_short_side(src: &RgbImage, size: usize) -> Result<RgbImage> {
    check_size("size", size)?;
    let s = size as u32;
    let (w, h) = src.dimensions();
    let short = w.min(h).max(1);
    let scale = |long: u32| -> u32 {
        let v = (f64::from(long) * f64::from(s) / f64::from(short)).round();
        (v.min(f64::from(u32::MAX)) as u32).max(s)
    };
    let (nw, nh) = if w <= h { (s, scale(h)) } else { (scale(w), s) };
    let pixels = u64::from(nw) * u64::from(nh);
    if pixels > MAX_SHORT_SIDE_PIXELS {
        return Err(Error::Config(format!(
            "resizing the {w}x{h} image to a shorter side of {size} gives {nw}x{nh} = {pixels} \
             pixels, expected at most {MAX_SHORT_SIDE_PIXELS}; use a smaller size or crop first"
        )));
    }
    let full = CropBox {
        left: 0,
        top: 0,
        width: w,
        height: h,
    };
    let mut buf = Vec::new();
    resize_box(src, full, nw, nh, &mut buf)?;
    RgbImage::from_raw(nw, nh, buf).ok_or_else(|| Error::Resize("buffer size mismatch".to_owned()))
}

/// Cuts the `size x size` window at `pos` from an image whose shorter side is `size` (made by
/// [`resize_short_side`]) into `out` as CHW. The offset is `int(pos * slack)` at this scale.
pub(crate) fn crop_window_into(
    short: &RgbImage,
    size: usize,
    pos: CropPos,
    out: ArrayViewMut3<'_, u8>,
) -> Result<()> {
    check_out(&out, size)?;
    let (w, h) = (short.width() as usize, short.height() as usize);
    if w < size || h < size {
        return Err(Error::Resize(format!(
            "cached image is {w}x{h}, expected both sides at least {size}"
        )));
    }
    let s = size as u32;
    let b = crop_box(short.width(), short.height(), s, s, pos);
    window_to_chw(
        short.as_raw(),
        w,
        b.left as usize,
        b.top as usize,
        size,
        out,
    );
    Ok(())
}
