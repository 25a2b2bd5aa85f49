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

/// `np.array([start * step**i for i in range(n)])` with `step = (stop/start)**(1/(n-1))`: fastai's
/// `even_mults`, `n` values from `start` to `stop` evenly spaced on a log scale.
pub fn even_mults(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![start; n];
    }
    let step = (stop / start).powf(1.0 / (n - 1) as f64);
    // Python's `float ** int` is C's pow on doubles, which powf is; powi could differ in the last bit.
    (0..n).map(|i| start * step.powf(i as f64)).collect()
}

/// How a learning rate is spread over the parameter groups: fastai's `set_hyper('lr', v)` with a float
/// or a `slice`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSpread {
    /// A plain float: every group gets the same rate.
    #[default]
    Same,
    /// `slice(hi)`: every group but the last gets `hi / 10`, the last `hi`.
    Tenth,
    /// `slice(lo, hi)`: `even_mults(lo, hi, n_groups)`, `lo` for the first group and `hi` for the last.
    From(f64),
}

impl LrSpread {
    /// The rate of each of `n_groups` groups when the last one gets `hi`.
    pub fn per_group(&self, hi: f64, n_groups: usize) -> Vec<f64> {
        let n = n_groups.max(1);
        match *self {
            LrSpread::Same => vec![hi; n],
            LrSpread::Tenth => {
                let mut v = vec![hi / 10.0; n - 1];
                v.push(hi);
                v
            }
            LrSpread::From(lo) => even_mults(lo, hi, n),
        }
    }
}

/// `fit_one_cycle`'s arguments with fastai's defaults, plus the weight decay of fastai's Adam.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    /// Peak learning rate of the last parameter group (fastai: `lr_max=None` means `defaults.lr = 1e-3`).
    pub lr_max: f64,
    /// How `lr_max` is spread over the parameter groups (a float, `slice(hi)` or `slice(lo, hi)`).
    #[serde(default)]
    pub spread: LrSpread,
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
            spread: LrSpread::Same,
            div: 25.0,
            div_final: 1e5,
            pct_start: 0.25,
            moms: (0.95, 0.85, 0.95),
            wd: 0.01,
        }
    }
}

impl OneCycle {
    /// The learning-rate schedule of the last group: `lr_max/div -> lr_max -> lr_max/div_final`.
    pub fn lr_sched(&self) -> CombinedCos {
        self.sched_for(self.lr_max)
    }

    fn sched_for(&self, lr_max: f64) -> CombinedCos {
        CombinedCos {
            pct: self.pct_start,
            start: lr_max / self.div,
            middle: lr_max,
            end: lr_max / self.div_final,
        }
    }

    /// The peak learning rate of each of `n_groups` parameter groups (fastai's
    /// `np.array([h['lr'] for h in self.opt.hypers])` after `set_hyper('lr', lr_max)`).
    pub fn group_lr_max(&self, n_groups: usize) -> Vec<f64> {
        self.spread.per_group(self.lr_max, n_groups)
    }

    /// The learning-rate schedule of each of `n_groups` parameter groups: fastai's
    /// `combined_cos(pct_start, lr_max/div, lr_max, lr_max/div_final)` on the array of group rates.
    pub fn lr_scheds(&self, n_groups: usize) -> Vec<CombinedCos> {
        self.group_lr_max(n_groups)
            .into_iter()
            .map(|lr| self.sched_for(lr))
            .collect()
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
        let lo_ok = match self.spread {
            LrSpread::From(lo) => lo.is_finite() && lo > 0.0,
            LrSpread::Same | LrSpread::Tenth => true,
        };
        let ok = self.lr_max > 0.0
            && self.lr_max.is_finite()
            && lo_ok
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
                "expected a one-cycle schedule with lr_max (and a slice's start), div, div_final > 0, pct_start in (0, 1), moms in [0, 1) \
                 and wd >= 0, found {self:?}"
            )))
        }
    }
}

/// `fine_tune`'s arguments with fastai's defaults (fastai/callback/schedule.py), plus the
/// `fit_one_cycle` settings both of its fits share (`div_final`, `moms`, `wd`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FineTune {
    /// Peak learning rate of the frozen fit's head; the unfrozen fit peaks at half of it (fastai 2e-3).
    pub base_lr: f64,
    /// Epochs with the body frozen (fastai 1; 0 skips that fit).
    pub freeze_epochs: usize,
    /// The unfrozen fit's first group trains at `base_lr / 2 / lr_mult` (fastai 100).
    pub lr_mult: f64,
    /// `pct_start` of the unfrozen fit (fastai 0.3; the frozen fit uses 0.99).
    pub pct_start: f64,
    /// `div` of the unfrozen fit (fastai 5; the frozen fit keeps fit_one_cycle's 25).
    pub div: f64,
    /// What both fits share: `div` of the frozen fit, `div_final`, `moms`, `wd` (its `lr_max`,
    /// `spread` and `pct_start` are ignored).
    pub base: OneCycle,
}

impl Default for FineTune {
    fn default() -> Self {
        FineTune {
            base_lr: 2e-3,
            freeze_epochs: 1,
            lr_mult: 100.0,
            pct_start: 0.3,
            div: 5.0,
            base: OneCycle::default(),
        }
    }
}

impl FineTune {
    /// The frozen fit: `fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)`.
    pub fn frozen_phase(&self) -> OneCycle {
        OneCycle {
            lr_max: self.base_lr,
            spread: LrSpread::Tenth,
            pct_start: 0.99,
            ..self.base
        }
    }

    /// The unfrozen fit: `fit_one_cycle(epochs, slice(base_lr/2/lr_mult, base_lr/2), pct_start, div)`.
    pub fn unfrozen_phase(&self) -> OneCycle {
        let base_lr = self.base_lr / 2.0;
        OneCycle {
            lr_max: base_lr,
            spread: LrSpread::From(base_lr / self.lr_mult),
            pct_start: self.pct_start,
            div: self.div,
            ..self.base
        }
    }

    /// Checks both fits' schedules and `lr_mult > 0`.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.lr_mult.is_finite() && self.lr_mult > 0.0) {
            return Err(crate::Error::Invalid(format!(
                "expected fine_tune's lr_mult > 0, found {}",
                self.lr_mult
            )));
        }
        self.frozen_phase().validate()?;
        self.unfrozen_phase().validate()
    }
}
