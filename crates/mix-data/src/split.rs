//! fastai's `RandomSplitter`: shuffle the indices, the first `valid_pct` of them are validation.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::{Error, Result};

/// Indices of the training and validation items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training indices, in shuffled order.
    pub train: Vec<usize>,
    /// Validation indices, in shuffled order.
    pub valid: Vec<usize>,
}

/// Splits `0..n` like fastai's `RandomSplitter(valid_pct)`: a random permutation, of which the
/// first `int(valid_pct * n)` entries are validation and the rest training.
///
/// The permutation is a Fisher-Yates shuffle driven by `rng`, not `torch.randperm`, so the same
/// seed gives a different (equally random) split than fastai.
pub fn random_split(n: usize, valid_pct: f64, rng: &mut impl Rng) -> Result<Split> {
    if !(0.0..=1.0).contains(&valid_pct) {
        return Err(Error::Config(format!(
            "valid_pct must be in [0, 1], found {valid_pct}"
        )));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    // Python's int() truncates toward zero; the product is non-negative here.
    let cut = ((valid_pct * n as f64) as usize).min(n);
    let train = idx.split_off(cut);
    Ok(Split { train, valid: idx })
}
