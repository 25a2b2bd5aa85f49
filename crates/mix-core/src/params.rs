//! The plain-data description of one drawn mix, shared by every applier (ndarray here, tch in mix-tch).

use ndarray::{Array2, Array4, ArrayView2, ArrayView4, ArrayViewMut4, Axis};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cutmix::BBox;
use crate::{check, kernel, loss, mixup, BatchShape, Result};

/// How the pixels of sample `i` and its partner `perm[i]` are combined.
#[derive(Debug, Clone, PartialEq)]
pub enum PixelMix {
    /// No pixel is changed (for example when the apply probability said no).
    Identity,
    /// `out[i] = x[perm[i]] + w[i] * (x[i] - x[perm[i]])` (torch.lerp), one weight per sample.
    Blend(Vec<f32>),
    /// `out[i] = x[i]` outside `boxes[i]` and `x[perm[i]]` inside it, one box per sample
    /// (all equal when the box is drawn once per batch, as fastai does).
    Boxes(Vec<BBox>),
    /// A different operation per sample: timm's per-element and per-pair modes can blend some
    /// samples and paste boxes into others in the same batch.
    PerSample(Vec<SampleMix>),
}

/// What happens to one sample; [`PixelMix::for_sample`] gives it for any variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleMix {
    /// The sample is copied unchanged.
    Keep,
    /// `x[perm[i]] + w * (x[i] - x[perm[i]])` (torch.lerp), `w` in [0, 1].
    Blend(f32),
    /// `x[i]` outside the box, `x[perm[i]]` inside it.
    Paste(BBox),
}

impl SampleMix {
    /// Whether the sample comes out exactly as it went in: `Keep`, a blend with weight 1, or an
    /// empty box.
    pub fn is_keep(&self) -> bool {
        match self {
            SampleMix::Keep => true,
            SampleMix::Blend(w) => *w == 1.0,
            SampleMix::Paste(b) => b.is_empty(),
        }
    }
}

impl PixelMix {
    /// The operation for sample `i`, whatever the variant (`Keep` for [`PixelMix::Identity`]).
    /// Returns `None` when `i` is past the end of a per-sample list.
    pub fn for_sample(&self, i: usize) -> Option<SampleMix> {
        match self {
            PixelMix::Identity => Some(SampleMix::Keep),
            PixelMix::Blend(w) => w.get(i).map(|&w| SampleMix::Blend(w)),
            PixelMix::Boxes(b) => b.get(i).map(|&b| SampleMix::Paste(b)),
            PixelMix::PerSample(ops) => ops.get(i).copied(),
        }
    }

    /// Builds the simplest variant that describes `ops`: `Identity` when nothing changes, `Blend`
    /// when every change is a blend, `Boxes` when every change is a paste, else `PerSample`.
    pub fn from_samples(ops: Vec<SampleMix>) -> PixelMix {
        let any_blend = ops.iter().any(|o| matches!(o, SampleMix::Blend(_)));
        let any_paste = ops.iter().any(|o| matches!(o, SampleMix::Paste(_)));
        match (any_blend, any_paste) {
            (false, false) => PixelMix::Identity,
            (true, false) => PixelMix::Blend(
                ops.iter()
                    .map(|o| if let SampleMix::Blend(w) = o { *w } else { 1.0 })
                    .collect(),
            ),
            (false, true) => PixelMix::Boxes(
                ops.iter()
                    .map(|o| {
                        if let SampleMix::Paste(b) = o {
                            *b
                        } else {
                            BBox::EMPTY
                        }
                    })
                    .collect(),
            ),
            (true, true) => PixelMix::PerSample(ops),
        }
    }
}

/// One drawn mix: everything needed to apply it to images and targets, with no randomness left.
#[derive(Debug, Clone, PartialEq)]
pub struct MixParams {
    /// Weight of each sample's own target, in [0, 1]; `1 - lam[i]` goes to the partner's target.
    pub lam: Vec<f32>,
    /// The partner of each sample: a permutation of `0..batch`.
    pub perm: Vec<usize>,
    /// How the images are combined.
    pub pixels: PixelMix,
}

impl MixParams {
    /// The mix that changes nothing: every weight 1, every sample its own partner.
    pub fn identity(batch: usize) -> MixParams {
        MixParams {
            lam: vec![1.0; batch],
            perm: (0..batch).collect(),
            pixels: PixelMix::Identity,
        }
    }

    /// The batch size these params were drawn for.
    pub fn batch(&self) -> usize {
        self.perm.len()
    }

    /// Checks these params against a batch shape: a non-empty batch, one weight and one partner per
    /// sample, weights in [0, 1], a true permutation, and boxes inside the images.
    pub fn validate(&self, shape: BatchShape) -> Result<()> {
        self.validate_targets(shape.batch)?;
        let batch = shape.batch;
        match &self.pixels {
            PixelMix::Identity => Ok(()),
            PixelMix::Blend(w) => check::weights("blend weights", w, batch),
            PixelMix::Boxes(boxes) => {
                check::length("boxes", batch, boxes.len())?;
                boxes
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, &b)| check::bbox(i, b, shape.size))
            }
            PixelMix::PerSample(ops) => {
                check::length("per-sample ops", batch, ops.len())?;
                ops.iter().enumerate().try_for_each(|(i, op)| match *op {
                    SampleMix::Keep => Ok(()),
                    SampleMix::Blend(w) => check::weight(i, w),
                    SampleMix::Paste(b) => check::bbox(i, b, shape.size),
                })
            }
        }
    }

    /// The checks that do not need the image size: what mixing targets and losses relies on.
    fn validate_targets(&self, batch: usize) -> Result<()> {
        check::batch(batch)?;
        check::weights("lam", &self.lam, batch)?;
        check::perm(&self.perm, batch)
    }

    /// Applies the pixel mix to an NCHW f32 batch, into a new array.
    pub fn apply(&self, x: ArrayView4<'_, f32>) -> Result<Array4<f32>> {
        self.validate(BatchShape::of(&x))?;
        let mut out = Array4::zeros(x.raw_dim());
        self.apply_unchecked(x, out.view_mut());
        Ok(out)
    }

    /// Applies the pixel mix to an NCHW f32 batch, into `out` (same shape as `x`), allocating nothing.
    pub fn apply_into(&self, x: ArrayView4<'_, f32>, out: ArrayViewMut4<'_, f32>) -> Result<()> {
        self.validate(BatchShape::of(&x))?;
        check::shape("out", x.shape(), out.shape())?;
        self.apply_unchecked(x, out);
        Ok(())
    }

    fn apply_unchecked(&self, x: ArrayView4<'_, f32>, out: ArrayViewMut4<'_, f32>) {
        let perm = &self.perm;
        if let PixelMix::Blend(w) = &self.pixels {
            mixup::blend_unchecked(x, w, perm, out);
            return;
        }
        kernel::for_each_sample(out, |i, o| {
            let op = self.pixels.for_sample(i).unwrap_or(SampleMix::Keep);
            kernel::apply_sample_f32(
                op,
                x.index_axis(Axis(0), i),
                x.index_axis(Axis(0), perm[i]),
                o,
            );
        });
    }

    /// Applies the pixel mix to an NCHW uint8 batch: blends round to nearest (ties to even) as in
    /// timm's `FastCollateMixup`, boxes are copied exactly.
    pub fn apply_u8(&self, x: ArrayView4<'_, u8>) -> Result<Array4<u8>> {
        let mut out = Array4::zeros(x.raw_dim());
        self.apply_u8_into(x, out.view_mut())?;
        Ok(out)
    }

    /// [`MixParams::apply_u8`] into `out` (same shape as `x`), allocating nothing.
    pub fn apply_u8_into(&self, x: ArrayView4<'_, u8>, out: ArrayViewMut4<'_, u8>) -> Result<()> {
        self.validate(BatchShape::of(&x))?;
        check::shape("out", x.shape(), out.shape())?;
        let perm = &self.perm;
        kernel::for_each_sample(out, |i, o| {
            let op = self.pixels.for_sample(i).unwrap_or(SampleMix::Keep);
            kernel::apply_sample_u8(
                op,
                x.index_axis(Axis(0), i),
                x.index_axis(Axis(0), perm[i]),
                o,
            );
        });
        Ok(())
    }

    /// Mixes one-hot, smoothed or multi-label targets (one row per sample):
    /// `out[i] = torch.lerp(onehot[perm[i]], onehot[i], lam[i])`.
    pub fn mix_targets(&self, onehot: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.validate_targets(onehot.nrows())?;
        let mut out = Array2::zeros(onehot.raw_dim());
        mixup::blend_unchecked(onehot, &self.lam, &self.perm, out.view_mut());
        Ok(out)
    }

    /// fastai's mixed loss for integer targets: see [`loss::mixed_cross_entropy`].
    pub fn mixed_cross_entropy(
        &self,
        logits: ArrayView2<'_, f32>,
        target: &[usize],
    ) -> Result<f32> {
        loss::mixed_cross_entropy(logits, target, &self.perm, &self.lam)
    }
}

/// A uniformly random permutation of `0..batch` (Fisher-Yates), like `torch.randperm`.
pub fn random_perm<R: Rng + ?Sized>(batch: usize, rng: &mut R) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..batch).collect();
    perm.shuffle(rng);
    perm
}

/// The reversed batch, `perm[i] = batch - 1 - i`: timm's partner rule (`x.flip(0)`).
pub fn flip_perm(batch: usize) -> Vec<usize> {
    (0..batch).rev().collect()
}
