//! MixUp: fastai's sampler (one lambda per sample, folded to >= 0.5) and the blend kernels.
//!
//! Checked against fastai/callback/mixup.py (`MixUp.before_batch`): lambda is drawn per sample from
//! `Beta(alpha, alpha)`, `lam = max(lam, 1 - lam)`, the partners are `torch.randperm(bs)`, and
//! `x = torch.lerp(x[perm], x, lam)`. The blend here is torch.lerp's formula, branch for branch.

use ndarray::{ArrayD, ArrayView, ArrayViewD, ArrayViewMut, ArrayViewMutD, Axis, RemoveAxis};
use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::params::{random_perm, MixParams, PixelMix};
use crate::{check, kernel, Alpha, BatchShape, Mix, Result};

/// Mixes sample `i` with sample `perm[i]` along axis 0:
/// `out[i] = x[perm[i]] + lam[i] * (x[i] - x[perm[i]])`, computed as `torch.lerp(x[perm], x, lam)`.
///
/// `x` is any array with the batch on axis 0 (images NCHW, one-hot targets, features). Fails for an
/// empty batch, a rank-0 array, `lam` or `perm` of the wrong length, a weight outside [0, 1] or a
/// `perm` that is not a permutation.
pub fn blend(x: ArrayViewD<'_, f32>, lam: &[f32], perm: &[usize]) -> Result<ArrayD<f32>> {
    check_blend(x.shape(), lam, perm)?;
    let mut out = ArrayD::zeros(x.raw_dim());
    blend_unchecked(x, lam, perm, out.view_mut());
    Ok(out)
}

/// [`blend`] into a buffer the caller owns (same shape as `x`); nothing is allocated. Fails where
/// [`blend`] does, or when `out`'s shape is not `x`'s, before anything is written.
pub fn blend_into(
    x: ArrayViewD<'_, f32>,
    lam: &[f32],
    perm: &[usize],
    out: ArrayViewMutD<'_, f32>,
) -> Result<()> {
    check_blend(x.shape(), lam, perm)?;
    check::shape("out", x.shape(), out.shape())?;
    blend_unchecked(x, lam, perm, out);
    Ok(())
}

/// Blends uint8 samples the way timm's `FastCollateMixup` does:
/// `out[i] = rint(x[i] * lam[i] + x[perm[i]] * (1 - lam[i]))` in f32, rounding to nearest with
/// ties to even (numpy's `rint`). A quarter of the memory of f32, for mixing at collate time.
/// Fails where [`blend`] does.
pub fn blend_u8(x: ArrayViewD<'_, u8>, lam: &[f32], perm: &[usize]) -> Result<ArrayD<u8>> {
    check_blend(x.shape(), lam, perm)?;
    let mut out = ArrayD::zeros(x.raw_dim());
    blend_u8_unchecked(x, lam, perm, out.view_mut());
    Ok(out)
}

/// [`blend_u8`] into a buffer the caller owns (same shape as `x`); fails where [`blend_into`] does.
pub fn blend_u8_into(
    x: ArrayViewD<'_, u8>,
    lam: &[f32],
    perm: &[usize],
    out: ArrayViewMutD<'_, u8>,
) -> Result<()> {
    check_blend(x.shape(), lam, perm)?;
    check::shape("out", x.shape(), out.shape())?;
    blend_u8_unchecked(x, lam, perm, out);
    Ok(())
}

/// The checks every blend shares; returns nothing but errors.
fn check_blend(shape: &[usize], lam: &[f32], perm: &[usize]) -> Result<()> {
    let batch = *shape.first().ok_or(crate::Error::NoBatchAxis)?;
    check::batch(batch)?;
    check::weights("lam", lam, batch)?;
    check::perm(perm, batch)
}

/// The f32 blend after the checks.
pub(crate) fn blend_unchecked<D: RemoveAxis>(
    x: ArrayView<'_, f32, D>,
    lam: &[f32],
    perm: &[usize],
    out: ArrayViewMut<'_, f32, D>,
) {
    kernel::for_each_sample(out, |i, o| {
        kernel::blend_sample(
            x.index_axis(Axis(0), i),
            x.index_axis(Axis(0), perm[i]),
            lam[i],
            o,
        );
    });
}

/// The uint8 blend after the checks.
fn blend_u8_unchecked<D: RemoveAxis>(
    x: ArrayView<'_, u8, D>,
    lam: &[f32],
    perm: &[usize],
    out: ArrayViewMut<'_, u8, D>,
) {
    kernel::for_each_sample(out, |i, o| {
        kernel::blend_u8_sample(
            x.index_axis(Axis(0), i),
            x.index_axis(Axis(0), perm[i]),
            lam[i],
            o,
        );
    });
}

/// fastai's MixUp sampler: one `Beta(alpha, alpha)` draw per sample, folded so that every sample
/// keeps at least half of itself, and one random partner permutation.
#[derive(Debug, Clone)]
pub struct MixUp {
    alpha: Alpha,
    beta: Beta<f64>,
}

/// One MixUp draw: plain data, no randomness left.
#[derive(Debug, Clone, PartialEq)]
pub struct MixUpParams {
    /// Weight of each sample's own image and target, in [0.5, 1].
    pub lam: Vec<f32>,
    /// The partner of each sample, a permutation of `0..batch`.
    pub perm: Vec<usize>,
}

impl MixUp {
    /// A MixUp sampler for `Beta(alpha, alpha)`; fails unless `alpha` is finite and > 0.
    pub fn new(alpha: f32) -> Result<MixUp> {
        Alpha::new(alpha).map(MixUp::from_alpha)
    }

    /// A MixUp sampler from an already checked [`Alpha`].
    pub fn from_alpha(alpha: Alpha) -> MixUp {
        MixUp {
            alpha,
            beta: alpha.beta(),
        }
    }

    /// The Beta concentration.
    pub fn alpha(&self) -> Alpha {
        self.alpha
    }

    /// Draws `batch` lambdas (in that order), each `max(l, 1 - l)` with `l ~ Beta(alpha, alpha)`
    /// drawn in f64 and rounded to f32, then a uniform random permutation (Fisher-Yates).
    /// Batch size 1 is fine (its partner is itself); an empty batch is an error.
    ///
    /// The generic, typed form of [`Mix::sample`], which draws the same numbers from the same rng.
    pub fn draw<R: Rng + ?Sized>(&self, batch: usize, rng: &mut R) -> Result<MixUpParams> {
        check::batch(batch)?;
        let lam = (0..batch)
            .map(|_| {
                let l = self.beta.sample(rng) as f32;
                l.max(1.0 - l)
            })
            .collect();
        let perm = random_perm(batch, rng);
        Ok(MixUpParams { lam, perm })
    }
}

impl Default for MixUp {
    /// fastai's default, `alpha = 0.4`.
    fn default() -> MixUp {
        MixUp::from_alpha(Alpha::MIXUP_DEFAULT)
    }
}

impl From<MixUpParams> for MixParams {
    fn from(p: MixUpParams) -> MixParams {
        MixParams {
            pixels: PixelMix::Blend(p.lam.clone()),
            lam: p.lam,
            perm: p.perm,
        }
    }
}

impl Mix for MixUp {
    fn name(&self) -> &str {
        "MixUp"
    }

    fn sample(&self, shape: BatchShape, rng: &mut dyn rand::RngCore) -> Result<MixParams> {
        self.draw(shape.batch, rng).map(MixParams::from)
    }
}
