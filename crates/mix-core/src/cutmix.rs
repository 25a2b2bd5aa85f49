//! CutMix: fastai's box (`rand_bbox`), timm's boxes, the corrected lambda and the paste kernel.
//!
//! Checked against fastai/callback/mixup.py (`CutMix.before_batch` and `CutMix.rand_bbox`) and
//! timm/data/mixup.py as released in timm 1.0.31 (`rand_bbox`, `rand_bbox_minmax`,
//! `cutmix_bbox_and_lam`).

use ndarray::{Array4, ArrayView4, ArrayViewMut4, Axis};
use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::params::{random_perm, MixParams, PixelMix};
use crate::{check, kernel, Alpha, BatchShape, Error, ImageSize, Mix, Result};

/// A half-open pixel box: columns `x1..x2`, rows `y1..y2`. Empty when `x1 == x2` or `y1 == y2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BBox {
    /// First column inside the box.
    pub x1: usize,
    /// First row inside the box.
    pub y1: usize,
    /// First column after the box.
    pub x2: usize,
    /// First row after the box.
    pub y2: usize,
}

impl BBox {
    /// The empty box at the origin: pasting it changes nothing.
    pub const EMPTY: BBox = BBox {
        x1: 0,
        y1: 0,
        x2: 0,
        y2: 0,
    };

    /// Width in pixels (0 for an inverted box).
    pub fn width(&self) -> usize {
        self.x2.saturating_sub(self.x1)
    }

    /// Height in pixels (0 for an inverted box).
    pub fn height(&self) -> usize {
        self.y2.saturating_sub(self.y1)
    }

    /// Number of pixels inside.
    pub fn area(&self) -> usize {
        self.width() * self.height()
    }

    /// Whether the box holds no pixel.
    pub fn is_empty(&self) -> bool {
        self.area() == 0
    }

    /// The corrected lambda: the share of an image of `size` outside the box,
    /// `1 - area / (width * height)`, computed in f32 as fastai does. Fails for an image with no
    /// pixels or a box that does not fit it.
    pub fn lam(&self, size: ImageSize) -> Result<f32> {
        check::image(size)?;
        check::bbox(0, *self, size)?;
        // fastai: `1 - ((x2-x1)*(y2-y1)) / float(W*H)`, an int64 tensor over a Python float,
        // which torch evaluates in float32.
        Ok(1.0 - self.area() as f32 / size.area() as f32)
    }
}

/// fastai's `rand_bbox` for a given centre: `cut_rat = sqrt(1 - lam)`,
/// `cut_w = round(width * cut_rat)` and `cut_h = round(height * cut_rat)` (f32, ties to even, as
/// `torch.round`), then `x1 = clamp(cx - cut_w / 2, 0, width)`, `x2 = clamp(cx + cut_w / 2, 0,
/// width)` and the same for y. An odd `cut_w` gives a box one pixel narrower, as in fastai.
///
/// fastai draws `cx` uniformly from `0..width` and `cy` from `0..height`; [`CutMix::draw`] does.
/// Fails when `lam` is not in [0, 1] or `(cx, cy)` is not a pixel of the image.
///
/// ```
/// use mix_core::cutmix::{rand_bbox, BBox};
/// use mix_core::ImageSize;
///
/// # fn main() -> mix_core::Result<()> {
/// // 4 rows of 6 pixels; lam = 0.75 cuts half of each side, centred on column 3, row 2.
/// let size = ImageSize::new(4, 6);
/// let bbox = rand_bbox(size, 0.75, 3, 2)?;
/// assert_eq!(bbox, BBox { x1: 2, y1: 1, x2: 4, y2: 3 });
/// assert_eq!(bbox.lam(size)?, 1.0 - bbox.area() as f32 / size.area() as f32);
/// assert!(rand_bbox(size, 0.75, 6, 0).is_err(), "column 6 is outside");
/// assert!(rand_bbox(size, 1.5, 3, 2).is_err(), "lam is outside [0, 1]");
/// # Ok(())
/// # }
/// ```
pub fn rand_bbox(size: ImageSize, lam: f32, cx: usize, cy: usize) -> Result<BBox> {
    check_centre(size, lam, cx, cy)?;
    let cut_rat = (1.0 - lam).sqrt();
    let cut_w = (size.width as f32 * cut_rat).round_ties_even() as usize;
    let cut_h = (size.height as f32 * cut_rat).round_ties_even() as usize;
    Ok(centred_box(size, cut_w, cut_h, cx, cy))
}

/// timm's `rand_bbox` (margin 0) for a given centre: the cut sizes are truncated, `cut_h =
/// int(height * sqrt(1 - lam))`, in f64 as numpy computes them (fastai rounds), and the box spans
/// `cy - cut_h // 2 .. cy + (cut_h + 1) // 2`, clipped to the image, so an unclipped box is exactly
/// `cut_h` high even when `cut_h` is odd (fastai's and older timm's lose a pixel there).
/// Fails where [`rand_bbox`] does.
pub fn rand_bbox_timm(size: ImageSize, lam: f32, cx: usize, cy: usize) -> Result<BBox> {
    check_centre(size, lam, cx, cy)?;
    let ratio = (1.0 - f64::from(lam)).sqrt();
    let cut_w = (size.width as f64 * ratio) as usize;
    let cut_h = (size.height as f64 * ratio) as usize;
    Ok(BBox {
        x1: cx.saturating_sub(cut_w / 2),
        y1: cy.saturating_sub(cut_h / 2),
        x2: (cx + cut_w.div_ceil(2)).min(size.width),
        y2: (cy + cut_h.div_ceil(2)).min(size.height),
    })
}

fn check_centre(size: ImageSize, lam: f32, cx: usize, cy: usize) -> Result<()> {
    check::weight(0, lam)?;
    if cx >= size.width || cy >= size.height {
        return Err(Error::CentreOutOfImage { cx, cy, size });
    }
    Ok(())
}

/// `clamp(c -/+ cut / 2, 0, side)` on both axes.
fn centred_box(size: ImageSize, cut_w: usize, cut_h: usize, cx: usize, cy: usize) -> BBox {
    BBox {
        x1: cx.saturating_sub(cut_w / 2),
        y1: cy.saturating_sub(cut_h / 2),
        x2: (cx + cut_w / 2).min(size.width),
        y2: (cy + cut_h / 2).min(size.height),
    }
}

/// Pastes `bbox` of each sample's partner `x[perm[i]]` into a copy of `x[i]` (NCHW), as fastai's
/// `xb[..., y1:y2, x1:x2] = x[shuffle][..., y1:y2, x1:x2]`. Fails for an empty batch, a `perm`
/// that is not a permutation of the batch, or a box that does not fit the images.
pub fn paste(x: ArrayView4<'_, f32>, perm: &[usize], bbox: BBox) -> Result<Array4<f32>> {
    let mut out = Array4::zeros(x.raw_dim());
    paste_into(x, perm, bbox, out.view_mut())?;
    Ok(out)
}

/// [`paste`] into a buffer the caller owns (same shape as `x`): one pass that copies the rows
/// around the box from `x[i]` and the box from `x[perm[i]]`. Fails where [`paste`] does, or when
/// `out`'s shape is not `x`'s, before anything is written.
pub fn paste_into(
    x: ArrayView4<'_, f32>,
    perm: &[usize],
    bbox: BBox,
    out: ArrayViewMut4<'_, f32>,
) -> Result<()> {
    let (batch, _, height, width) = x.dim();
    check::batch(batch)?;
    check::perm(perm, batch)?;
    check::bbox(0, bbox, ImageSize::new(height, width))?;
    check::shape("out", x.shape(), out.shape())?;
    kernel::for_each_sample(out, |i, o| {
        kernel::paste_sample(
            x.index_axis(Axis(0), i),
            x.index_axis(Axis(0), perm[i]),
            bbox,
            o,
        );
    });
    Ok(())
}

/// fastai's CutMix sampler: one `Beta(alpha, alpha)` lambda per batch, one random permutation, one
/// box centre uniform over the image, and the lambda corrected to the pasted area.
#[derive(Debug, Clone)]
pub struct CutMix {
    alpha: Alpha,
    beta: Beta<f64>,
}

/// One CutMix draw: plain data, no randomness left.
#[derive(Debug, Clone, PartialEq)]
pub struct CutMixParams {
    /// The corrected lambda, `1 - box area / image area`: the weight of each sample's own target.
    pub lam: f32,
    /// The partner of each sample, a permutation of `0..batch`.
    pub perm: Vec<usize>,
    /// The box pasted from the partner, the same for the whole batch.
    pub bbox: BBox,
    /// The drawn box centre column, uniform in `0..width`.
    pub cx: usize,
    /// The drawn box centre row, uniform in `0..height`.
    pub cy: usize,
}

impl CutMix {
    /// A CutMix sampler for `Beta(alpha, alpha)`; fails unless `alpha` is finite and > 0.
    pub fn new(alpha: f32) -> Result<CutMix> {
        Alpha::new(alpha).map(CutMix::from_alpha)
    }

    /// A CutMix sampler from an already checked [`Alpha`].
    pub fn from_alpha(alpha: Alpha) -> CutMix {
        CutMix {
            alpha,
            beta: alpha.beta(),
        }
    }

    /// The Beta concentration.
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Draws, in fastai's order, lambda (f64, rounded to f32), the permutation, `cx` in
    /// `0..width` and `cy` in `0..height`; builds the box with [`rand_bbox`] and corrects lambda
    /// with [`BBox::lam`]. Fails for an empty batch or an image with no pixels.
    ///
    /// The generic, typed form of [`Mix::sample`], which draws the same numbers from the same rng.
    pub fn draw<R: Rng + ?Sized>(
        &self,
        batch: usize,
        size: ImageSize,
        rng: &mut R,
    ) -> Result<CutMixParams> {
        check::batch(batch)?;
        check::image(size)?;
        let drawn = self.beta.sample(rng) as f32;
        let perm = random_perm(batch, rng);
        let cx = rng.gen_range(0..size.width);
        let cy = rng.gen_range(0..size.height);
        let bbox = rand_bbox(size, drawn, cx, cy)?;
        Ok(CutMixParams {
            lam: bbox.lam(size)?,
            perm,
            bbox,
            cx,
            cy,
        })
    }
}

impl Default for CutMix {
    /// fastai's default, `alpha = 1.0`.
    fn default() -> CutMix {
        CutMix::from_alpha(Alpha::CUTMIX_DEFAULT)
    }
}

impl From<CutMixParams> for MixParams {
    fn from(p: CutMixParams) -> MixParams {
        let batch = p.perm.len();
        MixParams {
            lam: vec![p.lam; batch],
            perm: p.perm,
            pixels: PixelMix::Boxes(vec![p.bbox; batch]),
        }
    }
}

impl Mix for CutMix {
    fn name(&self) -> &str {
        "CutMix"
    }

    fn sample(&self, shape: BatchShape, rng: &mut dyn rand::RngCore) -> Result<MixParams> {
        self.draw(shape.batch, shape.size, rng).map(MixParams::from)
    }
}
