//! fastai's one-cycle schedule (fastai/callback/schedule.py): learning rate and momentum as a function of
//! the fraction of training done.

use serde::{Deserialize, Serialize};

/// Cosine annealing from `start` to `end` as `pos` goes from 0 to 1 (fastai's `sched_cos`).
pub fn sched_cos(start: f64, end: f64, pos: f64) -> f64 {
    start + (1.0 + (std::f64::consts::PI * (1.0 - pos)).cos()) * (end - start) / 2.0
}

/// Two cosine pieces, `start -> middle` over the first `pct` of training and `middle -> end` over the
/// rest (fastai's `combined_cos`, built on `combine_scheds`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CombinedCos {
    /// Fraction of training spent in the first piece, in (0, 1).
    pub pct: f64,
    /// Value at `pos = 0`.
    pub start: f64,
    /// Value at `pos = pct`.
    pub middle: f64,
    /// Value at `pos = 1`.
    pub end: f64,
}

impl CombinedCos {
    /// The value at `pos`, the fraction of training done (fastai evaluates it before each training batch
    /// at `pos = train_iter / total_iters`).
    pub fn at(&self, pos: f64) -> f64 {
        // combine_scheds keeps the cumulative boundaries [0, pct, 1] in a float32 tensor, so the piece and
        // the position within it are computed in float32; only the cosine is in double precision.
        let bounds = [
            0.0f32,
            self.pct as f32,
            self.pct as f32 + (1.0 - self.pct) as f32,
        ];
        let pos = pos as f32;
        // The last boundary at or below pos, but never the one at the end.
        let idx = usize::from(pos >= bounds[1]);
        let actual = f64::from((pos - bounds[idx]) / (bounds[idx + 1] - bounds[idx]));
        if idx == 0 {
            sched_cos(self.start, self.middle, actual)
        } else {
            sched_cos(self.middle, self.end, actual)
        }
    }
}

/// `fit_one_cycle`'s arguments with fastai's defaults, plus the weight decay of fastai's Adam.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    /// Peak learning rate (fastai: `lr_max=None` means `defaults.lr = 1e-3`).
    pub lr_max: f64,
    /// The learning rate starts at `lr_max / div`.
    pub div: f64,
    /// The learning rate ends at `lr_max / div_final`.
    pub div_final: f64,
    /// Fraction of training spent warming up.
    pub pct_start: f64,
    /// Momentum (Adam's beta1) at the start, at the peak learning rate, and at the end.
    pub moms: (f64, f64, f64),
    /// Decoupled weight decay (fastai's Adam default `wd=0.01`), not applied to BatchNorm or bias parameters.
    pub wd: f64,
}

impl Default for OneCycle {
    fn default() -> Self {
        OneCycle {
            lr_max: 1e-3,
            div: 25.0,
            div_final: 1e5,
            pct_start: 0.25,
            moms: (0.95, 0.85, 0.95),
            wd: 0.01,
        }
    }
}

impl OneCycle {
    /// The learning-rate schedule: `lr_max/div -> lr_max -> lr_max/div_final`.
    pub fn lr_sched(&self) -> CombinedCos {
        CombinedCos {
            pct: self.pct_start,
            start: self.lr_max / self.div,
            middle: self.lr_max,
            end: self.lr_max / self.div_final,
        }
    }

    /// The momentum schedule: `moms.0 -> moms.1 -> moms.2`.
    pub fn mom_sched(&self) -> CombinedCos {
        CombinedCos {
            pct: self.pct_start,
            start: self.moms.0,
            middle: self.moms.1,
            end: self.moms.2,
        }
    }

    /// `(lr, mom)` for training step `step` (0-based) out of `total` steps.
    pub fn at_step(&self, step: usize, total: usize) -> (f64, f64) {
        let pos = step as f64 / total.max(1) as f64;
        (self.lr_sched().at(pos), self.mom_sched().at(pos))
    }

    /// Checks the values are usable: positive rates and divisors, `pct_start` in (0, 1).
    pub fn validate(&self) -> crate::Result<()> {
        let ok = self.lr_max > 0.0
            && self.div > 0.0
            && self.div_final > 0.0
            && self.pct_start > 0.0
            && self.pct_start < 1.0
            && self.wd >= 0.0
            && [self.moms.0, self.moms.1, self.moms.2]
                .iter()
                .all(|m| (0.0..1.0).contains(m));
        if ok {
            Ok(())
        } else {
            Err(crate::Error::Invalid(format!(
                "expected a one-cycle schedule with lr_max, div, div_final > 0, pct_start in (0, 1), moms in [0, 1) \
                 and wd >= 0, found {self:?}"
            )))
        }
    }
}
