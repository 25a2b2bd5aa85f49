//! The plain-data description of one drawn mix, shared by every applier (ndarray here, tch in mix-tch).

use crate::cutmix::BBox;

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
