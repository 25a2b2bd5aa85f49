//! Pictures people look at: captioned image grids and training curves, written as PNG files.
//!
//! Two entry points, each with an in-memory twin that returns the picture instead of writing it:
//!
//! - [`grid::grid_png`] / [`grid::grid_image`]: a batch of images laid out in a grid, each tile
//!   captioned below (for example `beagle 71% / pug 29%` for a mixed item).
//! - [`plot::curves_png`] / [`plot::curves_image`]: line plots side by side (loss, error rate),
//!   with axes, round-number ticks, a legend and a title.
//!
//! Text is drawn with the public-domain 8x8 bitmap font of the `font8x8` crate, doubled in size;
//! characters it has no glyph for are drawn as `?`. Every PNG is written to a temporary file in the
//! destination folder and then renamed, so a reader never sees a half-written picture.

mod error;
pub mod grid;
mod output;
pub mod plot;
mod text;

pub use error::{Error, Result};
pub use output::MAX_PIXELS;
