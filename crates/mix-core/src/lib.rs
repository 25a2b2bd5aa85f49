//! MixUp, CutMix and friends as pure math on ndarray: draw a mix as plain data, then apply it.
//!
//! mix-core decides *what* a mix is (the weight `lam` of each sample's own target, the partner
//! permutation `perm`, the box or blend weights) and applies it to ndarray batches. It knows nothing
//! about tch, files or the network; mix-tch applies the same [`MixParams`] to tensors.
//!
//! - [`MixUp`] and [`CutMix`] follow fastai/callback/mixup.py exactly (formulas, defaults, draw
//!   order); fastai draws with torch's RNG, so only the distributions, not the numbers, match.
//! - [`Mixer`] (built from a [`MixConfig`]) has timm's knobs: apply and switch probabilities,
//!   per-batch/pair/element draws, min/max boxes, lambda correction, label smoothing.
//! - The kernels ([`mixup::blend_into`], [`cutmix::paste_into`], [`MixParams::apply_into`],
//!   [`MixParams::apply_u8`]) write into buffers the caller owns, run over the batch axis on rayon
//!   with the default `rayon` feature, and give identical bits with or without it.
//! - Randomness comes only from the `rng` you pass; the crate re-exports the [`rand`],
//!   [`rand_distr`] and [`rand_chacha`] it was built with so that your seeded generator matches.
//!   [`stream::stream_rng`] derives a run's seeded generators, one stream per [`stream::Purpose`]
//!   (split, initial weights, each epoch's loader and learner draws), so that no two share numbers.
//!
//! # Conventions
//!
//! - Every public function that can be given bad input returns [`Result`] with [`Error`] under its
//!   plain name (`blend`, `blend_into`, `blend_u8`, `paste`, `rand_bbox`, [`BBox::lam`],
//!   `mixed_cross_entropy`, ...), checks everything before it writes, and never panics on bad
//!   input; there are no `try_` twins. Functions that cannot fail return plain values.
//! - `sample` is only [`Mix::sample`] (a trait object's draw of [`MixParams`]). The samplers' own
//!   generic draws are called `draw`: [`MixUp::draw`] gives [`MixUpParams`], [`CutMix::draw`]
//!   gives [`CutMixParams`], [`Mixer::draw`] gives [`MixParams`]; each takes the same numbers from
//!   the rng as the sampler's `Mix::sample`. Per-sample lookups are [`PixelMix::for_sample`].
//! - An image's two sides always travel together as an [`ImageSize`] (`ImageSize::new(height,
//!   width)`, NCHW order), so they cannot be swapped; [`BatchShape`] holds one.
//!
//! # A custom variant
//!
//! A variant is one type implementing [`Mix`]: it samples plain [`MixParams`], and the params
//! apply themselves to images, targets and losses. The learner only ever sees `&dyn Mix`.
//!
//! ```
//! use mix_core::cutmix::BBox;
//! use mix_core::rand::{rngs::StdRng, Rng, RngCore, SeedableRng};
//! use mix_core::{flip_perm, BatchShape, Mix, MixParams, MixUp, PixelMix, Result};
//! use ndarray::{Array2, Array4};
//!
//! /// Pastes a left strip of random width from the mirrored partner (sample `batch - 1 - i`).
//! #[derive(Debug)]
//! struct StripMix;
//!
//! impl Mix for StripMix {
//!     fn name(&self) -> &str {
//!         "StripMix"
//!     }
//!     fn sample(&self, shape: BatchShape, rng: &mut dyn RngCore) -> Result<MixParams> {
//!         let strip = rng.gen_range(0..=shape.size.width);
//!         let bbox = BBox { x1: 0, y1: 0, x2: strip, y2: shape.size.height };
//!         let lam = bbox.lam(shape.size)?;
//!         Ok(MixParams {
//!             lam: vec![lam; shape.batch],
//!             perm: flip_perm(shape.batch),
//!             pixels: PixelMix::Boxes(vec![bbox; shape.batch]),
//!         })
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! let x = Array4::from_shape_fn((4, 3, 8, 6), |(n, c, y, x)| (n * 1000 + c * 100 + y * 10 + x) as f32);
//! let labels = [0, 1, 2, 1];
//! let onehot = Array2::from_shape_fn((4, 3), |(i, c)| f32::from(labels[i] == c));
//! let logits = Array2::from_shape_fn((4, 3), |(i, c)| (i + 2 * c) as f32 * 0.1);
//! let mut rng = StdRng::seed_from_u64(7);
//! let variants: Vec<Box<dyn Mix>> = vec![Box::new(StripMix), Box::new(MixUp::default())];
//! for mix in &variants {
//!     let params = mix.sample(BatchShape::of(&x), &mut rng)?;
//!     let images = params.apply(x.view())?;
//!     let targets = params.mix_targets(onehot.view())?;
//!     let loss = params.mixed_cross_entropy(logits.view(), &labels)?;
//!     assert_eq!(images.dim(), x.dim());
//!     assert!((targets.sum() - 4.0).abs() < 1e-5 && loss.is_finite(), "{}", mix.name());
//! }
//! # Ok(())
//! # }
//! ```

pub mod cutmix;
pub mod loss;
pub mod mixup;
pub mod stream;

mod alpha;
mod check;
mod error;
mod kernel;
mod mixer;
mod params;

pub use ndarray;
pub use rand;
pub use rand_chacha;
pub use rand_distr;

pub use alpha::Alpha;
pub use cutmix::{BBox, CutMix, CutMixParams};
pub use error::{Error, Result};
pub use mixer::{MixConfig, MixMode, Mixer};
pub use mixup::{MixUp, MixUpParams};
pub use params::{flip_perm, random_perm, MixParams, PixelMix, SampleMix};

use ndarray::{ArrayBase, Ix4, RawData};

/// The size of an image: `height` rows of `width` pixels.
///
/// Every mix-core function that needs both sides takes one `ImageSize`, so the order of the two
/// numbers cannot be mixed up. [`ImageSize::new`] takes them in NCHW order, height first.
///
/// ```
/// use mix_core::ImageSize;
/// let size = ImageSize::new(4, 6);
/// assert_eq!((size.height, size.width, size.area()), (4, 6, 24));
/// assert_eq!(size.to_string(), "4x6 (height x width)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImageSize {
    /// Rows (H).
    pub height: usize,
    /// Columns (W).
    pub width: usize,
}

impl ImageSize {
    /// A size from its two sides, height first (the order of the H and W axes of NCHW).
    pub const fn new(height: usize, width: usize) -> ImageSize {
        ImageSize { height, width }
    }

    /// Number of pixels, `height * width`.
    pub const fn area(self) -> usize {
        self.height * self.width
    }

    /// Whether the image has no pixel (a side is 0).
    pub const fn is_empty(self) -> bool {
        self.height == 0 || self.width == 0
    }
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} (height x width)", self.height, self.width)
    }
}

/// The shape of an NCHW image batch: what a [`Mix`] needs to know to draw params for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BatchShape {
    /// Number of samples (N).
    pub batch: usize,
    /// Channels per image (C).
    pub channels: usize,
    /// Height and width of each image (H, W).
    pub size: ImageSize,
}

impl BatchShape {
    /// A shape from the batch size, the channels and the image size.
    pub const fn new(batch: usize, channels: usize, size: ImageSize) -> BatchShape {
        BatchShape {
            batch,
            channels,
            size,
        }
    }

    /// The shape of an NCHW array (owned, view or mutable view).
    pub fn of<S: RawData>(x: &ArrayBase<S, Ix4>) -> BatchShape {
        let (batch, channels, height, width) = x.dim();
        BatchShape::new(batch, channels, ImageSize::new(height, width))
    }

    /// The sizes as an ndarray pattern `(N, C, H, W)`.
    pub fn dim(&self) -> (usize, usize, usize, usize) {
        (self.batch, self.channels, self.size.height, self.size.width)
    }
}

/// A mixing method: draws the params of one batch as plain data, with no randomness left.
///
/// Applying them is the params' job ([`MixParams::apply`], [`MixParams::apply_u8`],
/// [`MixParams::mix_targets`], [`MixParams::mixed_cross_entropy`], and the tensor appliers of
/// mix-tch), so a new variant is one `impl Mix` and the learner does not change. `rng` is a trait
/// object so that `dyn Mix` works; seeded generators give bit-for-bit reproducible params.
pub trait Mix: Send + Sync + std::fmt::Debug {
    /// A short name for logs and run folders, e.g. `"MixUp"`.
    fn name(&self) -> &str;

    /// Draws the params for one batch of `shape`. Fails for an empty batch, or for an image with
    /// no pixels when the variant needs boxes.
    fn sample(&self, shape: BatchShape, rng: &mut dyn rand::RngCore) -> Result<MixParams>;
}
