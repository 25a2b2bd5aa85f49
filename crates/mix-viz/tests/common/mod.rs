//! Strategies and helpers shared by the mix-viz integration tests.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use image::RgbImage;
use mix_viz::grid::Tile;
use mix_viz::plot::Series;
use ndarray::Array3;
use proptest::prelude::*;

/// A solid-colour CHW RGB image.
pub fn solid(h: usize, w: usize, rgb: [u8; 3]) -> Array3<u8> {
    Array3::from_shape_fn((3, h, w), |(c, _, _)| rgb[c])
}

/// Pixels of `img` equal to `rgb`, as `(x, y)`.
pub fn pixels_of(img: &RgbImage, rgb: [u8; 3]) -> Vec<(u32, u32)> {
    img.enumerate_pixels()
        .filter(|(_, _, p)| p.0 == rgb)
        .map(|(x, y, _)| (x, y))
        .collect()
}

/// The 8x8 bitmap of `c` straight from the font crate, with the `?` fallback the crate promises.
pub fn font_glyph(c: char) -> [u8; 8] {
    use font8x8::UnicodeFonts;
    font8x8::BASIC_FONTS
        .get(c)
        .unwrap_or(font8x8::legacy::BASIC_LEGACY[usize::from(b'?')])
}

/// Whether font pixel (`col`, `row`) of `text` drawn at `scale` is set, for screen offset
/// (`dx`, `dy`) from the text's top-left corner: an independent re-rendering to compare with.
pub fn text_pixel_set(text: &str, scale: u32, dx: u32, dy: u32) -> bool {
    let cell = 8 * scale;
    let Some(c) = text.chars().nth((dx / cell) as usize) else {
        return false;
    };
    let (col, row) = ((dx % cell) / scale, dy / scale);
    row < 8 && font_glyph(c)[row as usize] & (1 << col) != 0
}

/// Any caption: arbitrary Unicode, or text made of the characters captions really use.
pub fn caption() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ a-zA-Z_%/0-9\n\t.-]{0,90}", "\\PC{0,60}"]
}

/// A small image with random pixels: 1..=40 by 1..=40.
pub fn small_image() -> impl Strategy<Value = Array3<u8>> {
    (1usize..=40, 1usize..=40).prop_flat_map(|(h, w)| {
        proptest::collection::vec(any::<u8>(), 3 * h * w)
            .prop_map(move |v| Array3::from_shape_vec((3, h, w), v).expect("length is 3*h*w"))
    })
}

/// 1..=10 tiles with small images and any captions.
pub fn tiles() -> impl Strategy<Value = Vec<Tile>> {
    proptest::collection::vec(
        (small_image(), caption()).prop_map(|(image, caption)| Tile { image, caption }),
        1..=10,
    )
}

/// A finite coordinate: mostly moderate, sometimes anywhere in the f64 range.
pub fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e3..1e3f64,
        1 => prop_oneof![Just(0.0), Just(f64::MAX), Just(f64::MIN), Just(1e-300)],
        1 => proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
    ]
}

/// A series of 0..60 finite points.
pub fn finite_series() -> impl Strategy<Value = Series> {
    (
        "[a-z ]{0,12}",
        proptest::collection::vec((finite(), finite()), 0..60),
    )
        .prop_map(|(name, points)| Series { name, points })
}

/// A series of 0..60 points with any coordinates, NaN and infinities included.
pub fn any_series() -> impl Strategy<Value = Series> {
    (
        caption(),
        proptest::collection::vec((any::<f64>(), any::<f64>()), 0..60),
    )
        .prop_map(|(name, points)| Series { name, points })
}
