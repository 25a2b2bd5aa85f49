//! Captioned image grids: a batch of pictures laid out in rows, each with its caption below.

use std::path::Path;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use ndarray::Array3;

use crate::output::{white_canvas, write_png_atomic};
use crate::text;
use crate::{Error, Result};

/// The largest side of a tile in the grid, in pixels: bigger images are scaled down to fit.
pub const MAX_TILE_SIDE: u32 = 224;
/// The smallest side of a tile in the grid, in pixels: smaller images are scaled up to fit, so
/// that captions have room.
pub const MIN_TILE_SIDE: u32 = 96;
/// White space around the grid and between tiles, in pixels.
pub const MARGIN: u32 = 8;
/// Size of one font pixel on screen: the 8x8 font is drawn 16x16.
pub const FONT_SCALE: u32 = 2;
/// Vertical distance between caption lines, in pixels.
pub const LINE_HEIGHT: u32 = text::GLYPH * FONT_SCALE + 4;
/// Gap between the bottom of a tile's image and the top of its caption, in pixels.
pub const CAPTION_GAP: u32 = 6;
/// Most caption lines under a tile; longer captions are cut and end in `..`.
pub const MAX_CAPTION_LINES: usize = 3;

const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

/// One picture of the grid and the text under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// The picture, channels first: shape `[3, height, width]`, RGB.
    pub image: Array3<u8>,
    /// Text drawn under the picture (any UTF-8; characters the font lacks are drawn as `?`).
    pub caption: String,
}

/// Where everything of a grid goes: computed from the tiles and the column count alone.
///
/// Each tile owns a `tile_side` x `tile_side` square, at [`GridLayout::tile_origin`]; its image is
/// scaled, keeping its aspect ratio, so that its longer side is `tile_side`, and centred in the
/// square. Caption lines are centred horizontally under the square, line `k` starting at
/// [`GridLayout::caption_top`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    /// Tiles per row: the `cols` asked for, or fewer when there are fewer tiles.
    pub cols: usize,
    /// Number of rows.
    pub rows: usize,
    /// Side of each tile's square: the largest side among the images, clamped to
    /// [`MIN_TILE_SIDE`]..=[`MAX_TILE_SIDE`].
    pub tile_side: u32,
    /// Caption lines reserved under every tile: the most any caption needs, at most
    /// [`MAX_CAPTION_LINES`]; 0 when every caption is blank.
    pub caption_lines: usize,
    /// Width of the whole picture, in pixels.
    pub width: u32,
    /// Height of the whole picture, in pixels.
    pub height: u32,
}

impl GridLayout {
    /// Lays out `tiles` in rows of `cols`, checking every tile is a non-empty 3-channel image.
    pub fn new(tiles: &[Tile], cols: usize) -> Result<Self> {
        if tiles.is_empty() {
            return Err(Error::NoTiles);
        }
        if cols == 0 {
            return Err(Error::ZeroColumns);
        }
        let mut largest = 0usize;
        for (index, tile) in tiles.iter().enumerate() {
            let shape = tile.image.dim();
            let side_ok = |n: usize| n >= 1 && u32::try_from(n).is_ok();
            if shape.0 != 3 || !side_ok(shape.1) || !side_ok(shape.2) {
                return Err(Error::BadTile {
                    index,
                    shape: [shape.0, shape.1, shape.2],
                });
            }
            largest = largest.max(shape.1).max(shape.2);
        }
        let tile_side = largest.clamp(MIN_TILE_SIDE as usize, MAX_TILE_SIDE as usize) as u32;
        let chars = chars_per_line(tile_side);
        let caption_lines = tiles
            .iter()
            .map(|t| text::wrap(&t.caption, chars, MAX_CAPTION_LINES).len())
            .max()
            .unwrap_or(0);
        let cols = cols.min(tiles.len());
        let rows = tiles.len().div_ceil(cols);
        let cell_h = u64::from(tile_side) + caption_height(caption_lines) + u64::from(MARGIN);
        let width = u64::from(MARGIN) + cols as u64 * u64::from(tile_side + MARGIN);
        let height = u64::from(MARGIN) + rows as u64 * cell_h;
        // Checking the size here keeps every later u32 conversion in range.
        let canvas_ok = width
            .checked_mul(height)
            .is_some_and(|n| n <= crate::MAX_PIXELS);
        if !canvas_ok {
            return Err(Error::TooLarge {
                width,
                height,
                max: crate::MAX_PIXELS,
            });
        }
        Ok(Self {
            cols,
            rows,
            tile_side,
            caption_lines,
            width: width as u32,
            height: height as u32,
        })
    }

    /// Top-left corner `(x, y)` of tile `index`'s square (tiles fill rows left to right).
    pub fn tile_origin(&self, index: usize) -> (u32, u32) {
        let (row, col) = ((index / self.cols) as u32, (index % self.cols) as u32);
        let cell_h = self.tile_side + caption_height(self.caption_lines) as u32 + MARGIN;
        (
            MARGIN + col * (self.tile_side + MARGIN),
            MARGIN + row * cell_h,
        )
    }

    /// The y coordinate of the top of caption line `line` under tile `index`.
    pub fn caption_top(&self, index: usize, line: usize) -> u32 {
        self.tile_origin(index).1 + self.tile_side + CAPTION_GAP + line as u32 * LINE_HEIGHT
    }

    /// How many characters fit on one caption line.
    pub fn chars_per_line(&self) -> usize {
        chars_per_line(self.tile_side)
    }
}

fn chars_per_line(tile_side: u32) -> usize {
    (tile_side / (text::GLYPH * FONT_SCALE)) as usize
}

fn caption_height(lines: usize) -> u64 {
    if lines == 0 {
        0
    } else {
        u64::from(CAPTION_GAP) + lines as u64 * u64::from(LINE_HEIGHT)
    }
}

/// Renders `tiles` in a grid of `cols` columns (see [`GridLayout`] for where things go), black
/// captions on a white background.
pub fn grid_image(tiles: &[Tile], cols: usize) -> Result<RgbImage> {
    let layout = GridLayout::new(tiles, cols)?;
    let mut canvas = white_canvas(u64::from(layout.width), u64::from(layout.height))?;
    let side = layout.tile_side;
    for (index, tile) in tiles.iter().enumerate() {
        let (x0, y0) = layout.tile_origin(index);
        let img = fit(&to_rgb(&tile.image), side);
        let (dx, dy) = ((side - img.width()) / 2, (side - img.height()) / 2);
        image::imageops::replace(&mut canvas, &img, i64::from(x0 + dx), i64::from(y0 + dy));
        let lines = text::wrap(&tile.caption, layout.chars_per_line(), MAX_CAPTION_LINES);
        for (k, line) in lines.iter().enumerate() {
            let w = text::width(line, FONT_SCALE) as i64;
            let x = i64::from(x0) + (i64::from(side) - w) / 2;
            let y = i64::from(layout.caption_top(index, k));
            text::draw(&mut canvas, x, y, line, FONT_SCALE, BLACK);
        }
    }
    Ok(canvas)
}

/// Renders `tiles` with [`grid_image`] and writes the picture as a PNG at `path` (atomically:
/// through a temporary file in the same folder, then a rename). The folder must exist.
pub fn grid_png(path: &Path, tiles: &[Tile], cols: usize) -> Result<()> {
    write_png_atomic(path, &grid_image(tiles, cols)?)
}

/// Copies a CHW array (any memory layout) into an interleaved RGB image.
fn to_rgb(chw: &Array3<u8>) -> RgbImage {
    let (_, h, w) = chw.dim();
    // GridLayout::new rejects tiles with a side that does not fit u32.
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        Rgb([chw[[0, y, x]], chw[[1, y, x]], chw[[2, y, x]]])
    })
}

/// Scales `img` so its longer side is `side`, keeping the aspect ratio: bilinear when shrinking
/// (smooth), nearest when enlarging (small images stay crisp instead of blurred).
fn fit(img: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let longer = w.max(h);
    if longer == side {
        return img.clone();
    }
    let scale = |v: u32| {
        ((u64::from(v) * u64::from(side) + u64::from(longer) / 2) / u64::from(longer))
            .clamp(1, u64::from(side)) as u32
    };
    let filter = if longer > side {
        FilterType::Triangle
    } else {
        FilterType::Nearest
    };
    image::imageops::resize(img, scale(w), scale(h), filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(h: usize, w: usize, rgb: [u8; 3]) -> Array3<u8> {
        Array3::from_shape_fn((3, h, w), |(c, _, _)| rgb[c])
    }

    #[test]
    fn fit_keeps_aspect_ratio_and_hits_the_side() {
        let img = to_rgb(&solid(300, 450, [1, 2, 3]));
        let out = fit(&img, 224);
        assert_eq!(out.dimensions(), (224, 149));
        let out = fit(&to_rgb(&solid(10, 1, [1, 2, 3])), 96);
        assert_eq!(out.dimensions(), (10, 96));
        let out = fit(&to_rgb(&solid(1000, 1, [1, 2, 3])), 96);
        assert_eq!(
            out.dimensions(),
            (1, 96),
            "a sliver stays at least one pixel wide"
        );
    }

    #[test]
    fn to_rgb_reads_channels_first() {
        let mut a = Array3::zeros((3, 2, 2));
        a[[0, 0, 1]] = 10;
        a[[1, 0, 1]] = 20;
        a[[2, 0, 1]] = 30;
        let img = to_rgb(&a);
        assert_eq!(img.get_pixel(1, 0), &Rgb([10, 20, 30]));
        assert_eq!(img.get_pixel(0, 0), &Rgb([0, 0, 0]));
        // A transposed (non-standard layout) view reads the same pixels by index.
        let t = a.clone().permuted_axes([0, 2, 1]);
        assert_eq!(to_rgb(&t).get_pixel(0, 1), &Rgb([10, 20, 30]));
    }
}
