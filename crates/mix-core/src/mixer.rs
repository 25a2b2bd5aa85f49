//! timm's `Mixup` knobs as one config type: MixUp and/or CutMix, apply and switch probabilities,
//! per-batch, per-pair or per-element draws, min/max boxes, lambda correction, label smoothing.
//!
//! Checked against timm/data/mixup.py as released in timm 1.0.31 (`Mixup.__init__`,
//! `_params_per_batch`, `_params_per_elem`, `_mix_batch`, `_mix_pair`, `_mix_elem`,
//! `rand_bbox_minmax`, `cutmix_bbox_and_lam`, `mixup_target`). Partners follow
//! timm: sample `i` mixes with sample `batch - 1 - i` (`x.flip(0)`), so shuffle the batch first.

use ndarray::Array2;
use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::cutmix::{rand_bbox_timm, BBox};
use crate::params::{flip_perm, MixParams, PixelMix, SampleMix};
use crate::{check, loss, Alpha, BatchShape, Error, ImageSize, Mix, Result};

/// How many independent draws a batch gets (timm's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MixMode {
    /// One draw for the whole batch (`'batch'`).
    #[default]
    Batch,
    /// One draw per pair `(i, batch - 1 - i)`, applied to both (`'pair'`); with an odd batch the
    /// middle sample is its own partner and is left unchanged.
    Pair,
    /// One draw per sample (`'elem'`).
    Elem,
}

/// timm's `Mixup` settings, plain data. [`Mixer::new`] checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct MixConfig {
    /// `Beta(a, a)` for MixUp draws; `None` turns MixUp off (timm: `mixup_alpha=0`).
    pub mixup_alpha: Option<f32>,
    /// `Beta(a, a)` for CutMix draws; `None` turns CutMix off (timm: `cutmix_alpha=0`).
    pub cutmix_alpha: Option<f32>,
    /// `(min, max)` box side ratios, `0 <= min < max <= 1`: box sides are drawn uniformly from
    /// `int(side * min)..int(side * max)` instead of from lambda, then the top-left corner uniformly
    /// from every position that keeps the box inside the image. Turns CutMix on with alpha 1 and
    /// always corrects lambda, as timm does.
    pub cutmix_minmax: Option<(f32, f32)>,
    /// Probability that a batch (pair, element) is mixed at all, in [0, 1].
    pub prob: f32,
    /// Probability of CutMix rather than MixUp when both are on, in [0, 1].
    pub switch_prob: f32,
    /// Per batch, per pair or per element draws.
    pub mode: MixMode,
    /// Replace a CutMix lambda by the share of the image outside the clipped box.
    pub correct_lam: bool,
    /// Label smoothing for the one-hot targets built by [`Mixer::targets`], in [0, 1).
    pub label_smoothing: f32,
}

impl Default for MixConfig {
    /// timm's `Mixup()` defaults: MixUp with alpha 1, no CutMix, always applied, switch
    /// probability 0.5, per-batch, corrected lambda, label smoothing 0.1.
    fn default() -> MixConfig {
        MixConfig {
            mixup_alpha: Some(1.0),
            cutmix_alpha: None,
            cutmix_minmax: None,
            prob: 1.0,
            switch_prob: 0.5,
            mode: MixMode::Batch,
            correct_lam: true,
            label_smoothing: 0.1,
        }
    }
}

/// A checked [`MixConfig`] that samples [`MixParams`]: the timm-style [`Mix`] variant.
#[derive(Debug, Clone)]
pub struct Mixer {
    config: MixConfig,
    samplers: Samplers,
}

/// The lambda distributions of the operations that are on.
#[derive(Debug, Clone)]
enum Samplers {
    MixUp(Beta<f64>),
    CutMix(Beta<f64>),
    Both { mixup: Beta<f64>, cutmix: Beta<f64> },
}

/// Which of the two operations one draw chose, with its raw lambda.
#[derive(Debug, Clone, Copy)]
enum Draw {
    MixUp(f32),
    CutMix(f32),
}

impl Mixer {
    /// Checks `config`: alphas finite and > 0, `0 <= min < max <= 1`, probabilities in [0, 1],
    /// smoothing in [0, 1), and at least one of MixUp and CutMix on.
    pub fn new(config: MixConfig) -> Result<Mixer> {
        let mixup = config.mixup_alpha.map(Alpha::new).transpose()?;
        let mut cutmix = config.cutmix_alpha.map(Alpha::new).transpose()?;
        if let Some((lo, hi)) = config.cutmix_minmax {
            if !(0.0 <= lo && lo < hi && hi <= 1.0) {
                return Err(Error::InvalidConfig(format!(
                    "cutmix_minmax must satisfy 0 <= min < max <= 1, found ({lo}, {hi})"
                )));
            }
            // timm: "force cutmix alpha == 1.0 when minmax active to keep logic simple & safe".
            cutmix = Some(Alpha::CUTMIX_DEFAULT);
        }
        let samplers = match (mixup, cutmix) {
            (Some(m), Some(c)) => Samplers::Both {
                mixup: m.beta(),
                cutmix: c.beta(),
            },
            (Some(m), None) => Samplers::MixUp(m.beta()),
            (None, Some(c)) => Samplers::CutMix(c.beta()),
            (None, None) => {
                return Err(Error::InvalidConfig(
                    "mixup_alpha and cutmix_alpha are both None; set at least one of them".into(),
                ))
            }
        };
        let p = config.prob;
        check::setting("prob", "[0, 1]", p, (0.0..=1.0).contains(&p))?;
        let s = config.switch_prob;
        check::setting("switch_prob", "[0, 1]", s, (0.0..=1.0).contains(&s))?;
        let ls = config.label_smoothing;
        check::setting("label_smoothing", "[0, 1)", ls, (0.0..1.0).contains(&ls))?;
        Ok(Mixer { config, samplers })
    }

    /// The settings this mixer was built from.
    pub fn config(&self) -> &MixConfig {
        &self.config
    }

    /// Draws one mix for `shape`. Draw order, per batch, pair or element in index order: apply?
    /// (uniform < `prob`), CutMix? (uniform < `switch_prob`, only when both are on), lambda, then
    /// for CutMix the box (`cy`, `cx`; or with min/max: `cut_h`, `cut_w`, `y1`, `x1`).
    ///
    /// The generic form of [`Mix::sample`], which draws the same numbers from the same rng.
    pub fn draw<R: Rng + ?Sized>(&self, shape: BatchShape, rng: &mut R) -> Result<MixParams> {
        let batch = shape.batch;
        check::batch(batch)?;
        let mut lam = vec![1.0; batch];
        let mut ops = vec![SampleMix::Keep; batch];
        match self.config.mode {
            MixMode::Batch => {
                if let Some(draw) = self.choose(rng) {
                    let (op, l) = self.realise(draw, shape, rng)?;
                    lam.fill(l);
                    ops.fill(op);
                }
            }
            MixMode::Elem => {
                for i in 0..batch {
                    if let Some(draw) = self.choose(rng) {
                        (ops[i], lam[i]) = self.realise(draw, shape, rng)?;
                    }
                }
            }
            MixMode::Pair => {
                for i in 0..batch / 2 {
                    if let Some(draw) = self.choose(rng) {
                        let (op, l) = self.realise(draw, shape, rng)?;
                        let j = batch - 1 - i;
                        (ops[i], ops[j], lam[i], lam[j]) = (op, op, l, l);
                    }
                }
            }
        }
        Ok(MixParams {
            lam,
            perm: flip_perm(batch),
            pixels: PixelMix::from_samples(ops),
        })
    }

    /// One-hot targets for `labels` with this config's label smoothing, mixed by `params`
    /// (timm's `mixup_target`).
    pub fn targets(
        &self,
        params: &MixParams,
        labels: &[usize],
        num_classes: usize,
    ) -> Result<Array2<f32>> {
        let onehot = loss::one_hot(labels, num_classes, self.config.label_smoothing)?;
        params.mix_targets(onehot.view())
    }

    /// Whether to mix, which operation, and its raw lambda.
    fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<Draw> {
        if rng.gen::<f32>() >= self.config.prob {
            return None;
        }
        Some(match &self.samplers {
            Samplers::MixUp(beta) => Draw::MixUp(beta.sample(rng) as f32),
            Samplers::CutMix(beta) => Draw::CutMix(beta.sample(rng) as f32),
            Samplers::Both { mixup, cutmix } => {
                if rng.gen::<f32>() < self.config.switch_prob {
                    Draw::CutMix(cutmix.sample(rng) as f32)
                } else {
                    Draw::MixUp(mixup.sample(rng) as f32)
                }
            }
        })
    }

    /// Turns a draw into one sample's operation and target weight, drawing the box if needed.
    fn realise<R: Rng + ?Sized>(
        &self,
        draw: Draw,
        shape: BatchShape,
        rng: &mut R,
    ) -> Result<(SampleMix, f32)> {
        let size = shape.size;
        let ImageSize { height, width } = size;
        match draw {
            Draw::MixUp(l) => Ok((SampleMix::Blend(l), l)),
            Draw::CutMix(l) => {
                check::image(size)?;
                let bbox = match self.config.cutmix_minmax {
                    Some((lo, hi)) => {
                        // timm: `randint(int(img_h * minmax[0]), int(img_h * minmax[1]))`, in f64.
                        let side = |n: usize, r: f32| (n as f64 * f64::from(r)) as usize;
                        let cut_h = randint(rng, side(height, lo), side(height, hi));
                        let cut_w = randint(rng, side(width, lo), side(width, hi));
                        // timm (since PR #2739): `randint(0, img_h - cut_h + 1)`, so every
                        // corner that keeps the box inside, the last one included, can come up.
                        let y1 = randint(rng, 0, height - cut_h + 1);
                        let x1 = randint(rng, 0, width - cut_w + 1);
                        BBox {
                            x1,
                            y1,
                            x2: x1 + cut_w,
                            y2: y1 + cut_h,
                        }
                    }
                    None => {
                        let cy = rng.gen_range(0..height);
                        let cx = rng.gen_range(0..width);
                        rand_bbox_timm(size, l, cx, cy)?
                    }
                };
                let correct = self.config.correct_lam || self.config.cutmix_minmax.is_some();
                let lam = if correct { bbox.lam(size)? } else { l };
                Ok((SampleMix::Paste(bbox), lam))
            }
        }
    }
}

/// numpy's `randint(lo, hi)`: uniform in `lo..hi`; `lo` when the range is empty (numpy raises).
fn randint<R: Rng + ?Sized>(rng: &mut R, lo: usize, hi: usize) -> usize {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

impl Mix for Mixer {
    fn name(&self) -> &str {
        "Mixer"
    }

    fn sample(&self, shape: BatchShape, rng: &mut dyn rand::RngCore) -> Result<MixParams> {
        self.draw(shape, rng)
    }
}
