//! Reference losses and targets for mixed batches: fastai's mixed cross-entropy, one-hot targets
//! with timm's label smoothing, and soft-target cross-entropy.
//!
//! These are the slow, exact (f64 inside) references that the tensor versions in mix-tch are
//! tested against, and they are what a pure-ndarray training loop would call.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

use crate::{check, Error, Result};

/// fastai's `MixHandler.lf` around cross-entropy on logits:
/// `mean_i lerp(ce(logits[i], target[perm[i]]), ce(logits[i], target[i]), lam[i])`, where `lam[i]`
/// weighs the sample's own target. Fails for an empty batch, lengths that differ from the number
/// of logit rows, a class index out of range, a non-finite logit, a weight outside [0, 1] or a
/// `perm` that is not a permutation.
pub fn mixed_cross_entropy(
    logits: ArrayView2<'_, f32>,
    target: &[usize],
    perm: &[usize],
    lam: &[f32],
) -> Result<f32> {
    let batch = logits.nrows();
    check::batch(batch)?;
    check::weights("lam", lam, batch)?;
    check::perm(perm, batch)?;
    check_targets(logits, target)?;
    let total: f64 = logits
        .axis_iter(Axis(0))
        .enumerate()
        .map(|(i, row)| {
            let lse = log_sum_exp(row);
            let own = lse - f64::from(row[target[i]]);
            let partner = lse - f64::from(row[target[perm[i]]]);
            lerp64(own, partner, f64::from(lam[i]))
        })
        .sum();
    Ok((total / batch as f64) as f32)
}

/// Unreduced cross-entropy of each row of `logits` against its integer target.
pub fn cross_entropy_each(logits: ArrayView2<'_, f32>, target: &[usize]) -> Result<Vec<f32>> {
    check::batch(logits.nrows())?;
    check_targets(logits, target)?;
    Ok(logits
        .axis_iter(Axis(0))
        .zip(target)
        .map(|(row, &t)| (log_sum_exp(row) - f64::from(row[t])) as f32)
        .collect())
}

/// Cross-entropy against soft (for example mixed one-hot) targets, mean over the batch:
/// `mean_i sum_c -targets[i, c] * log_softmax(logits[i])[c]` (timm's `SoftTargetCrossEntropy`).
pub fn soft_cross_entropy(
    logits: ArrayView2<'_, f32>,
    targets: ArrayView2<'_, f32>,
) -> Result<f32> {
    let batch = logits.nrows();
    check::batch(batch)?;
    check::shape("targets", logits.shape(), targets.shape())?;
    check_finite("logits", logits)?;
    check_finite("targets", targets)?;
    let total: f64 = logits
        .axis_iter(Axis(0))
        .zip(targets.axis_iter(Axis(0)))
        .map(|(row, t)| {
            let lse = log_sum_exp(row);
            row.iter()
                .zip(t)
                .map(|(&l, &t)| -f64::from(t) * (f64::from(l) - lse))
                .sum::<f64>()
        })
        .sum();
    Ok((total / batch as f64) as f32)
}

/// One-hot rows for integer labels with timm's label smoothing: every entry is
/// `smoothing / num_classes`, and the label's entry is `1 - smoothing + smoothing / num_classes`.
/// `smoothing` must lie in [0, 1).
pub fn one_hot(labels: &[usize], num_classes: usize, smoothing: f32) -> Result<Array2<f32>> {
    check::setting(
        "label smoothing",
        "[0, 1)",
        smoothing,
        (0.0..1.0).contains(&smoothing),
    )?;
    let off = smoothing / num_classes as f32;
    let on = 1.0 - smoothing + off;
    let mut out = Array2::from_elem((labels.len(), num_classes), off);
    for (i, &label) in labels.iter().enumerate() {
        if label >= num_classes {
            return Err(Error::ClassOutOfRange {
                index: i,
                class: label,
                num_classes,
            });
        }
        out[(i, label)] = on;
    }
    Ok(out)
}

fn check_targets(logits: ArrayView2<'_, f32>, target: &[usize]) -> Result<()> {
    check::length("target", logits.nrows(), target.len())?;
    let num_classes = logits.ncols();
    if let Some((index, &class)) = target.iter().enumerate().find(|(_, &t)| t >= num_classes) {
        return Err(Error::ClassOutOfRange {
            index,
            class,
            num_classes,
        });
    }
    check_finite("logits", logits)
}

fn check_finite(what: &'static str, a: ArrayView2<'_, f32>) -> Result<()> {
    match a
        .axis_iter(Axis(0))
        .position(|row| row.iter().any(|v| !v.is_finite()))
    {
        Some(index) => Err(Error::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// `log(sum(exp(row)))`, shifted by the maximum so that it cannot overflow.
fn log_sum_exp(row: ArrayView1<'_, f32>) -> f64 {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    max + row
        .iter()
        .map(|&v| (f64::from(v) - max).exp())
        .sum::<f64>()
        .ln()
}

/// torch.lerp(partner, own, w) in f64.
fn lerp64(own: f64, partner: f64, w: f64) -> f64 {
    if w < 0.5 {
        partner + w * (own - partner)
    } else {
        own - (own - partner) * (1.0 - w)
    }
}
