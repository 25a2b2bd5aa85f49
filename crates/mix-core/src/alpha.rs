//! `Alpha`: a Beta concentration that is always finite and > 0, so samplers cannot be built wrong.

use std::fmt;

use crate::{Error, Result};

/// The concentration of the symmetric `Beta(alpha, alpha)` that lambda is drawn from.
///
/// Always finite and strictly positive: the check happens once, in [`Alpha::new`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Alpha(f32);

impl Alpha {
    /// fastai's default for `MixUp` (`alpha=.4`).
    pub const MIXUP_DEFAULT: Alpha = Alpha(0.4);
    /// fastai's default for `CutMix` (`alpha=1.`), which makes lambda uniform on [0, 1].
    pub const CUTMIX_DEFAULT: Alpha = Alpha(1.0);

    /// Checks that `alpha` is finite and > 0.
    ///
    /// ```
    /// use mix_core::Alpha;
    /// assert_eq!(Alpha::new(0.4).unwrap().get(), 0.4);
    /// assert!(Alpha::new(0.0).is_err());
    /// assert!(Alpha::new(f32::NAN).is_err());
    /// ```
    pub fn new(alpha: f32) -> Result<Alpha> {
        if alpha.is_finite() && alpha > 0.0 {
            Ok(Alpha(alpha))
        } else {
            Err(Error::InvalidAlpha(alpha))
        }
    }

    /// The value, finite and > 0.
    pub fn get(self) -> f32 {
        self.0
    }

    /// `Beta(alpha, alpha)` in f64, the precision lambda is drawn in before it is rounded to f32.
    pub(crate) fn beta(self) -> rand_distr::Beta<f64> {
        let a = f64::from(self.0);
        // Cannot fail: a is finite and > 0, which is all rand_distr::Beta::new checks.
        rand_distr::Beta::new(a, a).expect("alpha is finite and > 0")
    }
}

impl TryFrom<f32> for Alpha {
    type Error = Error;

    fn try_from(alpha: f32) -> Result<Alpha> {
        Alpha::new(alpha)
    }
}

impl From<Alpha> for f32 {
    fn from(alpha: Alpha) -> f32 {
        alpha.0
    }
}

impl fmt::Display for Alpha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
