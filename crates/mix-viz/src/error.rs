//! The one error type of mix-viz.

use std::path::PathBuf;

/// Everything that can go wrong while laying out or writing a picture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// [`crate::grid::grid_png`] was given no tiles.
    #[error("expected at least one tile to lay out in a grid, found none: pass one or more tiles")]
    NoTiles,
    /// [`crate::grid::grid_png`] was asked for zero columns.
    #[error("expected a grid with at least 1 column, found 0: pass cols >= 1")]
    ZeroColumns,
    /// A tile's array is not a non-empty CHW RGB image.
    #[error(
        "tile {index}: expected a CHW RGB image of shape [3, height, width] with height and width \
         from 1 to 2^32-1, found shape {shape:?}: convert it to 3 channels first"
    )]
    BadTile {
        /// Position of the tile in the slice passed in.
        index: usize,
        /// The shape that was found.
        shape: [usize; 3],
    },
    /// [`crate::plot::curves_png`] was given no panels.
    #[error("expected at least one panel to plot, found none: pass one or more panels")]
    NoPanels,
    /// The picture would be larger than [`crate::MAX_PIXELS`] allows.
    #[error(
        "expected a picture of at most {max} pixels, found {width}x{height}: pass fewer tiles or \
         panels, or split them over several pictures"
    )]
    TooLarge {
        /// Width the picture would have had, in pixels.
        width: u64,
        /// Height the picture would have had, in pixels.
        height: u64,
        /// The largest number of pixels allowed.
        max: u64,
    },
    /// Creating, writing or renaming the output file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being attempted, for example "create a temporary file in".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The PNG encoder failed.
    #[error("cannot encode the png for {}: {source}", path.display())]
    Encode {
        /// The destination file.
        path: PathBuf,
        /// The underlying error.
        source: image::ImageError,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
