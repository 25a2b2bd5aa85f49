//! Loss functions the learner calls as fastai calls `loss_func(pred, *yb)`.

use crate::{Error, Result};
use std::sync::Arc;
use tch::{Kind, Reduction, Tensor};

/// A loss function: per-sample losses plus fastai's `y_int` flag (targets are class indices).
pub trait LossFunc: Send + Sync + std::fmt::Debug {
    /// A short name, for messages and tests.
    fn name(&self) -> String;

    /// True when targets are class indices (fastai's `y_int`): mixing then lerps losses, not targets.
    fn y_int(&self) -> bool;

    /// Turns class indices `(N,)` into the targets this loss takes (identity for class indices).
    fn encode_targets(&self, labels: &Tensor, n_classes: i64) -> Result<Tensor>;

    /// Per-sample losses `(N,)` (fastai's `NoneReduce`).
    fn per_sample(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor>;

    /// The mean-reduced loss (fastai's default `reduction='mean'`).
    fn loss(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        Ok(self.per_sample(pred, target)?.f_mean(Kind::Float)?)
    }
}

/// fastai's `CrossEntropyLossFlat()`: cross entropy over class indices.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropyFlat;

impl LossFunc for CrossEntropyFlat {
    fn name(&self) -> String {
        "cross_entropy".into()
    }

    fn y_int(&self) -> bool {
        true
    }

    fn encode_targets(&self, labels: &Tensor, _n_classes: i64) -> Result<Tensor> {
        Ok(labels.shallow_clone())
    }

    fn per_sample(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let c = *pred
            .size()
            .last()
            .ok_or_else(|| Error::Invalid("expected logits, found a scalar".into()))?;
        Ok(pred.f_view([-1, c])?.f_cross_entropy_loss(
            &target.f_view([-1])?,
            None::<&Tensor>,
            Reduction::None,
            -100,
            0.0,
        )?)
    }
}

/// fastai's `BCEWithLogitsLossFlat()` over one-hot (or multi-label) float targets; `y_int` is false, so
/// mixing lerps the targets instead of the losses.
#[derive(Debug, Clone, Copy, Default)]
pub struct BceWithLogitsFlat;

impl LossFunc for BceWithLogitsFlat {
    fn name(&self) -> String {
        "bce_with_logits".into()
    }

    fn y_int(&self) -> bool {
        false
    }

    fn encode_targets(&self, labels: &Tensor, n_classes: i64) -> Result<Tensor> {
        Ok(labels.f_one_hot(n_classes)?.f_to_kind(Kind::Float)?)
    }

    fn per_sample(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let loss = pred.f_binary_cross_entropy_with_logits(
            target,
            None::<&Tensor>,
            None::<&Tensor>,
            Reduction::None,
        )?;
        Ok(loss.f_mean_dim(-1, false, Kind::Float)?)
    }
}

/// timm's `SoftTargetCrossEntropy` on label-smoothed one-hot targets: per sample
/// `sum_c -target[c] * log_softmax(pred)[c]`. Targets are floats `(N, C)`; class indices are encoded as
/// timm's `one_hot(labels, C, on_value = 1 - smoothing + smoothing / C, off_value = smoothing / C)`.
/// `y_int` is false, so mixing lerps the targets (timm's `mixup_target`), not the losses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SoftTargetCrossEntropy {
    /// Label smoothing in [0, 1).
    pub smoothing: f64,
}

impl LossFunc for SoftTargetCrossEntropy {
    fn name(&self) -> String {
        "soft_target_cross_entropy".into()
    }

    fn y_int(&self) -> bool {
        false
    }

    fn encode_targets(&self, labels: &Tensor, n_classes: i64) -> Result<Tensor> {
        if !(0.0..1.0).contains(&self.smoothing) {
            return Err(Error::Invalid(format!(
                "expected label smoothing in [0, 1), found {}",
                self.smoothing
            )));
        }
        let off = self.smoothing / n_classes as f64;
        let on = 1.0 - self.smoothing + off;
        let one_hot = labels.f_one_hot(n_classes)?.f_to_kind(Kind::Float)?;
        Ok((one_hot * (on - off)).f_add_scalar(off)?)
    }

    fn per_sample(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let logp = pred.f_log_softmax(-1, Kind::Float)?;
        Ok((-(target * logp)).f_sum_dim_intlist(-1, false, Kind::Float)?)
    }
}

/// The default loss of the seed's learner.
pub fn default_loss() -> Arc<dyn LossFunc> {
    Arc::new(CrossEntropyFlat)
}
