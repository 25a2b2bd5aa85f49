//! The one error type of mix-core: every rejected input says what was expected and what was found.

use crate::cutmix::BBox;
use crate::ImageSize;

/// Everything mix-core can reject. Every public function that can be given bad input returns
/// [`Result`] with this error and checks before it writes; none of them panics on bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Beta concentration that is NaN, infinite, zero or negative.
    #[error(
        "alpha must be finite and > 0, found {0}; fastai uses 0.4 for MixUp and 1.0 for CutMix"
    )]
    InvalidAlpha(f32),
    /// A mixing weight outside [0, 1] (or NaN).
    #[error("lambda of sample {index} must be in [0, 1], found {value}")]
    LambdaOutOfRange {
        /// The sample whose weight is wrong.
        index: usize,
        /// The weight found.
        value: f32,
    },
    /// A probability-like setting outside its range.
    #[error("{name} must be in {range}, found {value}")]
    OutOfRange {
        /// Which setting.
        name: &'static str,
        /// The allowed range, as text.
        range: &'static str,
        /// The value found.
        value: f32,
    },
    /// A batch with no samples.
    #[error("empty batch: expected at least one sample, found 0")]
    EmptyBatch,
    /// An array with no axis where a batch axis was expected.
    #[error("expected an array with a batch axis (rank >= 1), found rank 0")]
    NoBatchAxis,
    /// A slice whose length does not match the batch.
    #[error("{what} has length {found}, expected {expected} (one per sample)")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// The batch size.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// An array whose shape does not match what it must match.
    #[error("{what} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A partner list that is not a permutation of `0..len`.
    #[error("perm must be a permutation of 0..{len}, found {problem}")]
    NotAPermutation {
        /// The batch size.
        len: usize,
        /// What is wrong, e.g. "7 out of range" or "3 twice".
        problem: String,
    },
    /// A box that is inverted or sticks out of the image.
    #[error(
        "box {bbox:?} of sample {index} does not fit a {size} image: \
         expected x1 <= x2 <= width and y1 <= y2 <= height"
    )]
    BoxOutOfImage {
        /// The sample whose box is wrong.
        index: usize,
        /// The box found.
        bbox: BBox,
        /// The image size.
        size: ImageSize,
    },
    /// A box centre that is not a pixel of the image.
    #[error(
        "box centre ({cx}, {cy}) is outside a {size} image: expected cx < width and cy < height"
    )]
    CentreOutOfImage {
        /// Centre column.
        cx: usize,
        /// Centre row.
        cy: usize,
        /// The image size.
        size: ImageSize,
    },
    /// An image with no pixels, where a box area must be divided by the image area.
    #[error("image of {size} has no pixels; expected height and width >= 1")]
    EmptyImage {
        /// The image size.
        size: ImageSize,
    },
    /// An integer target that is not a class index of the logits.
    #[error("target of sample {index} is class {class}, expected a class index < {num_classes}")]
    ClassOutOfRange {
        /// The sample.
        index: usize,
        /// The class found.
        class: usize,
        /// The number of classes (logit columns).
        num_classes: usize,
    },
    /// A non-finite logit or target value where a loss is computed.
    #[error("{what} contains a non-finite value at sample {index}; expected finite numbers")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// The sample.
        index: usize,
    },
    /// A [`MixConfig`](crate::MixConfig) that cannot be used, with the reason.
    #[error("invalid mix config: {0}")]
    InvalidConfig(String),
}

/// `Result` with mix-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
