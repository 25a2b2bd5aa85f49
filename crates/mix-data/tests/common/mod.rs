//! Shared fixtures and proptest strategies for mix-data's integration tests.
#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::{ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};
use proptest::prelude::*;

/// The 37 Oxford-IIIT Pet breeds as they appear in the archive's file names.
pub const PET_BREEDS: [&str; 37] = [
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British_Shorthair",
    "Egyptian_Mau",
    "Maine_Coon",
    "Persian",
    "Ragdoll",
    "Russian_Blue",
    "Siamese",
    "Sphynx",
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "boxer",
    "chihuahua",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "miniature_pinscher",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
];

/// The seed notebook's label pattern.
pub const PETS_PATTERN: &str = r"([^/]+)_\d+.*$";

/// The fixtures folder committed next to the tests.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A deterministic, detailed RGB test image (gradients plus a checker pattern).
pub fn pattern_rgb(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let checker = if (x / 3 + y / 5) % 2 == 0 { 40 } else { 0 };
        Rgb([
            ((x * 255) / w.max(1)) as u8,
            ((y * 255) / h.max(1)) as u8,
            (((x + 2 * y) % 200) as u8).saturating_add(checker),
        ])
    })
}

/// The formula image of tests/fixtures/make_fixtures.py's `pattern()`.
pub fn pil_pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            ((x * 7 + y * 13) % 256) as u8,
            ((x * x + 3 * y) % 256) as u8,
            ((x * y) % 256) as u8,
        ])
    })
}

/// Saves `img` as JPEG (quality 90) at `path`.
pub fn write_jpeg(path: &Path, img: &RgbImage) {
    let mut out = BufWriter::new(fs::File::create(path).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .unwrap();
}

/// Encodes `img` as JPEG bytes.
pub fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .unwrap();
    out
}

/// Writes an 8-bit palette PNG with a transparency entry for index 1.
pub fn write_palette_png(
    path: &Path,
    w: u32,
    h: u32,
    palette: &[[u8; 3]],
    index: impl Fn(u32, u32) -> u8,
) {
    let file = BufWriter::new(fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(palette.iter().flatten().copied().collect::<Vec<u8>>());
    enc.set_trns(vec![255u8, 0]);
    let mut writer = enc.write_header().unwrap();
    let data: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| index(x, y))
        .collect();
    writer.write_image_data(&data).unwrap();
}

/// Saves a grayscale PNG.
pub fn write_gray_png(path: &Path, img: &ImageBuffer<Luma<u8>, Vec<u8>>) {
    img.save_with_format(path, ImageFormat::Png).unwrap();
}

/// Grayscale test image.
pub fn pattern_gray(w: u32, h: u32) -> ImageBuffer<Luma<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| Luma([((x * 31 + y * 17) % 256) as u8]))
}

/// RGBA test image with varying alpha.
pub fn pattern_rgba(w: u32, h: u32) -> ImageBuffer<Rgba<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        Rgba([
            (x * 9 % 256) as u8,
            (y * 5 % 256) as u8,
            77,
            ((x + y) * 13 % 256) as u8,
        ])
    })
}

/// Gray+alpha test image.
pub fn pattern_la(w: u32, h: u32) -> ImageBuffer<LumaA<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        LumaA([((x * 11 + y) % 256) as u8, ((x * y) % 256) as u8])
    })
}

/// 16-bit RGB test image spanning the whole range.
pub fn pattern_rgb16(w: u32, h: u32) -> ImageBuffer<Rgb<u16>, Vec<u16>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([
            ((x * 4099 + y * 7) % 65536) as u16,
            ((y * 3001) % 65536) as u16,
            65535 - ((x * y * 257) % 65536) as u16,
        ])
    })
}

/// Writes `n_per_class` JPEGs per class named `{class}_{k}.jpg` (k from 1) under `dir`, each a
/// distinct small image; returns the paths in creation order.
pub fn write_pets_like(
    dir: &Path,
    classes: &[&str],
    n_per_class: usize,
    w: u32,
    h: u32,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (c, class) in classes.iter().enumerate() {
        for k in 1..=n_per_class {
            let path = dir.join(format!("{class}_{k}.jpg"));
            let mut img = pattern_rgb(w, h);
            // Make every file distinct so order tests can tell them apart.
            for (i, px) in img.pixels_mut().enumerate().take(8) {
                px.0 = [(c * 7 + i) as u8, k as u8, (c + k) as u8];
            }
            write_jpeg(&path, &img);
            out.push(path);
        }
    }
    out
}

// ---- proptest strategies ----

/// Image dimensions, small enough to decode quickly, including extreme aspect ratios.
pub fn dims() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        (1u32..64, 1u32..64),
        (1u32..4, 32u32..300),
        (32u32..300, 1u32..4)
    ]
}

/// Target sizes.
pub fn target_size() -> impl Strategy<Value = u32> {
    1u32..48
}

/// Crop positions in `[0, 1)`, edges included.
pub fn crop_fraction() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(0.5), Just(0.999_999_9), 0.0f64..1.0]
}

/// Breed-like labels: words of letters joined by underscores.
pub fn label_text() -> impl Strategy<Value = String> {
    "[A-Za-z]{1,8}(_[a-z]{1,8}){0,3}"
}

/// Item counts and validation fractions for the splitter.
pub fn split_case() -> impl Strategy<Value = (usize, f64)> {
    (
        0usize..400,
        prop_oneof![Just(0.0), Just(0.2), Just(1.0), 0.0f64..=1.0],
    )
}

/// Plan lengths, world sizes and per-rank batch sizes for the sharding rules: `n` below, equal
/// to and above `world`, divisible by it or not, empty included.
pub fn shard_case() -> impl Strategy<Value = (usize, usize, usize)> {
    (0usize..40, 1usize..=4, 1usize..=5)
}
